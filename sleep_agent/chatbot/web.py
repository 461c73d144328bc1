"""``sleep-agent web``: a local chat page with a user picker and a memory panel.

One serving backend is shared by every user (each is served only their own adapter); each user
has one chat session here, and "new session" starts an empty context on the same memory. Meant
for one person on localhost: there is no login yet, so anyone who can reach the page can act for
any user. What a web page elsewhere could do through the visitor's browser is refused: requests
must name this host (DNS rebinding), state changes come only as JSON POSTs from this page's own
origin, and bodies and messages are bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from sleep_agent.chatbot.session import ChatBot, ChatSession, describe_sleep
from sleep_agent.config import NAMESPACE_PATTERN, SleepConfig
from sleep_agent.errors import SleepAgentError
from sleep_agent.serving.base import ServingBackend
from sleep_agent.sleep.cycle import SleepCycle

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_BODY_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 4000  # about 1,000 tokens: a turn must leave the context room to answer


class ChatIn(BaseModel):
    user: str = Field(min_length=1)
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class UserIn(BaseModel):
    user: str = Field(min_length=1)


class ForgetIn(UserIn):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class Sessions:
    """One chat session per user, all on one bot: one memory, one graph, one backend.

    At most ``max_sessions`` are kept: the one used longest ago ends (its conversation's
    checkpoints are freed, its user's memory stays) when another user arrives.
    """

    def __init__(
        self,
        config: SleepConfig,
        backend: ServingBackend | None = None,
        cycle: SleepCycle | None = None,
        max_sessions: int = 64,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions={max_sessions}: at least one session must fit")
        self.config = config
        self.bot = ChatBot(config, backend=backend, cycle=cycle)
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, ChatSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user: str) -> ChatSession:
        _check_user(user)
        with self._lock:
            if user not in self._sessions:
                self._sessions[user] = self.bot.session(user)
            self._sessions.move_to_end(user)
            session = self._sessions[user]
            ended = [
                self._sessions.popitem(last=False)[1] for _ in range(len(self._sessions) - self.max_sessions)
            ]
        for old in ended:  # outside the lock: a turn in progress finishes first
            old.end()
        return session

    def known(self, user: str) -> bool:
        """Whether the user has a session here or adapters on disk (asking creates nothing)."""
        _check_user(user)
        return user in self.users()

    def users(self) -> list[str]:
        """Users with a session here or adapters on disk."""
        adapters = Path(self.config.home).expanduser() / "adapters"
        on_disk = {p.name for p in adapters.iterdir() if p.is_dir()} if adapters.is_dir() else set()
        on_disk = {name for name in on_disk if NAMESPACE_PATTERN.match(name)}  # a stray folder is no user
        return sorted(on_disk | set(self._sessions))

    def close(self) -> None:
        self.bot.close()


def create_app(
    config: SleepConfig,
    *,
    backend: ServingBackend | None = None,
    cycle: SleepCycle | None = None,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The chat page and its JSON API; ``backend``: serve through one already started; ``cycle``:
    the sleep cycle of every user's memory (default: the standard one); ``hosts``: the names the
    page may be reached by (``Host`` and ``Origin``), loopback by default."""
    sessions = Sessions(config, backend, cycle)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        sessions.close()  # the server this page started stops with it

    app = FastAPI(title="sleep-agent chat", lifespan=lifespan)
    app.state.sessions = sessions
    guard_requests(app, hosts)
    page = files("sleep_agent.chatbot").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/users")
    def users() -> dict[str, list[str]]:
        return {"users": sessions.users()}

    @app.get("/api/status")
    def status(user: str) -> dict[str, Any]:
        """A user this page has never seen gets an empty status: a GET creates no namespace and
        starts no server (a plain ``<img src>`` on any site can send one)."""
        return _status(sessions.get(user)) if sessions.known(user) else _empty_status()

    @app.post("/api/chat")
    def chat(body: ChatIn) -> dict[str, Any]:
        session = sessions.get(body.user)
        reply = _guarded(lambda: session.send(body.text))
        slept = describe_sleep(reply.slept, session.memory) if reply.slept else None
        return {"text": reply.text, "adapter": reply.adapter, "slept": slept, "status": _status(session)}

    @app.post("/api/sleep")
    def sleep(body: UserIn) -> dict[str, Any]:
        session = sessions.get(body.user)
        report = _guarded(session.sleep)
        return {"slept": describe_sleep(report, session.memory), "status": _status(session)}

    @app.post("/api/forget")
    def forget(body: ForgetIn) -> dict[str, Any]:
        session = sessions.get(body.user)
        return {"result": _guarded(lambda: session.forget(body.text)), "status": _status(session)}

    @app.post("/api/new")
    def new(body: UserIn) -> dict[str, Any]:
        session = sessions.get(body.user)
        session.new_session()
        return {"status": _status(session)}

    return app


def guard_requests(app: FastAPI, hosts: Sequence[str]) -> None:
    """Refuse what a page elsewhere could send through the visitor's browser.

    Starlette's ``TrustedHostMiddleware`` checks ``Host`` (a DNS-rebound name is refused); the
    origin and size checks are written here because no middleware of the stack does them.
    """
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    allowed = {h.strip("[]") for h in hosts}

    @app.middleware("http")
    async def same_origin_and_bounded(request: Request, call_next: Any) -> Any:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin is not None and (urlsplit(origin).hostname or "") not in allowed and "*" not in allowed:
                return JSONResponse({"detail": f"requests from {origin} are refused"}, status_code=403)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"bodies are limited to {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted({*hosts, *allowed}))


def _guarded(call: Any) -> Any:
    try:
        return call()
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    except SleepAgentError as e:
        raise HTTPException(503, str(e)) from e


def _check_user(user: str) -> None:
    if not NAMESPACE_PATTERN.match(user):
        raise HTTPException(400, f"user {user!r}: use 1-63 letters, digits, '_', '.' or '-'")


def hosts_for(bind: str, loopback: bool) -> tuple[str, ...]:
    """The ``Host`` names the page accepts when it listens on ``bind``: loopback ones, plus ``bind``
    itself; every name when it listens on all interfaces (the caller warns)."""
    if loopback:
        return LOOPBACK_HOSTS
    if bind in ("0.0.0.0", "::"):
        return ("*",)
    return (*LOOPBACK_HOSTS, bind)


def _empty_status() -> dict[str, Any]:
    """What the page shows for a user before their first message here."""
    return {"active_adapter": None, "episodes": {}, "thread_id": "-", "turns": 0, "last_sleep": []}


def _status(session: ChatSession) -> dict[str, Any]:
    status = session.status()
    report = session.memory.last_report
    status["last_sleep"] = describe_sleep(report, session.memory) if report else []
    status.pop("last_report", None)
    return status
