"""Recalled memories are quoted in the user's turn, never sent with a system message's authority."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from sleep_agent.episodes import last_turn
from sleep_agent.recalled import DEFAULT_RECALL_PROMPT, recall_in_question, recall_message, with_recall
from sleep_agent.serving.base import template_ready


def test_the_recall_message_is_merged_into_the_question_it_was_recalled_for():
    recall = recall_message(DEFAULT_RECALL_PROMPT.format(memories="- user: My dog is Rex."))
    sent = template_ready(
        [
            SystemMessage("You are terse."),
            HumanMessage("hi"),
            AIMessage("hello"),
            recall,
            HumanMessage("Dog?"),
        ]
    )
    assert [m.type for m in sent] == ["system", "human", "ai", "human"]  # alternating, one system
    assert sent[0].text == "You are terse."  # the memory never joins the system prompt
    assert sent[-1].text.startswith("Quoted from our earlier") and sent[-1].text.endswith("\n\nDog?")
    assert "- user: My dog is Rex." in sent[-1].text


def test_a_multimodal_question_gets_the_quotation_as_its_first_text_block():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    (merged,) = recall_in_question([recall_message("records"), HumanMessage(content=[image])])
    assert merged.content == [{"type": "text", "text": "records"}, image]


def test_the_eval_and_the_training_see_the_layout_the_chat_model_sends():
    question, recalled = "Dog?", DEFAULT_RECALL_PROMPT.format(memories="- user: My dog is Rex.")
    (sent,) = recall_in_question([recall_message(recalled), HumanMessage(question)])
    assert with_recall(recalled, question) == [{"role": "user", "content": sent.text}]
    assert with_recall("", question) == [{"role": "user", "content": question}]


def test_a_recall_message_is_never_the_start_of_the_turn_that_is_recorded():
    recall = recall_message("records")
    assert last_turn([HumanMessage("Dog?"), AIMessage("Rex."), recall]) == [
        HumanMessage("Dog?"),
        AIMessage("Rex."),
    ]
