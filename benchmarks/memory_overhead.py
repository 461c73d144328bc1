"""Memory-node overhead per turn: recall_node plus record_node, with 100 to 10,000 episodes stored.

Each turn runs the two nodes exactly as a graph would (embedded Chroma, MiniLM embeddings, the
default model's tokenizer for token counts, the sleep decision included). As in use, most
episodes are consolidated and a few are pending; recall searches the pending ones (the default)
and, in a second pass, everything. The floor in the same run is one MiniLM embedding of the query.

    python benchmarks/memory_overhead.py      # writes benchmarks/results/memory_overhead.json and a plot
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import tempfile
import time
import uuid
from pathlib import Path

from _stats import summary  # benchmarks/ is on sys.path when run as a script

from sleep_agent.eval.run import machine

REPO = Path(__file__).resolve().parents[1]

NAMES = "Ada Bram Cleo Dov Elin Faro Gita Hale Ines Joss Kiri Lume Mira Nox Oren Pia Quill Rhea Soren Tamsin".split()
THINGS = "cat dog boat city job colour song book food car sport flower tool teacher game island river".split()
VALUES = (
    "Pixel Vellmora ochre glassblower marmalade Kelvish sailing tulip hammer Zorblax chess Quenty".split()
)


def synthetic_turn(rng: random.Random, i: int) -> tuple[str, str]:
    name, thing, value = rng.choice(NAMES), rng.choice(THINGS), rng.choice(VALUES)
    return f"{name}'s {thing} is called {value}-{i}.", f"Noted: {name}'s {thing} is {value}-{i}."


def fill(buffer, n: int, pending: int, rng: random.Random) -> None:
    from sleep_agent.episodes import episode_from_messages

    batch = []
    for i in range(n):
        user, ai = synthetic_turn(rng, i)
        ep = episode_from_messages(
            [("user", user), ("ai", ai)], namespace=buffer.namespace, thread_id=f"t{i % 50}"
        )
        if i >= pending:
            ep = ep.model_copy(update={"status": "consolidated", "adapter_version": 1})
        batch.append(ep)
        if len(batch) == 256:
            buffer.add(batch)
            batch = []
    buffer.add(batch)


def _fill_main(home: str, n: int, pending: int) -> None:
    from sleep_agent.buffer import EpisodeBuffer

    fill(EpisodeBuffer("bench", path=Path(home) / "chroma"), n, pending, random.Random(n))


def fill_in_another_process(home: Path, n: int, pending: int) -> None:
    """The buffer is built by another process, as it would be over days of use before this agent
    process starts; measuring right after a bulk load in the same process times Chroma's catch-up
    work on the load instead of the steady state."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_fill_main, args=(str(home), n, pending))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"filling the buffer failed (exit code {proc.exitcode})")


def measure(memory, turns: int, rng: random.Random) -> dict[str, list[float]]:
    from langchain_core.messages import AIMessage, HumanMessage

    times: dict[str, list[float]] = {"recall": [], "record": [], "total": []}
    history: list = []
    for i in range(turns):
        user, ai = synthetic_turn(rng, 10**6 + i)
        question = HumanMessage(f"What is {user.split(' is called')[0]} called?", id=str(uuid.uuid4()))
        state = {"messages": [*history, question]}
        t0 = time.perf_counter()
        memory.recall_node(state, {"configurable": {"thread_id": "bench"}})
        t1 = time.perf_counter()
        state["messages"].append(AIMessage(ai, id=str(uuid.uuid4())))
        memory.record_node(state, {"configurable": {"thread_id": "bench"}})
        t2 = time.perf_counter()
        times["recall"].append(t1 - t0)
        times["record"].append(t2 - t1)
        times["total"].append(t2 - t0)
        history = state["messages"][-6:]  # a conversation of a few turns in the prompt
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--pending", type=int, default=16, help="pending episodes among them")
    parser.add_argument("--turns", type=int, default=100, help="measured turns per size and mode")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "memory_overhead.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "memory_overhead.png")
    args = parser.parse_args()

    from sleep_agent import RecallConfig, SleepConfig, SleepMemory, SleepPolicy
    from sleep_agent.buffer import MiniLMEmbedding

    rng = random.Random(0)
    embed = MiniLMEmbedding()
    embed(["warm-up"])
    floor = []
    for i in range(args.turns):
        t0 = time.perf_counter()
        embed([f"What is {synthetic_turn(rng, i)[0]}"])
        floor.append(time.perf_counter() - t0)

    rows = []
    for n in args.sizes:
        home = Path(tempfile.mkdtemp(prefix="overhead-"))
        t0 = time.perf_counter()
        fill_in_another_process(home, n, args.pending)
        fill_s = time.perf_counter() - t0
        print(f"{n} episodes stored in {fill_s:.0f} s")
        for mode, include in (("pending", False), ("all", True)):
            config = SleepConfig(
                namespace="bench",
                home=home,
                recall=RecallConfig(k=4, include_consolidated=include),
                policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=0.8),
            )
            memory = SleepMemory(config)
            memory.count_tokens([])  # load the tokenizer outside the timing
            measure(memory, 10, rng)  # warm-up
            times = measure(memory, args.turns, rng)
            row = {"episodes": n, "recall_over": mode, "fill_s": fill_s} | {
                k: summary(v) for k, v in times.items()
            }
            rows.append(row)
            print(
                f"  recall over {mode:7}: total p50 {row['total']['p50_ms']:.1f} ms, "
                f"p99 {row['total']['p99_ms']:.1f} ms (recall {row['recall']['p50_ms']:.1f}, "
                f"record {row['record']['p50_ms']:.1f})"
            )

    result = {
        "benchmark": "memory-node overhead per turn",
        "command": "python benchmarks/memory_overhead.py",
        "machine": machine("sentence-transformers", "langgraph"),
        "settings": vars(args) | {"out": args.out.name, "plot": args.plot.name},
        "definitions": {
            "recall": "recall_node: embed the last user message, query Chroma, format the memory message",
            "record": "record_node: build and embed the episode, add it, count context tokens, decide",
            "total": "recall + record, the overhead the memory adds to one turn",
            "floor": "one MiniLM embedding of a question, measured in the same run",
        },
        "floor": summary(floor),
        "rows": rows,
        "target": "total p50 < 30 ms at 10,000 episodes",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.plot)
    print(f"floor (one embedding) p50 {result['floor']['p50_ms']:.1f} ms; results in {args.out}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, style in (("pending", "-o"), ("all", "--s")):
        rows = [r for r in result["rows"] if r["recall_over"] == mode]
        sizes = [r["episodes"] for r in rows]
        ax.plot(sizes, [r["total"]["p50_ms"] for r in rows], style, label=f"p50, recall over {mode}")
        ax.plot(
            sizes, [r["total"]["p99_ms"] for r in rows], style, alpha=0.4, label=f"p99, recall over {mode}"
        )
    ax.axhline(result["floor"]["p50_ms"], color="grey", lw=1, label="one embedding (p50)")
    ax.axhline(30, color="red", lw=1, ls=":", label="target p50")
    ax.set_xscale("log")
    ax.set_xlabel("episodes in the buffer")
    ax.set_ylabel("recall + record per turn (ms)")
    ax.set_title("Memory-node overhead per turn (2-core CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
