"""One agent sleep on a handful of won tasks: the trajectory-tuned cycle against the fact-tuned one.

The same demonstrations (the gold walkthroughs of ``--tasks`` training tasks, recorded as won
episodes) are slept on twice in one run, on the default model with vLLM on this CPU: once with the
cycle's default training (tuned for hundreds of facts) and once with ``trajectory_cycle_config()``
(fewer passes at a higher rate, anchors sized to the samples) plus the gate's behaviour check.
Held-out tasks are played from each adapter's weights, and by the base model before.

The trajectory cycle then sleeps once more on the same demonstrations in another namespace on the
same deployment (``trajectory_warm``): a second user's first sleep, whose gate finds the base
model's behaviour-check scores kept from the first and plays only the candidate's games. Scores
kept by earlier runs are forgotten at the start, so that the first sleep pays for the base model's.

    python benchmarks/agent_sleep.py --env textworld   # benchmarks/results/agent_sleep_textworld.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sleep_agent.eval.run import machine

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="textworld")
    parser.add_argument("--tasks", type=int, default=5, help="demonstrated training tasks slept on")
    parser.add_argument("--held-out", type=int, default=10)
    parser.add_argument("--gate-tasks", type=int, default=3)
    parser.add_argument("--step-limit", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true", help="skip the fact-tuned cycle's sleep")
    parser.add_argument("--no-warm", action="store_true", help="skip the second user's trajectory sleep")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or REPO / f"benchmarks/results/agent_sleep_{args.env}.json"

    from sleep_agent.envs import AgentPlayer, BehaviourCheck, make_environment, trajectory_cycle_config
    from sleep_agent.eval.cost import sleep_record
    from sleep_agent.eval.harness import Harness
    from sleep_agent.sleep.settings import CycleConfig

    def env_():  # noqa: ANN202
        return make_environment(args.env, step_limit=args.step_limit)

    env = env_()
    train = env.seeds("train", args.tasks)
    gate_seeds = env.seeds("train", args.gate_tasks, offset=args.tasks)
    held_out = env.seeds("test", args.held_out)
    trajectory = trajectory_cycle_config()
    fact_tuned = CycleConfig().model_copy(  # what game sleeps ran with before: only the text form
        update={"fact_sources": [], "tool_calls": "text", "trajectory_window": 1}
    )
    cycles = {} if args.no_baseline else {"fact_tuned": fact_tuned}
    cycles["trajectory"] = trajectory
    if not args.no_warm:
        cycles["trajectory_warm"] = trajectory
    result: dict = {
        "env": args.env,
        "tasks": args.tasks,
        "held_out_seeds": held_out,
        "gate_seeds": gate_seeds,
    }
    started = time.perf_counter()
    with Harness() as h:
        result["server_start_s"] = h.server_start_s
        for kept in (h.config.cache_dir / "sleep").glob("behaviour-*.json"):
            kept.unlink()  # a cold first sleep: the base model's check games are played

        def play(memory) -> dict:  # noqa: ANN001
            player = AgentPlayer(memory, env, recall=False, record=False)
            games = [player.play(s, "test") for s in held_out]
            return {
                "won": sum(g.won for g in games),
                "score": statistics.fmean(g.score for g in games),
                "steps": statistics.fmean(g.steps for g in games),
            }

        for name, cycle in cycles.items():
            check = BehaviourCheck(env_, gate_seeds) if name.startswith("trajectory") else None
            memory = h.memory(f"agent-{name}", cycle=cycle, behaviour=check)
            if "base" not in result:
                result["base"] = play(memory)
                print("base", result["base"], flush=True)
            recorder = AgentPlayer(memory, env, recall=False)
            demonstrated = sum(recorder.demonstrate(s, "train") for s in train)
            report = memory.sleep()
            record = sleep_record(report)
            record["demonstrated"] = demonstrated
            record["held_out"] = play(memory)
            if check is not None:
                check.close()
            result[name] = record
            print(
                name,
                json.dumps({k: record[k] for k in ("seconds", "timings_s", "held_out", "gate_reason")}),
                flush=True,
            )
    env.close()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
