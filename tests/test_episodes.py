"""Episodes from LangChain messages: sources kept, bad input refused with the reason."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from sleep_agent.episodes import RECALL_MARKER, episode_from_messages, last_turn
from sleep_agent.errors import InvalidEpisodeError


def test_each_part_keeps_who_said_it_including_tool_calls():
    messages = [
        HumanMessage("What's the weather in Vellmora?", id="h1"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Vellmora"}, "id": "c1"}], id="a1"),
        ToolMessage("Rainy, 12 C", tool_call_id="c1", name="weather", id="t1"),
        AIMessage("It is rainy and 12 C.", id="a2"),
    ]
    ep = episode_from_messages(messages, namespace="alice", thread_id="t", reward=1, outcome="answered")
    assert [p.source for p in ep.parts] == ["user", "assistant", "tool", "assistant"]
    assert ep.parts[1].tool_calls == [{"name": "weather", "args": {"city": "Vellmora"}, "id": "c1"}]
    assert ep.parts[2].name == "weather"
    assert ep.message_ids == ["h1", "a1", "t1", "a2"]
    assert "tool[weather]: Rainy, 12 C" in ep.text
    assert 'assistant calls weather({"city": "Vellmora"})' in ep.text
    assert [p.content for p in ep.parts_from("user", "tool")] == [
        "What's the weather in Vellmora?",
        "Rainy, 12 C",
    ]
    assert (ep.reward, ep.outcome, ep.status, ep.thread_id) == (1.0, "answered", "pending", "t")
    assert ep.token_count > 0


def test_tuples_dicts_and_content_blocks_are_accepted_and_images_dropped():
    ep = episode_from_messages(
        [
            ("user", "hello"),
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}],
            },
        ],
        namespace="a1",
    )
    assert [(p.source, p.content) for p in ep.parts] == [("user", "hello"), ("assistant", "hi")]


def test_the_same_graph_messages_give_the_same_id_and_unnamed_ones_do_not():
    msgs = [HumanMessage("x", id="1"), AIMessage("y", id="2")]
    assert episode_from_messages(msgs, namespace="ns").id == episode_from_messages(msgs, namespace="ns").id
    assert episode_from_messages(msgs, namespace="ns").id != episode_from_messages(msgs, namespace="other").id
    anon = [("user", "x")]
    assert episode_from_messages(anon, namespace="ns").id != episode_from_messages(anon, namespace="ns").id


def test_last_turn_starts_at_the_last_user_message_and_skips_recalled_memories():
    messages = [
        HumanMessage("first"),
        AIMessage("one"),
        HumanMessage("second"),
        SystemMessage("memories", name=RECALL_MARKER),
        AIMessage("two"),
    ]
    assert [m.content for m in last_turn(messages)] == ["second", "two"]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "empty"),
        ("just a string", "list of messages"),
        ([{"content": "no role"}], "message 0"),
        ([("user", "fine"), 42], "message 1"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "no text"),
        ([("user", "   ")], "no text"),
        ([("user", "word " * 5000)], "max_episode_tokens"),
    ],
)
def test_bad_input_is_refused_with_the_reason(messages, expected):
    with pytest.raises(InvalidEpisodeError, match=expected):
        episode_from_messages(messages, namespace="ns", max_tokens=1000)


def test_invalid_episode_error_is_a_value_error():
    with pytest.raises(ValueError):
        episode_from_messages([], namespace="ns")


def test_reward_must_be_a_number():
    with pytest.raises(InvalidEpisodeError, match="reward"):
        episode_from_messages([("user", "x")], namespace="ns", reward="high")  # type: ignore[arg-type]
