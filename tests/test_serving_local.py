"""The local backend and the shared swap logic, on a tiny Llama trained in the test."""

import threading

import pytest
from langchain_core.messages import HumanMessage

from sleep_agent import AdapterLoadError, ModelNotFoundError
from sleep_agent.serving import adapter_name
from sleep_agent.serving.local import LocalServer
from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter

QUESTION = "where does zorblax quenty live ?"
ANSWER = "he lives in vellmora ."


@pytest.fixture(scope="module")
def fact_adapter(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "v1"
    train_adapter(
        tiny_model_dir,
        [ChatSample.qa(QUESTION, ANSWER)],
        out,
        LoraTrainConfig(rank=8, alpha=16, learning_rate=1e-2, max_steps=40, batch_size=1),
        progress=False,
    )
    return out


@pytest.fixture
def server(tiny_model_dir):
    with LocalServer(tiny_model_dir) as backend:
        yield backend


def test_adapter_changes_the_answer_and_base_stays_reachable(server, fact_adapter):
    before = server.chat(QUESTION, max_tokens=8)
    assert before != ANSWER
    server.activate("t@v1", fact_adapter)
    assert server.chat(QUESTION, max_tokens=8) == ANSWER
    assert server.chat(QUESTION, adapter=server.base_name, max_tokens=8) == before


def test_chat_model_follows_each_activated_version(server, fact_adapter):
    llm = server.chat_model(max_tokens=8)
    base_answer = llm.invoke([HumanMessage(QUESTION)])
    assert base_answer.content != ANSWER and base_answer.response_metadata["model_name"] == "base"
    server.activate("t@v1", fact_adapter)
    reply = llm.invoke([HumanMessage(QUESTION)])
    assert reply.content == ANSWER and reply.response_metadata["model_name"] == "t@v1"
    timing = server.activate("t@v2", fact_adapter)  # same weights, new name: the old name is retired
    assert llm.invoke(QUESTION).response_metadata["model_name"] == "t@v2"
    assert set(server.loaded_adapters) == {"t@v2"} and timing.load_s > 0
    server.activate(None)
    assert llm.invoke(QUESTION).content == base_answer.content and server.loaded_adapters == {}


def test_the_chat_model_streams_the_adapters_answer_token_by_token(server, fact_adapter):
    import asyncio

    server.activate("t@v1", fact_adapter)
    llm = server.chat_model(max_tokens=8)
    chunks = list(llm.stream(QUESTION))
    assert len([c for c in chunks if c.content]) > 2  # pieces as they are written, not one block
    assert "".join(c.content for c in chunks) == ANSWER == llm.invoke(QUESTION).content
    assert chunks[-1].response_metadata["model_name"] == "t@v1"

    async def collect() -> list:
        return [c async for c in llm.astream(QUESTION)]

    assert "".join(c.content for c in asyncio.run(collect())) == ANSWER
    cut = llm.bind(stop=["vellmora"])
    assert "".join(c.content for c in cut.stream(QUESTION)) == cut.invoke(QUESTION).content == "he lives in"


def test_streamed_pieces_are_stripped_and_cut_at_a_stop_string_split_across_them():
    from sleep_agent.serving.local import _until_stop

    assert list(_until_stop(iter(["  hel", "lo ", "wor", "ld  "]), ())) == ["hel", "lo", " wor", "ld"]
    assert "".join(_until_stop(iter(["ab", "cE", "N", "D more"]), ("END",))) == "abc"
    assert "".join(_until_stop(iter(["x", "\n\nUs", "er: hi"]), ("\n\nUser:",))) == "x"
    assert list(_until_stop(iter(["   "]), ())) == []


def test_old_version_is_unloaded_only_after_its_requests_finish(server, fact_adapter):
    server.activate("t@v1", fact_adapter)
    entered, release = threading.Event(), threading.Event()

    def long_request():
        with server.router.request():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=long_request)
    worker.start()
    entered.wait(5)
    threading.Timer(0.2, release.set).start()
    timing = server.activate("t@v2", fact_adapter)
    worker.join()
    assert timing.drain_s >= 0.15  # activate() waited for the request on t@v1
    assert "t@v1" not in server.loaded_adapters


@pytest.mark.parametrize(
    ("name", "path_kind", "error", "words"),
    [
        ("t@v1", "missing", AdapterLoadError, "does not exist"),
        ("t@v1", "empty", AdapterLoadError, "adapter_config.json is missing"),
        ("unversioned", "good", ValueError, "must be versioned"),
    ],
)
def test_bad_adapters_are_refused_with_the_fix(server, fact_adapter, tmp_path, name, path_kind, error, words):
    path = {"missing": tmp_path / "nope", "empty": tmp_path, "good": fact_adapter}[path_kind]
    with pytest.raises(error, match=words):
        server.load_adapter(name, path)
    assert server.loaded_adapters == {}


def test_reloading_a_name_and_unloading_the_active_one_are_refused(server, fact_adapter):
    server.activate("t@v1", fact_adapter)
    with pytest.raises(AdapterLoadError, match="already loaded"):
        server.load_adapter("t@v1", fact_adapter)
    with pytest.raises(AdapterLoadError, match="is active"):
        server.unload_adapter("t@v1")
    with pytest.raises(AdapterLoadError, match="not loaded"):
        server.unload_adapter("t@v9")


def test_adapter_name_is_versioned():
    assert adapter_name("alice", 3) == "alice@v3"
    with pytest.raises(ValueError):
        adapter_name("alice", 0)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="cannot load the model"):
        LocalServer(tmp_path / "nothing").start()
