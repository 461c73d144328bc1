"""The terminal family on a real shell: every kind's walkthrough wins, wrong answers do not, and a
command cannot hang a step, flood the observation or leave its directory behind."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sleep_agent.envs import Environment
from sleep_agent.envs.terminal import KINDS, SPLITS, Terminal

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the terminal tasks need bash")


@pytest.fixture
def env():
    terminal = Terminal()
    yield terminal
    terminal.close()


def _play(env: Terminal, commands: list[str]):
    obs = None
    for command in commands:
        obs = env.step(command)
    assert obs is not None
    return obs


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_walkthrough_wins_every_kind_on_several_seeds(env, split):
    seeds = env.seeds(split, 3 * len(KINDS))  # consecutive seeds cycle through the kinds
    assert {env.task_of(s)[0] for s in seeds} == set(KINDS)
    for seed in seeds:
        first = env.reset(seed, split)
        assert first.task and not first.done and first.steps == 0 and first.actions == []
        gold = env.walkthrough()
        assert 2 <= len(gold) <= 5 and gold[-1] == "submit"
        obs = _play(env, gold)
        assert obs.done and obs.won and obs.score == 1.0, (seed, obs.task, obs.text)
        assert obs.steps == len(gold)


def test_a_search_in_the_walkthrough_finds_exactly_one_file(env):
    """The grep a find task's walkthrough starts with names the target alone: the task is fair."""
    for seed in env.seeds("train", 40):
        if env.task_of(seed)[0] not in ("find_copy", "find_move"):
            continue
        env.reset(seed, "train")
        gold = env.walkthrough()
        lines = env.step(gold[0]).text.splitlines()
        assert lines[0] == f"$ {gold[0]}" and lines[-1] == "[exit status 0]"
        assert len(lines) == 3, lines


def test_doing_nothing_or_the_wrong_thing_scores_below_one(env):
    for seed in env.seeds("train", len(KINDS)):
        env.reset(seed, "train")
        obs = env.step("submit")
        assert obs.done and not obs.won and obs.score == 0.0, obs.text
        env.reset(seed, "train")
        obs = _play(env, ["echo wrong > wrong.txt", "mkdir junk", "exit"])
        assert obs.done and not obs.won and obs.score < 1.0


def test_partial_credit_is_partial():
    env = Terminal(kinds=["sort_unique"])
    try:
        env.reset(0, "train")
        gold = env.walkthrough()
        out = gold[0].split(">")[-1].strip()
        src = gold[0].split(">")[0].split()[-1]
        obs = _play(env, [f"cat {src} > {out}", "submit"])  # every entry, but unsorted and repeated
        assert 0.0 < obs.score < 1.0 and not obs.won
        assert "[ ] no" in obs.text and "[x]" in obs.text
    finally:
        env.close()
    env = Terminal(kinds=["rename_ext"])
    try:
        env.reset(0, "train")
        gold = env.walkthrough()
        obs = _play(env, [gold[1], "submit"])  # one file of several renamed
        assert 0.0 < obs.score < 1.0 and not obs.won
    finally:
        env.close()


def test_the_step_limit_ends_and_checks_the_task():
    env = Terminal(kinds=["count_matches"], step_limit=2)
    try:
        env.reset(0, "train")
        gold = env.walkthrough()
        obs = env.step("ls")
        assert not obs.done
        obs = env.step(gold[0])
        assert obs.done and obs.steps == 2 and "Step limit reached" in obs.text
        assert obs.won and obs.score == 1.0  # the answer was written before the limit
        assert env.step("ls").text.startswith("The task is over")
    finally:
        env.close()


def test_a_command_past_the_timeout_is_killed_and_reported(tmp_path):
    env = Terminal(timeout_s=0.5)
    try:
        env.reset(0, "train")
        started = time.monotonic()
        obs = env.step("echo started; sleep 30 & echo $! > bg.pid; sleep 30")
        assert time.monotonic() - started < 5
        assert obs.text.startswith("$ echo started") and "started" in obs.text
        assert "killed" in obs.text and "0.5 s" in obs.text and not obs.done
        assert env.workdir is not None
        assert not _alive(int((env.workdir / "bg.pid").read_text()))  # its background job too
        assert "[exit status 3]" in env.step("exit 3").text  # the next command runs as usual
    finally:
        env.close()


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc to look processes up in")
    deadline = time.monotonic() + 2
    while stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def test_huge_output_is_cut():
    env = Terminal(max_output=300)
    try:
        env.reset(0, "train")
        obs = env.step("seq 1 200000")
        assert len(obs.text) < 450 and "[output cut:" in obs.text and "[exit status 0]" in obs.text
        assert obs.text.splitlines()[1] == "1"
    finally:
        env.close()


def test_commands_run_in_the_task_directory_with_a_minimal_environment(env):
    env.reset(0, "train")
    obs = env.step('pwd; echo "home=$HOME"; env | wc -l; read x || echo no-stdin')
    lines = obs.text.splitlines()
    assert lines[1] == str(env.workdir) and lines[2] == f"home={env.workdir}"
    assert int(lines[3]) <= 8 and lines[4] == "no-stdin"
    assert "[exit status 127]" in env.step("no-such-command-here").text


def test_the_work_directory_is_removed_on_reset_and_close():
    env = Terminal()
    first = env.reset(0, "train")
    old = env.workdir
    assert old is not None and old.is_dir() and "$ ls" in first.text
    env.step("mkdir -p locked/inner && chmod 000 locked")  # even one the agent locked
    env.reset(1, "train")
    assert not old.exists()
    new = env.workdir
    assert new is not None and new.is_dir()
    env.close()
    assert not new.exists() and env.workdir is None
    env.close()  # twice is harmless


def test_seeds_are_fixed_disjoint_and_bounded(env):
    train, test = set(env.seeds("train", 500)), set(env.seeds("test", 500))
    assert not train & test and not train & set(env.seeds("dev", 500))
    assert env.seeds("train", 3, offset=5) == env.seeds("train", 8)[5:]
    with pytest.raises(ValueError):
        env.seeds("test", len(SPLITS["test"]) + 1)
    with pytest.raises(ValueError):
        env.reset(env.seeds("test", 1)[0], "train")


def test_a_seed_gives_the_same_task_every_time():
    a, b = Terminal(), Terminal()
    try:
        for seed in a.seeds("test", len(KINDS)):
            first_a, first_b = a.reset(seed, "test"), b.reset(seed, "test")
            assert (first_a.task, first_a.text) == (first_b.task, first_b.text)
            assert a.walkthrough() == b.walkthrough()
        texts = {a.reset(s, "train").task for s in a.seeds("train", 5 * len(KINDS))}
        assert len(texts) > 4 * len(KINDS)  # variants differ
    finally:
        a.close()
        b.close()


def test_it_is_an_environment_with_free_form_actions(env):
    assert isinstance(env, Environment)
    assert env.name == "terminal" and "submit" in env.instruction and env.step_limit == 10
    assert env.reset(0, "train").actions == []
    with pytest.raises(ValueError):
        Terminal(kinds=["no_such_kind"])


def test_a_subset_of_kinds_plays_only_those():
    env = Terminal(kinds=["make_dirs", "csv_column"])
    try:
        kinds = {env.task_of(s)[0] for s in env.seeds("train", 6)}
        assert kinds == {"make_dirs", "csv_column"}
    finally:
        env.close()
