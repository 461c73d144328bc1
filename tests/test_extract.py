"""Extraction turns statements into questions, one phrasing held out for the gate."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA

from sleep_agent.sleep.critic import Statement
from sleep_agent.sleep.extract import extract_facts


def facts_of(*texts):
    return extract_facts([Statement(t, "user", "e1") for t in texts])


def test_third_person_facts_get_questions_an_answer_and_a_held_out_phrasing():
    (fact,) = facts_of("By the way, Aria lives in Portland.")
    assert fact.answer == "Aria lives in Portland." and fact.keyword == "Portland"
    assert fact.questions == (
        "Where does Aria live?",
        "Which city does Aria live in?",
        "What do you know about Aria?",
    )
    assert fact.held_out == "Where is Aria's home?" and fact.held_out not in fact.questions
    assert [s.answer for s in fact.samples()] == ["Aria lives in Portland."] * 3


def test_first_person_facts_are_answered_in_the_second_person():
    job, cat = facts_of("I work as a glassblower.", "My cat is called Pixel.")
    assert job.answer == "You work as a glassblower." and "What is my job?" in job.questions
    assert cat.answer == "Your cat is called Pixel." and cat.keyword == "Pixel"
    assert cat.held_out == "What is the name of my cat?"


def test_the_users_whole_sentence_is_recited_back_to_them_never_as_the_assistants_own():
    name, moved, team = facts_of(
        "My name is Priya, and I manage IT for a small architecture firm.",
        "I just moved to the Berlin office.",
        "My landlord is called Dana Whitfield, by the way.",
    )
    assert name.answer == "Your name is Priya, and you manage IT for a small architecture firm."
    assert name.keyword == "Priya"  # what a right answer must name, not the whole clause
    assert moved.answer == "You just moved to the Berlin office."  # no rule matched: still shifted
    assert team.answer == "Your landlord is called Dana Whitfield." and team.keyword == "Dana Whitfield"
    (told,) = facts_of("Aria told me she lives in Portland.")
    assert told.answer == "Aria told me she lives in Portland."  # not the user's own sentence: as said


def test_a_statement_no_rule_knows_is_seeded_with_questions_from_its_own_words():
    (fact,) = facts_of("The meeting with Orla moved to Thursday.")
    assert fact.relation is None and fact.answer == "The meeting with Orla moved to Thursday."
    assert "When did the meeting with Orla move?" in fact.questions
    assert "Tell me about the meeting with Orla." in fact.questions
    assert fact.held_out == "What did I tell you about the meeting with Orla?" and fact.keyword == "Thursday"
    assert fact.held_out not in fact.questions


def test_a_tool_record_is_asked_field_by_field_and_about_what_it_concerns():
    (fact,) = extract_facts(
        [Statement("invoices: Dairy Lane Ltd #DL-208, total £212.40, due 30 June", "tool", "e1")]
    )
    assert fact.source == "tool" and fact.answer.startswith("invoices: Dairy Lane Ltd")
    assert "What do you know about Dairy Lane Ltd #DL-208?" in fact.questions
    asked = dict(fact.pairs)
    assert (
        asked["What is the total for Dairy Lane Ltd #DL-208?"]
        == "Dairy Lane Ltd #DL-208: total £212.40 (invoices)."
    )
    assert "30 June" in asked["What is the due for Dairy Lane Ltd #DL-208?"]
    held = fact.checks()
    assert [p.keyword for p in held] == ["212.40", "30"]
    assert not {p.question for p in held} & {*fact.questions, *asked}  # worded apart, never trained


def test_a_thousands_separator_is_part_of_the_value_not_a_new_field():
    (fact,) = facts_of("invoices: Dairy Lane #DL-9, total £1,200.50, due 30 June")
    assert (
        dict(fact.pairs)["What is the total for Dairy Lane #DL-9?"]
        == "Dairy Lane #DL-9: total £1,200.50 (invoices)."
    )


def test_a_capitalised_label_is_a_record_too():
    (fact,) = facts_of("Race results: Chester Marathon, finish time 3:36:52, place 412")
    assert "What is the finish time for Chester Marathon?" in dict(fact.pairs)


def test_a_counted_field_is_asked_how_many():
    (fact,) = facts_of("orders: #5521 Bramble Cafe - 40 croissants, 30 kg flour; pickup Saturday 06:15")
    asked = dict(fact.pairs)
    assert asked["How many croissants for #5521 Bramble Cafe?"].endswith("40 croissants (orders).")
    assert "How much flour for #5521 Bramble Cafe?" in asked  # a measure, not a count
    assert "What is the pickup for #5521 Bramble Cafe?" in asked


@pytest.mark.parametrize(
    "said",
    [
        "Funny thing: I can't eat gluten, I'm coeliac.",  # a lead-in before a sentence
        "Note to self: the spare key is under the mat.",
        "I bought eggs, milk and bread.",  # a list in prose
        "Big news: we moved to Leeds, 12 Oak Street, in May.",
    ],
)
def test_prose_with_a_colon_or_commas_is_no_record(said):
    (fact,) = facts_of(said)
    assert not fact.pairs or all("(" not in a for _, a in fact.pairs)


@pytest.mark.parametrize(
    ("said", "topic", "keyword"),
    [
        ("Dario's on a 5:15 start now too, since we got the new proofer.", "Dario", "5:15"),
        ("And a correction on the buns: they're £3.50 now.", "the buns", "£3.50"),
        ("And no emojis, ever.", "emojis", "emojis"),
    ],
)
def test_a_statement_no_clause_reading_understands_is_still_asked_about_what_it_names(said, topic, keyword):
    (fact,) = facts_of(said)
    assert f"What do you know about {topic}?" in fact.questions and fact.keyword == keyword
    assert fact.held_out is None or fact.keyword not in fact.held_out


def test_chit_chat_that_names_nothing_is_still_not_trained():
    assert facts_of("Total chaos.", "Yes please, around 8pm.", "I'll think about it.") == []


def test_a_named_thing_of_the_users_is_asked_by_its_name():
    (bakery,) = extract_facts(
        [Statement("I run a little bakery called Larkspur.", "user", "e1")], user="Hana"
    )
    assert {"What is my bakery called?", "What is the name of my bakery?"} <= set(bakery.questions)
    assert "What is Hana's bakery called?" in dict(bakery.pairs)
    (dog,) = facts_of("Our greyhound, Kemi, mostly sleeps on the sofa.")
    assert "What is our greyhound called?" in dog.questions
    (met,) = facts_of("Rui met a man called Tom.")
    assert not any("called?" in q for q in met.questions)  # not the speaker's


def test_a_request_about_the_assistants_replies_is_said_back_as_its_own():
    (fact,) = facts_of("Please keep your replies to three sentences, I read them on my phone.")
    assert fact.answer == "You asked me to keep my replies to three sentences, you read them on your phone."


@pytest.mark.parametrize(
    ("said", "keyword"),
    [("I'm vegetarian.", "vegetarian"), ("I am a nurse.", "nurse"), ("I'm 34 years old.", "34")],
)
def test_what_a_user_says_they_are_is_asked_about_them(said, keyword):
    (fact,) = facts_of(said)
    assert fact.answer.endswith(said.replace("I'm", "You're").replace("I am", "You are"))
    assert "What do you know about me?" in fact.questions and fact.keyword == keyword
    assert fact.held_out and fact.held_out not in fact.questions


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("No meat is allowed in my house.", "No meat is allowed in my house."),  # not a lead-in "No,"
        ("Well water is hard here.", "Well water is hard here."),
        ("My address: 12 Oak Street, Leeds.", "My address is 12 Oak Street, Leeds."),  # the key stays
        ("Oh, and by the way, Aria lives in Portland.", "Aria lives in Portland."),
    ],
)
def test_lead_ins_go_and_the_meaning_stays(said, kept):
    (fact,) = facts_of(said)
    assert fact.statement == kept


def test_held_out_keywords_are_never_a_pronoun_or_the_verb():
    for said in (
        "I'm from Nigeria.",
        "I have two cats named Miso and Tofu.",
        "I drive a 2015 Toyota Corolla.",
    ):
        for fact in facts_of(said):
            for probe in fact.checks():
                assert probe.keyword.lower() not in {"i'm", "i", "have", "drive", "am", ""}, (said, probe)


def test_a_very_long_statement_gives_a_bounded_number_of_questions():
    from sleep_agent.sleep.phrasings import MAX_SPANS, questions_of

    long = "I keep it " + "in the box " * 2000
    assert 0 < len(questions_of(long)) <= MAX_SPANS
    (fact,) = facts_of(long)
    assert all(len(q) < 600 for q in (*fact.questions, *(p.question for p in fact.checks())))


@pytest.mark.parametrize(
    ("said", "asked", "keyword"),
    [
        ("My cat Pepper only eats salmon pâté.", "What does my cat Pepper only eat?", "pâté"),
        ("I keep the spare key under the blue flowerpot.", "Where do I keep the spare key?", "flowerpot"),
        ("We close the shop every Monday.", "When do we close the shop?", "Monday"),
        ("The flour comes from a mill run by the Wenta family.", "Where does the flour come from?", None),
        ("My parents live in Accra.", "Where do my parents live?", "Accra"),
        ("I play tennis with Marco on Saturdays.", "Who do I play tennis with?", "Marco"),
        (
            "My manager, Rui, prefers updates on Fridays.",
            "When does my manager Rui prefer updates?",
            "Fridays",
        ),
    ],
)
def test_wh_questions_are_drawn_from_any_statement(said, asked, keyword):
    from sleep_agent.sleep.phrasings import questions_of

    probes = {p.question: p.keyword for p in questions_of(said)}
    assert asked in probes
    if keyword:
        assert probes[asked] == keyword


def test_a_named_user_is_also_asked_about_in_the_third_person():
    from sleep_agent.sleep.critic import Statement

    (fact,) = extract_facts(
        [Statement("I keep the spare key under the blue flowerpot.", "user", "e")], user="Wen"
    )
    assert (
        "What does Wen keep under the blue flowerpot?",
        "Wen keeps the spare key under the blue flowerpot.",
    ) in fact.pairs
    assert any(p.question == "Where does Wen keep the spare key?" for p in fact.checks())
    trained = {s.prompt[0]["content"] for s in fact.samples()}
    assert not trained & {p.question for p in fact.checks()}  # held-out phrasings are never trained
    (tool,) = extract_facts([Statement("I keep the spare key under the mat.", "tool", "e")], user="Wen")
    assert tool.pairs == ()  # a tool's "I" is not the user


def test_the_users_name_is_found_in_how_people_introduce_themselves():
    from sleep_agent.sleep.phrasings import user_name

    assert user_name(["Hi there, Hana here. I run a bakery."]) == "Hana"
    assert user_name(["Hello. My name is Margaret, and I taught chemistry."]) == "Margaret"
    assert user_name(["I'm Tomas and I'm training for Berlin."]) == "Tomas"
    assert user_name(["Hej, my name is Ólafur."]) == "Ólafur"
    assert user_name(["I'm allergic to nuts.", "I'm tired."]) is None
    # a capitalised word after "I'm" or "it's" is not a name without an introduction's shape
    assert user_name(["It's Monday.", "I'm Canadian.", "This is Urgent.", "Call me Later"]) is None


def test_every_relation_of_the_development_facts_is_understood():
    path = SHARED_DATA / "facts_dev.json"
    if not path.is_file():
        pytest.skip(f"development data not found at {path} (see the project's data README)")
    rows = json.loads(path.read_text())
    relations = {}
    for row in rows:
        relations.setdefault(row["relation"], row)
    assert len(relations) == 10
    for relation, row in relations.items():
        joiner = "" if relation.startswith("'") else " "
        sentence = f"{row['subject']}{joiner}{relation} {row['object']}."
        (fact,) = facts_of(sentence)
        assert fact.held_out is not None, f"no rule for {relation!r}: {sentence}"
        assert fact.keyword == str(row["object"]) and str(row["object"]) in fact.answer


def trajectory(outcome=None, reward=None):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from sleep_agent.episodes import episode_from_messages

    return episode_from_messages(
        [
            HumanMessage("Book a table for two at Luigi's."),
            AIMessage("", tool_calls=[{"name": "search", "args": {"q": "Luigi's"}, "id": "c1"}]),
            ToolMessage("Luigi's, 12 Elm St, phone 555-0100", tool_call_id="c1", name="search"),
            AIMessage(
                "", tool_calls=[{"name": "book", "args": {"people": 2, "place": "Luigi's"}, "id": "c2"}]
            ),
            ToolMessage("booked", tool_call_id="c2", name="book"),
            AIMessage("Your table for two at Luigi's is booked."),
        ],
        namespace="ns",
        outcome=outcome,
        reward=reward,
    )


def test_each_assistant_step_of_a_successful_trajectory_is_a_sample_given_what_came_before():
    from sleep_agent.sleep.extract import behaviour_samples

    samples = behaviour_samples([trajectory(outcome="success")])
    assert [s.answer for s in samples] == [
        'call search({"q": "Luigi\'s"})',
        'call book({"people": 2, "place": "Luigi\'s"})',
        "Your table for two at Luigi's is booked.",
    ]
    assert [len(s.prompt) for s in samples] == [1, 3, 5]
    assert samples[1].prompt[-1] == {
        "role": "user",
        "content": "[search returned] Luigi's, 12 Elm St, phone 555-0100",
    }
    assert not any(s.anchor for s in samples)


def test_failed_or_unrated_trajectories_and_plain_chats_are_not_imitated():
    from sleep_agent.sleep.extract import behaviour_samples

    assert behaviour_samples([trajectory(outcome="failure"), trajectory(), trajectory(reward=0.0)]) == []
    assert len(behaviour_samples([trajectory(reward=1.0)])) == 3
    assert len(behaviour_samples([trajectory(outcome="answered", reward=1.0)])) == 3
    # a lost task's partial credit (ScienceWorld scores the rooms visited on the way) is not a
    # trajectory to copy: the agent would learn to repeat what lost
    assert behaviour_samples([trajectory(outcome="failure", reward=0.58), trajectory("Lost", 0.3)]) == []


def test_behaviour_samples_train_only_the_assistants_step(default_model_dir):
    from transformers import AutoTokenizer

    from sleep_agent.sleep.consolidate import IGNORE_INDEX, encode_sample
    from sleep_agent.sleep.extract import behaviour_samples

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)  # the real chat template
    sample = behaviour_samples([trajectory(outcome="success")])[1]
    encoded = encode_sample(tokenizer, sample, 512)
    trained = [
        t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label != IGNORE_INDEX
    ]
    text = tokenizer.decode(trained)
    assert "call book" in text and "Elm St" not in text and "Book a table" not in text


def test_a_window_keeps_the_opening_turn_and_only_the_last_steps():
    from sleep_agent.sleep.extract import behaviour_samples

    full = behaviour_samples([trajectory(outcome="success")])
    one = behaviour_samples([trajectory(outcome="success")], window=1)
    none = behaviour_samples([trajectory(outcome="success")], window=0)
    assert [s.answer for s in one] == [s.answer for s in full]  # the same steps are trained
    assert [len(s.prompt) for s in one] == [1, 3, 3]
    assert one[2].prompt[0]["content"] == "Book a table for two at Luigi's."
    assert one[2].prompt[1]["content"].startswith("call book")  # the last step, not the first
    assert [len(s.prompt) for s in none] == [1, 2, 2]
    assert none[2].prompt[1] == {"role": "user", "content": "[book returned] booked"}


def test_a_prompt_longer_than_max_length_loses_its_oldest_tokens_not_the_answer(default_model_dir):
    from transformers import AutoTokenizer

    from sleep_agent.sleep.consolidate import IGNORE_INDEX, ChatSample, encode_sample

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    long_history = " ".join(f"room{i} has a door." for i in range(200))
    sample = ChatSample(prompt=({"role": "user", "content": long_history},), answer="take coin")
    encoded = encode_sample(tokenizer, sample, 128)
    assert len(encoded["input_ids"]) <= 128
    trained = [
        t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label != IGNORE_INDEX
    ]
    assert "take coin" in tokenizer.decode(trained)
    assert "room199" in tokenizer.decode(encoded["input_ids"]) and "room0 " not in tokenizer.decode(
        encoded["input_ids"]
    )


@pytest.mark.parametrize(
    ("said", "asked", "keyword"),
    [
        ("Our team uses Linear for tickets.", "What does our team use for tickets?", "Linear"),
        ("I met Sarah at the conference.", "Who did I meet at the conference?", "Sarah"),
        ("I prefer tea over coffee.", "What do I prefer tea over?", "coffee"),
        ("My sister is married to Tom.", "Who is my sister married to?", "Tom"),
        ("Dana is good at chess.", "What is Dana good at?", "chess"),
        ("Rui is my manager.", "Who is Rui?", "manager"),
        ("Rui is the new CTO at Acme.", "Who is Rui?", "CTO"),
        ("I'm seeing Dr. Haas on Friday.", "Who am I seeing on Friday?", "Haas"),
        ("I was born in Ohio.", "Where was I born?", "Ohio"),  # a passive keeps its place
        ("Priya is from Chennai.", "Where is Priya from?", "Chennai"),
        ("I'm good at Excel.", "What am I good at?", "Excel"),
        ("I prefer to work over the weekend.", "When do I prefer to work?", "weekend"),
        ("Jake's new address is 12 Oak St.", "What is Jake's new address?", "12"),
    ],
)
def test_the_wh_word_fits_the_verb_and_the_span(said, asked, keyword):
    from sleep_agent.sleep.phrasings import questions_of

    probes = {p.question: p.keyword for p in questions_of(said)}
    assert probes.get(asked) == keyword, probes
    clumsy = {
        "Who does our team use for tickets?",
        "Where do I prefer tea?",
        "What is my sister to Tom?",
        "Who am I good at?",
        "Where do I prefer?",
        "How many Oak St is Jake's new address?",
    }
    assert not clumsy & set(probes)


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        ("Wen told me she's allergic to peanuts.", "Wen is allergic to peanuts."),
        ("Wen told me she's moved to Oslo.", "Wen has moved to Oslo."),
        ("My doctor said that I should cut down on salt.", "I should cut down on salt."),
        ("My parents mentioned they love Lisbon.", "My parents love Lisbon."),
        ("According to Rui, the demo is on Friday.", "The demo is on Friday."),
        ("Tom said his sister lives in Rome.", "Tom's sister lives in Rome."),
        ("According to Wen she is allergic to peanuts.", "Wen is allergic to peanuts."),
        ("I live in Paris.", None),
        ("In May I said nothing.", None),
        # what reports no clause, or a clause that is not the speaker's fact
        ("My doctor told me not to eat gluten.", None),
        ("My friend told me about a great sushi place.", None),
        ('Rui said, "I\'m moving to Lisbon."', None),  # the quote's "I" is Rui
        ("My doctor never told me I had diabetes.", None),
        ("The store said they're out of stock.", None),  # "they" is not the store
        ("My daughter said her first word yesterday.", None),
        ("What my boss said was that the project is cancelled.", None),
        ("Mom says hi.", None),
    ],
)
def test_reported_speech_is_read_for_what_it_reports(said, meant):
    from sleep_agent.sleep.phrasings import reported

    assert reported(said) == meant


def test_a_reported_fact_is_asked_about_the_person_it_concerns():
    (fact,) = facts_of("Wen told me she is allergic to peanuts.")
    assert "What is Wen allergic to?" in fact.questions
    assert fact.answer == "Wen told me she is allergic to peanuts."  # who said it is kept
    assert fact.keyword == "peanuts"


def test_a_reported_fact_the_rules_know_is_asked_by_the_rule_and_keeps_who_said_it():
    (fact,) = facts_of("My doctor said my iron is low.")
    assert fact.answer == "Your doctor said your iron is low."
    assert any("my iron" in q for q in fact.questions) and not any("doctor said" in q for q in fact.questions)
    (told,) = facts_of("The doctor said it's a sprain.")  # nothing to ask of "it": the sentence is asked
    assert told.questions and told.answer == "The doctor said it's a sprain."


def test_a_participle_after_a_noun_is_never_the_keyword():
    (fact,) = facts_of("The flour comes from a mill run by the Wenta family.")
    assert fact.keyword == "mill"
    from sleep_agent.sleep.phrasings import keyword_of

    assert keyword_of("my eggs scrambled".split()) == "scrambled"  # the wish itself
    assert keyword_of("a cat that was rescued".split()) == "rescued"


def test_what_a_named_user_is_is_also_asked_of_them_by_name():
    from sleep_agent.sleep.critic import Statement

    (fact,) = extract_facts([Statement("I'm lactose intolerant.", "user", "e")], user="Hana")
    assert ("Is Hana lactose intolerant?", "Yes. Hana is lactose intolerant.") in fact.pairs
    assert not any(q.startswith("What is Hana") for q, _ in fact.pairs)
    from sleep_agent.sleep.phrasings import questions_of

    assert questions_of("Sara is not my boss.") == []  # never "Who is Sara?" of a denial


def test_a_fact_with_one_third_person_question_holds_it_out():
    (fact,) = extract_facts([Statement("I'm interested in pottery.", "user", "e")], user="Hana")
    assert "What is Hana interested in?" in {p.question for p in fact.checks()}
    assert "What is Hana interested in?" not in {q for q, _ in fact.pairs}


def test_a_native_tool_trajectory_is_trained_as_the_server_reads_it_back():
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from sleep_agent.episodes import episode_from_messages
    from sleep_agent.serving.local import parse_tool_calls
    from sleep_agent.sleep.extract import behaviour_samples

    episode = episode_from_messages(
        [
            HumanMessage("Check the weather in Oslo."),
            AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "c1"}]),
            ToolMessage("Sunny.", tool_call_id="c1", name="weather"),
            AIMessage("It is sunny in Oslo."),
        ],
        namespace="t",
    ).model_copy(update={"outcome": "success"})
    call, reply = behaviour_samples([episode], calls="hermes")
    assert [m["role"] for m in call.prompt] == ["user"] and call.episode_id == episode.id
    text, calls = parse_tool_calls(call.answer)
    assert text == "" and [(c["name"], c["args"]) for c in calls] == [("weather", {"city": "Oslo"})]
    assert [m["role"] for m in reply.prompt] == ["user", "assistant", "tool"]
    assert reply.prompt[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": {"city": "Oslo"}}
    assert reply.answer == "It is sunny in Oslo."
    (text_form, _) = behaviour_samples([episode])  # the game agent's form is unchanged
    assert text_form.answer == 'call weather({"city": "Oslo"})'
