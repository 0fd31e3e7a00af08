"""Where the index lives: the Chroma client and collection, the index manifest, and the writer lock.

- Embedded `PersistentClient` at `settings.paths.index` by default, `HttpClient` when `index.server_url` names
  a Chroma server (`chroma run --path DIR --port 8000`). Telemetry is off, the space is cosine, and Chroma's
  default embedding function is never used (it would try to download a model): we always pass vectors.
- The embedding model, its dimension and prefixes are stored twice: in the collection's metadata (so a
  shared server refuses a wrong model too) and in `index_manifest.json` (human-readable, written atomically).
- One writer at a time: `writer_lock()` takes a file lock next to the index and fails after ~1 s, naming the
  process that holds it, instead of hanging (Chroma itself is not multi-process safe: chroma#421).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json

MANIFEST_NAME = "index_manifest.json"
LOCK_NAME = ".index.lock"
LOCK_OWNER_NAME = ".index.lock.owner"
LOCK_TIMEOUT_S = 1.0
# Collection metadata keys that pin the embedding space (scalars only: Chroma's rule).
META_MODEL = "medscribe_model"
META_DIMENSION = "medscribe_dimension"
META_QUERY_PREFIX = "medscribe_query_prefix"
META_PASSAGE_PREFIX = "medscribe_passage_prefix"
# Every Chroma call is cut to sizes Chroma and SQLite accept, whatever the number of rows, queries or filter
# values (measured with chromadb 1.5.9, embedded): `query` fails with "too many SQL variables" once
# queries x n_results passes ~32k (2,473 x 20 failed, 5,000 x 5 passed); a `$in` filter of 40k values fails;
# one call never holds more than `get_max_batch_size()` (5,461) queries or ids. Half the SQLite limit is used.
QUERY_CELLS = 16_384  # queries x n_results per `query`
FILTER_VALUES = 4_096  # values of one `$in` filter per call


def chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    # Same settings object every time: Chroma refuses a second client on one path with different settings.
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def open_client(settings):
    """The Chroma client named by the settings: HTTP when `index.server_url` is set, else embedded."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb

    url = settings.index.server_url
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise UsageError(f"index.server_url: '{redact_url(url)}' is not a URL like http://host:8000")
        ssl = parsed.scheme == "https"
        port = parsed.port or (443 if ssl else 8000)
        try:
            return chromadb.HttpClient(host=parsed.hostname, port=port, ssl=ssl, settings=chroma_settings())
        except Exception as exc:  # connection refused, DNS, TLS: the user can fix the URL or start the server
            raise RuntimeFailure(
                f"index.server_url: cannot reach the Chroma server at {redact_url(url)} ({type(exc).__name__}); "
                "start one with `chroma run --path DIR --port PORT`"
            ) from None
    path = Path(settings.paths.index)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings())


_generation = 0  # bumped by every build in this process that wrote: open Retrievers then refresh


def mark_written() -> None:
    global _generation
    _generation += 1


def generation() -> int:
    return _generation


def reopen_client(settings):
    """A fresh client after another process wrote the embedded index (index/writer.py).

    Chroma's local bindings are shared per process and keep the HNSW graph they loaded, so the cache is
    dropped first. Handles opened before keep working but see the index as it was when they loaded it.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    return open_client(settings)


def redact_url(url: str) -> str:
    """The URL without user:password (never print credentials)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.password or parsed.username:
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        parsed = parsed._replace(netloc=netloc)
    return parsed.geturl()


def where_label(settings) -> str:
    return redact_url(settings.index.server_url) if settings.index.server_url else str(settings.paths.index)


def get_collection(client, name: str):
    """The existing collection, or None. `embedding_function=None` so Chroma never loads its default model."""
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return None


def create_collection(client, name: str, space_meta: dict[str, Any]):
    try:
        return client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata=space_meta,
            embedding_function=None,
        )
    except Exception as exc:
        if type(exc).__name__ == "InvalidArgumentError":
            raise UsageError(f"index.collection: '{name}' is not a valid Chroma collection name ({exc})") from None
        raise


def space_metadata(model: str, dimension: int, query_prefix: str, passage_prefix: str) -> dict[str, Any]:
    return {
        META_MODEL: model,
        META_DIMENSION: int(dimension),
        META_QUERY_PREFIX: query_prefix,
        META_PASSAGE_PREFIX: passage_prefix,
    }


def check_space(collection, embedder, where: str) -> None:
    """Refuse to mix embedding spaces: a different model or prefixes than the index was built with."""
    meta = collection.metadata or {}
    built_model = meta.get(META_MODEL)
    if built_model is None:
        raise UsageError(
            f"{where}: collection '{collection.name}' was not built by medscribe (no embedding model recorded); "
            "use another index.collection"
        )
    if built_model != embedder.identity:
        raise UsageError(
            f"{where}: index.embedding_model: the index was built with '{built_model}', settings name "
            f"'{embedder.identity}'; use the same model or rebuild into a new index.collection/paths.index"
        )
    built = (meta.get(META_QUERY_PREFIX, ""), meta.get(META_PASSAGE_PREFIX, ""))
    if built != (embedder.query_prefix, embedder.passage_prefix):
        raise UsageError(
            f"{where}: index.query_prefix/passage_prefix: the index was built with {built!r}, settings give "
            f"{(embedder.query_prefix, embedder.passage_prefix)!r}; use the same prefixes or rebuild"
        )


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    path = Path(index_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON ({exc.msg}); delete it and rerun `medscribe index`") from None


def write_manifest(index_dir: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_json(Path(index_dir) / MANIFEST_NAME, manifest)


@contextmanager
def writer_lock(index_dir: Path, timeout: float = LOCK_TIMEOUT_S):
    """Hold the index's writer lock; another holder -> RuntimeFailure naming it, after `timeout` seconds."""
    from filelock import FileLock, Timeout

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(index_dir / LOCK_NAME), timeout=timeout)
    owner_file = index_dir / LOCK_OWNER_NAME
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = json.loads(owner_file.read_text(encoding="utf-8"))
            who = (
                f"pid {owner.get('pid')} on {owner.get('host')} (user {owner.get('user')}, since {owner.get('since')})"
            )
        except (OSError, json.JSONDecodeError):
            who = "another process"
        raise RuntimeFailure(
            f"{index_dir}: another `medscribe index` is writing this index ({who}); wait for it to finish"
        ) from None
    try:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            user = "?"
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": user,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        owner_file.write_text(json.dumps(owner), encoding="utf-8")
        yield
    finally:
        try:
            owner_file.unlink()
        except OSError:
            pass
        lock.release()


_max_batch: dict[int, int] = {}


def max_batch(collection) -> int:
    """Rows one Chroma call may carry: the client's own limit (5,461 embedded), asked once per client."""
    client = getattr(collection, "_client", None)
    key = id(client)
    if key not in _max_batch:
        try:
            _max_batch[key] = max(1, min(int(client.get_max_batch_size()), 5461))
        except Exception:  # an older client or a server that does not say: stay under SQLite's default
            _max_batch[key] = 4096
    return _max_batch[key]


def get_by_ids(collection, ids: list[str], include: list[str]) -> dict[str, list]:
    """`collection.get(ids=...)` for any number of ids, in calls Chroma accepts; fields as one dict of lists."""
    out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
    step = max_batch(collection)
    for start in range(0, len(ids), step):
        got = collection.get(ids=list(ids[start : start + step]), include=include)
        out["ids"] += list(got["ids"])
        for key in include:
            values = got.get(key)
            out[key] += list(values) if values is not None else [None] * len(got["ids"])
    return out


def _split_where(where: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    """A `where` whose `$in` lists are longer than FILTER_VALUES -> several `where`s covering the same rows."""
    if not where:
        return [where]
    clauses = where["$and"] if "$and" in where else [where]
    for i, clause in enumerate(clauses):
        (key, cond), = clause.items()
        values = cond.get("$in") if isinstance(cond, dict) else None
        if values is not None and len(values) > FILTER_VALUES:
            parts = []
            for start in range(0, len(values), FILTER_VALUES):
                part = [*clauses[:i], {key: {"$in": values[start : start + FILTER_VALUES]}}, *clauses[i + 1 :]]
                parts += _split_where(part[0] if len(part) == 1 else {"$and": part})
            return parts
    return [where]


def query_bounded(collection, vectors, n_results: int, where: dict[str, Any] | None, include: list[str]):
    """`collection.query` for any number of query vectors and filter values, as one result dict.

    Queries go in calls of at most QUERY_CELLS / n_results (and the client's max batch); a `$in` filter with
    more than FILTER_VALUES values is split, and each query's results from the parts are merged by distance.
    """
    n_results = max(1, int(n_results))
    wheres = _split_where(where)
    if len(wheres) > 1 and "distances" not in include:
        include = [*include, "distances"]  # merging the parts needs them
    step = max(1, min(max_batch(collection), QUERY_CELLS // n_results))
    fields = ["ids", *include]
    out: dict[str, list] = {key: [] for key in fields}
    for start in range(0, len(vectors), step):
        part = vectors[start : start + step]
        merged: list[list[tuple]] | None = None
        for w in wheres:
            got = collection.query(query_embeddings=part, n_results=n_results, where=w, include=include)
            rows = [list(zip(*(got[key][q] for key in fields), strict=False)) for q in range(len(part))]
            if merged is None:
                merged = rows
            else:  # several filter parts: keep each query's n_results nearest over all of them
                at = fields.index("distances")
                merged = [sorted(a + b, key=lambda r: r[at])[:n_results] for a, b in zip(merged, rows, strict=True)]
        for row in merged or []:
            for j, key in enumerate(fields):
                out[key].append([r[j] for r in row])
    return out


def iter_entries(collection, include: list[str], page: int = 5000):
    """Yield (ids, field lists) pages of the whole collection (Chroma caps one call's size)."""
    offset = 0
    while True:
        got = collection.get(include=include, limit=page, offset=offset)
        ids = got["ids"]
        if not ids:
            return
        yield got
        if len(ids) < page:
            return
        offset += len(ids)
