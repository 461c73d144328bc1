"""Property-based: whatever is passed in, the answer is a result or a clear error, never damage.

Hypothesis generates the inputs; each property says which errors are allowed (the project's
own, or ValueError/TypeError with a message) and that a refused call leaves the buffer exactly as
it was. The buffer is the real one (embedded Chroma, the real embedding model).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sleep_agent import EpisodeBuffer, InvalidEpisodeError, SleepConfig, SleepPolicy, episode_from_messages
from sleep_agent.errors import SleepAgentError

ROLES = ["user", "assistant", "system", "tool", "human", "ai", "robot", "", None]
text = st.text(max_size=40)
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text, st.binary(max_size=8))
content = st.one_of(
    text,
    junk,
    st.lists(
        st.one_of(text, st.fixed_dictionaries({"type": st.just("text"), "text": text}), junk), max_size=3
    ),
)
valid_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(min_size=1, max_size=40)}
    ),
    st.tuples(st.sampled_from(["user", "human", "ai"]), st.text(min_size=1, max_size=40)),
)
message = st.one_of(
    valid_message,
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": content}),
    st.tuples(st.sampled_from(ROLES), content),
    st.dictionaries(st.text(max_size=8), junk, max_size=3),
    junk,
)
# Half the inputs are well-formed turns, so that the labels (and what a valid episode holds) are
# exercised too, not only the first check that refuses a malformed message.
messages = st.one_of(st.lists(valid_message, min_size=1, max_size=3), st.lists(message, max_size=4), junk)
labels = {
    "thread_id": st.one_of(st.just("t1"), text, junk),
    "outcome": st.one_of(st.none(), st.just("success"), junk),
    "reward": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), junk),
}
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _clear(error: Exception) -> bool:
    return len(str(error)) > 10


@SETTINGS
@given(messages, st.fixed_dictionaries(labels))
def test_building_an_episode_gives_an_episode_or_an_invalid_episode_error(msgs, kwargs):
    try:
        episode = episode_from_messages(msgs, namespace="ns", **kwargs)
    except InvalidEpisodeError as e:
        assert _clear(e)
        return
    assert episode.parts and all(p.content or p.tool_calls for p in episode.parts)
    assert isinstance(episode.thread_id, str) and episode.thread_id.strip()
    assert episode.reward is None or math.isfinite(episode.reward)


@pytest.fixture(scope="module")
def buffer(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    buffer = EpisodeBuffer.from_config(SleepConfig(namespace="props", home=home))
    buffer.record([("user", "I live in Oslo.")], thread_id="seed")
    return buffer


def _snapshot(buffer: EpisodeBuffer) -> list[tuple]:
    return sorted((e.id, e.status, e.text, e.adapter_version) for e in buffer.episodes(None))


@SETTINGS
@given(messages, st.fixed_dictionaries(labels))
def test_a_refused_record_leaves_the_buffer_as_it_was(buffer, msgs, kwargs):
    before = _snapshot(buffer)
    try:
        episode = buffer.record(msgs, **kwargs)
    except InvalidEpisodeError as e:
        assert _clear(e) and _snapshot(buffer) == before
        return
    assert buffer.get([episode.id])[0].text == episode.text


calls = st.one_of(
    st.tuples(st.just("mark"), st.fixed_dictionaries(
        {"ids": st.one_of(st.lists(text, max_size=2), text, junk),
         "status": st.one_of(st.sampled_from(["pending", "consolidated", "rejected", "archived"]), junk),
         "adapter_version": st.one_of(st.none(), st.integers(-2, 3), junk)})),
    st.tuples(st.just("query"), st.fixed_dictionaries(
        {"text": st.one_of(text, junk), "k": st.one_of(st.integers(-1, 5), junk),
         "statuses": st.one_of(st.lists(st.sampled_from(["pending", "consolidated", "nope"]), max_size=2), junk)})),
    st.tuples(st.just("get"), st.fixed_dictionaries({"ids": st.one_of(st.lists(text, max_size=2), text, junk)})),
    st.tuples(st.just("find_ids"), st.fixed_dictionaries({"contains": st.one_of(text, junk)})),
)  # fmt: skip


@SETTINGS
@given(calls)
def test_bad_calls_on_the_buffer_raise_clearly_and_change_nothing(buffer, call):
    """Only valid marks of unknown ids are generated as writes, so a call must never change the buffer."""
    name, kwargs = call
    before = _snapshot(buffer)
    try:
        getattr(buffer, name)(**kwargs)
    except (ValueError, TypeError, KeyError, SleepAgentError) as e:
        assert _clear(e), repr(e)
    assert _snapshot(buffer) == before


config_fields = st.fixed_dictionaries(
    {},
    optional={
        "namespace": st.one_of(text, junk),
        "model": st.one_of(text, junk),
        "serving": st.one_of(st.sampled_from(["vllm", "local", "cuda"]), junk),
        "dreaming": junk,
        "unknown_field": junk,
    },
)


@SETTINGS
@given(
    config_fields,
    st.dictionaries(
        st.sampled_from(["pending_episodes", "context_fraction", "idle_seconds", "bogus"]), junk, max_size=3
    ),
)
def test_a_config_is_valid_or_refused_with_the_field_named(fields, policy):
    try:
        SleepConfig(**fields, policy=SleepPolicy(**policy))
    except ValidationError as e:
        named = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
        assert named and named <= {*fields, *policy}, (named, fields, policy)


def test_forget_refuses_a_bare_string_of_ids_and_an_empty_text_and_deletes_nothing():
    from sleep_agent import SleepMemory

    memory = SleepMemory(SleepConfig(namespace="forget-props"))
    memory.buffer.record([("user", "My PIN is 4471.")])
    with pytest.raises(TypeError, match=r"ids=\[\.\.\.\]"):
        memory.forget(ids="abc")
    for bad in (
        "",
        "   ",
        "e",
        "my",
        " P\u00a0I ",
        "\u200b\u200b\u200b\u200bab",
    ):  # would match nearly every episode
        with pytest.raises(ValueError, match="at least 4 characters"):
            memory.forget(text=bad)
    assert memory.buffer.counts()["pending"] == 1
    assert memory.forget(text="my\u00a0 pin  IS")["deleted"] == 1  # case, spacing and form do not matter
