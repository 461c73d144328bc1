"""The storage format of a memory's home, so that a release never misreads another's files.

Every collection, manifest and pointer carries ``format``. Files written before the stamp existed
(release 0.1.0) have none and read as format 1, the layout they already have. A file from a newer
release is refused with a message that says to upgrade, never half-read.
"""

from __future__ import annotations

from typing import Any

from sleep_agent.errors import SleepAgentError

FORMAT = 1


class FormatError(SleepAgentError):
    """A file of the home was written in a storage format this release cannot read."""


def check_format(found: Any, where: str) -> int:
    """The format of ``where``; unstamped files are format 1."""
    if found is None:
        return 1
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise FormatError(
            f"{where}: storage format {found!r} is not a format number; the file was edited by hand?"
        )
    if found > FORMAT:
        raise FormatError(
            f"{where} was written by a newer sleep-agent (storage format {found}; this release reads up to "
            f"{FORMAT}): upgrade sleep-agent (pip install -U sleep-agent) to open it"
        )
    return found
