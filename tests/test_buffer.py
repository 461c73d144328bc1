"""The episode buffer on real Chroma: embedded and server, reopened, isolated, concurrent, intact."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from sleep_agent.buffer import EpisodeBuffer, MiniLMEmbedding
from sleep_agent.errors import BufferUnavailableError, InvalidEpisodeError

FACTS = [
    ("My cat is called Pixel.", "What a lovely name for a cat."),
    ("I work as a glassblower in Vellmora.", "Glassblowing sounds hard."),
    ("My favourite colour is ochre-teal.", "That is an unusual colour."),
    ("I am allergic to peanuts.", "I will remember to avoid peanuts."),
]


def fill(buffer: EpisodeBuffer, thread: str = "t1") -> list[str]:
    return [buffer.record([("user", u), ("ai", a)], thread_id=thread).id for u, a in FACTS]


@pytest.fixture
def buffer(tmp_path: Path) -> EpisodeBuffer:
    return EpisodeBuffer("alice", path=tmp_path / "chroma", max_episode_tokens=1000)


def test_a_related_question_finds_the_right_episode(buffer: EpisodeBuffer):
    ids = fill(buffer)
    assert buffer.query("what is the name of my pet?", k=1)[0].episode.id == ids[0]
    assert buffer.query("which job do I have?", k=1)[0].episode.id == ids[1]
    assert buffer.query("what food should I avoid?", k=1)[0].episode.id == ids[3]
    hits = buffer.query("what is the name of my pet?", k=4)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_statuses_move_and_filter_queries(buffer: EpisodeBuffer):
    ids = fill(buffer)
    assert buffer.counts() == {"pending": 4, "consolidated": 0, "rejected": 0, "deleted": 0}
    assert buffer.mark(ids[:2], "consolidated", adapter_version=3) == 2
    assert buffer.mark([ids[2]], "rejected", reason="assistant's own words") == 1
    assert buffer.counts() == {"pending": 1, "consolidated": 2, "rejected": 1, "deleted": 0}
    got = buffer.get(ids)
    assert [e.status for e in got] == ["consolidated", "consolidated", "rejected", "pending"]
    assert got[0].adapter_version == 3 and got[2].reason == "assistant's own words"
    assert {h.episode.id for h in buffer.query("my cat", k=4)} == {ids[3]}  # pending only by default
    assert {h.episode.id for h in buffer.query("my cat", k=4, statuses=["consolidated"])} == set(ids[:2])
    assert [e.id for e in buffer.episodes("consolidated")] == ids[:2]
    stats = buffer.pending_stats()
    assert stats.episodes == 1 and stats.tokens == got[3].token_count
    hits = buffer.query("cat", k=4, statuses=["pending", "consolidated"], where={"thread_id": "nope"})
    assert hits == []


def test_deleting_erases_the_text_but_keeps_the_record(buffer: EpisodeBuffer):
    ids = fill(buffer)
    assert buffer.find_ids("Pixel") == [ids[0]]
    assert buffer.find_ids("PIXEL") == buffer.find_ids("ｐｉｘｅｌ") == [ids[0]]  # case and width folded
    assert buffer.delete([ids[0]]) == 1
    gone = buffer.get([ids[0]])[0]
    assert gone.status == "deleted" and gone.parts == [] and "Pixel" not in gone.text
    assert buffer.find_ids("Pixel") == []
    everything = buffer.query(
        "my cat Pixel", k=10, statuses=["pending", "consolidated", "rejected", "deleted"]
    )
    assert all("Pixel" not in h.episode.text for h in everything)
    assert len(buffer) == 4


def test_unknown_ids_raise_and_change_nothing(buffer: EpisodeBuffer):
    ids = fill(buffer)
    with pytest.raises(KeyError, match="no-such-id"):
        buffer.mark([ids[0], "no-such-id"], "consolidated", adapter_version=1)
    assert buffer.get([ids[0]])[0].status == "pending"
    with pytest.raises(ValueError, match="status"):
        buffer.mark(ids, "archived")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        buffer.get(ids[0])  # type: ignore[arg-type]


def test_recording_the_same_messages_twice_keeps_one_episode(buffer: EpisodeBuffer):
    turn = [HumanMessage("I live in Vellmora", id="h1"), AIMessage("Noted", id="a1")]
    first = buffer.record(turn)
    buffer.mark([first.id], "consolidated", adapter_version=1)
    again = buffer.record(turn)
    assert again.id == first.id and again.status == "consolidated" and len(buffer) == 1


@pytest.mark.parametrize(
    "bad",
    [[], [("user", "")], [{"role": "user"}], [("user", "word " * 3000)], "not a list", [object()]],
)
def test_bad_input_gives_a_clear_error_and_leaves_the_buffer_intact(buffer: EpisodeBuffer, bad):
    ids = fill(buffer)
    before = [e.model_dump() for e in buffer.get(ids)]
    with pytest.raises(InvalidEpisodeError):
        buffer.record(bad)
    assert len(buffer) == 4 and [e.model_dump() for e in buffer.get(ids)] == before


def test_an_episode_of_another_namespace_is_refused(tmp_path: Path, buffer: EpisodeBuffer):
    other = EpisodeBuffer("bob", path=tmp_path / "chroma")
    episode = other.record([("user", "I am Bob")])
    with pytest.raises(InvalidEpisodeError, match="namespace 'bob'"):
        buffer.add([episode])
    assert len(buffer) == 0


def test_namespaces_never_see_each_other(tmp_path: Path):
    alice = EpisodeBuffer("alice", path=tmp_path / "chroma")
    bob = EpisodeBuffer("bob", path=tmp_path / "chroma")
    fill(alice)
    bob.record([("user", "My dog is called Rex.")])
    for question in ["What is my cat called?", "Where do I work?", "What is my dog called?"]:
        assert all(h.episode.namespace == "bob" for h in bob.query(question, k=10))
        assert all(h.episode.namespace == "alice" for h in alice.query(question, k=10))
    assert len(bob) == 1 and bob.find_ids("Pixel") == [] and alice.find_ids("Rex") == []
    assert all(e.namespace == "bob" for e in bob.episodes(None))
    with pytest.raises(KeyError):
        bob.get([alice.episodes()[0].id])


def test_many_threads_recording_at_once_lose_nothing(buffer: EpisodeBuffer):
    threads, per_thread = 8, 15
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                buffer.record(
                    [("user", f"note {i} from writer {t}: the code is {t * 100 + i}")], thread_id=f"w{t}"
                )
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert len(buffer) == threads * per_thread
    texts = {e.text for e in buffer.episodes()}
    assert all(
        f"the code is {t * 100 + i}" in " ".join(texts) for t in range(threads) for i in range(per_thread)
    )
    assert buffer.pending_stats().episodes == threads * per_thread


def test_a_collection_reopened_in_a_new_process_finds_its_episodes_and_embedding(tmp_path: Path):
    path = tmp_path / "chroma"
    ids = fill(EpisodeBuffer("alice", path=path))
    script = textwrap.dedent(
        f"""
        import json, chromadb
        import sleep_agent.buffer  # registers the embedding function with Chroma
        from sleep_agent.buffer import EpisodeBuffer
        raw = chromadb.PersistentClient(path={str(path)!r}).get_collection("pending_alice")
        hit = EpisodeBuffer("alice", path={str(path)!r}).query("which job do I have?", k=1)[0]
        by_text = raw.query(query_texts=["what is my pet called?"], n_results=1)["ids"][0][0]
        print(json.dumps({{"ef": type(raw.configuration["embedding_function"]).__name__, "hit": hit.episode.id, "by_text": by_text}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"ef": MiniLMEmbedding.__name__, "hit": ids[1], "by_text": ids[0]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forgetting_while_another_namespace_records_keeps_the_shared_database_whole(tmp_path: Path):
    """Every forget scrubs the database file that all namespaces share (a child process rewrites
    it): another user's writes meanwhile must neither be lost nor corrupt it."""
    alice = EpisodeBuffer("alice", path=tmp_path / "chroma")
    bob = EpisodeBuffer("bob", path=tmp_path / "chroma")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(40):
                bob.record([("user", f"bob's note {i}")])
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    secrets = [alice.record([("user", f"Alice's locker code is {1000 + i}.")]).id for i in range(6)]
    writer = threading.Thread(target=write)
    writer.start()
    for secret in secrets:
        alice.delete([secret])
    writer.join()
    assert errors == [] and len(bob) == 40 and alice.counts()["deleted"] == 6
    check = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])"
    verdict = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "chroma" / "chroma.sqlite3")],
        capture_output=True,
        text=True,
    )
    assert verdict.stdout.strip() == "ok"
    assert b"locker code" not in (tmp_path / "chroma" / "chroma.sqlite3").read_bytes()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `chroma run` server process, as several agent processes would share."""
    path = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            EpisodeBuffer("probe", url=url)
            break
        except BufferUnavailableError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("chroma run did not start:\n" + (path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_a_chroma_server_is_shared_by_two_processes(chroma_server: str):
    ids = fill(EpisodeBuffer("carol", url=chroma_server))
    script = textwrap.dedent(
        f"""
        import json
        from sleep_agent.buffer import EpisodeBuffer
        b = EpisodeBuffer("carol", url={chroma_server!r})
        hit = b.query("what is the name of my pet?", k=1)[0].episode.id
        new = b.record([("user", "written by the second process")]).id
        print(json.dumps({{"hit": hit, "new": new, "n": len(b)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["hit"] == ids[0] and result["n"] == 5
    here = EpisodeBuffer("carol", url=chroma_server)
    assert here.get([result["new"]])[0].text == "user: written by the second process"
    assert EpisodeBuffer("dave", url=chroma_server).query("pet", k=5) == []


def test_several_processes_recording_at_once_through_a_server_lose_nothing(chroma_server: str):
    """3 processes x 3 threads x 10 turns, all into one namespace at once, while this process reads."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        from sleep_agent.buffer import EpisodeBuffer
        b = EpisodeBuffer("erin", url={chroma_server!r})
        def write(t):
            for i in range(10):
                b.record([("user", f"process {{sys.argv[1]}} thread {{t}} turn {{i}}")], thread_id=f"p{{sys.argv[1]}}")
        threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("done")
        """
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n in range(3)
    ]
    reader = EpisodeBuffer("erin", url=chroma_server)
    while any(w.poll() is None for w in writers):
        reader.counts()  # reads interleaved with the writes
        time.sleep(0.05)
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0 and out.strip() == "done", err[-2000:]
    texts = {ep.text for ep in reader.episodes("pending")}
    expected = {
        f"user: process {n} thread {t} turn {i}" for n in range(3) for t in range(3) for i in range(10)
    }
    assert texts == expected and len(reader) == 90


def test_an_unreachable_server_says_how_to_start_one():
    with pytest.raises(BufferUnavailableError, match="chroma run"):
        EpisodeBuffer("alice", url=f"http://127.0.0.1:{_free_port()}")


def test_an_unwritable_home_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BufferUnavailableError, match="embedded Chroma"):
        EpisodeBuffer("alice", path=blocker / "chroma")


def test_a_move_interrupted_by_a_crash_is_finished_on_reopen(tmp_path: Path):
    path = tmp_path / "chroma"
    buffer = EpisodeBuffer("alice", path=path)
    ids = fill(buffer)
    # what a crash between the two writes of mark() leaves: the new archived copy and the old pending one
    stored = buffer._pending.get(ids=[ids[0]], include=["metadatas", "documents", "embeddings"])
    meta = {**stored["metadatas"][0], "status": "consolidated", "adapter_version": 2}
    buffer._archive.add(
        ids=[ids[0]], documents=stored["documents"], embeddings=stored["embeddings"], metadatas=[meta]
    )
    assert buffer.get([ids[0]])[0].status == "consolidated"  # reads already prefer the archive
    reopened = EpisodeBuffer("alice", path=path)
    assert reopened.counts() == {"pending": 3, "consolidated": 1, "rejected": 0, "deleted": 0}
    assert len(reopened) == 4 and ids[0] not in {h.episode.id for h in reopened.query("my cat", k=4)}


def test_the_hot_pending_set_stays_small_as_episodes_are_consolidated(buffer: EpisodeBuffer):
    ids = fill(buffer)
    buffer.mark(ids[:3], "consolidated", adapter_version=1)
    assert buffer._pending.count() == 1 and buffer._archive.count() == 3
    buffer.mark(ids[:1], "pending")  # a retry brings an episode back into the hot set
    assert buffer._pending.count() == 2 and buffer.get([ids[0]])[0].status == "pending"
    assert buffer.query("what is the name of my pet?", k=1)[0].episode.id == ids[0]


def test_archived_recall_finds_a_match_hidden_behind_many_of_another_status(buffer: EpisodeBuffer):
    rejected = [buffer.record([("user", f"My cat Pixel ate fish number {i}.")]).id for i in range(8)]
    buffer.mark(rejected, "rejected", reason="test")
    kept = buffer.record([("user", "The cat is called Pixel.")]).id
    buffer.mark([kept], "consolidated", adapter_version=1)
    (hit,) = buffer.query("my cat Pixel ate fish", k=1, statuses=["consolidated"])
    assert hit.episode.id == kept
    assert {h.episode.status for h in buffer.query("cat", k=3, statuses=["rejected"])} == {"rejected"}
