"""Shell tasks in a throwaway directory, one at a time, as an :class:`~sleep_agent.envs.Environment`.

This is our own task family, with programmatic checkers, in the style of the terminal benchmarks
(Terminal-Bench, InterCode-Bash): each task asks for a few file operations (find a file by its
content and copy or move it, count matching lines, rename by extension, fix a config value, sort
and dedupe a list, extract a CSV column, make a directory tree), and a checker reads the result.
Those published sets run every task in a container; these need nothing but ``bash`` and the usual
command-line tools, so they play offline and in milliseconds.

A seed names a task: it picks the kind (``seed % len(kinds)``) and the variant (``seed //
len(kinds)``), from which the names, contents and values are drawn. Train, dev and test are
disjoint seed ranges of the same kinds, so held-out tasks are new ones of the same family.

The agent's reply is one shell command, run by ``bash -c`` in the task's directory (stdin closed,
``HOME`` set to that directory, ``PATH`` kept, ``LC_ALL=C``), in its own process group, killed with
everything it started when it outlives ``timeout_s`` (background jobs do not outlive their command
either); its output is cut to ``max_output`` characters. ``submit`` (or ``exit``) ends the task and
runs the checker; so does the step limit. The score is the share of the checker's conditions that
hold, and the task is won when all do.

**Commands run on this machine, as the current user.** Nothing confines them to the task's
directory: a command may read or change anything the user can. Play this family on a throwaway
machine or inside a sandbox (a container, a VM), never on one whose files matter.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleep_agent.envs.base import EnvironmentUnavailableError, Observation, Split, check_seed, seeds_in

Condition = tuple[str, bool]

# Disjoint seed ranges: a seed names one task of one split.
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "dev": range(100_000, 110_000),
    "test": range(200_000, 210_000),
}
ENDS = ("submit", "exit")

NAMES = ["Alice", "Bruno", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi"]
NAMES += ["Liam", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tomas", "Viktor", "Zara"]
CITIES = ["Lisbon", "Oslo", "Lima", "Cairo", "Osaka", "Quito", "Perth", "Dakar", "Riga", "Hanoi"]
FILE_WORDS = ["plan", "memo", "todo", "draft", "ideas", "budget", "agenda", "summary", "letter", "recipe"]
MESSAGE_WORDS = ["invoice", "offer", "reminder", "invite", "update", "question", "thanks", "request"]
FILLER = [
    "remember to water the plants.",
    "the meeting moved to the blue room.",
    "bring the slides and a spare cable.",
    "lunch is at noon on friday.",
    "the printer on the second floor is broken.",
    "send the draft before the weekend.",
    "the train was late again this morning.",
    "please review the open questions.",
    "we still need a name for the project.",
    "the new desks arrive next week.",
]
LOG_MESSAGES = [
    "user login",
    "cache miss",
    "disk almost full",
    "request served",
    "job started",
    "job finished",
    "connection reset",
    "config reloaded",
    "slow query",
    "backup done",
]


# -- the checker's verdict ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a checker found. ``goals`` are what the task asks for; ``guards`` are what it must leave
    alone. A guard only earns credit once some goal holds, so doing nothing scores 0."""

    goals: list[Condition]
    guards: list[Condition]

    @property
    def conditions(self) -> list[Condition]:
        return [*self.goals, *self.guards]

    @property
    def met(self) -> int:
        goals = sum(ok for _, ok in self.goals)
        return goals + (sum(ok for _, ok in self.guards) if goals else 0)

    @property
    def score(self) -> float:
        return self.met / len(self.conditions)

    @property
    def won(self) -> bool:
        return all(ok for _, ok in self.conditions)

    def report(self) -> str:
        marks = "\n".join(f"[{'x' if ok else ' '}] {text}" for text, ok in self.conditions)
        return f"Checked: {self.met} of {len(self.conditions)} conditions hold.\n{marks}"


@dataclass(frozen=True)
class Task:
    """One generated task: the files it starts with, what it asks, how to solve and check it."""

    kind: str
    statement: str
    files: Mapping[str, str]  # relative path -> text
    dirs: tuple[str, ...]  # empty directories to create
    gold: tuple[str, ...]  # commands that solve it, ending with "submit"
    check: Callable[[Path], Verdict]


# -- reading the result ------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    """A regular file's text, or None when there is none (missing, a directory, unreadable)."""
    try:
        return path.read_text(errors="replace") if path.is_file() else None
    except OSError:
        return None


def _lines(text: str | None) -> list[str]:
    """The non-blank lines, stripped: what a list file holds, whatever its trailing whitespace."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _unchanged(root: Path, files: Mapping[str, str]) -> bool:
    return all(_read(root / path) == text for path, text in files.items())


def _entries(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


# -- the kinds ---------------------------------------------------------------------------------


def _codes(rng: random.Random, n: int) -> list[str]:
    """Distinct codes like K7Q2: letters and digits, so no word of the filler text contains one."""
    codes: list[str] = []
    while len(codes) < n:
        code = "".join(rng.choice(alphabet) for alphabet in ("ABCDEFGHJKLMNPQRSTUVWXYZ", "23456789") * 2)
        if code not in codes:
            codes.append(code)
    return codes


def _filler(rng: random.Random, n: int) -> str:
    return "\n".join(rng.sample(FILLER, n))


def find_copy(rng: random.Random) -> Task:
    """Find the one file that holds a code, and copy it elsewhere under its own name."""
    src, dst = rng.choice([("docs", "keep"), ("notes", "saved"), ("papers", "chosen")])
    stems = rng.sample(FILE_WORDS, rng.randint(4, 6))
    codes = _codes(rng, len(stems))
    files = {
        f"{src}/{stem}.txt": f"{_filler(rng, 2)}\ncode: {code}\n{_filler(rng, 1)}\n"
        for stem, code in zip(stems, codes, strict=True)
    }
    pick = rng.randrange(len(stems))
    name, code = f"{stems[pick]}.txt", codes[pick]

    def check(root: Path) -> Verdict:
        copied = _read(root / dst / name)
        return Verdict(
            goals=[
                (f"{dst}/{name} exists", copied is not None),
                (f"{dst}/{name} holds the same text as {src}/{name}", copied == files[f"{src}/{name}"]),
            ],
            guards=[
                (f"{src}/ is unchanged", _unchanged(root, files) and _entries(root / src) == _names(files)),
                (f"{dst}/ holds nothing but {name}", _entries(root / dst) <= {name}),
            ],
        )

    return Task(
        kind="find_copy",
        statement=f"One file in {src}/ contains the code {code}. Copy that file into {dst}/, keeping its name.",
        files=files,
        dirs=(dst,),
        gold=(f"grep -l {code} {src}/*", f"cp {src}/{name} {dst}/", "submit"),
        check=check,
    )


def _names(files: Mapping[str, str]) -> set[str]:
    return {path.rsplit("/", 1)[-1] for path in files}


def find_move(rng: random.Random) -> Task:
    """Find the message from one sender, make a new folder, and move the message there."""
    src = rng.choice(["inbox", "mail", "messages"])
    dst = rng.choice(["done", "archive", "old"])
    stems = rng.sample(MESSAGE_WORDS, rng.randint(4, 6))
    senders = rng.sample(NAMES, len(stems))
    files = {
        f"{src}/{stem}.txt": f"From: {sender}\nSubject: {stem}\n\n{_filler(rng, 2)}\n"
        for stem, sender in zip(stems, senders, strict=True)
    }
    pick = rng.randrange(len(stems))
    name, sender = f"{stems[pick]}.txt", senders[pick]
    others = {path: text for path, text in files.items() if not path.endswith(f"/{name}")}

    def check(root: Path) -> Verdict:
        return Verdict(
            goals=[
                (f"{dst}/{name} holds the message", _read(root / dst / name) == files[f"{src}/{name}"]),
                (f"{src}/{name} is gone", not (root / src / name).exists()),
            ],
            guards=[(f"the other messages are still in {src}/, unchanged", _unchanged(root, others))],
        )

    return Task(
        kind="find_move",
        statement=f"Move the message in {src}/ that is from {sender} into a new directory {dst}/.",
        files=files,
        dirs=(),
        gold=(f"grep -l {sender} {src}/*", f"mkdir {dst}", f"mv {src}/{name} {dst}/", "submit"),
        check=check,
    )


def count_matches(rng: random.Random) -> Task:
    """Count the log lines of one level and write just the number to a file."""
    log = rng.choice(["server.log", "app.log", "events.log"])
    out = rng.choice(["count.txt", "total.txt", "answer.txt"])
    level = rng.choice(["ERROR", "WARN"])
    n = rng.randint(10, 18)
    count = rng.randint(1, n // 2)
    levels = [level] * count + [
        rng.choice([x for x in ("INFO", "DEBUG", "ERROR", "WARN") if x != level]) for _ in range(n - count)
    ]
    rng.shuffle(levels)
    lines = [f"09:{i * 3:02d} {lvl} {rng.choice(LOG_MESSAGES)}" for i, lvl in enumerate(levels)]
    text = "\n".join(lines) + "\n"

    def check(root: Path) -> Verdict:
        written = _read(root / out)
        return Verdict(
            goals=[
                (f"{out} exists", written is not None),
                (f"{out} holds just the number {count}", (written or "").strip() == str(count)),
            ],
            guards=[(f"{log} is unchanged", _read(root / log) == text)],
        )

    return Task(
        kind="count_matches",
        statement=f"Count the lines of {log} that contain {level} and write only that number to {out}.",
        files={log: text},
        dirs=(),
        gold=(f"grep -c {level} {log} > {out}", f"cat {out}", "submit"),
        check=check,
    )


def rename_ext(rng: random.Random) -> Task:
    """Rename every file of one extension in a folder to another extension, and only those."""
    folder, (old, new) = rng.choice(
        [
            ("reports", ("txt", "md")),
            ("photos", ("jpeg", "jpg")),
            ("pages", ("htm", "html")),
            ("logs", ("log", "txt")),
            ("configs", ("yml", "yaml")),
        ]
    )
    stems = rng.sample(FILE_WORDS, rng.randint(2, 3) + 1)
    keep, stems = f"{folder}/{stems[0]}.bak", stems[1:]
    files = {f"{folder}/{stem}.{old}": f"{stem} {_filler(rng, 1)}\n" for stem in stems}
    files[keep] = f"{_filler(rng, 1)}\n"

    def check(root: Path) -> Verdict:
        renamed = [
            (
                f"{folder}/{stem}.{new} holds what {stem}.{old} held",
                _read(root / folder / f"{stem}.{new}") == files[f"{folder}/{stem}.{old}"],
            )
            for stem in stems
        ]
        left = [e for e in _entries(root / folder) if e.endswith(f".{old}")]
        return Verdict(
            goals=[*renamed, (f"no .{old} file is left in {folder}/", not left)],
            guards=[(f"{keep} is untouched", _read(root / keep) == files[keep])],
        )

    moves = tuple(f"mv {folder}/{stem}.{old} {folder}/{stem}.{new}" for stem in stems)
    return Task(
        kind="rename_ext",
        statement=f"In {folder}/, rename every .{old} file to end in .{new} instead; leave the other files alone.",
        files=files,
        dirs=(),
        gold=(f"ls {folder}", *moves, "submit"),
        check=check,
    )


CONFIG_VALUES: dict[str, Callable[[random.Random], str]] = {
    "port": lambda r: str(r.choice([3000, 5000, 8000, 8080, 9000])),
    "host": lambda r: r.choice(["localhost", "0.0.0.0", "127.0.0.1"]),
    "workers": lambda r: str(r.randint(1, 16)),
    "timeout": lambda r: str(r.choice([10, 30, 60, 120])),
    "debug": lambda r: r.choice(["true", "false"]),
    "log_level": lambda r: r.choice(["info", "debug", "warning", "error"]),
    "cache_size": lambda r: str(r.choice([64, 128, 256, 512])),
    "retries": lambda r: str(r.randint(0, 5)),
}


def fix_config(rng: random.Random) -> Task:
    """Change one setting of a key=value config file and leave the others as they are."""
    conf = rng.choice(["app.conf", "server.ini", "settings.cfg"])
    keys = rng.sample(sorted(CONFIG_VALUES), rng.randint(4, 6))
    values = {key: CONFIG_VALUES[key](rng) for key in keys}
    key = rng.choice(keys)
    old, new = values[key], values[key]
    while new == old:
        new = CONFIG_VALUES[key](rng)
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    others = [f"{k}={v}" for k, v in values.items() if k != key]

    def check(root: Path) -> Verdict:
        lines = _lines(_read(root / conf))
        return Verdict(
            goals=[(f"{conf} has the line {key}={new}", f"{key}={new}" in lines)],
            guards=[
                (f"{conf} sets {key} only once", sum(line.startswith(f"{key}=") for line in lines) == 1),
                (
                    f"the other lines of {conf} are unchanged",
                    [x for x in lines if not x.startswith(f"{key}=")] == others,
                ),
            ],
        )

    return Task(
        kind="fix_config",
        statement=f"In {conf}, change {key} from {old} to {new}; leave every other line as it is.",
        files={conf: text},
        dirs=(),
        gold=(f"cat {conf}", f"sed -i 's/^{key}=.*/{key}={new}/' {conf}", f"grep {key} {conf}", "submit"),
        check=check,
    )


def sort_unique(rng: random.Random) -> Task:
    """Write a list's entries once each, in order (names alphabetically or numbers by value)."""
    numeric = rng.random() < 0.5
    if numeric:
        src, out = rng.choice([("scores.txt", "sorted.txt"), ("sizes.txt", "ordered.txt")])
        distinct = [
            str(x) for x in rng.sample(range(1, 10), 2) + rng.sample(range(10, 1000), rng.randint(3, 5))
        ]
        key: Callable[[str], object] = int
        order, how = "smallest first", "number"
    else:
        src, out = rng.choice([("names.txt", "unique.txt"), ("guests.txt", "list.txt")])
        distinct = rng.sample(NAMES, rng.randint(5, 7))
        key, order, how = str, "in alphabetical order", "name"
    entries = distinct + rng.sample(distinct, rng.randint(2, 4))
    rng.shuffle(entries)
    text = "\n".join(entries) + "\n"

    def check(root: Path) -> Verdict:
        lines = _lines(_read(root / out))
        return Verdict(
            goals=[
                (f"{out} holds every {how} of {src} and nothing else", set(lines) == set(distinct)),
                (f"no {how} appears twice in {out}", bool(lines) and len(lines) == len(set(lines))),
                (f"the lines of {out} are {order}", bool(lines) and _is_sorted(lines, key)),
            ],
            guards=[(f"{src} is unchanged", _read(root / src) == text)],
        )

    sort = "sort -n -u" if numeric else "sort -u"
    return Task(
        kind="sort_unique",
        statement=f"{src} lists {how}s, some more than once. Write each {how} once, {order}, one per line, to {out}.",
        files={src: text},
        dirs=(),
        gold=(f"{sort} {src} > {out}", f"cat {out}", "submit"),
        check=check,
    )


def _is_sorted(lines: list[str], key: Callable[[str], object]) -> bool:
    try:
        return lines == sorted(lines, key=key)
    except ValueError:  # a line that is no number
        return False


def csv_column(rng: random.Random) -> Task:
    """Extract one column of a CSV file, without its header, in the file's order."""
    csv = rng.choice(["people.csv", "staff.csv", "members.csv"])
    header = rng.sample(["name", "email", "city", "age"], 4)
    column = rng.choice(header)
    out = {"name": "names.txt", "email": "emails.txt", "city": "cities.txt", "age": "ages.txt"}[column]
    rows = []
    for name in rng.sample(NAMES, rng.randint(4, 6)):
        row = {
            "name": name,
            "email": f"{name.lower()}@example.org",
            "city": rng.choice(CITIES),
            "age": str(rng.randint(19, 70)),
        }
        rows.append(row)
    text = ",".join(header) + "\n" + "".join(",".join(r[c] for c in header) + "\n" for r in rows)
    wanted = [r[column] for r in rows]

    def check(root: Path) -> Verdict:
        written = _read(root / out)
        lines = _lines(written)
        return Verdict(
            goals=[
                (f"{out} exists", written is not None),
                (f"{out} does not hold the header", bool(lines) and column not in lines),
                (f"{out} holds the {len(wanted)} values of {column}, in the file's order", lines == wanted),
            ],
            guards=[(f"{csv} is unchanged", _read(root / csv) == text)],
        )

    field = header.index(column) + 1
    return Task(
        kind="csv_column",
        statement=(
            f"Write the {column} column of {csv} to {out}: one value per line, in the file's order, "
            "without the header."
        ),
        files={csv: text},
        dirs=(),
        gold=(f"head -3 {csv}", f"cut -d, -f{field} {csv} | tail -n +2 > {out}", f"cat {out}", "submit"),
        check=check,
    )


def make_dirs(rng: random.Random) -> Task:
    """Make a small directory tree with one empty file in it."""
    top = rng.choice(["site", "project", "app", "shop", "blog"])
    subs = rng.sample(["src", "tests", "docs", "assets", "css", "js", "img", "data", "lib", "bin"], 3)
    where = rng.choice(subs)
    name = rng.choice(["README", "notes.txt", "index.html", "main.py", "config.yml"])
    file = f"{top}/{where}/{name}"
    wanted = {f"{top}/{s}" for s in subs}

    def check(root: Path) -> Verdict:
        made = [(f"the directory {d} exists", (root / d).is_dir()) for d in sorted(wanted)]
        path = root / file
        return Verdict(
            goals=[*made, (f"{file} exists and is empty", path.is_file() and path.stat().st_size == 0)],
            guards=[(f"{top}/ holds nothing else", _entries(root / top) == set(subs))],
        )

    listed = ", ".join(sorted(wanted)[:-1]) + f" and {sorted(wanted)[-1]}"
    return Task(
        kind="make_dirs",
        statement=f"Create the directories {listed}, and an empty file {file}.",
        files={},
        dirs=(),
        gold=(f"mkdir -p {' '.join(f'{top}/{s}' for s in subs)}", f"touch {file}", f"ls -R {top}", "submit"),
        check=check,
    )


KINDS: dict[str, Callable[[random.Random], Task]] = {
    "find_copy": find_copy,
    "find_move": find_move,
    "count_matches": count_matches,
    "rename_ext": rename_ext,
    "fix_config": fix_config,
    "sort_unique": sort_unique,
    "csv_column": csv_column,
    "make_dirs": make_dirs,
}


# -- running a command -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """How a command went: what it printed (cut to size), its exit status, whether it timed out."""

    output: str
    status: int | None
    timed_out: bool
    cut: int  # bytes of output not shown


def run_command(command: str, cwd: Path, *, timeout_s: float, max_output: int) -> Ran:
    """Run ``bash -c command`` in ``cwd`` in a process group of its own, killed on timeout.

    Output is read as it comes and only the first ``max_output`` characters are kept, so a command
    that prints without end costs bounded memory. When the command ends, whatever it left running
    in its group is killed too, so nothing outlives a step.
    """
    env = {"HOME": str(cwd), "PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stream = proc.stdout
    assert stream is not None
    keep = 4 * max_output + 4  # enough bytes for max_output characters of UTF-8
    kept = bytearray()
    total = [0]

    def drain() -> None:  # the reader owns the pipe: it closes it once every writer is gone
        with stream:
            while chunk := stream.read1(65536):
                kept.extend(chunk[: keep - len(kept)])
                total[0] += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(proc.pid)
    proc.wait()
    reader.join(timeout=2.0)  # a writer that left the group may hold the pipe: do not wait for it
    text = bytes(kept).decode("utf-8", errors="replace")
    head = text[:max_output]
    whole = total[0] <= keep and len(text) <= max_output
    cut = 0 if whole else max(total[0] - len(head.encode("utf-8", errors="replace")), 1)
    status = None if timed_out else proc.returncode
    return Ran(output=head, status=status, timed_out=timed_out, cut=cut)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def shown(command: str, ran: Ran, timeout_s: float) -> str:
    """A step as a terminal would show it: the prompt and command, the output, how it ended."""
    lines = [f"$ {command}"]
    if ran.output.strip():
        lines.append(ran.output.rstrip("\n"))
    if ran.cut:
        lines.append(f"[output cut: {ran.cut} more bytes not shown]")
    if ran.timed_out:
        lines.append(f"[killed: the command ran past {timeout_s:g} s]")
    else:
        lines.append(f"[exit status {ran.status}]")
    return "\n".join(lines)


# -- the environment ---------------------------------------------------------------------------


class Terminal:
    """``env.reset(seed, split)``, then ``env.step(command)`` until ``done``; ``close()`` at the end."""

    name = "terminal"
    instruction = "Reply with exactly one shell command; say submit when the task is done."

    def __init__(
        self,
        kinds: Sequence[str] | None = None,
        step_limit: int = 10,
        timeout_s: float = 5.0,
        max_output: int = 1000,
    ) -> None:
        if shutil.which("bash") is None or not hasattr(os, "killpg"):
            raise EnvironmentUnavailableError(
                "the terminal tasks need bash and POSIX process groups: run them on Linux or macOS"
            )
        self.kinds = list(kinds) if kinds is not None else list(KINDS)
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown or no task kinds {unknown}: choose from {', '.join(KINDS)}")
        if step_limit < 1 or timeout_s <= 0 or max_output < 1:
            raise ValueError("step_limit, timeout_s and max_output must be positive")
        self.step_limit = step_limit
        self.timeout_s = timeout_s
        self.max_output = max_output
        self._task: Task | None = None
        self._dir: Path | None = None
        self._cleanup: weakref.finalize | None = None
        self._steps = 0
        self._last: Observation | None = None

    def seeds(self, split: Split, n: int, offset: int = 0) -> list[int]:
        """The first ``n`` seeds of a split after ``offset``; consecutive seeds cycle through the kinds."""
        return seeds_in(SPLITS, split, n, offset)

    def task_of(self, seed: int) -> tuple[str, int]:
        """A seed's kind and variant: the variant seeds the names, contents and values."""
        return self.kinds[seed % len(self.kinds)], seed // len(self.kinds)

    def reset(self, seed: int, split: Split = "train") -> Observation:
        check_seed(SPLITS, split, seed)
        kind, variant = self.task_of(seed)
        task = KINDS[kind](random.Random(f"{kind}:{variant}"))
        self._remove_dir()
        self._dir = Path(tempfile.mkdtemp(prefix="sleep-agent-terminal-"))
        self._cleanup = weakref.finalize(self, _remove, self._dir)  # also on exit if never closed
        _lay_out(self._dir, task)
        self._task, self._steps = task, 0
        ran = run_command("ls", self._dir, timeout_s=self.timeout_s, max_output=self.max_output)
        return self._observe(shown("ls", ran, self.timeout_s))

    def step(self, action: str) -> Observation:
        if self._task is None or self._dir is None:
            raise RuntimeError("no task: call reset(seed, split) first")
        if self._last is not None and self._last.done:
            last = self._last
            return self._observe("The task is over: reset to start another.", last.score, last.won, done=True)
        command = action.strip()
        self._steps += 1
        if command.rstrip(".").lower() in ENDS:
            return self._finish(f"$ {command}")
        ran = run_command(command, self._dir, timeout_s=self.timeout_s, max_output=self.max_output)
        text = shown(command, ran, self.timeout_s)
        if self._steps >= self.step_limit:
            return self._finish(f"{text}\nStep limit reached.")
        return self._observe(text)

    def walkthrough(self) -> list[str]:
        """The current task's gold commands from its start, ending with ``submit``."""
        if self._task is None:
            raise RuntimeError("no task: call reset(seed, split) first")
        return list(self._task.gold)

    def close(self) -> None:
        """Remove the work directory; the environment can still be reset to a new task."""
        self._remove_dir()
        self._task = None

    @property
    def workdir(self) -> Path | None:
        """The current task's directory (None after close)."""
        return self._dir

    def _finish(self, text: str) -> Observation:
        assert self._task is not None and self._dir is not None
        verdict = self._task.check(self._dir)
        return self._observe(f"{text}\n{verdict.report()}", verdict.score, verdict.won, done=True)

    def _observe(
        self, text: str, score: float = 0.0, won: bool = False, *, done: bool = False
    ) -> Observation:
        assert self._task is not None
        self._last = Observation(
            text=text, score=score, won=won, done=done, steps=self._steps, task=self._task.statement
        )
        return self._last

    def _remove_dir(self) -> None:
        if self._cleanup is not None:
            self._cleanup()  # runs once, then detaches
        self._cleanup, self._dir, self._last = None, None, None


def _lay_out(root: Path, task: Task) -> None:
    for folder in task.dirs:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for path, text in task.files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def _remove(path: Path) -> None:
    """Delete a task directory even where a command took away its permissions."""

    def writable_again(func: Callable[..., object], failed: str, _: object) -> None:
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            func(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=writable_again)
