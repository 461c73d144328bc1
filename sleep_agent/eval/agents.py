"""Agents across tasks: does an agent that sleeps between blocks of tasks do better on new ones?

``sleep-agent eval agent --env NAME`` plays one environment (``sleep_agent.envs``). Two agents play
the same training tasks in blocks, each task recorded with its outcome and reward. One never
sleeps and recalls its past tasks into the prompt (retrieval, the way text memories work); the
other sleeps after each block on its won trajectories and acts from its weights, its gate playing
a few other training tasks with both versions (the behaviour check). A task the agent loses is
followed by its gold walkthrough, recorded as a won episode, where the benchmark has one (learning
from demonstrations: the default model rarely wins alone). After each block, held-out tasks (the
benchmark's held-out split, never recorded) are played four ways: no memory, retrieval, sleep, and
sleep plus retrieval. Greedy decoding and fixed seeds: a run repeats, up to the server's batching
(tasks are played several at once, and a batch is not promised bit-identical output).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sleep_agent.config import RecallConfig
from sleep_agent.eval import metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions, ci_text

NAME = "Agent across tasks"
DEFAULT_ENV = "textworld"
CONDITIONS = {
    "no_memory": "no memory",
    "retrieval": "retrieval",
    "sleep": "sleep",
    "sleep_retrieval": "sleep + retrieval",
}
# Step limits per family at the quick and full sizes: enough for the gold path and a few detours.
STEP_LIMITS = {"textworld": (10, 12), "scienceworld": (15, 20), "miniwob": (8, 10), "terminal": (8, 10)}


def env_name(options: EvalOptions) -> str:
    return options.env or DEFAULT_ENV


def stem(options: EvalOptions) -> str:
    """The result's file name: one per environment."""
    return f"agent_{env_name(options)}"


def check(options: EvalOptions) -> None:
    """Fail before the server starts when the environment cannot run here."""
    _environment(options).close()


def sizes(options: EvalOptions) -> dict[str, int]:
    quick, full = STEP_LIMITS.get(env_name(options), (10, 12))
    return {
        "blocks": options.size(2, 3),
        "tasks_per_block": options.size(5, 8),
        "held_out": options.size(6, 10),
        "gate_tasks": options.size(3, 4),
        "step_limit": options.size(quick, full),
    }


def _environment(options: EvalOptions) -> Any:
    from sleep_agent.envs import make_environment

    return make_environment(env_name(options), step_limit=sizes(options)["step_limit"])


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    size = sizes(options)
    env = _environment(options)
    try:
        held_out = env.seeds("test", size["held_out"])
        runs = [_one_seed(h, options, env, held_out, size, seed) for seed in range(options.seeds)]
    finally:
        env.close()
    return {
        "protocol": "agent",
        "name": NAME,
        "env": env_name(options),
        "instruction": env.instruction,
        **size,
        "held_out_seeds": held_out,
        "seeds": runs,
        "curves": _curves(runs, size["step_limit"]),
    }


def _one_seed(
    h: Harness, options: EvalOptions, env: Any, held_out: list[int], size: dict[str, int], seed: int
) -> dict[str, Any]:
    from sleep_agent.envs import AgentPlayer, BehaviourCheck, trajectory_cycle_config
    from sleep_agent.envs.pool import EnvPool

    per_block = size["tasks_per_block"]
    trained = size["blocks"] * per_block
    # each seed of the run plays its own training tasks; the gate plays the train tasks after them
    train = env.seeds("train", trained, offset=seed * (trained + size["gate_tasks"]))
    gate_seeds = env.seeds(
        "train", size["gate_tasks"], offset=seed * (trained + size["gate_tasks"]) + trained
    )
    # tasks in play at once, each in its own environment: the server batches their steps; the
    # gate's check borrows from the same environments (a JVM or a browser each)
    pool = EnvPool(lambda: _environment(options))
    check = BehaviourCheck(pool, gate_seeds)
    # a whole task is 300-1500 tokens: the budget holds one or two within the 2048-token window
    recall = RecallConfig(
        k=2, max_tokens=1024, include_consolidated=True, sources=("user", "assistant", "tool")
    )
    cycle = trajectory_cycle_config(h.cycle_config)
    memories = {
        "retrieval": h.memory(f"agent-retrieval-seed{seed}", seed=seed, recall=recall, cycle=cycle),
        "sleep": h.memory(f"agent-sleep-seed{seed}", seed=seed, recall=recall, cycle=cycle, behaviour=check),
    }

    def player(stream: str, game_env: Any, *, recall: bool, record: bool) -> AgentPlayer:
        return AgentPlayer(
            memories[stream], game_env, recall=recall, record=record, token_counter=h.prompt_tokens
        )

    def held_out_tasks(conditions: dict[str, tuple[str, bool]]) -> dict[str, list[dict[str, Any]]]:
        """Every held-out task of every condition (its memory, whether it recalls), all at once."""
        games = [(c, s) for c in conditions for s in held_out]

        def play(game_env: Any, game: tuple[str, int]) -> dict[str, Any]:
            stream, recalls = conditions[game[0]]
            return _task(player(stream, game_env, recall=recalls, record=False).play(game[1], "test"))

        with _bar(h, len(games), f"held-out, {', '.join(CONDITIONS[c] for c in conditions)}") as bar:
            results = pool.map(lambda e, g: _counted(bar, play(e, g)), games)
        n = len(held_out)
        return {c: results[i * n : (i + 1) * n] for i, c in enumerate(conditions)}

    def training_block(seeds: list[int], block: int) -> None:
        """Both agents play the block's tasks in order, each stream beside the other (its own
        memory and environment): a task's recording may shape the next one's recall."""

        def stream_plays(game_env: Any, stream: str) -> list[dict[str, Any]]:
            p = player(stream, game_env, recall=stream == "retrieval", record=True)
            played = []
            with _bar(h, len(seeds), f"block {block + 1} {stream}") as bar:
                for s in seeds:
                    task = _task(p.play(s, "train"))
                    task["demonstrated"] = not task["won"] and p.demonstrate(s, "train")
                    played.append(_counted(bar, task))
            return played

        for stream, played in zip(training, pool.map(stream_plays, list(training)), strict=True):
            training[stream].extend(played)

    training: dict[str, list[dict[str, Any]]] = {"retrieval": [], "sleep": []}
    sleeps = []
    try:
        # before any task both memories are empty: every condition is the base model with no recall
        base = held_out_tasks({"no_memory": ("retrieval", False)})["no_memory"]
        points: list[dict[str, Any]] = [{"tasks": 0, **{c: base for c in CONDITIONS}}]
        for block in range(size["blocks"]):
            training_block(train[block * per_block : (block + 1) * per_block], block)
            sleeps.append(sleep_record(memories["sleep"].sleep()))
            played = held_out_tasks(
                {
                    "retrieval": ("retrieval", True),
                    "sleep": ("sleep", False),
                    "sleep_retrieval": ("sleep", True),
                }
            )
            # no memory changes nothing: the same greedy tasks again
            points.append({"tasks": (block + 1) * per_block, "no_memory": base, **played})
    finally:
        pool.close()  # the check's environments too: it borrows from this pool
    return {
        "seed": seed,
        "train_seeds": train,
        "gate_seeds": gate_seeds,
        "points": points,
        "training": training,
        "sleeps": sleeps,
    }


def _bar(h: Harness, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=not h.progress, leave=False)


def _counted(bar: Any, task: dict[str, Any]) -> dict[str, Any]:
    bar.update(1)
    return task


def _task(result: Any) -> dict[str, Any]:
    record = asdict(result)
    record["seconds"] = round(record["seconds"], 2)
    return record


def summary(tasks: list[dict[str, Any]], step_limit: int) -> dict[str, Any]:
    """Success rate (with its interval), the benchmark's mean score, steps (a lost task counts the
    step limit), invalid replies per step, prompt tokens per step."""
    return {
        "won": metrics.summarize([t["won"] for t in tasks]),
        "score": statistics.fmean(t["score"] for t in tasks),
        "steps": statistics.fmean(t["steps"] if t["won"] else step_limit for t in tasks),
        "invalid": sum(t["invalid"] for t in tasks) / max(1, sum(t["steps"] for t in tasks)),
        "prompt_tokens": statistics.median(n for t in tasks for n in t["prompt_tokens"] or [0]),
        "seconds_per_step": sum(t["seconds"] for t in tasks) / max(1, sum(t["steps"] for t in tasks)),
    }


def _curves(runs: list[dict[str, Any]], step_limit: int) -> dict[str, Any]:
    """Each condition's held-out figures after 0, n, 2n... training tasks, pooled over seeds."""
    xs = [p["tasks"] for p in runs[0]["points"]]
    return {
        "tasks": xs,
        **{
            c: [summary([t for r in runs for t in r["points"][i][c]], step_limit) for i in range(len(xs))]
            for c in CONDITIONS
        },
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    curves = result["curves"]
    columns = ["training tasks", *[f"{label}: won / score / steps" for label in CONDITIONS.values()]]
    rows = []
    for i, tasks in enumerate(curves["tasks"]):
        cells = []
        for c in CONDITIONS:
            s = curves[c][i]
            cells.append(f"{ci_text(s['won'])} / {s['score']:.2f} / {s['steps']:.1f}")
        rows.append([str(tasks), *cells])
    return columns, rows


def title(result: dict[str, Any]) -> str:
    return f"{NAME}: {result['env']}"


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import curves

    path = out_dir / f"agent_{result['env']}_learning_curves.png"
    data = result["curves"]
    won, steps = "held-out tasks won (share)", "steps per task (lost = step limit)"
    curves(
        path,
        data["tasks"],
        {
            won: {label: [s["won"]["mean"] for s in data[c]] for c, label in CONDITIONS.items()},
            "mean score (the benchmark's metric)": {
                label: [s["score"] for s in data[c]] for c, label in CONDITIONS.items()
            },
            steps: {label: [s["steps"] for s in data[c]] for c, label in CONDITIONS.items()},
        },
        title=f"{result['env']}: held-out tasks after each block of training tasks",
        xlabel="training tasks played",
        limits={won: (-0.04, 1.04), steps: (0, result["step_limit"] * 1.05)},
    )
    return [path]
