"""MiniWoB++ web tasks in a real browser, one at a time, as an :class:`~sleep_agent.envs.Environment`.

MiniWoB++ is a benchmark of small web pages, each with a one-line instruction ("Enter the username
"vina" and the password "US" into the text fields and press login."): the page judges what the
agent did and ends the episode with a reward. The ``miniwob`` package ships the pages; they run in
headless Chromium driven by Selenium, one browser for the whole family.

The agent reads a text view of the page (the instruction, then one line per visible element that can
be clicked or typed into, or that shows text) and replies with one action of a small grammar,
``click [ref]`` or ``type [ref] text``. The listed actions pair every clickable element with a click
and every text box with each value quoted in the instruction (MiniWoB's "fields"), so the list names
nothing the agent cannot read. Typing replaces what a box holds.

A seed names an episode: the task (``seed % len(tasks)``) and the page's random seed (the rest).
Train, dev and test are disjoint seed ranges of the same tasks. The score is MiniWoB's success: the
page's own reward, without its time discount, above zero. MiniWoB ends an episode as lost after 10 to
30 seconds; a model on a CPU thinks about a second a step, so the page's clock is set to a day and
only ``step_limit`` ends a slow episode.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sleep_agent.envs.base import EnvironmentUnavailableError, Observation, Split, check_seed, seeds_in

# Tasks a small model can act in through the text view; every one has a walkthrough below.
DEFAULT_TASKS: tuple[str, ...] = (
    "click-button",
    "click-link",
    "click-tab",
    "click-widget",
    "click-dialog-2",
    "focus-text-2",
    "click-button-sequence",
    "click-option",
    "click-checkboxes",
    "enter-text",
    "enter-password",
    "login-user",
    "click-tab-2",
    "click-collapsible-2-nodelay",
    "navigate-tree",
    "use-autocomplete-nodelay",
    "search-engine",
    "multi-layouts",
)

# Disjoint seed ranges: a seed names one episode of one split.
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "dev": range(100_000, 110_000),
    "test": range(200_000, 210_000),
}

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
)
EPISODE_MS = 24 * 3600 * 1000  # the page's own time limit: a day, so slow thinking never times out
SETTLE_S = 0.02  # lets a page's zero-delay timers (an autocomplete menu) run before it is read
MAX_TEXT = 60  # characters of an element's text shown in the view
MAX_TYPED = 100

CLICK_TAGS = frozenset({"button", "a", "textarea", "select"})
# elements that pages make clickable by their class: links in text, accordion headers, tree
# entries, autocomplete entries, submit buttons drawn as divs
CLICK_CLASSES = frozenset(
    {"alink", "ui-accordion-header", "folder", "file", "ui-menu-item-wrapper", "final", "ui-submit"}
)
TYPE_TAGS = frozenset(
    {"input_text", "input_password", "input_email", "input_search", "input_number", "input_tel", "textarea"}
)
HIDDEN_CLASSES = frozenset({"ui-helper-hidden-accessible"})  # screen-reader notes, not shown

CLICK = re.compile(r"^\s*click\s*\[?\s*(-?\d+)\s*\]?\s*\.?\s*$", re.IGNORECASE)
TYPE = re.compile(r"^\s*type\s*\[?\s*(-?\d+)\s*\]?\s*:?\s?(.*)$", re.IGNORECASE | re.DOTALL)

READ_PAGE = "return [core.getUtterance(), core.getDOMInfo(), WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL];"
START_EPISODE = """
core.EPISODE_MAX_TIME = arguments[1];
Math.seedrandom(arguments[0]);
core.startEpisodeReal();
return WOB_TASK_READY;
"""
SELECT_TEXT = "var el = core.previousDOMInfo[arguments[0]]; if (el && el.select) { el.select(); }"


@dataclass(frozen=True)
class Element:
    """One element of the text view. ``ref`` is MiniWoB's id for it within the episode (text pieces
    between elements have negative refs that change every step, and are never acted on)."""

    ref: int
    tag: str
    text: str
    value: str | bool | None = None
    classes: str = ""
    clickable: bool = False
    typable: bool = False
    tampered: bool = False  # clicked in this episode
    group: int = 0  # the parent's ref for a text piece: pieces of one paragraph join into one line

    def line(self) -> str:
        """The view's line: ``[12] button "Submit"``; text has no ref, as nothing acts on it."""
        if not (self.clickable or self.typable):
            return f'{"text" if self.tag == "t" else self.tag} "{_short(self.text)}"'
        shown = self.value if self.typable and isinstance(self.value, str) else self.text
        checked = " checked" if self.value is True else ""
        return f'[{self.ref}] {self.tag} "{_short(shown)}"{checked}'


class MiniWoB:
    """``env.reset(seed, split)``, then ``env.step("click [4]")`` until ``done``."""

    name = "miniwob"
    instruction = "Reply with one action from the list, as written (click [ref] or type [ref] text)."

    def __init__(self, tasks: Sequence[str] | None = None, step_limit: int = 10) -> None:
        self.tasks = tuple(tasks) if tasks is not None else DEFAULT_TASKS
        if not self.tasks:
            raise ValueError("no MiniWoB tasks: name at least one")
        if step_limit < 1:
            raise ValueError("step_limit must be positive")
        self.step_limit = step_limit
        html = _html_dir()
        missing = [task for task in self.tasks if not os.path.isfile(os.path.join(html, f"{task}.html"))]
        if missing:
            raise ValueError(f"unknown MiniWoB tasks {missing}: see the pages in {html}")
        self._html = html
        self._driver: Any = _start_browser()
        self._episode: tuple[int, Split] | None = None
        self._task = ""
        self._utterance = ""
        self._values: list[str] = []
        self._fields: dict[str, str] = {}
        self._elements: list[Element] = []
        self._steps = 0
        self._last: Observation | None = None

    # -- the protocol --------------------------------------------------------------------------

    def seeds(self, split: Split, n: int, offset: int = 0) -> list[int]:
        """The first ``n`` seeds of a split after ``offset``; consecutive seeds cycle through the tasks."""
        return seeds_in(SPLITS, split, n, offset)

    def task_of(self, seed: int) -> tuple[str, int]:
        """A seed's task and the page's random seed for it."""
        return self.tasks[seed % len(self.tasks)], seed // len(self.tasks)

    def reset(self, seed: int, split: Split = "train") -> Observation:
        check_seed(SPLITS, split, seed)
        task, variant = self.task_of(seed)
        self._open(task)  # a fresh page every episode: nothing carries over from the last one
        if not self._driver.execute_script(START_EPISODE, f"{task}:{variant}", EPISODE_MS):
            raise RuntimeError(f"the MiniWoB page {task} did not start its episode")
        self._episode, self._task, self._steps, self._last = (seed, split), task, 0, None
        utterance, fields = self._driver.execute_script("return core.getUtterance();"), None
        if isinstance(utterance, dict):  # a page may name its fields itself
            utterance, fields = utterance["utterance"], list(utterance["fields"].items())
        self._utterance = str(utterance)
        self._fields = dict(fields if fields is not None else _fields(task, self._utterance))
        self._values = list(dict.fromkeys(v for v in map(str, self._fields.values()) if v))
        return self._observe()

    def step(self, action: str) -> Observation:
        if self._episode is None:
            raise RuntimeError("no task: call reset(seed, split) first")
        if self._last is not None and self._last.done:
            return self._last
        self._steps += 1
        self._act(action)
        return self._observe()

    def walkthrough(self) -> list[str] | None:
        """A gold action sequence for the current episode, found by playing it with the task's
        scripted policy (which may read hidden parts of the page, e.g. the tab that holds a link);
        the episode is reset to its start. None for a task without a policy or when it loses."""
        if self._episode is None:
            raise RuntimeError("no task: call reset(seed, split) first")
        policy = POLICIES.get(self._task)
        if policy is None:
            return None
        seed, split = self._episode
        fresh = self._steps == 0 and self._last is not None and not self._last.done
        obs, actions = (self._last if fresh else self.reset(seed, split)), []
        assert obs is not None
        while not obs.done:
            action = policy(self)
            if action is None:
                break
            actions.append(action)
            obs = self.step(action)
        won = obs.won
        self.reset(seed, split)
        return actions if won else None

    def close(self) -> None:
        """Quit the browser (and its driver process)."""
        if self._driver is not None:
            try:
                self._driver.quit()
            finally:
                self._driver = None
                self._episode = None

    # -- what the agent sees ----------------------------------------------------------------------

    @property
    def elements(self) -> list[Element]:
        """The current view's elements (what the last observation listed)."""
        return list(self._elements)

    @property
    def fields(self) -> dict[str, str]:
        """The episode's fields: the values its instruction quotes, by MiniWoB's names."""
        return dict(self._fields)

    def actions(self) -> list[str]:
        """A click for every clickable element, then a type for every text box and quoted value,
        in the page's order."""
        actions: list[str] = []
        for element in self._elements:
            if element.clickable:
                actions.append(f"click [{element.ref}]")
            if element.typable:
                actions.extend(f"type [{element.ref}] {value}" for value in self._values)
        return actions

    def _observe(self) -> Observation:
        assert self._driver is not None
        _, dom, done, reward = self._driver.execute_script(READ_PAGE)
        won = bool(done) and float(reward) > 0
        over = bool(done) or self._steps >= self.step_limit
        if over:
            self._elements = []
            outcome = "Success: the page accepted it." if won else "Failure: the page did not accept it."
            text = f"{self._utterance}\n{outcome if done else 'Step limit reached. ' + outcome}"
            actions: list[str] = []
        else:
            self._elements = _view(dom)
            text = "\n".join([self._utterance, *(element.line() for element in self._elements)])
            actions = self.actions()
        self._last = Observation(
            text=text,
            actions=actions,
            score=1.0 if won else 0.0,
            won=won,
            done=over,
            steps=self._steps,
            task=self._utterance,
        )
        return self._last

    # -- acting --------------------------------------------------------------------------------------

    def _act(self, action: str) -> None:
        """Perform a ``click`` or ``type`` on an element the last view listed with its ref; anything
        else (unparseable, an unknown ref, typing into a button) does nothing."""
        clickable = {e.ref for e in self._elements if e.clickable}
        typable = {e.ref for e in self._elements if e.typable}
        click, typed = CLICK.match(action), TYPE.match(action)
        if click and int(click.group(1)) in clickable:
            self._driver.execute_script("return core.elementClick(arguments[0]);", int(click.group(1)))
        elif typed and int(typed.group(1)) in typable:
            self._type(int(typed.group(1)), _unquoted(typed.group(2).strip())[:MAX_TYPED])
        else:
            return
        time.sleep(SETTLE_S)

    def _type(self, ref: int, text: str) -> None:
        """Click the box, select what it holds and type over it, key by key (as a person would, so
        the page's key handlers run)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self._driver.execute_script("return core.elementClick(arguments[0]);", ref)
        self._driver.execute_script(SELECT_TEXT, ref)
        chain = ActionChains(self._driver, duration=0)
        if not text:
            chain.send_keys(Keys.DELETE)
        for key in text:
            chain.key_down(key).key_up(key)
        chain.perform()

    def _open(self, task: str) -> None:
        if self._driver is None:
            raise RuntimeError("the environment is closed")
        self._driver.get(f"file://{self._html}/{task}.html")
        for _ in range(100):
            if self._driver.execute_script("return typeof core !== 'undefined' && core.cover_div !== null;"):
                return
            time.sleep(0.02)
        raise RuntimeError(f"the MiniWoB page {task} did not load")

    def script(self, script: str, *args: Any) -> Any:
        """Run JavaScript on the current page: the walkthrough's policies read hidden parts with it
        (the agent never does)."""
        if self._driver is None:
            raise RuntimeError("the environment is closed")
        return self._driver.execute_script(script, *args)


# -- the text view ---------------------------------------------------------------------------------


def _view(dom: dict[str, Any]) -> list[Element]:
    """The page's visible elements worth a line: the clickable, the typable and the text-bearing,
    in page order; runs of text pieces inside one element are joined."""
    from miniwob.dom import DOMElement

    elements: list[Element] = []
    _collect(DOMElement(dom), elements)
    return _join_text(elements)


def _collect(node: Any, out: list[Element]) -> None:
    if any(name in HIDDEN_CLASSES for name in str(node.classes).split()):
        return
    if _clickable(node) or node.tag in TYPE_TAGS:
        out.append(_element(node, _text_of(node)))
        return
    boxes = [n for n in node.subtree_elements if n.tag in ("input_checkbox", "input_radio")]
    if node.tag == "label" and len(boxes) == 1:  # a checkbox reads as its label's text
        label = " ".join(n.text.strip() for n in node.subtree_elements if n.is_leaf and n is not boxes[0])
        out.append(_element(boxes[0], label.strip()))
        return
    if node.is_leaf:
        if node.text.strip():
            out.append(_element(node, node.text.strip(), group=node.parent.ref if node.parent else 0))
        return
    for child in node.children:
        _collect(child, out)


def _element(node: Any, text: str, group: int = 0) -> Element:
    classes = node.classes if isinstance(node.classes, str) else ""
    value = node.value if isinstance(node.value, str | bool) else None
    return Element(
        ref=node.ref,
        tag=node.tag,
        text=" ".join(text.split()),
        value=value,
        classes=classes,
        clickable=_clickable(node),
        typable=node.tag in TYPE_TAGS,
        tampered=bool(node.tampered),
        group=group,
    )


def _clickable(node: Any) -> bool:
    classes = node.classes if isinstance(node.classes, str) else ""
    return (
        node.tag in CLICK_TAGS or node.tag.startswith("input_") or bool(CLICK_CLASSES & set(classes.split()))
    )


def _text_of(node: Any) -> str:
    """An element's own text, or its descendants' (a button holding an icon and a word)."""
    if node.is_leaf:
        return node.text or ""
    return " ".join((n.text or "").strip() for n in node.subtree_elements if n.is_leaf and n is not node)


def _join_text(elements: list[Element]) -> list[Element]:
    """One line for a run of text pieces of one paragraph (MiniWoB cuts text at every line break)."""
    joined: list[Element] = []
    for element in elements:
        last = joined[-1] if joined else None
        if last is not None and element.tag == last.tag == "t" and element.group == last.group:
            joined[-1] = Element(ref=last.ref, tag="t", text=f"{last.text} {element.text}", group=last.group)
        else:
            joined.append(element)
    return joined


def _unquoted(text: str) -> str:
    """``"vina"`` types vina: a model may quote what it types."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _short(text: str) -> str:
    text = text.replace('"', "'")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3].rstrip() + "..."


def _fields(task: str, utterance: str) -> list[tuple[str, str]]:
    """MiniWoB's field extractor for the task (none for a task without one)."""
    from miniwob.fields import get_field_extractor

    try:
        return list(get_field_extractor(task)(utterance))
    except (KeyError, ValueError):
        return []


# -- the browser ---------------------------------------------------------------------------------------


def _html_dir() -> str:
    try:
        import miniwob
    except ImportError as e:
        raise EnvironmentUnavailableError(
            "the web tasks need MiniWoB++: pip install 'sleep-agent[web]' (or miniwob selenium)"
        ) from e
    return os.path.join(os.path.dirname(miniwob.__file__), "html", "miniwob")


def _start_browser() -> Any:
    """Headless Chromium with flags for a machine without a display or network."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise EnvironmentUnavailableError(
            "the web tasks need Selenium: pip install 'sleep-agent[web]' (or miniwob selenium)"
        ) from e
    binary = os.environ.get("MINIWOB_CHROME_BINARY") or _which(
        "chromium", "chromium-browser", "google-chrome"
    )
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or _which("chromedriver")
    if binary is None or driver is None:
        raise EnvironmentUnavailableError(
            "the web tasks run in Chromium driven by chromedriver and "
            f"{'no chromium' if binary is None else 'no chromedriver'} is on PATH: install both "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    try:
        service = Service(executable_path=driver, log_output=subprocess.DEVNULL)
        browser = webdriver.Chrome(service=service, options=options)
    except WebDriverException as e:
        raise EnvironmentUnavailableError(
            f"Chromium did not start ({e.msg}): chromium and chromium-driver must be the same version"
        ) from e
    browser.implicitly_wait(0)
    return browser


def _which(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


# -- the walkthroughs: one scripted policy per task ------------------------------------------------------------

Policy = Callable[[MiniWoB], "str | None"]


def _first(env: MiniWoB, test: Callable[[Element], bool]) -> Element | None:
    return next((element for element in env.elements if test(element)), None)


def _click(element: Element | None) -> str | None:
    return f"click [{element.ref}]" if element is not None else None


def _click_text(env: MiniWoB, text: str, tag: str | None = None) -> str | None:
    return _click(_first(env, lambda e: e.clickable and e.text == text and (tag is None or e.tag == tag)))


def _has_class(element: Element, name: str) -> bool:
    return name in element.classes.split()


def _fill(wanted: list[tuple[Element, str]], submit: Element | None) -> str | None:
    """Type each value into its box unless it holds it already, then submit."""
    for box, value in wanted:
        if box.value != value:
            return f"type [{box.ref}] {value}"
    return _click(submit)


def _submit(env: MiniWoB) -> Element | None:
    return _first(env, lambda e: e.clickable and e.text.lower() in ("submit", "search", "go!", "login", "ok"))


def _hidden_target(env: MiniWoB, script: str, target: str) -> str | None:
    """Click the text if it is shown, else the element the script names (the tab, section or folder
    that holds it)."""
    shown = _first(env, lambda e: e.clickable and e.text == target)
    if shown is not None:
        return _click(shown)
    ref = env.script(script, target)
    return f"click [{ref}]" if ref is not None else None


def _click_button(env: MiniWoB) -> str | None:
    return _click_text(env, env.fields["target"], "button")


def _click_link(env: MiniWoB) -> str | None:
    return _click(_first(env, lambda e: _has_class(e, "alink") and e.text == env.fields["target"]))


def _click_tab(env: MiniWoB) -> str | None:
    return _click_text(env, f"Tab #{env.fields['target']}")


def _click_widget(env: MiniWoB) -> str | None:
    tag = {"text": "input_text", "textarea": "textarea", "button": "button"}.get(env.fields["target"])
    return _click(_first(env, lambda e: e.tag == (tag or f"input_{env.fields['target']}")))


def _click_dialog_2(env: MiniWoB) -> str | None:
    target = env.fields["target"]
    if target == "x":
        return _click(_first(env, lambda e: _has_class(e, "ui-dialog-titlebar-close")))
    return _click_text(env, target, "button")


def _focus_text_2(env: MiniWoB) -> str | None:
    boxes = [e for e in env.elements if e.typable]
    return _click(boxes[int(env.fields["target"]) - 1])


def _click_button_sequence(env: MiniWoB) -> str | None:
    one = _first(env, lambda e: e.text == "ONE")
    return _click(one) if one is not None and not one.tampered else _click_text(env, "TWO")


def _click_option(env: MiniWoB) -> str | None:
    radio = _first(env, lambda e: e.tag == "input_radio" and e.text == env.fields["target"])
    return _click(radio) if radio is not None and radio.value is not True else _click(_submit(env))


def _click_checkboxes(env: MiniWoB) -> str | None:
    targets = {value for key, value in env.fields.items() if key.startswith("target")}
    for box in env.elements:
        if box.tag == "input_checkbox" and (box.value is True) != (box.text in targets):
            return _click(box)
    return _click(_submit(env))


def _enter_text(env: MiniWoB) -> str | None:
    boxes = [e for e in env.elements if e.typable]
    return _fill([(boxes[0], env.fields["target"])], _submit(env))


def _enter_password(env: MiniWoB) -> str | None:
    boxes = [e for e in env.elements if e.tag == "input_password"]
    return _fill([(box, env.fields["target"]) for box in boxes], _submit(env))


def _login_user(env: MiniWoB) -> str | None:
    user = _first(env, lambda e: e.tag == "input_text")
    password = _first(env, lambda e: e.tag == "input_password")
    assert user is not None and password is not None
    return _fill([(user, env.fields["username"]), (password, env.fields["password"])], _submit(env))


TAB_OF_LINK = """
var link = Array.from(document.querySelectorAll('#area .alink')).find(s => s.textContent === arguments[0]);
if (!link) return null;
var tab = document.querySelector('a[href="#' + link.closest('.ui-tabs-panel').id + '"]');
return (tab && tab.dataset.wob_ref) ? +tab.dataset.wob_ref : null;
"""
SECTION_OF_LINK = """
var link = Array.from(document.querySelectorAll('#area .alink')).find(s => s.textContent === arguments[0]);
if (!link) return null;
var header = link.closest('.ui-accordion-content').previousElementSibling;
return (header && header.dataset.wob_ref) ? +header.dataset.wob_ref : null;
"""
FOLDER_OF_ENTRY = """
var spans = Array.from(document.querySelectorAll('#tree span.file, #tree span.folder'));
var entry = spans.find(s => s.textContent === arguments[0]);
var folder = null;
for (var li = entry && entry.parentElement.parentElement.closest('li'); li; li = li.parentElement.closest('li')) {
  if (li.classList.contains('expandable')) folder = li.querySelector(':scope > span');
}
return (folder && folder.dataset.wob_ref) ? +folder.dataset.wob_ref : null;
"""


def _click_tab_2(env: MiniWoB) -> str | None:
    return _hidden_target(env, TAB_OF_LINK, env.fields["target"])


def _click_collapsible_2(env: MiniWoB) -> str | None:
    return _hidden_target(env, SECTION_OF_LINK, env.fields["target"])


def _navigate_tree(env: MiniWoB) -> str | None:
    return _hidden_target(env, FOLDER_OF_ENTRY, env.fields["target"])


def _use_autocomplete(env: MiniWoB) -> str | None:
    start, end = env.fields["start"], env.fields.get("end", "")
    box = _first(env, lambda e: e.typable)
    assert box is not None
    if isinstance(box.value, str) and box.value.startswith(start) and box.value.endswith(end):
        return _click(_submit(env))
    item = _first(
        env,
        lambda e: _has_class(e, "ui-menu-item-wrapper") and e.text.startswith(start) and e.text.endswith(end),
    )
    return _click(item) if item is not None and box.value == start else f"type [{box.ref}] {start}"


FIRST_RESULT = (
    "var a = document.querySelector('#page-content a.search-title'); return a ? +a.dataset.result : null;"
)


def _search_engine(env: MiniWoB) -> str | None:
    query, rank = env.fields["query"], int(env.fields["rank"]) - 1
    box = _first(env, lambda e: e.typable)
    assert box is not None
    first = env.script(FIRST_RESULT)
    if box.value != query or first is None or first < 0:
        return _fill([(box, query)], _first(env, lambda e: e.tag == "button" and e.text == "Search"))
    results = [e for e in env.elements if _has_class(e, "search-title")]
    if first <= rank < first + len(results):
        return _click(results[rank - first])
    return _click_text(env, str(rank // 3 + 1), "a")


ROLE_OF_BOXES = """
return Array.from(document.querySelectorAll('#area input')).map(function (box) {
  var row = box.parentElement.closest('p, div.row, tr, div.field, div.ui-entry');
  return [box.dataset.wob_ref ? +box.dataset.wob_ref : null, row ? row.textContent : ''];
});
"""


def _multi_layouts(env: MiniWoB) -> str | None:
    refs = {element.ref: element for element in env.elements}
    wanted: list[tuple[Element, str]] = []
    for ref, label in env.script(ROLE_OF_BOXES):
        key = "genre" if "Genre" in label else "director" if "Director" in label else "year"
        if ref in refs:
            wanted.append((refs[ref], env.fields[key]))
    return _fill(wanted, _submit(env))


POLICIES: dict[str, Policy] = {
    "click-button": _click_button,
    "click-link": _click_link,
    "click-tab": _click_tab,
    "click-widget": _click_widget,
    "click-dialog-2": _click_dialog_2,
    "focus-text-2": _focus_text_2,
    "click-button-sequence": _click_button_sequence,
    "click-option": _click_option,
    "click-checkboxes": _click_checkboxes,
    "enter-text": _enter_text,
    "enter-password": _enter_password,
    "login-user": _login_user,
    "click-tab-2": _click_tab_2,
    "click-collapsible-2-nodelay": _click_collapsible_2,
    "click-collapsible-2": _click_collapsible_2,
    "navigate-tree": _navigate_tree,
    "use-autocomplete-nodelay": _use_autocomplete,
    "search-engine": _search_engine,
    "multi-layouts": _multi_layouts,
}
