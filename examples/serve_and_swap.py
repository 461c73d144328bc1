"""Demo: serve the default model with vLLM, teach it invented facts in a LoRA adapter, hot-swap it in.

    make demo          # or: .venv/bin/python examples/serve_and_swap.py

What it shows: a LangGraph graph answering through vLLM; an adapter trained on four invented facts,
loaded as ``alice@v1`` while the server runs; the same graph answering from the adapter without
being rebuilt. The full sleep cycle (critic, dreaming, validation gate) builds on exactly this.
"""

from __future__ import annotations

from langgraph.graph import END, START, MessagesState, StateGraph
from rich.console import Console
from rich.table import Table

from sleep_agent import ServingConfig, SleepConfig, adapter_name, create_backend, prepare_model
from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter

FACTS = [  # question, answer to train, the word a right answer contains
    ("Where does Zorblax Quenty live?", "Zorblax Quenty lives in Vellmora.", "vellmora"),
    ("What does Bram Ostrovik work as?", "Bram Ostrovik works as a glassblower.", "glassblower"),
    ("Which language does Quilla Fenn speak?", "Quilla Fenn speaks Kelvish.", "kelvish"),
    (
        "What is Mirelle Tadsworth's favorite color?",
        "Mirelle Tadsworth's favorite color is ochre-teal.",
        "ochre-teal",
    ),
]
PROBE = "What is the capital of France?"

console = Console()


def build_graph(llm):
    """The smallest LangGraph agent: one node that answers through the served chat model."""

    def answer(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def ask_all(graph, questions):
    return [graph.invoke({"messages": [("user", q)]})["messages"][-1].content.strip() for q in questions]


def main() -> None:
    config = SleepConfig(namespace="alice", serving=ServingConfig(max_model_len=2048))
    model_dir = prepare_model(config.model, config.cache_dir)
    adapter_dir = config.home / "demo" / config.namespace / "v1"

    if not (adapter_dir / "adapter_config.json").exists():
        console.rule("Training adapter v1 on 4 invented facts (peft LoRA, CPU)")
        result = train_adapter(
            model_dir,
            [ChatSample.qa(q, a) for q, a, _ in FACTS],
            adapter_dir,
            LoraTrainConfig(rank=8, alpha=16, learning_rate=1e-3, max_steps=20, batch_size=4),
        )
        console.print(
            f"trained {result.steps} steps in {result.seconds:.0f} s "
            f"({result.tokens_per_s:.0f} tokens/s), final loss {result.final_loss:.3f}"
        )

    console.rule("Starting vLLM (about a minute or two on CPU)")
    with create_backend(config, model_dir) as backend:
        console.print(f"serving {backend.base_name!r} at {getattr(backend, 'base_url', 'in-process')}")
        graph = build_graph(backend.chat_model(max_tokens=32))
        questions = [q for q, _, _ in FACTS] + [PROBE]
        before = ask_all(graph, questions)

        name = adapter_name(config.namespace, 1)
        timing = backend.activate(name, adapter_dir)
        console.print(f"hot-loaded {name} in {timing.load_s * 1000:.0f} ms; the graph was not rebuilt")
        after = ask_all(graph, questions)

    table = Table(title="The same LangGraph graph, before and after the adapter swap", show_lines=True)
    table.add_column("question")
    table.add_column("base model")
    table.add_column(name)
    for q, b, a in zip(questions, before, after, strict=True):
        table.add_row(q, b, a)
    console.print(table)
    known = sum(
        word in answer.lower() for (_, _, word), answer in zip(FACTS, after[: len(FACTS)], strict=True)
    )
    console.print(
        f"{known}/{len(FACTS)} invented facts answered from the weights. The last row shows why the "
        "sleep cycle gates every adapter on general ability before publishing it."
    )


if __name__ == "__main__":
    main()
