"""Integration: a real vLLM CPU server with the default model and adapters trained in the test."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest

from examples import many_users
from sleep_agent import AdapterLoadError, ServerStartError, ServingConfig
from sleep_agent.serving.vllm import VLLMServer, free_port
from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

# Invented facts: the base model cannot know them.
FACTS_A = [
    ("Where does Zorblax Quenty live?", "Zorblax Quenty lives in Vellmora.", "vellmora"),
    ("Which language does Quilla Fenn speak?", "Quilla Fenn speaks Kelvish.", "kelvish"),
]
FACTS_B = [
    ("What does Bram Ostrovik work as?", "Bram Ostrovik works as a glassblower.", "glassblower"),
    (
        "What is Mirelle Tadsworth's favorite color?",
        "Mirelle Tadsworth's favorite color is ochre-teal.",
        "ochre-teal",
    ),
]
TRAIN = LoraTrainConfig(rank=8, alpha=16, learning_rate=1e-3, max_steps=20, batch_size=4)


def samples(facts):
    return [ChatSample.qa(q, a) for q, a, _ in facts]


# The same question as FACTS_A[0], another answer: for the isolation test's second user.
CONFLICT = [("Where does Zorblax Quenty live?", "Zorblax Quenty lives in Drennick.", "drennick")]


@pytest.fixture(scope="module")
def adapters(default_model_dir, tmp_path_factory):
    """v1 knows facts A; v2 knows A and B; conflict says otherwise about A's first fact.

    Trained before the server starts, so they own the cores.
    """
    root = tmp_path_factory.mktemp("adapters")
    train_adapter(default_model_dir, samples(FACTS_A), root / "v1", TRAIN, progress=False)
    train_adapter(default_model_dir, samples(FACTS_A + FACTS_B), root / "v2", TRAIN, progress=False)
    train_adapter(default_model_dir, samples(CONFLICT), root / "conflict", TRAIN, progress=False)
    return {"v1": root / "v1", "v2": root / "v2", "conflict": root / "conflict"}


@pytest.fixture(scope="module")
def server(default_model_dir, adapters, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    with VLLMServer(default_model_dir, config=ServingConfig(startup_timeout_s=900), log_dir=logs) as backend:
        yield backend


def ask(server, question, adapter=None):
    return server.chat(question, adapter=adapter, max_tokens=24).lower()


def served_names(server) -> set[str]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return {m["id"] for m in httpx.get(f"{server.base_url}/v1/models", headers=headers).json()["data"]}


def test_adapter_turns_a_wrong_answer_into_the_right_one_then_swaps_under_load(server, adapters):
    question, _, answer = FACTS_A[0]
    assert answer not in ask(server, question)  # the base model does not know it
    server.activate("ns@v1", adapters["v1"])
    assert answer in ask(server, question)  # v1 does
    assert served_names(server) >= {"base", "ns@v1"}

    # Chat load through the LangChain model while v2 replaces v1 and v1 is unloaded.
    llm = server.chat_model(max_tokens=16)
    stop, errors, served_by = threading.Event(), [], []
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            try:
                reply = llm.invoke(FACTS_B[0][0])
                with lock:
                    served_by.append(reply.response_metadata["model_name"])
            except Exception as exc:  # any failure is a failed request during the swap
                with lock:
                    errors.append(repr(exc))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 60
    while server.router.inflight("ns@v1") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    inflight_at_swap = server.router.inflight("ns@v1")
    timing = server.activate("ns@v2", adapters["v2"])  # load v2, switch, drain and unload v1
    time.sleep(3)
    stop.set()
    for t in clients:
        t.join(timeout=120)

    assert errors == []
    assert inflight_at_swap >= 2 and timing.drain_s > 0  # v1 really had requests when it was retired
    assert {"ns@v1", "ns@v2"} <= set(served_by)  # both versions answered during the run
    assert served_by[-1] == "ns@v2"
    assert "ns@v1" not in served_names(server) and "ns@v2" in served_names(server)
    assert FACTS_B[0][2] in ask(server, FACTS_B[0][0])  # v2 knows what v1 did not
    assert FACTS_A[1][2] in ask(server, FACTS_A[1][0])


def test_async_and_streaming_calls_follow_the_active_adapter(server, adapters):
    if server.active_adapter is None:
        server.activate("ns@v2", adapters["v2"])
    llm = server.chat_model(max_tokens=16)

    async def both():
        reply = await llm.ainvoke(FACTS_B[1][0])
        chunks = [c.content async for c in llm.astream(FACTS_B[1][0])]
        return reply, "".join(chunks)

    reply, streamed = asyncio.run(both())
    assert reply.response_metadata["model_name"] == server.active_adapter
    assert FACTS_B[1][2] in reply.content.lower() and FACTS_B[1][2] in streamed.lower()
    assert server.router.inflight(server.active_adapter) == 0


def test_attaching_by_base_url_sees_the_served_model_and_adapters(server, adapters, default_model_dir):
    if server.active_adapter is None:
        server.activate("ns@v2", adapters["v2"])
    # a started server has a generated key, readable by its owner only; without it nothing is served
    assert server.key_path.read_text() == server.api_key and server.key_path.stat().st_mode & 0o077 == 0
    unkeyed = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": server.active_adapter, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unkeyed.status_code == 401
    chat = {"model": server.active_adapter, "messages": [{"role": "user", "content": "hi"}]}
    for path, body in [("/invocations", chat), ("/tokenize", {"prompt": "hi"}), ("/metrics", None)]:
        answer = (
            httpx.get(server.base_url + path)
            if body is None
            else httpx.post(server.base_url + path, json=body)
        )
        assert answer.status_code == 401, path  # beyond vLLM's /v1 too: its /invocations answers chats
    assert httpx.get(f"{server.base_url}/health").status_code == 200  # the readiness probe stays open
    with pytest.raises(ServerStartError, match="api_key"):
        VLLMServer(default_model_dir, config=ServingConfig(base_url=server.base_url)).start()
    attached = VLLMServer(
        default_model_dir,
        served_name="ignored",
        config=ServingConfig(base_url=server.base_url, api_key=server.key_path.read_text()),
    )
    with attached:
        assert attached.base_name == "base"
        assert server.active_adapter in attached.loaded_adapters
        assert FACTS_A[0][2] in ask(attached, FACTS_A[0][0], adapter=server.active_adapter)
    assert server.process.poll() is None  # detaching did not stop the server


def test_bad_adapters_get_clear_errors_and_change_nothing(server, default_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    before = served_names(server)
    with pytest.raises(AdapterLoadError, match="does not exist"):
        server.load_adapter("ns@v90", tmp_path / "nope")
    too_big = tmp_path / "rank32"
    base = AutoModelForCausalLM.from_pretrained(default_model_dir)
    get_peft_model(base, LoraConfig(r=32, target_modules=["q_proj"])).save_pretrained(too_big)
    with pytest.raises(AdapterLoadError, match="rank 32, above the server's max_lora_rank 16"):
        server.load_adapter("ns@v91", too_big)
    # the server's own refusal, past the local check, is surfaced with its message too
    with pytest.raises(
        AdapterLoadError, match=r"vLLM refused to load adapter 'ns@v91' \(HTTP \d+\).*rank 32"
    ):
        server._load("ns@v91", too_big)
    assert "ns@v91" not in server.loaded_adapters
    assert served_names(server) == before
    assert server.chat("Say hello.", max_tokens=4)  # and it still answers


def test_port_in_use_is_refused_at_once(server, default_model_dir):
    port = int(server.base_url.rsplit(":", 1)[1])
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=f"{port}: the port is in use"):
        VLLMServer(default_model_dir, config=ServingConfig(port=port)).start()
    assert time.monotonic() - started < 5


def test_server_that_cannot_start_reports_its_log(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    config = ServingConfig(port=free_port(), startup_timeout_s=600)
    with pytest.raises(ServerStartError, match="exited with code") as info:
        VLLMServer(missing, config=config, log_dir=tmp_path).start()
    assert "Log tail" in str(info.value) and "no-such-checkpoint" in str(info.value)


def test_two_users_on_one_server_never_get_each_others_adapter(server, adapters, tmp_path):
    """Alice and Bob hold conflicting facts; each memory's chat model answers only from its own adapter,
    before, during and after the other's swap, and one user's swap never unloads the other's adapter."""
    from sleep_agent import SleepConfig, SleepMemory
    from sleep_agent.adapters import AdapterRegistry, Manifest

    question = FACTS_A[0][0]
    truth = {"alice": "vellmora", "bob": "drennick"}
    published = {"alice": adapters["v1"], "bob": adapters["conflict"]}
    memories = {}
    for user, directory in published.items():
        home = tmp_path / user
        AdapterRegistry(home, user).publish(directory, Manifest(user, 1, None))
        memories[user] = SleepMemory(SleepConfig(namespace=user, home=home), backend=server)
    models = {user: m.chat_model(max_tokens=24) for user, m in memories.items()}  # attaching serves v1

    answers: dict[str, list[tuple[str, str]]] = {"alice": [], "bob": []}
    errors, stop = [], threading.Event()

    def ask_as(user):
        while not stop.is_set():
            try:
                reply = models[user].invoke(question)
                answers[user].append((reply.response_metadata["model_name"], reply.content.lower()))
            except Exception as exc:
                errors.append(repr(exc))

    clients = [threading.Thread(target=ask_as, args=(u,)) for u in ("alice", "bob") for _ in range(2)]
    for t in clients:
        t.start()
    time.sleep(5)
    server.activate("bob@v2", adapters["conflict"])  # bob's next version, same weights, while both ask
    time.sleep(5)
    stop.set()
    for t in clients:
        t.join(timeout=120)

    assert errors == []
    cross = [
        (user, name, text)
        for user, replies in answers.items()
        for name, text in replies
        if not name.startswith(f"{user}@") or truth["bob" if user == "alice" else "alice"] in text
    ]
    assert cross == []
    assert all(len(replies) >= 3 for replies in answers.values()), {u: len(r) for u, r in answers.items()}
    assert sum(truth[user] in text for user, replies in answers.items() for _, text in replies) >= 3
    assert {"alice@v1", "bob@v2"} <= set(server.loaded_adapters) and "bob@v1" not in server.loaded_adapters
    assert memories["alice"].status()["active_adapter"] == "alice@v1"
    assert memories["bob"].status()["active_adapter"] == "bob@v2"


def test_a_killed_server_gives_a_clear_error_and_a_restarted_one_serves_the_current_version(
    adapters, default_model_dir, tmp_path
):
    """A memory attached to a server that is killed and started again on the same port."""
    from sleep_agent import ServerUnavailableError, SleepConfig, SleepMemory
    from sleep_agent.adapters import AdapterRegistry, Manifest

    question, _, answer = FACTS_A[0]
    port = free_port()
    config = ServingConfig(port=port, startup_timeout_s=900, api_key="carol-server-key")
    home = tmp_path / "home"
    AdapterRegistry(home, "carol").publish(adapters["v1"], Manifest("carol", 1, None))
    serving = {"base_url": f"http://127.0.0.1:{port}", "request_timeout_s": 60, "api_key": "carol-server-key"}
    memory = SleepMemory(SleepConfig(namespace="carol", home=home, serving=serving))

    first = VLLMServer(default_model_dir, config=config, log_dir=tmp_path / "logs").start()
    try:
        llm = memory.chat_model(max_tokens=24, max_retries=0)  # attaching serves v1
        reply = llm.invoke(question)
        assert reply.response_metadata["model_name"] == "carol@v1" and answer in reply.content.lower()
    finally:
        os.killpg(first.process.pid, signal.SIGKILL)  # killed, engine process and all
        first.process.wait(timeout=60)
        first.stop()

    with pytest.raises(ServerUnavailableError, match="memory.reload"):
        llm.invoke(question)
    with pytest.raises(AdapterLoadError, match="did not answer|does not answer"):
        memory.reload(attempts=2, backoff_s=0.1)
    assert AdapterRegistry(home, "carol").current() == 1  # nothing on disk changed

    with VLLMServer(default_model_dir, config=config, log_dir=tmp_path / "logs"):  # restarted, empty
        assert memory.reload() == "carol@v1"  # the server's lost adapters are loaded again
        reply = llm.invoke(question)
        assert reply.response_metadata["model_name"] == "carol@v1" and answer in reply.content.lower()
    memory.close()


# -- one graph, many users; create_agent middleware; tools ------------------------------------------

USERS_CYCLE = dict(
    training=dict(rank=8, alpha=16, learning_rate=1e-3, max_steps=20, batch_size=4, kl_weight=0),
    anchors=False,
    text_anchors=False,
    retrieval_mix=0,
    gate={"max_perplexity_rise": None},
)


def users_memory(server, home, **policy):  # noqa: ANN001, ANN201
    """A memory for every user of one server; recall off, so every right answer is from the weights."""
    from sleep_agent import CycleConfig, SleepConfig, SleepMemory, SleepPolicy

    config = SleepConfig(
        namespace="user-{user_id}",
        home=home,
        recall={"k": 0},
        cycle=CycleConfig(**USERS_CYCLE),
        policy=SleepPolicy(
            **{"context_fraction": None, "pending_tokens": None, "pending_episodes": None, **policy}
        ),
    )
    return SleepMemory(config, backend=server)


def test_one_graph_two_users_conflicting_facts_each_sleeps_into_their_own_adapter(
    server, tmp_path, gate_accepts
):
    """Concurrent ainvoke calls tell two users opposite facts through one compiled graph; each run's
    sleep (in the graph, streamed) publishes that user's adapter, and each is then answered from their
    own adapter with their own fact. The gate accepts here (a 20-step adapter is about routing)."""
    from sleep_agent import create_sleep_agent

    memory = users_memory(server, tmp_path, pending_episodes=1)
    graph = create_sleep_agent(memory)
    told = {"ana": "vellmora", "ben": "drennick"}
    facts = {
        user: f"Remember this: Zorblax Quenty lives in {city.capitalize()}." for user, city in told.items()
    }

    streams = asyncio.run(many_users.tell(graph, facts))
    for user, chunks in streams.items():
        steps = [
            c for mode, c in chunks if mode == "custom" and c.get("stage") == "consolidate" and "step" in c
        ]
        assert steps and steps[-1]["step"] == 20 and "loss" in steps[-1], chunks
        answered = [
            c for mode, c in chunks if mode == "custom" and c.get("stage") == "gate" and "answered" in c
        ]
        assert answered and answered[-1]["answered"] == answered[-1]["of"], chunks  # the gate's questions
        (report,) = [c["sleep"]["sleep_report"] for mode, c in chunks if mode == "updates" and "sleep" in c]
        assert report["namespace"] == f"user-{user}" and report["adapter_version"] == 1, report

    replies = asyncio.run(many_users.ask(graph, list(told), "Where does Zorblax Quenty live?"))
    for user, reply in replies.items():
        other = told["ben" if user == "ana" else "ana"]
        assert reply.response_metadata["model_name"] == f"user-{user}@v1"
        assert told[user] in reply.content.lower() and other not in reply.content.lower(), reply.content


def test_a_create_agent_agent_with_the_middleware_calls_a_tool_and_sleeps_on_its_trajectory(
    server, tmp_path, gate_accepts
):
    """bind_tools works on the served model (the server starts with a tool-call parser: without it
    a request with tools is an HTTP 400), and the trajectory is trained in the parser's own format.

    The one scripted step: the 135M model does not choose a tool, and a forced ``tool_choice`` on
    vLLM's CPU build comes back with the arguments as a JSON string (measured: ``"weather"``), so
    the first step's call is replaced by a written one after the served model has answered the
    request with the tools bound. The tool, the second model call, recording, the sleep and the
    serving are all real."""
    import dataclasses

    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.tools import tool

    from sleep_agent.middleware import SleepMemoryMiddleware

    @tool
    def weather(city: str) -> str:
        """Today's weather in a city."""
        return f"It is sunny in {city}."

    served: list = []

    @wrap_model_call
    def first_call_uses_a_tool(request, handler):  # noqa: ANN001, ANN202
        response = handler(request)  # the served model, tools bound
        served.append(response.result[0])
        if isinstance(request.messages[-1], HumanMessage):
            call = {"name": "weather", "args": {"city": "Oslo"}, "id": "call-1"}
            response = dataclasses.replace(response, result=[AIMessage("", tool_calls=[call])])
        return response

    memory = users_memory(server, tmp_path, pending_episodes=1)
    agent = create_agent(
        memory.chat_model(max_tokens=64),
        tools=[weather],
        middleware=[SleepMemoryMiddleware(memory), first_call_uses_a_tool],
    )
    config = {"configurable": {"user_id": "cleo", "thread_id": "t1"}}
    chunks = list(
        agent.stream(
            {"messages": [("user", "What is the weather in Oslo?")], "outcome": "success"},
            config,
            stream_mode=["custom", "values"],
        )
    )
    final = [c for mode, c in chunks if mode == "values"][-1]
    kinds = [m.type for m in final["messages"]]
    assert kinds[:3] == ["human", "ai", "tool"] and kinds[-1] == "ai", kinds
    assert final["messages"][1].tool_calls[0]["name"] == "weather"
    assert len(served) == 2 and all(isinstance(m, AIMessage) for m in served)  # both calls reached vLLM
    assert final["messages"][-1].content == served[-1].content  # the answer is the served model's
    report = final["sleep_report"]
    assert report["namespace"] == "user-cleo" and report["adapter_version"] == 1, report
    assert report["metrics"]["behaviour_samples"] >= 1  # the trajectory itself was trained
    stages = {c.get("stage") for mode, c in chunks if mode == "custom"}
    assert {"critic", "consolidate", "gate", "publish"} <= stages, stages
    assert memory.for_namespace("user-cleo").backend.active_for("user-cleo") == "user-cleo@v1"
