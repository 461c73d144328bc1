"""Erase forgotten text from the files of an embedded Chroma, not only from its collections.

Deleting or overwriting a record leaves its text in three places of ``chroma.sqlite3``: the
write-ahead queue (``embeddings_queue``, which keeps every write until the vector index has been
saved past it, about a thousand writes later), the full-text index's old segments, and the pages
SQLite freed. Chroma offers no call that clears them for some ids (``chroma utils vacuum`` only
prunes what the index has saved), so this is written here against its documented schema:

1. every queued write of a forgotten id takes the text and vector of its last write (the erasure),
   so a replay of the queue rebuilds the same, erased state;
2. the full-text index is merged (``optimize``), which drops deleted entries;
3. ``VACUUM`` rewrites the file without the freed pages.

It runs in a child process. Chroma reaches the file through a SQLite of its own, and two SQLite
libraries in one process do not see each other's locks (closing one's descriptor drops the
other's POSIX locks), so writing from this process's ``sqlite3`` beside Chroma can corrupt the
database; between processes the locks hold. Callers hold the database's write lock meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

FULLTEXT = "embedding_fulltext_search"


class ScrubError(RuntimeError):
    """The scrub did not finish; the text may remain in the database file until the next one."""


def scrub(database: Path, ids: Sequence[str], *, timeout_s: float = 300) -> int:
    """Erase what ``ids`` held from the queue and free pages of ``database`` (in a child process);
    returns the queued writes rewritten. The ids' last writes must already be the erasure."""
    if not ids or not database.exists():
        return 0
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(database)],
            input=json.dumps(list(ids)),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        raise ScrubError(f"scrubbing {database} took over {timeout_s:.0f} s") from e
    if done.returncode != 0:
        raise ScrubError(f"scrubbing {database} failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip() or 0)


def scrub_here(database: Path, ids: Sequence[str]) -> int:
    """The scrub itself: only in a process that has no Chroma client open on ``database``."""
    con = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        rewritten = _rewrite_queue(con, ids)
        if _has_table(con, FULLTEXT):
            con.execute(f"INSERT INTO {FULLTEXT}({FULLTEXT}) VALUES ('optimize')")
        con.execute("VACUUM")
        return rewritten
    finally:
        con.close()


def _rewrite_queue(con: sqlite3.Connection, ids: Sequence[str]) -> int:
    if not _has_table(con, "embeddings_queue"):
        return 0
    rewritten = 0
    con.execute("BEGIN IMMEDIATE")
    try:
        for id_ in ids:
            last = con.execute(
                "SELECT seq_id, vector, encoding, metadata FROM embeddings_queue "
                "WHERE id = ? AND vector IS NOT NULL ORDER BY seq_id DESC LIMIT 1",
                (id_,),
            ).fetchone()
            if last is None:  # already purged from the queue
                continue
            seq, vector, encoding, metadata = last
            rewritten += con.execute(
                "UPDATE embeddings_queue SET vector = ?, encoding = ?, metadata = ? "
                "WHERE id = ? AND seq_id < ? AND vector IS NOT NULL",
                (vector, encoding, metadata, id_, seq),
            ).rowcount
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return rewritten


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


if __name__ == "__main__":
    print(scrub_here(Path(sys.argv[1]), json.loads(sys.stdin.read())))
