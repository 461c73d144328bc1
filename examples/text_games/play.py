"""A text-game agent that sleeps between blocks of games; prints how it does on held-out games.

    .venv/bin/python examples/text_games/play.py                          # default model, vLLM, ~25 min on CPU
    .venv/bin/python examples/text_games/play.py --blocks 1 --games 3     # shorter

Each block: the agent plays training games from its weights (a lost game is followed by its
walkthrough, recorded as a won episode), then sleeps on the games it won; then it plays held-out
games it has never seen, without recording them. For the curves of all four conditions (no
memory, retrieval, sleep, sleep + retrieval) run `sleep-agent eval games`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
from sleep_agent.games.agent import GamePlayer, game_cycle_config
from sleep_agent.games.textworld import GameSpec, TextGame
from sleep_agent.sleep.standard import StandardCycle


def held_out_score(memory: SleepMemory, game: TextGame, seeds: list[int]) -> tuple[int, float]:
    """Games won and mean steps (a lost game counts the step limit) on games never recorded."""
    player = GamePlayer(memory, game, recall=False, record=False)
    results = [player.play(seed, "test") for seed in seeds]
    steps = [r.steps if r.won else game.spec.step_limit for r in results]
    return sum(r.won for r in results), sum(steps) / len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2, help="blocks of training games, a sleep after each")
    parser.add_argument("--games", type=int, default=5, help="training games per block")
    parser.add_argument("--held-out", type=int, default=6, help="held-out games played after each sleep")
    parser.add_argument(
        "--serving", choices=["vllm", "local"], default=None, help="default: $SLEEP_AGENT_SERVING or vllm"
    )
    parser.add_argument(
        "--home", type=Path, default=None, help="where the memory lives (default: a temporary folder)"
    )
    args = parser.parse_args()

    console = Console()
    game = TextGame(GameSpec(name="coin", step_limit=10))
    policy = SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None)
    config = SleepConfig(
        namespace="player",
        home=args.home or Path(tempfile.mkdtemp(prefix="text-games-")),
        policy=policy,
        **({"serving": args.serving} if args.serving else {}),
    )
    held_out = game.seeds("test", args.held_out)
    table = Table(title="Held-out games after each sleep")
    for column in ("training games", "won", "steps per game", "sleep"):
        table.add_column(column)
    with SleepMemory(config, cycle=StandardCycle(game_cycle_config())) as memory:
        won, steps = held_out_score(memory, game, held_out)
        table.add_row("0", f"{won}/{len(held_out)}", f"{steps:.1f}", "")
        player = GamePlayer(memory, game, recall=False)
        seeds = game.seeds("train", args.blocks * args.games)
        for block in range(args.blocks):
            for seed in seeds[block * args.games : (block + 1) * args.games]:
                result = player.play(seed)
                shown = "demonstrated" if not result.won and player.demonstrate(seed) else ""
                console.print(
                    f"game {seed}: {'won' if result.won else 'lost'} in {result.steps} steps "
                    f"{' '.join(result.commands)} {shown}"
                )
            with console.status("asleep: consolidating the won games"):
                report = memory.sleep()
            won, steps = held_out_score(memory, game, held_out)
            verdict = f"v{report.adapter_version}" if report.adapter_version else "rejected"
            table.add_row(
                str((block + 1) * args.games),
                f"{won}/{len(held_out)}",
                f"{steps:.1f}",
                f"{verdict}: {report.metrics.get('gate_reason', '')}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
