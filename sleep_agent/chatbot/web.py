"""``sleep-agent web``: a local chat page with a user picker and a memory panel.

One serving backend is shared by every user (each is served only their own adapter); each user
has one chat session here, and "new session" starts an empty context on the same memory. Each
user logs in with a token of their own and reaches only their own memory; an admin's token reaches
every user's (``sleep-agent web-user add NAME [--admin]``). What a web page elsewhere could do
through the visitor's browser is refused: requests must name this host (DNS rebinding), state
changes come only as JSON POSTs from this page's own origin, and bodies and messages are bounded. Sleeps and rebuilds run in the background, so no
user's sleep holds the workers that answer the others.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from sleep_agent.chatbot.access import Login, WebUsers
from sleep_agent.chatbot.session import ChatBot, ChatSession, describe_sleep
from sleep_agent.config import SleepConfig, check_namespace, is_namespace
from sleep_agent.errors import SleepAgentError
from sleep_agent.serving.base import ServingBackend
from sleep_agent.sleep.cycle import SleepCycle

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_BODY_BYTES = 64 * 1024
COOKIE = "sleep_agent_session"
LOGIN_TTL_S = 7 * 24 * 3600
MAX_MESSAGE_CHARS = 4000  # about 1,000 tokens: a turn must leave the context room to answer


class UserIn(BaseModel):
    user: str | None = Field(None, min_length=1, description="whose memory; default: the one logged in")


class ChatIn(UserIn):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class ForgetIn(UserIn):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=256)


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
        on_disk = {name for name in on_disk if is_namespace(name)}  # a stray folder is no user
        return sorted(on_disk | set(self._sessions))

    def close(self) -> None:
        self.bot.close()


def create_app(
    config: SleepConfig,
    *,
    backend: ServingBackend | None = None,
    cycle: SleepCycle | None = None,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    users: WebUsers | None = None,
) -> FastAPI:
    """The chat page and its JSON API; ``backend``: serve through one already started; ``cycle``:
    the sleep cycle of every user's memory (default: the standard one); ``hosts``: the names the
    page may be reached by (``Host`` and ``Origin``), loopback by default; ``users``: who may log
    in (default: the tokens kept in ``config.home``)."""
    users = users or WebUsers(config.home)
    # a sleep the graph starts runs in the background: a request worker is never held for minutes
    background = config.policy.model_copy(update={"background": True})
    sessions = Sessions(config.model_copy(update={"policy": background}), backend, cycle)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        sessions.close()  # the server this page started stops with it

    app = FastAPI(title="sleep-agent chat", lifespan=lifespan)
    app.state.sessions = sessions
    guard_requests(app, hosts)
    page = files("sleep_agent.chatbot").joinpath("static/index.html").read_text(encoding="utf-8")

    app.state.users = users
    app.state.logins = Logins()

    def session_for(login: Login, user: str | None) -> ChatSession:
        return _guarded(lambda: sessions.get(_whose(login, user)))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.post("/api/login")
    def log_in(body: TokenIn, request: Request, response: Response) -> dict[str, Any]:
        """Trades a token for a session id in an HttpOnly cookie: the token itself is never stored
        in the browser, and logging out ends the session here."""
        login = _users_login(request, body.token)
        if login is None:
            raise HTTPException(401, "this token is not known here")
        secure = request.url.scheme == "https"
        session = app.state.logins.start(body.token)
        response.set_cookie(
            COOKIE, session, httponly=True, samesite="strict", secure=secure, max_age=LOGIN_TTL_S
        )
        return {"user": login.user, "admin": login.admin}

    @app.post("/api/logout")
    def log_out(request: Request, response: Response) -> dict[str, Any]:
        app.state.logins.end(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return {"user": None}

    @app.get("/api/me")
    def me(login: Who) -> dict[str, Any]:
        return {"user": login.user, "admin": login.admin}

    @app.get("/api/users")
    def users_(login: Who) -> dict[str, list[str]]:
        """Every user for an admin; a user sees only themselves."""
        return {"users": sessions.users() if login.admin else [login.user]}

    @app.get("/api/status")
    def status(login: Who, user: str | None = None) -> dict[str, Any]:
        """A user this page has never seen gets an empty status: a GET creates no namespace and
        starts no server."""
        user = _whose(login, user)
        return _status(_guarded(lambda: sessions.get(user))) if sessions.known(user) else _empty_status()

    @app.post("/api/chat")
    def chat(body: ChatIn, login: Who) -> dict[str, Any]:
        session = session_for(login, body.user)
        reply = _guarded(lambda: session.send(body.text))
        slept = describe_sleep(reply.slept, session.memory) if reply.slept else None
        return {"text": reply.text, "adapter": reply.adapter, "slept": slept, "status": _status(session)}

    @app.post("/api/sleep", status_code=202)
    def sleep(body: UserIn, login: Who) -> dict[str, Any]:
        """Starts the sleep and answers at once; the status says ``busy`` until it has finished."""
        session = session_for(login, body.user)
        started = _guarded(session.sleep_in_background)
        return {"started": started, "status": _status(session)}

    @app.post("/api/forget")
    def forget(body: ForgetIn, login: Who) -> dict[str, Any]:
        """Erases at once; the adapter is rebuilt without the memories in the background."""
        session = session_for(login, body.user)
        result = _guarded(lambda: session.forget(body.text, background=True))
        return {"result": result, "status": _status(session)}

    @app.post("/api/new")
    def new(body: UserIn, login: Who) -> dict[str, Any]:
        session = session_for(login, body.user)
        session.new_session()
        return {"status": _status(session)}

    return app


def logged_in(request: Request) -> Login:
    """The request's user, from an ``Authorization: Bearer`` token or the login cookie's session.

    The token is looked up again on every request, so a removed user is out at once.
    """
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token: str | None = header[7:]
    else:
        token = request.app.state.logins.token(request.cookies.get(COOKIE))
    login = _users_login(request, token)
    if login is None:
        raise HTTPException(401, "log in with your token (`sleep-agent web-user add NAME` makes one)")
    return login


def _users_login(request: Request, token: str | None) -> Login | None:
    try:
        return request.app.state.users.login(token)
    except ValueError as e:  # the users file cannot be read: nobody gets in, and the page says why
        raise HTTPException(503, str(e)) from e


class Logins:
    """The page's login sessions: a random id in the browser's cookie, the token here, in memory
    (a restart logs everyone out; the link logs them in again). At most ``limit`` are kept."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, token: str) -> str:
        session = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[session] = (token, time.monotonic() + LOGIN_TTL_S)
            while len(self._tokens) > self.limit:
                self._tokens.popitem(last=False)
        return session

    def token(self, session: str | None) -> str | None:
        with self._lock:
            token, until = self._tokens.get(session or "", (None, 0.0))
        return token if token is not None and time.monotonic() < until else None

    def end(self, session: str | None) -> None:
        with self._lock:
            self._tokens.pop(session or "", None)


Who = Annotated[Login, Depends(logged_in)]


def _whose(login: Login, user: str | None) -> str:
    """The memory a request names (its own by default), if the login may reach it."""
    user = user or login.user
    _check_user(user)
    if not login.may_act_for(user):
        raise HTTPException(403, f"{login.user!r} may reach only their own memory, not {user!r}")
    return user


def guard_requests(app: FastAPI, hosts: Sequence[str]) -> None:
    """Refuse what a page elsewhere could send through the visitor's browser.

    Starlette's ``TrustedHostMiddleware`` checks ``Host`` (a DNS-rebound name is refused); the
    origin and size checks are written here because no middleware of the stack does them.
    """
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    # innermost (added first): FastAPI reads the body through it and answers its 413
    app.add_middleware(BoundedBody, limit=MAX_BODY_BYTES)

    @app.middleware("http")
    async def same_origin(request: Request, call_next: Any) -> Any:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin is not None and not _same_origin(origin, request):
                return JSONResponse({"detail": f"requests from {origin} are refused"}, status_code=403)
        return await call_next(request)

    # an IPv6 literal is named with and without its brackets
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted({*hosts, *(h.strip("[]") for h in hosts)}))


class _TooLarge(HTTPException):
    """An HTTP error, so that FastAPI, which reads the body, answers 413 rather than 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"bodies are limited to {limit} bytes")


class BoundedBody:
    """ASGI middleware: a body over ``limit`` bytes gets 413, whether its ``Content-Length`` says
    so or it comes in chunks without one (counted as it is read, never held whole)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        detail = {"detail": f"bodies are limited to {self.limit} bytes"}
        await JSONResponse(detail, status_code=413)(scope, receive, send)


def _same_origin(origin: str, request: Request) -> bool:
    """Whether ``Origin`` names this page: the same scheme, host and port as the request itself (a
    page on another port of this host is another site)."""
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}
    try:
        theirs = (parts.scheme, parts.hostname, parts.port or default.get(parts.scheme))
    except ValueError:  # a port that is not a number
        return False
    url = request.url
    return theirs == (url.scheme, url.hostname, url.port or default.get(url.scheme))


def _guarded(call: Any) -> Any:
    try:
        return call()
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    except SleepAgentError as e:
        raise HTTPException(503, str(e)) from e


def _check_user(user: str) -> None:
    """A user is a namespace: the same names are allowed, and a bad one is the caller's error."""
    try:
        check_namespace(user)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e


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
    return {
        "active_adapter": None,
        "episodes": {},
        "thread_id": "-",
        "turns": 0,
        "busy": None,
        "last_sleep": [],
    }


def _status(session: ChatSession) -> dict[str, Any]:
    status = session.status()
    report = session.memory.last_report
    status["last_sleep"] = describe_sleep(report, session.memory) if report else []
    status.pop("last_report", None)
    return status
