"""Errors that name the fix.

Bad arguments raise the built-in ``ValueError``/``TypeError``; these classes are for things
that go wrong in the world (a model that is not there, a server that will not start).
"""

from __future__ import annotations


class SleepAgentError(Exception):
    """Base class of every error sleep-agent raises on purpose."""


class ModelNotFoundError(SleepAgentError):
    """The configured model could not be found or prepared."""


class ServerStartError(SleepAgentError):
    """The serving backend could not be started or attached to."""


class AdapterLoadError(SleepAgentError):
    """An adapter could not be loaded into (or unloaded from) the serving backend."""


class MissingDependencyError(SleepAgentError, ImportError):
    """An optional dependency (vLLM, for instance) is not installed."""


def log_tail(text: str, lines: int = 40) -> str:
    """The last lines of a log, indented, for inclusion in an error message."""
    tail = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) if tail else "    (the log is empty)"


class InvalidEpisodeError(SleepAgentError, ValueError):
    """Messages that cannot become an episode (empty, malformed, no text, too long)."""


class BufferUnavailableError(SleepAgentError):
    """The episode buffer (Chroma, embedded or server) cannot be opened or reached."""


class NamespaceBusyError(SleepAgentError):
    """Another sleep of the same namespace is running (in this memory, another one, or another process)."""


class ServerUnavailableError(SleepAgentError, ConnectionError):
    """The serving backend stopped answering (killed, restarting, unreachable); nothing was lost."""


class NamespaceError(SleepAgentError, ValueError):
    """A per-run namespace could not be resolved: the run gave no user, or one that cannot name a namespace."""
