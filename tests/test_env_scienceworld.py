"""The ScienceWorld family on the real engine: the gold path wins every default task, the action list
is short and holds the gold actions, seeds keep the benchmark's splits, and the JVM stops on close."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from sleep_agent.envs import Environment, EnvironmentUnavailableError, Observation
from sleep_agent.envs.scienceworld import DEFAULT_TASKS, MAX_ACTIONS, ScienceWorld, relevant_actions


def _engine_missing() -> str | None:
    if importlib.util.find_spec("scienceworld") is None:
        return "the scienceworld package is not installed (pip install 'sleep-agent[scienceworld]')"
    if shutil.which("java") is None:
        return "ScienceWorld runs on Java 17+ and no `java` is on PATH"
    return None


ENGINE_MISSING = _engine_missing()
needs_engine = pytest.mark.skipif(ENGINE_MISSING is not None, reason=ENGINE_MISSING or "")


@pytest.fixture(scope="module")
def env():
    world = ScienceWorld()
    yield world
    world.close()


@pytest.fixture(scope="module")
def played(env: ScienceWorld) -> list[tuple[int, list[str], list[Observation]]]:
    """Two seeds of each default task (one train, one test), each with its walkthrough played:
    the seed, the path and the observation before each step and after the last."""
    runs = []
    for split in ("train", "test"):
        for seed in env.seeds(split, len(DEFAULT_TASKS)):
            first = env.reset(seed, split)
            gold = env.walkthrough()  # played from the task's start, which it restores
            seen = [first] + [env.step(action) for action in gold]
            runs.append((seed, gold, seen))
    return runs


@needs_engine
def test_it_is_an_environment(env):
    assert isinstance(env, Environment)
    assert env.name == "scienceworld" and "\n" not in env.instruction and env.step_limit > 0


@needs_engine
def test_the_walkthrough_wins_every_default_task(env, played):
    assert {env.task_of(seed)[0] for seed, _, _ in played} == set(DEFAULT_TASKS)
    for seed, gold, seen in played:
        first, last = seen[0], seen[-1]
        assert first.task and first.steps == 0 and not first.done and first.score < 1.0
        assert 1 <= len(gold) <= 12, (seed, gold)
        assert last.won and last.done and last.score == 1.0, (seed, gold, last.text)
        assert last.steps == len(gold)
        assert not any(obs.done for obs in seen[:-1])


@needs_engine
def test_the_action_list_is_short_and_holds_most_gold_actions(played):
    steps = [(action, obs) for _, gold, seen in played for action, obs in zip(gold, seen, strict=False)]
    listed = sum(action in obs.actions for action, obs in steps)
    assert listed / len(steps) >= 0.85, [action for action, obs in steps if action not in obs.actions]
    for _, _, seen in played:
        for obs in seen:
            assert 0 < len(obs.actions) <= MAX_ACTIONS and obs.actions == sorted(set(obs.actions))
            assert "reset task" not in obs.actions and not any(a.startswith("eat ") for a in obs.actions)
            assert len(obs.prompt_text()) < 2500  # a few hundred tokens of a 2048-token window
            assert "\t" not in obs.text and "  " not in obs.text


@needs_engine
def test_a_new_room_is_described_on_arrival(played):
    _, gold, seen = played[0]
    arrived = next(obs for action, obs in zip(gold, seen[1:], strict=True) if action.startswith("go to "))
    assert arrived.text.startswith("You move to the ") and "In it, you see:" in arrived.text


@needs_engine
def test_seeds_keep_the_benchmarks_splits(env):
    train, dev, test = env.seeds("train", 100), env.seeds("dev", 50), env.seeds("test", 100)
    assert env.seeds("train", 100) == train and env.seeds("train", 10, offset=5) == train[5:15]
    assert not set(train) & set(test) and not set(train) & set(dev) and not set(dev) & set(test)
    tasks = {env.task_of(s) for s in train}
    assert len(tasks) == 100 and not tasks & {env.task_of(s) for s in test}
    assert {env.task_of(s)[0] for s in train[: len(DEFAULT_TASKS)]} == set(DEFAULT_TASKS)
    with pytest.raises(ValueError, match="test split"):
        env.seeds("test", 10_000)
    with pytest.raises(ValueError, match="not a train seed"):
        env.reset(test[0], "train")


@needs_engine
def test_a_seed_always_starts_the_same_task(env):
    seed = env.seeds("test", 3)[2]
    first, again = env.reset(seed, "test"), env.reset(seed, "test")
    assert first == again and first.text.startswith("This ") and first.actions and first.task


@needs_engine
def test_any_valid_action_is_played_not_only_the_listed_ones(env):
    seed = env.seeds("train", 1)[0]
    obs = env.reset(seed)
    assert "look at air" not in obs.actions
    looked = env.step("look at air")
    assert looked.steps == 1 and "air" in looked.text and "No known action" not in looked.text
    nonsense = env.step("dance with the fridge")
    assert nonsense.steps == 2 and not nonsense.done and nonsense.score == looked.score


@needs_engine
def test_a_wrong_focus_ends_the_task_with_no_score(env):
    env.reset(env.seeds("train", 1)[0])  # find a living thing
    obs = env.step("focus on air")
    assert obs.done and not obs.won and obs.score == 0.0


@needs_engine
def test_the_step_limit_ends_a_task_and_close_stops_the_jvm():
    small = ScienceWorld(tasks=["find-animal"], step_limit=3)
    try:
        small.reset(small.seeds("dev", 1)[0], "dev")
        ends = [small.step("look around").done for _ in range(3)]
        assert ends == [False, False, True]
        java = small._env._gateway.java_process
    finally:
        small.close()
    assert java.wait(timeout=30) is not None
    small.close()  # twice is fine


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scienceworld", None)
    with pytest.raises(EnvironmentUnavailableError, match=r"pip install 'sleep-agent\[scienceworld\]'"):
        ScienceWorld()


@needs_engine
def test_missing_java_says_to_install_a_jre(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentUnavailableError, match="JRE"):
        ScienceWorld()


def test_the_action_list_keeps_what_can_help_and_fits_the_limit():
    look = "This room is called the kitchen. In it, you see: \n\tthe agent\n\ta chair\n\ta red box\n\ta lighter\n"
    valid = [
        "look around", "wait", "wait1", "reset task", "inventory", "eat lighter", "go to hallway",
        "go to door to hallway", "focus on agent", "focus on kitchen", "focus on chair", "focus on red box",
        "focus on lighter", "focus on ghost", "pick up chair", "pick up lighter", "move chair to red box",
        "move chair to lighter", "move lighter to red box", "use lighter on chair", "open red box",
    ]  # fmt: skip
    task = "Move a non-living thing to the red box in the kitchen."
    listed = relevant_actions(valid, look, "", task, limit=30)
    assert listed == sorted(listed) and "go to hallway" in listed and "move chair to red box" in listed
    assert not {"reset task", "wait", "eat lighter", "go to door to hallway", "focus on agent"} & set(listed)
    assert not {"focus on kitchen", "focus on ghost", "move chair to lighter", "use lighter on chair"} & set(
        listed
    )
    short = relevant_actions(valid, look, "", task, limit=7)
    assert len(short) <= 7 and "focus on red box" in short  # what the task names comes first
    assert "focus on chair" not in relevant_actions(valid, look, "", task, limit=30, leave_out={"chair"})
