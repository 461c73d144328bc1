"""What memory costs: sleep time per memory, training speed against the machine's peak, swaps."""

from __future__ import annotations

import statistics
import time
from typing import Any

from sleep_agent.sleep.cycle import SleepReport


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of this machine with torch's current threads (median)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


def parameter_count(model_path: Any) -> int:
    """Parameters of the base model, read from its config (no weights loaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def training_peak_fraction(tokens_per_s: float, parameters: int, peak_gflops: float) -> float:
    """Share of the matmul peak a LoRA training run used.

    About 4 FLOPs per parameter per token: the forward pass (2) and the gradients with respect to
    the activations (2); the frozen base weights get no weight gradients, the adapter's are small.
    """
    return tokens_per_s * 4 * parameters / (peak_gflops * 1e9)


def sleep_record(report: SleepReport) -> dict[str, Any]:
    """The part of a sleep report a result file keeps."""
    keys = (
        "facts",
        "train_samples",
        "dream_train_samples",
        "train_tokens",
        "train_tokens_per_s",
        "dreams",
        "before",
        "after",
        "gate_reason",
        "behaviour_s",
        "behaviour_scores",
        "behaviour_remembered",
        "behaviour_samples",
        "anchor_samples",
        "epochs",
    )
    return {
        "adapter_version": report.adapter_version,
        "seconds": round(sum(report.timings_s.values()), 1),
        "timings_s": report.timings_s,
        "episodes": report.episodes_in,
        "consolidated": len(report.consolidated),
        **{k: report.metrics[k] for k in keys if k in report.metrics},
    }


def sleep_costs(sleeps: list[dict[str, Any]], memories: int, parameters: int, peak: float) -> dict[str, Any]:
    """Cost figures over the sleeps of one condition."""
    seconds = sum(s["seconds"] for s in sleeps)
    speeds = [s["train_tokens_per_s"] for s in sleeps if s.get("train_tokens_per_s")]
    speed = statistics.median(speeds) if speeds else None
    swaps = [s["timings_s"]["load"] for s in sleeps if "load" in s["timings_s"]]
    return {
        "sleep_s": round(seconds, 1),
        "sleep_s_per_memory": round(seconds / memories, 2) if memories else None,
        "train_tokens_per_s": speed,
        "peak_gflops": round(peak, 1),
        "train_peak_fraction": round(training_peak_fraction(speed, parameters, peak), 4) if speed else None,
        "adapter_swap_s": round(statistics.median(swaps), 3) if swaps else None,
    }
