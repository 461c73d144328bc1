"""How many of a data set's updates the critic's supersession finds, and what else it retires.

Every user and tool statement of each conversation goes through ``superseded`` oldest first; an
update counts as found when a retired statement holds the value a later session replaced (the
questions' ``stale`` answers). No model: it runs in seconds.

    python benchmarks/supersession.py      # benchmarks/results/supersession.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sleep_agent.eval.datasets import load_memory_qa
from sleep_agent.sleep.critic import Statement, statements_of, superseded

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "sleep_agent/eval/data/memory_qa_freeform.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/supersession.json")
    args = parser.parse_args()
    updates, found, retired = [], 0, []
    for item in load_memory_qa(args.data):
        said = [
            Statement(text, "user", f"{item.id}-{s}")
            for s, session in enumerate(item.sessions)
            for turn in session
            if turn.role in ("user", "tool")
            for text in statements_of(turn.content)
        ]
        changes = superseded(said)
        retired += [
            {"item": item.id, "old": c.old.text, "new": c.new.text, "reason": c.reason} for c in changes
        ]
        for stale in {tuple(q.stale) for q in item.questions if q.stale}:
            hit = any(v.lower() in c.old.text.lower() for c in changes for v in stale)
            found += hit
            updates.append({"item": item.id, "stale": list(stale), "found": hit})
    result = {
        "data": args.data.name,
        "updates": len(updates),
        "found": found,
        "retired": retired,
        "by_update": updates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"updates found {found} / {len(updates)}; statements retired {len(retired)}")
    for r in retired:
        print(f"  {r['old'][:60]!r} -> {r['new'][:60]!r}")


if __name__ == "__main__":
    main()
