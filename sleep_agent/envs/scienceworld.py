"""ScienceWorld science tasks, one at a time, as an :class:`~sleep_agent.envs.Environment`.

ScienceWorld simulates a house with rooms, objects, plants and animals; a task ("find a living
thing, focus on it, move it to the red box in the kitchen") takes several rooms and steps, and its
score gives partial credit for each subgoal. Its tasks come in numbered variations split by the
benchmark into train, dev and test, so held-out tasks are new variations of the same tasks.

The default tasks are the short ones: the find-* family (fetch a living thing, a plant, an animal
or any object to a box in another room) and the lifespan-* family (focus on the animal that lives
longest or shortest), whose gold paths take 3-14 steps, 1-9 once the steps that get nowhere are
cut. Doors start open (the ``openDoors`` simplification: no step is spent opening one) and there
are no wiring actions (``noElectricalAction``: they are two thirds of the action list and none of
these tasks uses one).

ScienceWorld names every valid action (hundreds); an observation lists about twenty of them, and
the room's description comes with the step that enters it, since the agent sees one step back.
The engine lists a container's contents, and names identical objects, in a different order each
time a task loads: contents are sorted here and such objects left out of the list, so a seed reads
the same every time.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any

from sleep_agent.envs.base import EnvironmentUnavailableError, Observation, Split

DEFAULT_TASKS = (
    "find-living-thing",
    "find-non-living-thing",
    "find-plant",
    "find-animal",
    "lifespan-longest-lived",
    "lifespan-shortest-lived",
    "lifespan-longest-lived-then-shortest-lived",
)
DEFAULT_SIMPLIFICATION = "openDoors,noElectricalAction"
SEED_STRIDE = 10_000  # seed = task index * SEED_STRIDE + variation: no task has as many variations
MAX_ACTIONS = 30
# The engine's JVM would size its heap to a quarter of the machine and keep growing into it (2-3 GB
# each after a few dozen tasks); tasks played at once start one JVM each. 1 GB holds any task here
# (about 0.5 GB resident after six), and the serial collector suits a JVM that shares a few cores.
JAVA_OPTIONS = "-Xmx1g -XX:+UseSerialGC"
_ELECTRICAL = ("power-component", "conductivity")  # the tasks that need the wiring actions
_SELF = {"agent", "inventory"}  # the player and its pockets: never an object of the task
_ALWAYS = ("look around", "wait1")
Progress = Callable[[dict[str, Any]], object]  # what a walkthrough step must change to be kept


class ScienceWorld:
    """``env.reset(seed, split)``, then ``env.step(action)`` until ``done``."""

    name = "scienceworld"
    instruction = "Reply with one action, such as one from the list."

    def __init__(
        self,
        tasks: Sequence[str] | None = None,
        step_limit: int = 20,
        simplification: str = DEFAULT_SIMPLIFICATION,
        max_actions: int = MAX_ACTIONS,
        java_options: str = JAVA_OPTIONS,
    ) -> None:
        self.tasks = tuple(tasks or DEFAULT_TASKS)
        self.step_limit = step_limit
        self.simplification = simplification
        self.max_actions = max_actions
        self._env = _start_engine(java_options)
        self._server = self._env.server  # the engine itself, behind the wrapper
        self._variations = {task: self._split_variations(task) for task in self.tasks}
        self._templates = {
            t["template_id"]: t["action_example"] for t in self._env.get_possible_actions_with_IDs()
        }
        self._steps = 0
        self._task = ""
        self._room = ""
        self._info: dict[str, Any] = {}
        self._twins: set[int] = set()
        self._referents: dict[int, list[str]] = {}
        self._listed: list[str] = []

    def seeds(self, split: Split, n: int, offset: int = 0) -> list[int]:
        """The first ``n`` seeds of a split after ``offset``; consecutive seeds cycle through the tasks."""
        pool = self._pool(split)
        if n < 0 or offset < 0 or offset + n > len(pool):
            raise ValueError(f"the {split} split has {len(pool)} seeds, asked for {offset + n}")
        return pool[offset : offset + n]

    def task_of(self, seed: int) -> tuple[str, int]:
        """A seed's task name and ScienceWorld variation."""
        index, variation = divmod(seed, SEED_STRIDE)
        if not 0 <= index < len(self.tasks):
            raise ValueError(f"seed {seed} names no task (there are {len(self.tasks)})")
        return self.tasks[index], variation

    def reset(self, seed: int, split: Split = "train") -> Observation:
        task, variation = self.task_of(seed)
        if variation not in self._variations[task][split]:
            raise ValueError(f"seed {seed} ({task} variation {variation}) is not a {split} seed")
        self._env.load(task, variation, _simplification(task, self.simplification), generateGoldPath=True)
        return self._restart()

    def step(self, action: str) -> Observation:
        reply = self._server.step(action)
        if reply.startswith("Ambiguous request"):  # the engine waits for a number: answer for the agent
            reply = self._server.step(_first_reading(reply))
        self._steps += 1
        info = self._read()
        room = _room(info["look"])
        text = _compact(_in_order(reply))
        if room != self._room and reply.strip() != info["look"].strip():
            text = f"{text}\n{_compact(_in_order(info['look']))}"  # a new room: show what is in it
        self._room = room
        return self._observe(text, info)

    def walkthrough(self) -> list[str]:
        """The benchmark's gold actions for the current task, spelled as the action list spells them,
        without the steps that get nowhere (opening an open door, looking again, a detour); the task
        is reset.

        A step gets nowhere when it leaves the player where it was with the score it had; cut, the path
        must still win, or the cut is made only where the whole world is as it was (plants grow while
        the player dawdles), or not at all. ScienceWorld draws its gold path anew each time a task
        loads (which living thing to fetch), so two calls may differ; each path wins from the start.
        """
        gold = [a for a in self._env.get_gold_action_sequence() if not a.startswith("ERROR")]
        path = (
            self._replayed(gold, lambda info: (_room(info["look"]), int(info["score"])))
            or self._replayed(gold, lambda info: (info["look"], info["inv"], int(info["score"])))
            or self._replayed(gold, None)
            or gold
        )
        self._restart()
        return path

    def close(self) -> None:
        """Stops the JVM; safe to call twice."""
        env, self._env = self._env, None
        if env is not None:
            try:
                env.close()
            except Exception:  # the gateway may already be gone at interpreter exit
                pass

    def _restart(self) -> Observation:
        """The loaded task from its start, as the engine's own reset begins it: by looking around."""
        self._server.reset()
        reply = self._server.step("look around")
        self._steps = 0
        self._task = _compact(re.sub(r"^\s*Task Description:\s*", "", self._env.taskdescription()))
        world = self._env.get_all_object_ids_types_referents_LUTJSON()
        self._twins = _twins(world)
        self._referents = {int(key): list(entry["referents"]) for key, entry in world.items()}
        info = self._read()
        self._room = _room(info["look"])
        return self._observe(_compact(_in_order(reply)), info)

    def _read(self) -> dict[str, Any]:
        """What an observation is made of, read after a step. (The wrapper's own step reads this too,
        and names every valid action a second time: a tenth of a second in a full room.)"""
        return {
            "score": round(100 * self._server.getScore()),
            "completed": bool(self._server.getCompleted()),
            "look": self._env.look(),
            "inv": self._env.inventory(),
            "valid": self._env.get_valid_action_object_combinations_with_templates(),
        }

    def _observe(self, text: str, info: dict[str, Any]) -> Observation:
        self._info = info
        raw = int(info["score"])
        won = raw >= 100
        actions = relevant_actions(
            [entry["action"] for entry in info["valid"]],
            _in_order(info["look"]),
            _in_order(info["inv"]),
            self._task,
            self.max_actions,
            _twin_names(info["valid"], self._twins),
            _aliases(info["valid"], self._referents),
        )
        self._listed = actions
        return Observation(
            text=text,
            actions=actions,
            score=max(0.0, min(1.0, raw / 100)),
            won=won,
            done=info["completed"] or won or raw < 0 or self._steps >= self.step_limit,
            steps=self._steps,
            task=self._task,
        )

    def _replayed(self, gold: list[str], progress: Progress | None) -> list[str] | None:
        """The gold path with its loops cut (see :meth:`_kept`), played from the start and spelled as
        the action list spells it at each step; None unless it wins."""
        kept = self._kept(gold, progress) if progress else gold
        obs = self._restart()
        path: list[str] = []
        for action in kept:
            path.append(self._spelled(action))
            obs = self.step(path[-1])
            if obs.done:  # won, or lost: the steps after it are not part of the path
                break
        return path if obs.won else None

    def _kept(self, gold: list[str], progress: Progress) -> list[str]:
        """The gold actions left when every loop (back to an earlier ``progress``) is cut out."""
        self._restart()
        kept: list[str] = []
        states = [progress(self._info)]
        for action in gold:
            if self.step(action).done:
                return [*kept, action]
            state = progress(self._info)
            if state in states:  # back where it was: drop the loop
                keep = states.index(state)
                kept, states = kept[:keep], states[: keep + 1]
            else:
                kept.append(action)
                states.append(state)
        return kept

    def _spelled(self, action: str) -> str:
        """The valid action naming the same objects as ``action`` (the gold path names them its own
        way: "move egg dove egg in inventory to red box" for "move dove to red box")."""
        if action in self._listed:
            return action
        referents: dict[str, set[int]] = {}
        for key, entry in self._env.get_all_object_ids_types_referents_LUTJSON().items():
            for name in entry["referents"]:
                referents.setdefault(name, set()).add(int(key))
        spellings: dict[tuple[int, ...], str] = {}
        for candidate in sorted(self._info["valid"], key=lambda c: c["action"] not in self._listed):
            template = self._templates.get(candidate["template_id"], "")
            if candidate["action"] == action or _names_same_objects(
                action, template, candidate["obj_ids"], referents
            ):
                spellings.setdefault(tuple(candidate["obj_ids"]), candidate["action"])  # listed first
        if len(spellings) > 1:  # "living thing in flower pot 7": the one the room shows in that pot
            where = action.rsplit(" in ", 1)[-1]
            lines = [line for line in _in_order(self._info["look"]).splitlines() if _mentions(line, where)]
            spellings = {
                ids: spelled
                for ids, spelled in spellings.items()
                if any(_mentions(line, name) for line in lines for name in self._referents.get(ids[0], []))
            }
        return next(iter(spellings.values())) if len(spellings) == 1 else action

    def _split_variations(self, task: str) -> dict[str, list[int]]:
        """The benchmark's own train / dev / test variations of a task."""
        self._env.load(task, 0, _simplification(task, self.simplification))
        return {
            "train": list(self._env.get_variations_train()),
            "dev": list(self._env.get_variations_dev()),
            "test": list(self._env.get_variations_test()),
        }

    def _pool(self, split: Split) -> list[int]:
        """Every seed of a split, taking the tasks in turn (a task with fewer variations drops out)."""
        lists = [[i * SEED_STRIDE + v for v in self._variations[t][split]] for i, t in enumerate(self.tasks)]
        longest = max(len(seeds) for seeds in lists)
        return [seeds[k] for k in range(longest) for seeds in lists if k < len(seeds)]


def _twins(world: dict[str, dict[str, Any]]) -> set[int]:
    """The objects with an identical twin somewhere (a blue paint on the table, another in the
    cupboard): the engine names those differently each time a task loads ("paint", "blue paint"),
    so listed, they would make a seed read differently."""
    kinds = Counter(_kind(entry) for entry in world.values())
    return {int(key) for key, entry in world.items() if kinds[_kind(entry)] > 1}


def _twin_names(valid: Sequence[dict[str, Any]], twins: set[int]) -> set[str]:
    """The names the engine gave twins this time (see :func:`_twins`)."""
    return {
        entry["action"][len("focus on ") :]
        for entry in valid
        if entry["action"].startswith("focus on ") and twins & set(entry["obj_ids"])
    }


def _aliases(valid: Sequence[dict[str, Any]], referents: dict[int, list[str]]) -> dict[str, list[str]]:
    """Every name the engine knows each object in view by, as the task began, by the name it lists."""
    return {
        entry["action"][len("focus on ") :]: sorted(referents.get(entry["obj_ids"][0], []))
        for entry in valid
        if entry["action"].startswith("focus on ") and entry["obj_ids"]
    }


def _kind(entry: dict[str, Any]) -> tuple[object, ...]:
    """What tells an object from another: its type and every name it answers to."""
    return (entry.get("type_id"), *sorted(entry.get("referents", [])))


def relevant_actions(
    valid: Sequence[str],
    look: str,
    inventory: str,
    task: str,
    limit: int,
    leave_out: Collection[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """A short list of the valid actions worth showing, sorted: looking, waiting, going to each room
    in reach (opening its door if closed), then for each object shown (those the task names first,
    then those carried, then the room's in the order it shows them) focusing on it, picking it up,
    opening it and moving it to something the task names, while the list has room. ScienceWorld
    lists every verb on every pair of objects (hundreds); the agent may still reply with any of
    them. ``leave_out``: object names not to list; ``aliases``: the other names of a listed object
    (the room shows "a frog egg" where the actions say "common toad")."""
    allowed = set(valid)
    doors = _doors(allowed)
    rooms = sorted({a[len("go to ") :] for a in allowed if a.startswith("go to ")} - doors)
    chosen = [a for a in _ALWAYS if a in allowed] + [f"go to {room}" for room in rooms]
    chosen += sorted(f"open {door}" for door in doors if f"open {door}" in allowed)  # a closed door
    places = _SELF | set(rooms) | doors | {_room(look)}
    objects = [a[len("focus on ") :] for a in allowed if a.startswith("focus on ")]
    objects = [name for name in objects if name not in places and name not in leave_out]
    ranks = {name: _rank([name, *(aliases or {}).get(name, ())], look, inventory, task) for name in objects}
    objects = [name for name in objects if ranks[name][0] < 3]  # not shown: left out
    targets = [name for name in objects if _mentions(task, name)]
    for name in sorted(objects, key=ranks.__getitem__):
        group = [f"focus on {name}", f"pick up {name}", f"open {name}"]
        group += [f"move {name} to {target}" for target in targets if target != name]
        group = [a for a in group if a in allowed and a not in chosen]
        if len(chosen) + len(group) > limit:
            break
        chosen += group
    return sorted(chosen)


def _doors(valid: set[str]) -> set[str]:
    """The doors among the places one can go to (both "door to kitchen" and "bathroom door")."""
    return {a[len("go to ") :] for a in valid if a.startswith("go to ") and "door" in a.split()}


def _rank(names: Sequence[str], look: str, inventory: str, task: str) -> tuple[int, tuple[int, ...], str]:
    """Objects the task names (by any of their ``names``) come first, then carried ones, then the
    room's in the order it shows them: by the name listed, then by another name."""
    if any(_mentions(task, name) for name in names):
        return (0, (), names[0])
    if names[0].endswith(" in inventory") or any(_shown_at(name, inventory) for name in names):
        return (1, (), names[0])
    own = _shown_at(names[0], look)
    if own is not None:
        return (2, (0, *own), names[0])
    spots = [at for name in names[1:] if (at := _shown_at(name, look)) is not None]
    return (2, (1, *min(spots)), names[0]) if spots else (3, (), names[0])


def _shown_at(name: str, text: str) -> tuple[int, int] | None:
    """The first line of ``text`` that shows ``name`` ("adult apple tree" is shown by "an apple tree in
    the adult stage": all its words), and 0 when it shows the whole name, 1 when only its words."""
    words = set(name.lower().split())
    for i, line in enumerate(text.lower().splitlines()):
        if _mentions(line, name):
            return (i, 0)
        if words <= set(re.findall(r"[\w-]+", line)):
            return (i, 1)
    return None


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", text.lower()) is not None


def _names_same_objects(
    action: str, template: str, obj_ids: Sequence[int], referents: dict[str, set[int]]
) -> bool:
    """Whether ``action`` reads as ``template`` ("move OBJ to OBJ") with names of the objects ``obj_ids``."""
    if "OBJ" not in template:
        return False
    pattern = "^" + re.escape(template).replace("OBJ", "(.+)") + "$"
    for split in _matches(pattern, action):
        if len(split) == len(obj_ids) and all(
            oid in _referred(name, referents) for name, oid in zip(split, obj_ids, strict=True)
        ):
            return True
    return False


def _matches(pattern: str, text: str) -> list[tuple[str, ...]]:
    """Every way ``text`` fills the pattern's slots (names may hold the template's own words: "door to
    kitchen")."""
    found = re.match(pattern, text)
    if found is None:
        return []
    splits = [found.groups()]
    lazy = re.match(pattern.replace("(.+)", "(.+?)"), text)
    if lazy is not None and lazy.groups() != found.groups():
        splits.append(lazy.groups())
    return splits


def _referred(name: str, referents: dict[str, set[int]]) -> set[int]:
    """The objects a name can mean; "X in Y" also means what X means (the gold path adds where it is)."""
    while True:
        if name in referents:
            return referents[name]
        if " in " not in name:
            return set()
        name = name.rsplit(" in ", 1)[0]


def _first_reading(question: str) -> str:
    """The number of the reading that sorts first ("0:\tfocus on flower pot 6 (in greenhouse)"): the
    engine numbers the readings in a different order each time a task loads."""
    readings = re.findall(r"^(\d+):\s*(.*)$", question, flags=re.MULTILINE)
    return min(readings, key=lambda r: (r[1], int(r[0])))[0] if readings else "0"


def _in_order(text: str) -> str:
    """The text with every list of a container's contents sorted ("containing a, b", "On the table
    is: a, b."): the engine lists them in a different order each time a task loads."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            if depth == 0:
                out.append(text[start:i])
                start = i + 1
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(f"({_sorted_contents(_in_order(text[start:i]))})")
                start = i + 1
    out.append(text[start:])
    return _sorted_lines(_sorted_listings("".join(out)))


def _sorted_lines(text: str) -> str:
    """Each run of listed lines (the room's objects, one a line after a tab) sorted."""
    out: list[str] = []
    for is_item, lines in groupby(text.split("\n"), key=lambda line: line.startswith("\t")):
        run = list(lines)
        out += sorted(run) if is_item else run
    return "\n".join(out)


def _sorted_contents(text: str) -> str:
    """Sorts the items of "containing a, b"; leaves other parentheses ("that is open") as they are."""
    if not text.startswith("containing "):
        return text
    return "containing " + ", ".join(sorted(_split_top(text[len("containing ") :])))


def _sorted_listings(text: str) -> str:
    """Each "X is: a, b, c." listing sorted, its items split where no parenthesis is open."""
    out, at = [], 0
    for found in re.finditer(r"\bis: ", text):
        if found.start() < at or _depth(text, found.start()) != 0:
            continue
        end = _listing_end(text, found.end())
        out += [text[at : found.end()], ", ".join(sorted(_split_top(text[found.end() : end])))]
        at = end
    return "".join(out) + text[at:]


def _listing_end(text: str, start: int) -> int:
    """Where a listing ends: the first full stop or line break with no parenthesis open."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        depth += (char == "(") - (char == ")")
        if depth == 0 and (char == "\n" or (char == "." and text[i + 1 : i + 2] in ("", " ", "\n"))):
            return i
    return len(text)


def _depth(text: str, at: int) -> int:
    return text[:at].count("(") - text[:at].count(")")


def _split_top(items: str) -> list[str]:
    """``items`` split at each ", " where no parenthesis is open."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(items):
        depth += (char == "(") - (char == ")")
        if depth == 0 and items.startswith(", ", i):
            parts.append(items[start:i])
            start = i + 2
    return [*parts, items[start:]]


def _room(look: str) -> str:
    found = re.search(r"called the ([^.]+)\.", look)
    return found.group(1) if found else ""


def _compact(text: str) -> str:
    """One line per paragraph: listed items joined by commas, runs of whitespace cut to one space."""
    text = re.sub(r":\s*\n\t", ": ", text.strip())
    text = re.sub(r"\s*\n\t\s*", ", ", text)
    return "\n".join(re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip())


def _simplification(task: str, simplification: str) -> str:
    """The wiring tasks keep their wiring actions (the engine refuses them without)."""
    if any(word in task for word in _ELECTRICAL):
        return ",".join(s for s in simplification.split(",") if s != "noElectricalAction")
    return simplification


def _start_engine(java_options: str) -> Any:
    try:
        from scienceworld import ScienceWorldEnv
    except ImportError as e:
        raise EnvironmentUnavailableError(
            "the ScienceWorld tasks need the scienceworld package: pip install 'sleep-agent[scienceworld]'"
        ) from e
    if shutil.which("java") is None:
        raise EnvironmentUnavailableError(
            "ScienceWorld runs on Java 17 or newer and no `java` is on PATH: install a JRE "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    try:
        with _java_options(java_options):
            return ScienceWorldEnv("")
    except Exception as e:  # the JVM did not start (too old a Java, no memory)
        raise EnvironmentUnavailableError(
            f"ScienceWorld's Java engine did not start ({e}): it needs a JRE 17 or newer on PATH"
        ) from e


_LAUNCH = threading.Lock()


@contextmanager
def _java_options(options: str) -> Iterator[None]:
    """``JAVA_TOOL_OPTIONS`` for the JVM started inside: the package launches it with no way to pass
    options, and the variable is read once, at the JVM's start. Set only while one launches."""
    with _LAUNCH:
        before = os.environ.get("JAVA_TOOL_OPTIONS")
        os.environ["JAVA_TOOL_OPTIONS"] = " ".join(filter(None, [before, options]))
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("JAVA_TOOL_OPTIONS", None)
            else:
                os.environ["JAVA_TOOL_OPTIONS"] = before
