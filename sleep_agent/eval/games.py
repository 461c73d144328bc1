"""Text games: does an agent that sleeps between games get better at new games of the same family?

Two agents play the same training games (TextWorldExpress "coin": find the coin in a few rooms and
take it), in blocks. One never sleeps and recalls its past games into the prompt (retrieval, the
way text memories work); the other sleeps after each block and plays from its weights. A game the
agent loses is followed by its gold walkthrough, recorded as a won episode (learning from
demonstrations: the default model rarely wins alone). After each block, held-out games (the test
fold, never recorded) are played four ways: no memory, retrieval, sleep, and sleep plus retrieval.
Greedy decoding and fixed seeds: a run repeats exactly.
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

NAME = "Text games"
CONDITIONS = {
    "no_memory": "no memory",
    "retrieval": "retrieval",
    "sleep": "sleep",
    "sleep_retrieval": "sleep + retrieval",
}


def check(options: EvalOptions) -> None:
    """Fail before the server starts when the game engine cannot run."""
    from sleep_agent.games.textworld import GameSpec, TextGame

    TextGame(GameSpec())


def sizes(options: EvalOptions) -> dict[str, int]:
    return {
        "blocks": options.size(2, 3),
        "games_per_block": options.size(5, 8),
        "held_out": options.size(6, 10),
        "step_limit": options.size(10, 12),
    }


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    from sleep_agent.games.textworld import GameSpec, TextGame

    size = sizes(options)
    game = TextGame(GameSpec(step_limit=size["step_limit"]))
    held_out = game.seeds("test", size["held_out"])
    runs = [_one_seed(h, game, held_out, size, seed) for seed in range(options.seeds)]
    return {
        "protocol": "games",
        "name": NAME,
        "game": asdict(game.spec),
        **size,
        "held_out_seeds": held_out,
        "seeds": runs,
        "curves": _curves(runs, size["step_limit"]),
    }


def _one_seed(h: Harness, game: Any, held_out: list[int], size: dict[str, int], seed: int) -> dict[str, Any]:
    from sleep_agent.games.agent import GamePlayer, game_cycle_config

    per_block = size["games_per_block"]
    train = game.seeds("train", size["blocks"] * per_block, offset=seed * size["blocks"] * per_block)
    # a whole game is 300-1500 tokens: the budget holds two, within the 2048-token window
    recall = RecallConfig(
        k=2, max_tokens=1536, include_consolidated=True, sources=("user", "assistant", "tool")
    )
    memories = {
        stream: h.memory(
            f"games-{stream}-seed{seed}", seed=seed, recall=recall, cycle=game_cycle_config(h.cycle_config)
        )
        for stream in ("retrieval", "sleep")
    }

    def player(stream: str, *, recall: bool, record: bool) -> GamePlayer:
        return GamePlayer(memories[stream], game, recall=recall, record=record, token_counter=h.prompt_tokens)

    def held_out_games(stream: str, recall: bool, desc: str) -> list[dict[str, Any]]:
        p = player(stream, recall=recall, record=False)
        return [_game(p.play(s, "test")) for s in _bar(h, held_out, desc)]

    # before any game both memories are empty: every condition is the base model with no recall
    base = held_out_games("retrieval", False, "held-out, no memory")
    points: list[dict[str, Any]] = [{"games": 0, **{c: base for c in CONDITIONS}}]
    training: dict[str, list[dict[str, Any]]] = {"retrieval": [], "sleep": []}
    sleeps = []
    for block in range(size["blocks"]):
        seeds = train[block * per_block : (block + 1) * per_block]
        for stream, recalls in (("retrieval", True), ("sleep", False)):
            p = player(stream, recall=recalls, record=True)
            for s in _bar(h, seeds, f"block {block + 1} {stream}"):
                played = _game(p.play(s, "train"))
                played["demonstrated"] = not played["won"] and p.demonstrate(s, "train")
                training[stream].append(played)
        sleeps.append(sleep_record(memories["sleep"].sleep()))
        points.append(
            {
                "games": (block + 1) * per_block,
                "no_memory": base,  # nothing changes for it: the same greedy games again
                "retrieval": held_out_games("retrieval", True, "held-out, retrieval"),
                "sleep": held_out_games("sleep", False, "held-out, sleep"),
                "sleep_retrieval": held_out_games("sleep", True, "held-out, sleep + retrieval"),
            }
        )
    return {"seed": seed, "train_seeds": train, "points": points, "training": training, "sleeps": sleeps}


def _bar(h: Harness, seeds: list[int], desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(seeds, desc=desc, unit="game", disable=not h.progress, leave=False)


def _game(result: Any) -> dict[str, Any]:
    record = asdict(result)
    record["seconds"] = round(record["seconds"], 2)
    return record


def summary(games: list[dict[str, Any]], step_limit: int) -> dict[str, Any]:
    """Win rate (with its interval), mean score, steps (a lost game counts the step limit)."""
    return {
        "won": metrics.summarize([g["won"] for g in games]),
        "score": statistics.fmean(g["score"] for g in games),
        "steps": statistics.fmean(g["steps"] if g["won"] else step_limit for g in games),
        "invalid": sum(g["invalid"] for g in games) / max(1, sum(g["steps"] for g in games)),
        "prompt_tokens": statistics.median(t for g in games for t in g["prompt_tokens"] or [0]),
        "seconds_per_step": sum(g["seconds"] for g in games) / max(1, sum(g["steps"] for g in games)),
    }


def _curves(runs: list[dict[str, Any]], step_limit: int) -> dict[str, Any]:
    """Each condition's held-out figures after 0, n, 2n... training games, pooled over seeds."""
    xs = [p["games"] for p in runs[0]["points"]]
    return {
        "games": xs,
        **{
            c: [summary([g for r in runs for g in r["points"][i][c]], step_limit) for i in range(len(xs))]
            for c in CONDITIONS
        },
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    curves = result["curves"]
    columns = ["training games", *[f"{label}: won / steps / tokens" for label in CONDITIONS.values()]]
    rows = []
    for i, games in enumerate(curves["games"]):
        cells = []
        for c in CONDITIONS:
            s = curves[c][i]
            cells.append(f"{ci_text(s['won'])} / {s['steps']:.1f} / {s['prompt_tokens']:.0f}")
        rows.append([str(games), *cells])
    return columns, rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import curves

    path = out_dir / "games_learning_curves.png"
    data = result["curves"]
    curves(
        path,
        data["games"],
        {
            "held-out games won (share)": {
                label: [s["won"]["mean"] for s in data[c]] for c, label in CONDITIONS.items()
            },
            "steps per game (lost = step limit)": {
                label: [s["steps"] for s in data[c]] for c, label in CONDITIONS.items()
            },
        },
        title=f"Text games ({result['game']['name']}): held-out games after each block of training games",
        xlabel="training games played",
    )
    return [path]
