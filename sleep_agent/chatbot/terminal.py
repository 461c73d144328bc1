"""``sleep-agent chat --user NAME``: a terminal chat whose memory sleeps.

Commands: /sleep (consolidate now), /forget TEXT (erase memories mentioning TEXT and rebuild),
/status (buffer, adapter version, last sleep), /new (a new session: empty context, same memory),
/help, /quit. Ctrl-D quits too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from sleep_agent.chatbot.session import ChatSession, describe_sleep
from sleep_agent.errors import SleepAgentError
from sleep_agent.progress import shown_on

HELP = "/sleep  /forget TEXT  /status  /new  /help  /quit"


def run_terminal(
    session: ChatSession, console: Console | None = None, read: Callable[[], str] = input
) -> None:
    """The read-answer loop until /quit or end of input."""
    console = console or Console()
    console.print(f"[bold]{session.user}[/bold]: chat with sleepable memory ({HELP})")
    while True:
        try:
            line = read().strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not _command(session, line, console):
                    break
                continue
            with console.status("thinking...") as status, shown_on(status):
                reply = session.send(line, on_sleep=lambda d: _falling_asleep(console, d))
            console.print(f"[cyan]bot[/cyan] ({reply.adapter or 'base'}): {reply.text}")
            if reply.slept is not None:
                _print_sleep(console, session, reply.slept)
        except (SleepAgentError, ValueError) as e:
            console.print(f"[red]{e}[/red]")
    console.print("bye")


def _command(session: ChatSession, line: str, console: Console) -> bool:
    name, _, arg = line.partition(" ")
    if name in ("/quit", "/exit"):
        return False
    if name == "/sleep":
        with console.status("sleeping...") as status, shown_on(status):
            report = session.sleep()
        _print_sleep(console, session, report)
    elif name == "/forget":
        if not arg.strip():
            console.print("[red]/forget needs the text to forget, e.g. /forget my old address[/red]")
            return True
        with console.status("forgetting and rebuilding...") as status, shown_on(status):
            result = session.forget(arg.strip())
        console.print(_forgot(result))
    elif name == "/status":
        for key, value in _status_lines(session.status()):
            console.print(f"  {key}: {value}")
    elif name == "/new":
        console.print(f"new session {session.new_session()}: empty context, same memory")
    else:
        console.print(HELP)
    return True


def _falling_asleep(console: Console, decision: dict[str, Any]) -> None:
    console.print(f"[magenta]falling asleep ({decision.get('reason', 'threshold')})...[/magenta]")


def _print_sleep(console: Console, session: ChatSession, report: Any) -> None:
    for line in describe_sleep(report, session.memory):
        console.print(f"[magenta]{line}[/magenta]")


def _forgot(result: dict[str, Any]) -> str:
    text = f"forgot {result['deleted']} memories"
    if result.get("rebuilt_version") is not None:
        text += f"; the adapter was rebuilt without them (v{result['rebuilt_version']})"
    if result.get("rebuild_error"):
        text += f"; the rebuild failed ({result['rebuild_error']}), /forget again or /sleep to retry"
    return text


def _status_lines(status: dict[str, Any]) -> list[tuple[str, Any]]:
    report = status.get("last_report") or {}
    last = (
        f"v{report['adapter_version']}, {len(report.get('consolidated', []))} learned"
        if report.get("adapter_version") is not None
        else (report.get("error") or "nothing published" if report else "none yet")
    )
    return [
        ("user", status["namespace"]),
        ("session", status["thread_id"]),
        ("memories", ", ".join(f"{k} {v}" for k, v in status["episodes"].items() if v) or "none"),
        ("adapter", status["active_adapter"] or "base model"),
        ("sleeping", status["sleeping"]),
        ("last sleep", last),
    ]
