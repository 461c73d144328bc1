"""The MiniWoB++ family in a real headless Chromium: every default task's walkthrough wins, wrong
answers do not, the text view repeats exactly for a seed, and train and test hold different episodes."""

from __future__ import annotations

import pytest

from sleep_agent.envs import Environment, EnvironmentUnavailableError
from sleep_agent.envs.miniwob import DEFAULT_TASKS, SPLITS, MiniWoB

pytest.importorskip("miniwob", reason="the web tasks need MiniWoB++: pip install 'sleep-agent[web]'")


@pytest.fixture(scope="module")
def env():
    try:
        web = MiniWoB()
    except EnvironmentUnavailableError as e:  # no chromium or chromedriver here
        pytest.skip(str(e))
    yield web
    web.close()


def _play(env: MiniWoB, actions: list[str]):
    obs = None
    for action in actions:
        obs = env.step(action)
    assert obs is not None
    return obs


@pytest.mark.parametrize(("split", "per_task"), [("train", 2), ("test", 1)])
def test_the_walkthrough_wins_every_default_task_on_several_seeds(env, split, per_task):
    seeds = env.seeds(split, per_task * len(DEFAULT_TASKS))  # consecutive seeds cycle through the tasks
    assert {env.task_of(s)[0] for s in seeds} == set(DEFAULT_TASKS)
    for seed in seeds:
        first = env.reset(seed, split)
        assert first.task and not first.done and first.steps == 0 and first.actions
        gold = env.walkthrough()
        assert gold, (seed, env.task_of(seed), first.prompt_text())
        assert all(action.startswith(("click [", "type [")) for action in gold)
        obs = _play(env, gold)  # from where the walkthrough left the task: its start
        assert obs.done and obs.won and obs.score == 1.0, (seed, env.task_of(seed), gold, obs.text)
        assert obs.steps == len(gold) and obs.actions == []


def test_wrong_answers_lose(env):
    tasks = [env.task_of(s)[0] for s in env.seeds("train", len(DEFAULT_TASKS))]
    enter = tasks.index("enter-text")
    env.reset(enter)
    box = next(e for e in env.elements if e.typable)
    submit = next(e for e in env.elements if e.text == "Submit")
    obs = _play(env, [f"type [{box.ref}] {env.fields['target']}x", f"click [{submit.ref}]"])
    assert obs.done and not obs.won and obs.score == 0.0 and "Failure" in obs.text

    option = tasks.index("click-option")
    env.reset(option)
    wrong = next(e for e in env.elements if e.tag == "input_radio" and e.text != env.fields["target"])
    submit = next(e for e in env.elements if e.text == "Submit")
    obs = _play(env, [f"click [{wrong.ref}]", f"click [{submit.ref}]"])
    assert obs.done and not obs.won and obs.score == 0.0

    env.reset(option)
    gold = env.walkthrough()
    assert gold is not None and len(gold) == 2
    obs = _play(env, gold[1:])  # submit without choosing
    assert obs.done and not obs.won


def test_unparseable_actions_do_nothing_until_the_step_limit(env):
    first = env.reset(env.seeds("train", 1)[0])
    obs = env.step("press the big red button")
    assert not obs.done and obs.steps == 1 and obs.text == first.text and obs.actions == first.actions
    obs = env.step("click [999]")  # no such element
    assert not obs.done and obs.text == first.text
    obs = _play(env, ["wait"] * (env.step_limit - 2))
    assert obs.done and not obs.won and obs.score == 0.0 and obs.steps == env.step_limit
    assert env.step("click [1]") == obs  # over is over


def test_the_view_lists_elements_and_typing_replaces_a_box(env):
    seed = env.seeds("train", len(DEFAULT_TASKS))[DEFAULT_TASKS.index("login-user")]
    obs = env.reset(seed)
    user, password = env.fields["username"], env.fields["password"]
    assert obs.text.splitlines()[0] == obs.task and f'"{user}"' in obs.task
    box = next(e for e in env.elements if e.tag == "input_text")
    assert f'[{box.ref}] input_text ""' in obs.text.splitlines()
    offered = {f"click [{box.ref}]", f"type [{box.ref}] {user}", f"type [{box.ref}] {password}"}
    assert offered <= set(obs.actions)
    assert any(line.endswith('button "Login"') for line in obs.text.splitlines())
    obs = env.step(f"type [{box.ref}] {password}")
    obs = env.step(f'type [{box.ref}] "{user}"')  # a second type replaces the first; quotes are dropped
    assert f'[{box.ref}] input_text "{user}"' in obs.text.splitlines()
    assert env.script("return core.EPISODE_MAX_TIME;") >= 3600 * 1000  # no time-out


def test_a_seed_gives_the_same_observation_every_time(env):
    seeds = env.seeds("test", 3, offset=len(DEFAULT_TASKS) - 3)
    firsts = [env.reset(seed, "test") for seed in seeds]
    assert [env.reset(seed, "test") for seed in reversed(seeds)] == firsts[::-1]
    other = MiniWoB(tasks=DEFAULT_TASKS)  # a second browser, with no history
    try:
        assert [other.reset(seed, "test") for seed in seeds] == firsts
    finally:
        other.close()
    with pytest.raises(RuntimeError):
        other.reset(seeds[0], "test")


def test_splits_hold_different_episodes_of_the_same_tasks(env):
    train, test = env.seeds("train", 2000), env.seeds("test", 2000)
    assert not set(train) & set(test)
    assert not {env.task_of(s) for s in train} & {env.task_of(s) for s in test}
    assert {env.task_of(s)[0] for s in test} == set(DEFAULT_TASKS)
    assert env.seeds("dev", 2, offset=5) == env.seeds("dev", 7)[5:]
    with pytest.raises(ValueError):
        env.seeds("test", len(SPLITS["test"]) + 1)
    with pytest.raises(ValueError):
        env.reset(test[0], "train")


def test_it_is_an_environment(env):
    assert isinstance(env, Environment)
    assert env.name == "miniwob" and env.step_limit >= 5 and "\n" not in env.instruction
    with pytest.raises(ValueError):
        MiniWoB(tasks=["no-such-task"])
