"""The acting agent: the environment protocol, the LangGraph player, real sleeps with the gate's
behaviour check, and `sleep-agent eval agent`, on the real TextWorldExpress engine (the other
families' own tests are tests/test_env_*.py; each also plays here through the player).

The player and the protocol run on the tiny Llama served in-process (it plays badly, which is not
what is tested here: that tasks are played, recorded, imitated and measured as they should be).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace

import pytest
from conftest import tiny_config

from sleep_agent.envs import Environment, EnvironmentUnavailableError
from sleep_agent.envs.player import AgentPlayer, choose, opening, written_action
from sleep_agent.envs.textworld import GameSpec, TextWorld


def _engine_missing() -> str | None:
    import importlib.util
    import shutil

    if importlib.util.find_spec("textworld_express") is None:
        return "textworld-express is not installed (make install adds the 'envs' extra)"
    if shutil.which("java") is None:
        return "no Java on PATH for TextWorldExpress (scripts/install.sh installs it with apt as root)"
    return None


needs_engine = pytest.mark.skipif(_engine_missing() is not None, reason=str(_engine_missing()))


@pytest.fixture(scope="module")
def game():
    env = TextWorld(GameSpec(step_limit=6))
    yield env
    env.close()


def test_a_reply_is_mapped_onto_a_listed_command_the_same_way_every_time():
    commands = ["inventory", "look around", "move east", "take coin"]
    assert choose('call act({"command": "take coin"})', commands) == ("take coin", True)
    assert choose("Take coin.", commands) == ("take coin", True)
    assert choose("I should move to the east", commands) == ("move east", False)
    assert choose("coin!", commands) == ("take coin", False)
    assert choose("???", commands) == ("inventory", False)  # nothing shared: the first, never random


def test_a_free_form_action_is_the_command_the_reply_writes():
    quoted = 'call act({"command": "grep -c \\"error\\" log.txt > count.txt"})'
    assert choose(quoted, []) == ('grep -c "error" log.txt > count.txt', True)
    assert written_action("```bash\nls -la\n```") == "ls -la"
    assert written_action("cat notes.txt\nthen more words") == "cat notes.txt"
    assert written_action("") == ""


@needs_engine
def test_the_walkthrough_wins_and_held_out_games_are_other_games(game):
    train, test = game.seeds("train", 3), game.seeds("test", 3)
    assert not set(train) & set(test)
    assert isinstance(game, Environment)
    first = game.reset(train[0], "train")
    assert first.task and first.actions == sorted(first.actions) and not first.done
    obs = first
    for command in game.walkthrough():
        assert command in obs.actions
        obs = game.step(command)
    assert obs.won and obs.done and obs.score == 1.0
    assert f"Actions: {', '.join(first.actions)}" in opening(game, first)


@needs_engine
def test_the_walkthrough_is_the_same_short_path_whatever_was_played_before(game):
    seeds = game.seeds("train", 12)
    fresh = {}
    for seed in seeds:
        game.reset(seed, "train")
        fresh[seed] = game.walkthrough()
    for seed in seeds:  # wander first: the engine's own gold path then changes, ours must not
        game.reset(seed, "train")
        for i in range(game.spec.step_limit):
            game.step("inventory" if i % 2 else "look around")
        game.reset(seed, "train")
        path = game.walkthrough()
        assert path == fresh[seed]
        assert len(path) == len(set(path)) and path[-1] == "take coin"  # no back-and-forth


@needs_engine
def test_a_game_ends_at_its_step_limit(game):
    obs = game.reset(game.seeds("train", 1)[0], "train")
    for _ in range(game.spec.step_limit):
        obs = game.step("inventory")
    assert obs.done and not obs.won and obs.steps == game.spec.step_limit


@needs_engine
def test_without_java_the_games_say_how_to_fix_it(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentUnavailableError, match="Java 17"):
        TextWorld()


@needs_engine
def test_a_played_game_is_one_episode_whose_training_prompts_are_the_prompts_it_was_played_from(
    tmp_path, tiny_model_dir, game
):
    from sleep_agent import SleepMemory
    from sleep_agent.sleep.extract import behaviour_samples

    seen: list[list[dict[str, str]]] = []
    with SleepMemory(tiny_config(tiny_model_dir, tmp_path)) as memory:
        player = AgentPlayer(memory, game, recall=False, token_counter=lambda p: seen.append(p) or len(p))
        seed = game.seeds("train", 1)[0]
        result = player.play(seed)
        (episode,) = memory.buffer.episodes("pending")
        assert episode.outcome == ("success" if result.won else "failure")
        assert result.steps == len(result.actions) == len(seen) == len(result.prompt_tokens)
        # imitated as if it had been won: each training prompt is exactly what the model was shown
        won = episode.model_copy(update={"outcome": "success"})
        samples = behaviour_samples([won], window=player.window)
        assert [list(s.prompt) for s in samples] == seen
        assert [json.loads(s.answer[len("call act(") : -1])["command"] for s in samples] == result.actions

        held_out = AgentPlayer(memory, game, recall=True, record=False)
        held_out.play(game.seeds("test", 1)[0], "test")
        assert len(memory.buffer.episodes("pending")) == 1  # held-out games never reach the memory

        # recalled games are quoted in the opening user turn, never a system message
        from langchain_core.messages import HumanMessage

        from sleep_agent.recalled import recall_message

        shown = held_out.prompt(
            [HumanMessage("You are in the kitchen."), recall_message("Quoted: a won game.")]
        )
        assert shown == [{"role": "user", "content": "Quoted: a won game.\n\nYou are in the kitchen."}]

        assert player.demonstrate(seed)
        demo = [e for e in memory.buffer.episodes("pending") if e.thread_id.startswith("demo-")]
        assert len(demo) == 1 and demo[0].outcome == "success"
        taken = [c["args"]["command"] for p in demo[0].parts for c in p.tool_calls]
        assert taken == game.walkthrough()


@needs_engine
@pytest.mark.slow
def test_eval_agent_writes_four_learning_curves_and_gates_sleeps_on_held_out_play(tmp_path, tiny_model_dir):
    from sleep_agent.eval.protocol import EvalOptions
    from sleep_agent.eval.run import evaluate, table_of
    from sleep_agent.sleep.consolidate import LoraTrainConfig
    from sleep_agent.sleep.standard import CycleConfig

    short = CycleConfig(training=LoraTrainConfig(epochs=1, min_steps=2, batch_size=8), anchors=False)
    options = EvalOptions(quick=True, env="textworld")
    result = evaluate("agent", options, tmp_path, model=str(tiny_model_dir), serving="local", cycle=short)
    assert (tmp_path / "agent_textworld.json").is_file()
    assert (tmp_path / "agent_textworld_learning_curves.png").is_file()
    blocks, held_out = result["blocks"], result["held_out"]
    curves = result["curves"]
    assert curves["tasks"] == [i * result["tasks_per_block"] for i in range(blocks + 1)]
    for condition in ("no_memory", "retrieval", "sleep", "sleep_retrieval"):
        assert len(curves[condition]) == blocks + 1
        assert all(s["won"]["n"] == held_out for s in curves[condition])
        assert all(1 <= s["steps"] <= result["step_limit"] for s in curves[condition])
    (run,) = result["seeds"]
    assert not set(run["gate_seeds"]) & set(run["train_seeds"])  # the gate plays tasks nobody trained on
    assert len(run["sleeps"]) == blocks
    for sleep in run["sleeps"]:
        assert sleep.get("facts", 0) == 0  # the task's text is not learned as facts
        # the gate played its tasks with both versions and its figures decided
        before, after = sleep["before"]["behaviour"], sleep["after"]["behaviour"]
        assert before is not None and after is not None
        assert [len(s) for s in sleep["behaviour_scores"]] == [result["gate_tasks"]] * 2
        assert "behaviour_s" in sleep
    # the second sleep's current version was scored by the first: its games are not played again
    first, second = run["sleeps"]
    current = first["behaviour_scores"][1 if first["adapter_version"] else 0]
    assert second.get("behaviour_remembered") and second["behaviour_scores"][0] == current
    trained = [g for g in run["training"]["sleep"] if g["won"] or g["demonstrated"]]
    assert run["sleeps"][0]["episodes"] >= len([g for g in trained if g["seed"] in run["train_seeds"][:5]])
    # retrieval shows past tasks in the prompt: more tokens per step than playing from the weights
    last = blocks
    assert curves["retrieval"][last]["prompt_tokens"] > curves["sleep"][last]["prompt_tokens"]
    title, columns, rows = table_of(result)
    assert "textworld" in title and len(rows) == blocks + 1 and "sleep + retrieval" in " ".join(columns)


@needs_engine
@pytest.mark.slow
def test_the_agent_example_plays_sleeps_and_prints_the_held_out_table(tmp_path, tiny_model_dir):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "SLEEP_AGENT_MODEL": str(tiny_model_dir), "SLEEP_AGENT_SERVING": "local"}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "agents" / "play.py"),
            "--blocks",
            "1",
            "--tasks",
            "2",
            "--gate-tasks",
            "1",
            "--held-out",
            "2",
            "--home",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "textworld: held-out tasks after each sleep" in done.stdout
    assert done.stdout.count("task ") >= 2 and "/2" in done.stdout
    assert len(list((tmp_path / "reports" / "player").glob("*.json"))) == 1  # the block's one sleep


def test_anchors_are_sized_to_the_samples_when_the_cycle_asks():
    from sleep_agent.sleep.consolidate import ChatSample
    from sleep_agent.sleep.standard import sized_anchors

    anchors = [ChatSample.qa(f"q{i}", f"a{i}") for i in range(40)]
    assert sized_anchors(anchors, 12, None) == anchors
    kept = sized_anchors(anchors, 12, 1.0)
    assert len(kept) == 12 and set(map(id, kept)) <= set(map(id, anchors))
    assert kept == sized_anchors(anchors, 12, 1.0)  # the same ones every sleep
    assert len(sized_anchors(anchors, 100, 1.0)) == 40


@needs_engine
def test_the_gate_plays_both_versions_and_refuses_a_candidate_that_plays_worse(
    tmp_path, tiny_model_dir, game
):
    """A real sleep on the tiny model: the check gets one asker per version, each answering from
    the served model, and the gate decides on the scores it returns (here set to 'worse')."""
    from sleep_agent import SleepMemory
    from sleep_agent.envs import trajectory_cycle_config
    from sleep_agent.sleep.consolidate import LoraTrainConfig
    from sleep_agent.sleep.standard import StandardCycle

    replies: list[str] = []

    def worse(asks):
        prompt = [{"role": "user", "content": "Reply with one word."}]
        replies.extend(ask(prompt) for ask in asks)
        return [0.75, 0.25]

    settings = trajectory_cycle_config().model_copy(
        update={"training": LoraTrainConfig(epochs=1, max_steps=2, batch_size=8), "anchors": False}
    )
    with SleepMemory(
        tiny_config(tiny_model_dir, tmp_path), cycle=StandardCycle(settings, behaviour=worse)
    ) as memory:
        player = AgentPlayer(memory, game, recall=False)
        assert player.demonstrate(game.seeds("train", 1)[0])
        report = memory.sleep()
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    assert report.adapter_version is None
    assert "plays held-out tasks worse: mean score 0.75 -> 0.25" in report.metrics["gate_reason"]
    assert report.metrics["before"]["behaviour"] == 0.75 and report.metrics["after"]["behaviour"] == 0.25


def _family(name: str):
    from sleep_agent.envs import make_environment

    try:
        return make_environment(name)
    except EnvironmentUnavailableError as e:
        pytest.skip(f"{name} cannot run here: {e}")


@pytest.mark.parametrize("name", ["textworld", "scienceworld", "miniwob", "terminal"])
def test_every_family_is_played_recorded_and_demonstrated_through_the_player(name, tmp_path, tiny_model_dir):
    """CI's smoke test of each environment: the tiny model plays a task through the LangGraph
    player, the task is one recorded episode, and the walkthrough is recorded as a won one whose
    behaviour-cloning samples are the walkthrough's actions."""
    from sleep_agent import SleepMemory
    from sleep_agent.sleep.extract import behaviour_samples

    env = _family(name)
    try:
        assert isinstance(env, Environment)
        with SleepMemory(tiny_config(tiny_model_dir, tmp_path)) as memory:
            player = AgentPlayer(memory, env, recall=False)
            seed = env.seeds("train", 1)[0]
            result = player.play(seed)
            assert 1 <= result.steps <= env.step_limit and len(result.actions) == result.steps
            assert 0.0 <= result.score <= 1.0
            (played,) = memory.buffer.episodes("pending")
            assert played.outcome == ("success" if result.won else "failure")
            env.reset(seed, "train")
            gold = env.walkthrough()
            assert gold, f"{name} has no walkthrough for train seed {seed}"
            assert player.demonstrate(seed)
            demo = next(e for e in memory.buffer.episodes("pending") if e.thread_id.startswith("demo-"))
            samples = behaviour_samples([demo], window=player.window)
            taken = [json.loads(s.answer[len("call act(") : -1])["command"] for s in samples]
            # a walkthrough may differ between calls (ScienceWorld draws its gold path anew on each
            # load): what was recorded is the one demonstrated, and it wins when replayed
            obs = env.reset(seed, "train")
            for action in taken:
                obs = env.step(action)
            assert obs.won and len(taken) == len(demo.parts) // 2
    finally:
        env.close()


class _Doors:
    """The docs' environment (docs/agents.md), counting how many of its kind are in play at once."""

    name, instruction, step_limit = "doors", "Reply with one action from the list.", 3
    colours = ["red", "green", "blue", "yellow"]
    in_play = 0
    most_in_play = 0
    made = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        with _Doors.lock:
            _Doors.made += 1

    def seeds(self, split, n, offset=0):
        return list(range(offset, offset + n))

    def reset(self, seed, split="train"):
        self.goal, self.steps = self.colours[seed % 4], 0
        with _Doors.lock:
            _Doors.in_play += 1
            _Doors.most_in_play = max(_Doors.most_in_play, _Doors.in_play)
        return self._observe("You stand before four doors.", won=False)

    def step(self, action):
        time.sleep(0.05)  # a step that takes a while, as a model's does, so the games overlap
        self.steps += 1
        won = action == f"open the {self.goal} door"
        obs = self._observe("It opens." if won else "It is locked.", won)
        if obs.done:
            with _Doors.lock:
                _Doors.in_play -= 1
        return obs

    def walkthrough(self):
        return [f"open the {self.goal} door"]

    def close(self):
        pass

    def _observe(self, text, won):
        from sleep_agent.envs import Observation

        actions = [f"open the {c} door" for c in self.colours]
        done = won or self.steps >= self.step_limit
        return Observation(
            text, actions, float(won), won, done, self.steps, task=f"Open the {self.goal} door."
        )


def test_the_behaviour_check_plays_every_game_at_once_and_keeps_each_versions_scores():
    from sleep_agent.envs import BehaviourCheck

    def knows(prompt):  # reads the goal from the task: wins every game
        goal = re.search(r"Open the (\w+) door", json.dumps(prompt)).group(1)
        return f"open the {goal} door"

    def guesses_red(prompt):  # wins only the games whose door is red
        return "open the red door"

    check = BehaviourCheck(_Doors, [0, 1, 2], parallel=6)
    assert check([guesses_red, knows]) == [pytest.approx(1 / 3), 1.0]
    assert check.last == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]  # per version, in seed order
    assert _Doors.most_in_play > 2  # games of both versions overlapped, not one version at a time
    assert _Doors.made <= 6
    made = _Doors.made
    check([knows, knows])  # the next sleep reuses the environments
    assert _Doors.made == made
    check.close()
    with pytest.raises(ValueError, match="parallel"):
        BehaviourCheck(_Doors, [0], parallel=0)


def test_the_checks_fingerprint_names_its_tasks_so_kept_scores_are_never_read_for_other_ones():
    """The gate keeps a version's check scores under the fingerprint: the same tasks give the same
    one; other seeds, another step limit or an environment whose tasks read differently do not."""
    from sleep_agent.envs import BehaviourCheck

    class Windows(_Doors):  # the same family name and seeds, other tasks
        def reset(self, seed, split="train"):
            obs = super().reset(seed, split)
            return replace(obs, task=obs.task.replace("door", "window"))

    class Patient(_Doors):
        step_limit = 6

    def fingerprint(make_env, seeds):
        check = BehaviourCheck(make_env, seeds)
        try:
            return json.dumps(check.fingerprint())
        finally:
            check.close()

    same = fingerprint(_Doors, [0, 1])
    assert same == fingerprint(_Doors, [0, 1])
    assert (
        len({same, fingerprint(_Doors, [0, 2]), fingerprint(Windows, [0, 1]), fingerprint(Patient, [0, 1])})
        == 4
    )


def test_the_pool_gives_each_game_its_own_environment_and_returns_results_in_order():
    from sleep_agent.envs.pool import EnvPool

    _Doors.made = 0
    pool = EnvPool(_Doors, parallel=3)
    seen: list[int] = []

    def play(env, seed):
        obs = env.reset(seed)
        seen.append(id(env))
        while not obs.done:
            obs = env.step("open the red door")
        return seed, obs.won

    results = pool.map(play, list(range(8)))
    assert results == [(s, s % 4 == 0) for s in range(8)]  # in the order asked, whatever finished first
    assert _Doors.made <= 3 and len(set(seen)) == _Doors.made  # environments reused, never more than parallel
    assert pool.map(play, []) == []
    pool.close()
    with pytest.raises(ValueError, match="parallel"):
        EnvPool(_Doors, parallel=0)


def test_a_check_given_a_pool_plays_in_the_callers_environments():
    """The eval's check shares its pool: a JVM or browser per game, not two sets of them."""
    from sleep_agent.envs import BehaviourCheck
    from sleep_agent.envs.pool import EnvPool

    _Doors.made = 0
    pool = EnvPool(_Doors, parallel=2)

    def play(env, seed):  # the caller's own play
        obs = env.reset(seed)
        while not obs.done:
            obs = env.step("open the red door")

    pool.map(play, [0, 1])
    assert _Doors.made == 2
    check = BehaviourCheck(pool, [0, 1, 2, 3])
    assert check([lambda prompt: "open the red door"]) == [pytest.approx(1 / 4)]
    assert check.pool is pool and _Doors.made == 2  # borrowed, none built for the check
    check.close()  # the pool is the caller's: still there for its next round
    pool.map(play, [2, 3])
    assert _Doors.made == 2
    pool.close()
