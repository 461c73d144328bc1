"""Add sleepable memory to your own LangGraph graph: record turns, recall them in a new thread.

    python examples/memory_graph.py          # local backend on the default model, about a minute on CPU

To stay under a minute, the sleep cycle here is a stand-in that marks every episode consolidated
without training anything; leave out ``cycle=`` to get the standard cycle (critic, LoRA
consolidation, gate, hot reload; a few minutes on CPU), as ``examples/sleep_demo.py`` does.
"""

from __future__ import annotations

import tempfile

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from rich.console import Console

from sleep_agent import RecallConfig, SleepConfig, SleepMemory, SleepPolicy, SleepState


def accept_all(context, episodes, report):
    """A stand-in cycle: consolidate everything into 'version 1' without training."""
    report.consolidated = [e.id for e in episodes]
    report.adapter_version = 1
    return report


def main() -> None:
    console = Console()
    home = tempfile.mkdtemp(prefix="sleep-agent-example-")
    config = SleepConfig(
        namespace="alice",
        serving="local",
        home=home,
        policy=SleepPolicy(pending_episodes=4),
        recall=RecallConfig(k=2),
    )
    with SleepMemory(config, cycle=accept_all) as memory:
        llm = memory.chat_model(max_tokens=32)

        # --- the ten lines an agent builder adds -------------------------------------------
        builder = StateGraph(SleepState)
        builder.add_node("recall", memory.recall_node)
        builder.add_node("agent", lambda state: {"messages": [llm.invoke(state["messages"])]})
        builder.add_node("record", memory.record_node)
        builder.add_node("sleep", memory.sleep_node)
        builder.add_edge(START, "recall")
        builder.add_edge("recall", "agent")
        builder.add_edge("agent", "record")
        builder.add_conditional_edges("record", memory.should_sleep, ["sleep", END])
        builder.add_edge("sleep", END)
        graph = builder.compile(checkpointer=InMemorySaver())
        # -------------------------------------------------------------------------------------

        told = [
            "My cat is called Pixel.",
            "I work as a glassblower in Vellmora.",
            "I am allergic to peanuts.",
        ]
        for text in told:
            out = graph.invoke({"messages": [("user", text)]}, {"configurable": {"thread_id": "monday"}})
            console.print(f"[bold]user:[/] {text}\n[bold]agent:[/] {out['messages'][-1].content}")
            console.print(
                f"  [dim]sleep? {out['sleep_decision']['sleep']} ({out['sleep_decision']['detail']})[/]"
            )

        question = "What should I avoid eating?"
        out = graph.invoke({"messages": [("user", question)]}, {"configurable": {"thread_id": "tuesday"}})
        recalled = [m.content for m in out["messages"] if m.name == "sleep_agent_recall"]
        console.print(f"\n[bold]new thread, user:[/] {question}")
        console.print(f"[bold]recalled into the prompt:[/]\n{recalled[0] if recalled else '(nothing)'}")
        console.print(f"[bold]agent:[/] {out['messages'][-1].content}")
        decision = out["sleep_decision"]
        console.print(f"  [dim]sleep? {decision['sleep']} ({decision['detail']})[/]")
        console.print(f"\n[bold]status:[/] {memory.status()['episodes']}")


if __name__ == "__main__":
    main()
