"""The ``sleep-agent`` command: one job per subcommand; errors are turned into messages only here."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sleep_agent.errors import SleepAgentError
from sleep_agent.quiet import quiet_libraries

app = typer.Typer(help="Sleepable memory for LangGraph agents.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="'default', a Hugging Face model id or a local path")
]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="where prepared models are kept")]


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show the libraries' warnings, logs and progress bars")
    ] = False,
) -> None:
    """Sleepable memory for LangGraph agents."""
    quiet_libraries(verbose)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}")  # "[chat]" in a hint is text, not markup
    return typer.Exit(code=1)


@app.command("prepare-model")
def prepare_model_cmd(
    model: ModelOpt = "default",
    cache_dir: CacheOpt = None,
    embeddings: Annotated[
        bool, typer.Option(help="also export the buffer's embedding model to ONNX (once, ~10 s)")
    ] = True,
) -> None:
    """Convert or download the model once into the cache and print its directory."""
    from sleep_agent.models import prepare_model

    try:
        path = prepare_model(model, cache_dir)
    except SleepAgentError as exc:
        raise _fail(exc) from exc
    if embeddings:
        from sleep_agent.embeddings import export_onnx

        try:
            with console.status("exporting the embedding model to ONNX (once)..."):
                onnx = export_onnx(cache_dir)
            console.print(f"embedding model: {onnx}")
        except Exception as exc:  # the buffer falls back to PyTorch; say so, do not fail
            console.print(f"[yellow]warning:[/] the embedding model stays on PyTorch (slower): {exc}")
    typer.echo(str(path))


@app.command("serve")
def serve_cmd(
    model: ModelOpt = "default",
    cache_dir: CacheOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            "--adapter",
            "-a",
            help="NAME=DIR to load at start, e.g. alice@v1=./adapters/v1; the last one is active",
        ),
    ] = None,
    home: Annotated[Path, typer.Option(help="logs go under HOME/logs")] = Path(".sleep_agent"),
    max_model_len: Annotated[int, typer.Option(help="context window the server allocates")] = 2048,
) -> None:
    """Start a vLLM server with LoRA hot-reload enabled and keep it running until Ctrl-C."""
    from sleep_agent.config import ServingConfig, SleepConfig
    from sleep_agent.serving import create_backend

    pairs = []
    for item in adapter or []:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise _fail(
                ValueError(f"--adapter {item!r} must look like NAME=DIR, e.g. alice@v1=./adapters/v1")
            )
        pairs.append((name, Path(directory)))
    try:
        config = SleepConfig(
            model=model,
            home=home,
            cache_dir=cache_dir or SleepConfig().cache_dir,
            serving=ServingConfig(host=host, port=port, max_model_len=max_model_len),
        )
        if not _loopback(host):
            console.print(
                f"[yellow]warning:[/] --host {host} lets other machines reach the server; every request "
                "still needs its key, but traffic is plain HTTP: put it behind TLS, or keep 127.0.0.1"
            )
        console.print(f"Starting vLLM for {model!r} on {host}:{port} (this takes a minute or two on CPU)...")
        server = create_backend(config).start()
    except (SleepAgentError, ValueError) as exc:
        raise _fail(exc) from exc
    try:
        for name, directory in pairs:
            server.activate(name, directory, retire_previous=False)
            console.print(f"loaded adapter {name} from {directory}")
        console.print(
            f"[green]ready[/] at {server.base_url}/v1 (model {server.router.target!r}); Ctrl-C stops it\n"
            f"clients send the key in {getattr(server, 'key_path', None)} as their API key "
            "(ServingConfig(base_url=..., api_key=...))"
        )
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
    except SleepAgentError as exc:
        raise _fail(exc) from exc
    finally:
        server.stop()


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _chat_config(model: str, home: Path, serving: str, sleep_after: int | None, cache_dir: Path | None):  # noqa: ANN202
    from sleep_agent.config import ServingConfig, SleepConfig, SleepPolicy

    return SleepConfig(
        model=model,
        home=home,
        cache_dir=cache_dir or SleepConfig().cache_dir,
        serving=ServingConfig(backend=serving),
        policy=SleepPolicy(pending_episodes=sleep_after),
    )


ServingOpt = Annotated[
    str, typer.Option(help="'vllm' (a real server) or 'local' (in-process, starts faster)")
]
SleepAfterOpt = Annotated[
    int | None,
    typer.Option(help="fall asleep when this many turns are pending (besides the other thresholds)"),
]


@app.command("chat")
def chat_cmd(
    user: Annotated[str, typer.Option("--user", "-u", help="whose memory: one namespace per user")],
    model: ModelOpt = "default",
    cache_dir: CacheOpt = None,
    home: Annotated[Path, typer.Option(help="where memories and adapters are kept")] = Path(".sleep_agent"),
    serving: ServingOpt = "vllm",
    sleep_after: SleepAfterOpt = 8,
) -> None:
    """Chat in the terminal with a memory per user; it says when it falls asleep and what it learned.

    Commands: /sleep, /forget TEXT, /status, /new (a new session, empty context), /quit.
    """
    from sleep_agent.chatbot.session import ChatSession
    from sleep_agent.chatbot.terminal import run_terminal

    try:
        session = ChatSession.open(user, _chat_config(model, home, serving, sleep_after, cache_dir))
        with console.status(f"starting the model ({serving})..."):
            session.memory.backend  # noqa: B018 - start serving before the first prompt
    except (SleepAgentError, ValueError) as exc:
        raise _fail(exc) from exc
    try:
        run_terminal(session)
    finally:
        session.close()


@app.command("web")
def web_cmd(
    model: ModelOpt = "default",
    cache_dir: CacheOpt = None,
    home: Annotated[Path, typer.Option(help="where memories and adapters are kept")] = Path(".sleep_agent"),
    serving: ServingOpt = "vllm",
    sleep_after: SleepAfterOpt = 8,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the chat page")] = 8700,
) -> None:
    """A web chat: each user logs in with their token and chats with their own memory.

    With no admin yet, one is made and its login link printed; `sleep-agent web-user add` makes more.
    """
    from sleep_agent.extras import require

    try:
        uvicorn = require("uvicorn", "sleep-agent web")
        require("fastapi", "sleep-agent web")
    except SleepAgentError as exc:
        raise _fail(exc) from exc

    from sleep_agent.chatbot.access import WebUsers
    from sleep_agent.chatbot.web import create_app, hosts_for

    hosts = hosts_for(host, _loopback(host))
    if not _loopback(host):
        console.print(
            f"[yellow]warning:[/] --host {host}: tokens and chat travel unencrypted over plain HTTP; "
            "put the page behind an HTTPS proxy" + ("; any Host name is accepted" if hosts == ("*",) else "")
        )
    users = WebUsers(home)
    try:
        if not users.has_admin() and "admin" in users.listed():
            raise ValueError("no web user is an admin; make one with `sleep-agent web-user add NAME --admin`")
        first = None if users.has_admin() else users.add("admin", admin=True)
        app_ = create_app(
            _chat_config(model, home, serving, sleep_after, cache_dir), hosts=hosts, users=users
        )
    except (SleepAgentError, ValueError) as exc:
        raise _fail(exc) from exc
    url = f"http://{host}:{port}/"
    console.print(f"chat page at {url} (Ctrl-C stops it)")
    if first:
        console.print(f"admin login (shown once): {url}#token={first}")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


web_user_app = typer.Typer(help="Who may log in to the web chat.", no_args_is_help=True)
app.add_typer(web_user_app, name="web-user")


@web_user_app.command("add")
def web_user_add_cmd(
    user: Annotated[str, typer.Argument(help="the user's name, which is also their memory's namespace")],
    admin: Annotated[bool, typer.Option(help="may open every user's memory")] = False,
    home: Annotated[Path, typer.Option(help="the memory's home directory")] = Path(".sleep_agent"),
    url: Annotated[
        str, typer.Option(help="the chat page's address, for the login link")
    ] = "http://127.0.0.1:8700/",
) -> None:
    """Make a token for USER (a new one replaces the old) and print their login link, once."""
    from sleep_agent.chatbot.access import WebUsers

    try:
        token = WebUsers(home).add(user, admin=admin)
    except ValueError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{url.rstrip('/')}/#token={token}")  # on stdout, for a script to pass on
    console.print(
        f"{user}{' (admin)' if admin else ''}: the token is not kept in readable form; pass the link on now"
    )


@web_user_app.command("list")
def web_user_list_cmd(
    home: Annotated[Path, typer.Option(help="the memory's home directory")] = Path(".sleep_agent"),
) -> None:
    """The users who may log in, and which are admins."""
    from sleep_agent.chatbot.access import WebUsers

    for user, admin in WebUsers(home).listed().items():
        typer.echo(f"{user}{'  admin' if admin else ''}")


@web_user_app.command("remove")
def web_user_remove_cmd(
    user: str, home: Annotated[Path, typer.Option(help="the memory's home directory")] = Path(".sleep_agent")
) -> None:
    """Revoke USER's token at once; their memory stays."""
    from sleep_agent.chatbot.access import WebUsers

    if not WebUsers(home).remove(user):
        raise _fail(SleepAgentError(f"no web user {user!r} under {home}"))
    console.print(f"removed {user}")


adapters_app = typer.Typer(help="Published adapter versions of a namespace.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="whose adapters")]
HomeOpt = Annotated[Path, typer.Option(help="the memory's home directory")]


def _registry(home: Path, namespace: str):  # noqa: ANN202
    from sleep_agent.adapters import AdapterRegistry

    if not (home / "adapters" / namespace).is_dir():
        raise _fail(SleepAgentError(f"no adapters for namespace {namespace!r} under {home}/adapters"))
    return AdapterRegistry(home, namespace)


@adapters_app.command("list")
def adapters_list_cmd(namespace: NamespaceOpt = "default", home: HomeOpt = Path(".sleep_agent")) -> None:
    """Versions, oldest first, with parent, episodes, gate figures and which one is current."""
    from datetime import datetime

    from rich.table import Table

    registry = _registry(home, namespace)
    current = registry.current()
    table = Table("", "version", "parent", "episodes", "recall", "probe", "published")
    for version in registry.versions():
        m = registry.manifest(version)
        before, after = m.metrics.get("before", {}), m.metrics.get("after", {})
        table.add_row(
            "*" if version == current else "",
            m.served_name,
            "-" if m.parent is None else f"v{m.parent}",
            str(len(m.episodes)),
            _change(before.get("recall"), after.get("recall"), "{:.0%}"),
            _change(before.get("probe"), after.get("probe"), "{}"),
            datetime.fromtimestamp(m.created_at).strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table if registry.versions() else f"{namespace}: nothing published yet")


def _change(before: object, after: object, fmt: str) -> str:
    if before is None or after is None:
        return "-"
    return f"{fmt.format(before)} -> {fmt.format(after)}"


@adapters_app.command("pin")
def adapters_pin_cmd(
    version: Annotated[int, typer.Argument(help="the version to keep")],
    namespace: NamespaceOpt = "default",
    home: HomeOpt = Path(".sleep_agent"),
    unpin: Annotated[bool, typer.Option("--unpin", help="let pruning take it again")] = False,
) -> None:
    """Keep a version through pruning (RetentionConfig.keep_versions), so it can be rolled back to."""
    registry = _registry(home, namespace)
    try:
        registry.pin(version, pinned=not unpin)
    except SleepAgentError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"{namespace}: v{version} {'unpinned' if unpin else 'pinned'}; pinned now: {registry.pinned() or 'none'}"
    )


@adapters_app.command("rollback")
def adapters_rollback_cmd(
    namespace: NamespaceOpt = "default",
    home: HomeOpt = Path(".sleep_agent"),
    to: Annotated[int | None, typer.Option(help="version to serve (default: the one before current)")] = None,
) -> None:
    """Point the namespace at an earlier version; a memory serves it when it next starts.

    A running agent switches at once with ``memory.rollback()``.
    """
    from sleep_agent.locks import NamespaceLock

    registry = _registry(home, namespace)
    before = registry.current()
    lock = NamespaceLock(home, namespace)  # a sleep of the namespace is about to move the pointer
    try:
        lock.acquire()
        try:
            version = registry.rollback(to)
        finally:
            lock.release()
    except SleepAgentError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{namespace}: current v{before} -> v{version}")


@app.command("doctor")
def doctor_cmd(
    home: HomeOpt = Path(".sleep_agent"),
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what is found (default: only report)")
    ] = False,
    chroma_url: Annotated[
        str | None, typer.Option(help="the Chroma server of the buffer, when it is not embedded under --home")
    ] = None,
) -> None:
    """Find (and with --repair, fix) what an interrupted sleep left: scratch, pointer, unmarked episodes.

    Exits 1 when something is found and not repaired (a forget's owed rebuild needs the model, so
    it is only reported). A namespace that is sleeping now is skipped.
    """
    from sleep_agent.config import BufferConfig, SleepConfig
    from sleep_agent.doctor import diagnose

    if not home.is_dir():
        raise _fail(SleepAgentError(f"{home} is not a directory: pass the memory's --home"))
    try:
        findings = diagnose(SleepConfig(home=home, buffer=BufferConfig(url=chroma_url)), repair=repair)
    except SleepAgentError as exc:
        raise _fail(exc) from exc
    for finding in findings:
        typer.echo(str(finding))
    if not findings:
        typer.echo(f"{home}: nothing to repair")
    elif not repair:
        typer.echo("run again with --repair to fix these")
        raise typer.Exit(code=1)
    elif not all(f.repaired for f in findings):  # what needs the model (a rebuild) is left to the user
        raise typer.Exit(code=1)


class Protocol(StrEnum):
    p1 = "p1"
    p2 = "p2"
    p3 = "p3"
    p4 = "p4"
    p5 = "p5"
    p6 = "p6"
    p7 = "p7"
    agent = "agent"


@app.command("eval")
def eval_cmd(
    protocol: Annotated[
        Protocol,
        typer.Argument(
            help="p1 fact recall, p2 continual retention, p3 general regression, p4 knowledge "
            "incorporation (SEAL), p5 memory QA on any data set, p6 dream utility, p7 memory poisoning (no model), "
            "agent: an agent learning across tasks of --env"
        ),
    ],
    data: Annotated[
        Path | None, typer.Option(help="data set file (p5: any JSONL in the documented form)")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a size that runs in minutes")] = False,
    env: Annotated[
        str | None,
        typer.Option(help="agent: the environment, textworld (default), scienceworld, miniwob or terminal"),
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, help="repeats with different seeds where there is randomness")
    ] = 1,
    out: Annotated[
        Path | None,
        typer.Option(help="folder for the JSON result and the plots [default: ~/.sleep_agent/eval]"),
    ] = None,
    model: ModelOpt = "default",
    serving: Annotated[str, typer.Option(help="'vllm' (a real server) or 'local' (in-process)")] = "vllm",
    data_dir: Annotated[
        Path | None, typer.Option(help="folder of the development data sets (default: $SLEEP_AGENT_DATA)")
    ] = None,
) -> None:
    """Run an evaluation protocol; writes <protocol>.json and PNG plots into --out, prints the table."""
    from rich.table import Table

    from sleep_agent.eval.datasets import DatasetError
    from sleep_agent.eval.protocol import EvalOptions
    from sleep_agent.eval.run import evaluate, table_of

    if serving not in ("vllm", "local"):
        raise _fail(SleepAgentError(f"--serving {serving!r}: use 'vllm' or 'local'"))
    out = out or Path.home() / ".sleep_agent" / "eval"
    if env is not None and protocol.value != "agent":
        raise _fail(SleepAgentError(f"--env is for the agent protocol, not {protocol.value}"))
    from sleep_agent.envs import ENVIRONMENTS

    if env is not None and env not in ENVIRONMENTS:
        raise _fail(SleepAgentError(f"--env {env!r}: choose one of {', '.join(ENVIRONMENTS)}"))
    options = EvalOptions(quick=quick, seeds=seeds, data=data, data_dir=data_dir, env=env)
    try:
        result = evaluate(protocol.value, options, out, model=model, serving=serving)  # type: ignore[arg-type]
    except (DatasetError, SleepAgentError) as exc:
        raise _fail(exc) from exc
    title, columns, rows = table_of(result)
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    written = [str(out / result["file"]), *result["plots"]]
    typer.echo(f"wrote {', '.join(written)} ({result['wall_s']} s)")


if __name__ == "__main__":
    app()
