"""An agent that sleeps between blocks of tasks; prints how it does on held-out tasks.

    .venv/bin/python examples/agents/play.py                              # text games, default model
    .venv/bin/python examples/agents/play.py --env terminal --blocks 1    # shell tasks, one block

Each block: the agent plays training tasks from its weights (a lost task is followed by its
walkthrough, recorded as a won episode), then sleeps on the tasks it won, its gate playing a few
other tasks with both versions; then it plays held-out tasks it has never seen, without recording
them. For the curves of all four conditions (no memory, retrieval, sleep, sleep + retrieval) run
`sleep-agent eval agent --env NAME`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
from sleep_agent.envs import (
    ENVIRONMENTS,
    AgentPlayer,
    BehaviourCheck,
    make_environment,
    trajectory_cycle_config,
)
from sleep_agent.sleep.standard import StandardCycle


def held_out_score(memory: SleepMemory, env, seeds: list[int]) -> tuple[int, float]:  # noqa: ANN001
    """Tasks won and the benchmark's mean score on tasks never recorded."""
    player = AgentPlayer(memory, env, recall=False, record=False)
    results = [player.play(seed, "test") for seed in seeds]
    return sum(r.won for r in results), sum(r.score for r in results) / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=list(ENVIRONMENTS), default="textworld")
    parser.add_argument("--blocks", type=int, default=2, help="blocks of training tasks, a sleep after each")
    parser.add_argument("--tasks", type=int, default=5, help="training tasks per block")
    parser.add_argument("--held-out", type=int, default=6, help="held-out tasks played after each sleep")
    parser.add_argument("--gate-tasks", type=int, default=2, help="tasks the gate plays with both versions")
    parser.add_argument(
        "--serving", choices=["vllm", "local"], default=None, help="default: $SLEEP_AGENT_SERVING or vllm"
    )
    parser.add_argument(
        "--home", type=Path, default=None, help="where the memory lives (default: a temporary folder)"
    )
    args = parser.parse_args()

    console = Console()
    env = make_environment(args.env)
    trained = args.blocks * args.tasks
    check = BehaviourCheck(
        lambda: make_environment(args.env), env.seeds("train", args.gate_tasks, offset=trained)
    )
    policy = SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None)
    config = SleepConfig(
        namespace="player",
        home=args.home or Path(tempfile.mkdtemp(prefix="agent-")),
        policy=policy,
        **({"serving": args.serving} if args.serving else {}),
    )
    held_out = env.seeds("test", args.held_out)
    table = Table(title=f"{args.env}: held-out tasks after each sleep")
    for column in ("training tasks", "won", "mean score", "sleep"):
        table.add_column(column)
    cycle = StandardCycle(trajectory_cycle_config(), behaviour=check)
    with SleepMemory(config, cycle=cycle) as memory:
        won, score = held_out_score(memory, env, held_out)
        table.add_row("0", f"{won}/{len(held_out)}", f"{score:.2f}", "")
        player = AgentPlayer(memory, env, recall=False)
        seeds = env.seeds("train", trained)
        for block in range(args.blocks):
            for seed in seeds[block * args.tasks : (block + 1) * args.tasks]:
                result = player.play(seed)
                shown = "demonstrated" if not result.won and player.demonstrate(seed) else ""
                console.print(
                    f"task {seed}: {'won' if result.won else 'lost'} in {result.steps} steps "
                    f"{' | '.join(result.actions)} {shown}"
                )
            with console.status("asleep: consolidating the won tasks"):
                report = memory.sleep()
            won, score = held_out_score(memory, env, held_out)
            verdict = f"v{report.adapter_version}" if report.adapter_version else "rejected"
            table.add_row(
                str((block + 1) * args.tasks),
                f"{won}/{len(held_out)}",
                f"{score:.2f}",
                f"{verdict}: {report.metrics.get('gate_reason', '')}",
            )
    check.close()
    env.close()
    console.print(table)


if __name__ == "__main__":
    main()
