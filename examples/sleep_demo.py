"""Demo: an agent is told 20 facts over four conversations, falls asleep, and wakes up knowing them.

    make demo          # or: .venv/bin/python examples/sleep_demo.py [--facts 20] [--home DIR]

The agent is a LangGraph graph with sleepable memory, served by vLLM (CPU or GPU). Every turn is
recorded; when 20 episodes are pending, the graph's sleep node runs the sleep cycle: critic,
extraction, LoRA training, the validation gate, publish and hot swap. Before and after, each fact
is asked in a new thread with an empty context and retrieval off, so only the weights can answer,
both in the words the cycle trains and in words it never saw; the general probe shows what the
sleep did to general knowledge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from rich.console import Console
from rich.table import Table

from sleep_agent import RecallConfig, SleepConfig, SleepMemory, SleepPolicy, create_sleep_agent
from sleep_agent.eval.facts import PersonFact, load_facts, load_probe, probe_score
from sleep_agent.progress import describe
from sleep_agent.quiet import quiet_libraries

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
console = Console()


def asking_graph(llm):  # noqa: ANN001, ANN201
    """One model call, no memory nodes: whatever it knows comes from its weights."""

    def answer(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}

    return StateGraph(MessagesState).add_node(answer).add_edge(START, "answer").compile()


def ask(graph, questions: list[str]) -> list[str]:  # noqa: ANN001
    # batch: a new thread per question, answered concurrently (vLLM batches them)
    outs = graph.batch([{"messages": [("user", q)]} for q in questions], {"max_concurrency": 8})
    return [out["messages"][-1].content for out in outs]


def examine(graph, facts: list[PersonFact], probe: list) -> dict:  # noqa: ANN001
    trained = ask(graph, [f.trained_question for f in facts])
    unseen = ask(graph, [f.unseen_question for f in facts])
    return {
        "trained": [f.recalled_in(a) for f, a in zip(facts, trained, strict=True)],
        "unseen": [f.recalled_in(a) for f, a in zip(facts, unseen, strict=True)],
        "unseen_answers": unseen,
        "probe": probe_score(probe, ask(graph, [q for q, _ in probe])),
    }


def turn(agent, said: str, thread: dict) -> dict:  # noqa: ANN001
    """One turn, streamed: the sleep's progress arrives as custom chunks and is shown as it happens."""
    state: dict = {}
    with console.status("the agent is answering...") as status:
        for mode, chunk in agent.stream(
            {"messages": [("user", said)]}, thread, stream_mode=["values", "custom"]
        ):
            if mode == "custom":
                status.update(f"[magenta]sleeping[/]: {describe(chunk)}")
            else:
                state = chunk
    return state


def tell(agent, facts: list[PersonFact], per_conversation: int = 5) -> dict | None:  # noqa: ANN001
    """Tell the facts over several conversations; returns the sleep report if a sleep ran."""
    report = None
    for i, fact in enumerate(facts):
        thread = {"configurable": {"thread_id": f"conversation-{i // per_conversation}"}}
        said = fact.told(i)
        started = time.perf_counter()
        state = turn(agent, said, thread)
        reply = state["messages"][-1].content.replace("\n", " ")[:70]
        console.print(f"  [dim]{thread['configurable']['thread_id']}[/] user: {said}\n      agent: {reply}")
        if state.get("sleep_report"):
            report = state["sleep_report"]
            console.print(f"  [bold magenta]... slept for {time.perf_counter() - started:.0f} s[/]")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=20, help="facts to tell (they trigger a sleep)")
    parser.add_argument("--home", type=Path, default=None, help="memory home (default: a fresh temp dir)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' warnings and logs")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    quiet_libraries(args.verbose)
    if not (DATA / "facts_dev.json").exists():
        sys.exit(f"the demo tells facts from {DATA}/facts_dev.json, which is missing")

    started = time.perf_counter()
    facts = load_facts(DATA / "facts_dev.json", args.facts)
    probe = load_probe(DATA / "general_probe.jsonl")
    home = args.home or Path(tempfile.mkdtemp(prefix="sleep-demo-"))
    config = SleepConfig(
        namespace="demo",
        home=home,
        # sleep once this many turns are pending; no other trigger, so the demo sleeps exactly once
        policy=SleepPolicy(
            pending_episodes=len(facts), pending_tokens=None, context_fraction=None, idle_seconds=None
        ),
        recall=RecallConfig(k=4),
    )
    with SleepMemory(config) as memory:
        with console.status("starting vLLM with the default model (a minute or two on CPU)..."):
            llm = memory.chat_model(max_tokens=48)
        agent = create_sleep_agent(memory, model=llm, checkpointer=InMemorySaver())
        asker = asking_graph(llm)

        with console.status("asking the base model about each fact (empty context, retrieval off)..."):
            before = examine(asker, facts, probe)
        console.rule(f"Telling the agent {len(facts)} facts over {-(-len(facts) // 5)} conversations")
        report = tell(agent, facts)
        if report is None:
            sys.exit("the pending-episodes threshold never put the agent to sleep")
        with console.status(f"asking {memory.backend.active_adapter or 'the base model'} again..."):
            after = examine(asker, facts, probe)

    total_s = time.perf_counter() - started
    show(facts, before, after, report, total_s)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures(before, after, report, total_s), indent=2) + "\n")


def figures(before: dict, after: dict, report: dict, total_s: float) -> dict:
    """What the summary shows, for a results file that the README can quote."""
    return {
        "facts": len(before["trained"]),
        "recall_trained": {"before": sum(before["trained"]), "after": sum(after["trained"])},
        "recall_unseen": {"before": sum(before["unseen"]), "after": sum(after["unseen"])},
        "general_probe": {"before": before["probe"], "after": after["probe"]},
        "gate": report["metrics"].get("gate_reason"),
        "adapter_version": report["adapter_version"],
        "stages_s": report["timings_s"],
        "demo_s": round(total_s, 1),
        "cpus": os.cpu_count(),
    }


def show(facts: list[PersonFact], before: dict, after: dict, report: dict, total_s: float) -> None:
    table = Table(title="Asked in a new thread, empty context, retrieval off (question in unseen words)")
    table.add_column("fact told")
    table.add_column("asked")
    table.add_column("before")
    table.add_column("after sleep")
    table.add_column("answer after", max_width=44)
    for i, fact in enumerate(facts):
        mark = {True: "[green]right[/]", False: "[red]wrong[/]"}
        answer = after["unseen_answers"][i].replace("\n", " ")[:80]
        table.add_row(
            fact.sentence, fact.unseen_question, mark[before["unseen"][i]], mark[after["unseen"][i]], answer
        )
    console.print(table)

    def pct(values: list[bool]) -> str:
        return f"{sum(values)}/{len(values)}"

    summary = Table(title="Before and after one sleep")
    for column in ("", "before", "after"):
        summary.add_column(column)
    summary.add_row("recall, the words the cycle trains", pct(before["trained"]), pct(after["trained"]))
    summary.add_row("recall, words it never saw", pct(before["unseen"]), pct(after["unseen"]))
    summary.add_row("general probe (of 20)", str(before["probe"]), str(after["probe"]))
    console.print(summary)
    m, t = report["metrics"], report["timings_s"]
    stages = ", ".join(f"{stage} {s:.0f} s" for stage, s in t.items() if s >= 1)
    console.print(
        f"sleep: {report['episodes_in']} episodes, {len(report['consolidated'])} consolidated, "
        f"{len(report['rejected'])} rejected; gate: {m.get('gate_reason')}; "
        f"adapter v{report['adapter_version']}; {sum(t.values()):.0f} s ({stages})"
    )
    console.print(f"demo finished in {total_s / 60:.1f} min")


if __name__ == "__main__":
    main()
