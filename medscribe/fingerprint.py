"""Fingerprints: short hashes of what produced an output, so a rerun can tell whether that output is still valid.

    from medscribe import fingerprint as fp
    parts = {"model": str(path), "model_files": fp.model_files_hash(path), "input": fp.file_hash(test_jsonl)}
    record = fp.make(parts)                  # {"digest": "<16 hex>", "parts": parts}
    fp.changes(old_record, record)           # [("model_files", "3fa2...", "91bc...")], [] when equal

Every hash is the first 16 hex characters of a sha256. Large weight files are identified by name + size +
mtime (hashing gigabytes on every rerun would cost more than the run); small files (adapters, tokenizers,
configs, data files) by their content. `ask` (run folders), `pipeline` (data, sft) use these; a stage that records
a fingerprint writes it with medscribe.io, atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from medscribe.io import sha256_file

# Files above this size are identified by name/size/mtime instead of content (LoRA adapters stay well below).
CONTENT_HASH_LIMIT = 256 * 1024 * 1024
# What identifies a model folder: weights, tokenizer, configs, chat templates (not READMEs or images).
MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model", ".txt", ".jinja",
                       ".tiktoken"}


def short_hash(obj: Any) -> str:
    """16 hex chars of the sha256 of `obj` (a str as is, anything else as canonical JSON)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """16 hex chars of the sha256 of the file's content."""
    return sha256_file(path)[:16]


def _stat_entry(path: Path, root: Path) -> list[Any]:
    st = path.stat()  # follows symlinks (HF cache snapshots link to blobs)
    return [path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]


def resolve_model_dir(name: str) -> Path | None:
    """A local model folder, or a hub id already in the local HF cache; None when neither (never downloads)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or "/" not in name or name.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached: the backend that loads it will say so; the identity is then the name only
        return None


def model_files_hash(name: str) -> str:
    """Hash of the names, sizes and mtimes of a model folder's weight/tokenizer/config files.

    A model that is neither a folder nor cached hashes its name with a marker ('missing:NAME')."""
    folder = resolve_model_dir(str(name))
    if folder is None:
        return short_hash(f"missing:{name}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_FILE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return short_hash([_stat_entry(p, folder) for p in files])


def folder_content_hash(folder: str | Path) -> str | None:
    """Hash of every file in `folder` (recursively, hidden files and checkpoints excluded): content for files up
    to CONTENT_HASH_LIMIT, name/size/mtime above it. None when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.parts[0].startswith("checkpoint-"):
            continue
        if path.stat().st_size <= CONTENT_HASH_LIMIT:
            entries.append([rel.as_posix(), sha256_file(path)])
        else:
            entries.append(_stat_entry(path, folder))
    return short_hash(entries)


def adapter_hash(adapter: str | Path | None) -> str | None:
    """Hash of a PEFT adapter folder (adapter_config.json, weights, the tokenizer sft saved with it); None: none."""
    if not adapter:
        return None
    return folder_content_hash(adapter) or short_hash(f"missing:{adapter}")


def public_url(url: str | None) -> str | None:
    """A server URL without credentials: user:password@, query string and fragment are dropped."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# The index manifest's fields that say what is in the index (not when or how fast it was built).
INDEX_IDENTITY = ("collection", "space", "embedding_model", "dimension", "query_prefix", "passage_prefix",
                  "normalized", "corpus", "knowledge", "chunk_size", "chunk_overlap")


def index_fingerprint(settings: Any, retriever: Any = None) -> str:
    """What the retriever searches: for an embedded index, a hash of index_manifest.json's identifying fields
    (corpus hash and rows, knowledge files, model, prefixes, chunking); for a Chroma server (whose manifest, if
    any, may be another machine's), the collection's row count and model. `retriever` is used when given."""
    manifest = None
    if not settings.index.server_url:
        from medscribe.index.store import read_manifest

        manifest = read_manifest(Path(settings.paths.index))
    if manifest is not None:
        identity = {key: manifest.get(key) for key in INDEX_IDENTITY}
        if isinstance(identity.get("corpus"), dict):
            identity["corpus"] = {k: v for k, v in identity["corpus"].items() if k in ("sha256", "rows")}
        return short_hash(identity)
    if retriever is None:
        from medscribe.index import Retriever

        retriever = Retriever.open(settings)
    embedder = getattr(retriever, "embedder", None)
    return short_hash({
        "collection": settings.index.collection,
        "server": public_url(settings.index.server_url),
        "count": getattr(retriever, "size", None),
        "model": getattr(embedder, "identity", settings.index.embedding_model),
    })


def make(parts: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint record: {"digest": 16 hex of the canonical JSON of parts, "parts": parts}."""
    return {"digest": short_hash(parts), "parts": parts}


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(part, old value, new value) for every part that differs; a part present on one side only counts."""
    old_parts = (old or {}).get("parts") or {}
    new_parts = new.get("parts") or {}
    return [(key, old_parts.get(key), new_parts.get(key))
            for key in sorted(set(old_parts) | set(new_parts)) if old_parts.get(key) != new_parts.get(key)]


def show(value: Any) -> str:
    """A part's value for a one-line message: hashes cut to 8 chars, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value):
        return value[:8] + "..."
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_changes(diff: list[tuple[str, Any, Any]], labels: dict[str, str] | None = None) -> str:
    """'another adapter (adapter: 3fa2... -> 91bc...)': what changed, for a one-line message."""
    labels = labels or {}
    what = list(dict.fromkeys(labels.get(key, "other settings") for key, _, _ in diff))
    details = "; ".join(f"{key}: {show(a)} -> {show(b)}" for key, a, b in diff[:4])
    if len(diff) > 4:
        details += f"; +{len(diff) - 4} more"
    return f"{', '.join(what)} ({details})"


def read(path: str | Path) -> dict[str, Any] | None:
    """A fingerprint record written by `make` + atomic_write_json, or None when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "parts" in record else None
