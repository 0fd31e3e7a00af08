"""Build or update the index from `corpus.jsonl` (cases) and knowledge documents (chunks).

    from medscribe.index import build_index
    report = build_index(settings, prune=True)     # or: medscribe index --prune
    print(report.added, report.updated, report.unchanged, report.deleted)

Idempotent and incremental: an entry's Chroma id is a hash of its record id and embedded text, so an
unchanged row is recognised and never embedded again; a row whose text changed is embedded and replaces
its old entry; a row whose answer/metadata changed is updated in place (no embedding). Rows gone from the
corpus stay until `prune=True` (reported as stale). Vectors are written block by block, so a killed build
resumes where it stopped, without duplicates.

Cases are embedded with the QUERY prefix (finding-to-finding retrieval is symmetric: e5's model card asks for
`query: ` on both sides there); knowledge chunks with the PASSAGE prefix (question-to-passage retrieval).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError, failure_context
from medscribe.index import store
from medscribe.index.embed import Embedder
from medscribe.index.entries import Entry, read_corpus, read_knowledge
from medscribe.index.writer import ProcessWriter, open_writer
from medscribe.io import atomic_write_jsonl, sha256_file

WRITE_BLOCK = 2048  # vectors per Chroma write (Chroma's max batch is ~5461)
# While the writer process has no core of its own, encode in calls of this many batches and check between
# them whether it is still writing (see writer.threads_while_writing). 16k MedQuAD questions on 2 cores: 88 % of
# raw encode speed with 1 (and the child pinned to one core), 85-86 % with 4.
SHARED_CORE_BATCHES = 1


@dataclass
class BuildReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    stale: int = 0  # in the index but gone from the sources; deleted only with --prune
    rejected: int = 0
    embedded: int = 0  # entries that got a new vector
    encoded: int = 0  # distinct texts run through the model (identical texts share one vector)
    entries: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k not in {"manifest", "seconds"}}


def build_index(
    settings,
    corpus: str | Path | None = None,
    knowledge: list[str] | None = None,
    prune: bool = False,
    show_progress: bool = True,
    embedder: Embedder | None = None,
) -> BuildReport:
    """Build/update the index named by `settings` and return what changed (see module docstring)."""
    started = time.perf_counter()
    idx = settings.index
    index_dir = Path(settings.paths.index)
    corpus_path = Path(corpus) if corpus else Path(settings.paths.data) / "corpus.jsonl"
    knowledge_sources = list(knowledge) if knowledge is not None else list(idx.knowledge)
    use_corpus = corpus is not None or corpus_path.is_file() or not knowledge_sources
    embedder = embedder or Embedder.from_settings(idx)

    entries: list[Entry] = []
    rejects: list[dict[str, Any]] = []
    corpus_info: dict[str, Any] | None = None
    if use_corpus:
        entries, rejects = read_corpus(corpus_path)
        corpus_info = {
            "path": str(corpus_path),
            "sha256": sha256_file(corpus_path),
            "rows": len(entries),
            "rejected": len(rejects),
        }
    documents: list[dict[str, Any]] = []
    if knowledge_sources:
        chunk_entries, documents = read_knowledge(knowledge_sources, idx.chunk_size, idx.chunk_overlap,
                                                  ocr=settings.data.ocr)
        entries += chunk_entries
    kinds = {"case"} if use_corpus else set()
    if knowledge_sources:
        kinds.add("knowledge")

    report = BuildReport(rejected=len(rejects))
    where = store.where_label(settings)
    with store.writer_lock(index_dir):
        atomic_write_jsonl(index_dir / "rejects.jsonl", rejects)
        client = store.open_client(settings)
        collection = store.get_collection(client, idx.collection)
        if collection is not None:
            store.check_space(collection, embedder, where)
        existing = _existing_entries(collection) if collection is not None else {}
        plan = _plan(entries, existing, kinds, prune)
        if plan["embed"] and collection is None:
            collection = store.create_collection(
                client,
                idx.collection,
                store.space_metadata(
                    embedder.identity, embedder.dimension, embedder.query_prefix, embedder.passage_prefix
                ),
            )
        writer = None
        if plan["embed"]:
            _check_dimension(collection, embedder, where)
            writer = open_writer(settings, collection, len(plan["embed"]), embedder, WRITE_BLOCK)
            report.encoded = _embed_and_write(plan["embed"], embedder, show_progress, writer)
            if isinstance(writer, ProcessWriter):  # our handles predate the child's rows: reopen (writer.py)
                client = store.reopen_client(settings)
                collection = store.get_collection(client, idx.collection)
        for start in range(0, len(plan["update"]), WRITE_BLOCK):
            block = plan["update"][start : start + WRITE_BLOCK]
            # Same id means same text: only the payload changed (passing documents would make Chroma embed).
            collection.update(ids=[e.chroma_id for e in block], metadatas=[e.metadata for e in block])
        for start in range(0, len(plan["delete"]), WRITE_BLOCK):
            collection.delete(ids=plan["delete"][start : start + WRITE_BLOCK])

        old_records = {rec for rec, _group, _kind, _hash in existing.values()}
        report.added = sum(1 for e in plan["embed"] if e.record_id not in old_records)
        report.updated = len(plan["embed"]) - report.added + len(plan["update"])
        report.unchanged = plan["unchanged"]
        report.deleted = plan["deleted_records"]
        report.stale = plan["stale"]
        report.embedded = len(plan["embed"])
        if plan["embed"] or plan["update"] or plan["delete"]:
            store.mark_written()  # Retrievers open in this process reload before their next search
        report.entries = collection.count() if collection is not None else 0
        report.seconds = round(time.perf_counter() - started, 3)
        report.manifest = _manifest(settings, embedder, collection, corpus_info, documents, report)
        # Where this run's Chroma writes ran (index/writer.py); None when nothing needed embedding.
        report.manifest["writer"] = None if writer is None else writer.kind
        store.write_manifest(index_dir, report.manifest)
    return report


def _existing_entries(collection) -> dict[str, tuple[str, str, str, str]]:
    """chroma id -> (record id, group, kind, payload hash) for everything in the collection."""
    out: dict[str, tuple[str, str, str, str]] = {}
    for page in store.iter_entries(collection, include=["metadatas"]):
        for cid, meta in zip(page["ids"], page["metadatas"], strict=False):
            meta = meta or {}
            kind = meta.get("kind", "case")
            record = str(meta.get("record_id", cid))
            group = meta.get("doc_id", record) if kind == "knowledge" else record
            out[cid] = (record, str(group), kind, meta.get("payload_hash", ""))
    return out


def _plan(entries: list[Entry], existing: dict, kinds: set[str], prune: bool) -> dict[str, Any]:
    embed, update, unchanged = [], [], 0
    wanted: set[str] = set()
    for e in entries:
        wanted.add(e.chroma_id)
        old = existing.get(e.chroma_id)
        if old is None:
            embed.append(e)
        elif old[3] != e.metadata["payload_hash"]:
            update.append(e)
        else:
            unchanged += 1
    present_groups = {(e.kind, e.group) for e in entries}
    new_records = {e.record_id for e in entries}
    delete, deleted_records, stale_records = [], set(), set()
    for cid, (record, group, kind, _hash) in existing.items():
        if cid in wanted:
            continue
        if (kind, group) in present_groups:  # replaced by a new version of the same row/document
            delete.append(cid)
            if record not in new_records:
                deleted_records.add(record)
        elif kind in kinds and prune:
            delete.append(cid)
            deleted_records.add(record)
        else:
            stale_records.add(record)
    return {
        "embed": embed,
        "update": update,
        "unchanged": unchanged,
        "delete": delete,
        "deleted_records": len(deleted_records),
        "stale": len(stale_records),
    }


def _check_dimension(collection, embedder: Embedder, where: str) -> None:
    built = (collection.metadata or {}).get(store.META_DIMENSION)
    if built is not None and int(built) != embedder.dimension:
        raise UsageError(
            f"{where}: index.embedding_model: '{embedder.identity}' gives {embedder.dimension}-d vectors, the index "
            f"holds {built}-d ones; rebuild into a new index.collection"
        )


def _embed_and_write(todo: list[Entry], embedder: Embedder, show_progress: bool, writer) -> int:
    """Embed in length-sorted blocks (little padding) and hand each block to `writer` as soon as it is embedded.

    Identical texts are embedded once and their vector shared: clinical corpora repeat texts a lot ("no
    pathology found"), MedQuAD repeats 9 % of its questions. Block i is written (writer.py: a child process
    or a thread) while block i+1 is embedded; at most one block is pending, so memory stays flat, and every
    finished block is on disk, so a killed build resumes where it stopped. Returns the texts encoded.
    """
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    by_text: dict[tuple[str, str], list[Entry]] = {}
    for e in todo:
        by_text.setdefault((e.kind, e.text), []).append(e)
    keys = sorted(by_text, key=lambda key: len(key[1]), reverse=True)
    columns = [TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    share = writer.encoder_threads  # set by open_writer when the writer process shares the encoder's cores
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as progress, writer:
        task = progress.add_task("embed", total=len(todo))
        try:
            for start in range(0, len(keys), WRITE_BLOCK):
                block = keys[start : start + WRITE_BLOCK]
                entries, vectors = [], []
                with failure_context(f"embedding texts {start + 1}-{start + len(block)} of {len(keys)}"):
                    encoded = _encode_block(block, embedder, writer, share)
                for key, vector in zip(block, encoded, strict=True):
                    entries += by_text[key]
                    vectors += [vector] * len(by_text[key])
                # One submit per block, also when shared vectors make it longer: the writer cuts it into
                # `add`s of WRITE_BLOCK rows, and the encoder never waits between the parts.
                writer.submit(
                    [e.chroma_id for e in entries],
                    np.stack(vectors),  # one array pickles to the child in a blink, 2,048 small ones do not
                    [e.text for e in entries],
                    [e.metadata for e in entries],
                )
                progress.update(task, completed=writer.written)
            writer.wait()
            progress.update(task, completed=writer.written)
        finally:
            if share is not None:
                import torch

                torch.set_num_threads(share[0])
    return len(keys)


def _encode_block(keys: list[tuple[str, str]], embedder: Embedder, writer, share) -> list:
    if share is None:
        return _embed_texts(keys, embedder)
    import torch

    threads, fewer = share
    step = embedder.batch_size * SHARED_CORE_BATCHES
    vectors: list = []
    for start in range(0, len(keys), step):  # look at the writer every few batches
        torch.set_num_threads(fewer if writer.busy else threads)
        vectors += _embed_texts(keys[start : start + step], embedder)
    return vectors


def _embed_texts(keys: list[tuple[str, str]], embedder: Embedder) -> list:
    """Vectors in `keys` order: cases with the query prefix, knowledge chunks with the passage prefix."""
    vectors: list = [None] * len(keys)
    for is_case, encode in ((True, embedder.encode_queries), (False, embedder.encode_passages)):
        positions = [i for i, (kind, _text) in enumerate(keys) if (kind == "case") == is_case]
        if positions:
            for i, vector in zip(positions, encode([keys[i][1] for i in positions]), strict=True):
                vectors[i] = vector
    return vectors


def _manifest(settings, embedder, collection, corpus_info, documents, report) -> dict[str, Any]:
    from medscribe import __version__

    meta = (collection.metadata or {}) if collection is not None else {}
    return {
        "medscribe_version": __version__,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "collection": settings.index.collection,
        "location": store.where_label(settings),
        "space": "cosine",
        "embedding_model": meta.get(store.META_MODEL, embedder.identity),
        "embedding_model_source": settings.index.embedding_model,
        "dimension": meta.get(store.META_DIMENSION),
        "query_prefix": meta.get(store.META_QUERY_PREFIX, embedder.query_prefix),
        "passage_prefix": meta.get(store.META_PASSAGE_PREFIX, embedder.passage_prefix),
        "normalized": True,
        "corpus": corpus_info,
        "knowledge": documents,
        "chunk_size": settings.index.chunk_size,
        "chunk_overlap": settings.index.chunk_overlap,
        "counts": report.counts(),
        "seconds": report.seconds,
    }
