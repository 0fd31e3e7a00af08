"""Whether a pipeline step's output is still what its inputs would produce (the pipeline's make rules).

    from medscribe.pipeline_state import data_status, sft_status, ask_status
    current, reason = data_status(settings)          # (False, "2 input file(s) changed since ...")

- data: the data manifest records the sha256 of every input file and a hash of the data + prompt settings; the
  step is current when the files found now have the same contents and the settings the same hash.
- sft: `<sft run>/pipeline_fingerprint.json` (written here after training) records the train/eval files' content,
  the sft and prompt settings, the base model's files and, with sft.rag_context, the index and k. An adapter with
  no such record (trained outside the pipeline, or before it kept one) is judged like make does: stale when
  train.jsonl is newer than the adapter, else kept with a warning.
- ask: the run's fingerprint.json (medscribe.ask.provenance) against the one this run would have.
Reasons never name input files (their names can hold PHI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medscribe import fingerprint as fp
from medscribe.io import atomic_write_json, sha256_file

SFT_RECORD = "pipeline_fingerprint.json"
SFT_LABELS = {"train": "other training data", "eval": "other eval data", "sft": "other sft settings",
              "prompt": "another prompt", "task": "another task", "base_model": "another base model",
              "base_model_files": "another base model (its files changed)", "index": "another index",
              "rag_k": "another number of retrieved cases"}


def data_status(settings: Any) -> tuple[bool, str]:
    """(current, why): is `paths.data` what `medscribe data` would build from the inputs and settings now?"""
    from medscribe.data import ingest
    from medscribe.data.manifest import config_hash

    path = Path(settings.paths.data) / "manifest.json"
    if not path.is_file():
        return False, "no data manifest yet"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recorded = sorted(item["sha256"] for item in manifest["inputs"])
        recorded_config = manifest["config_hash"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False, f"{path}: unreadable or without input hashes"
    data = settings.data
    options = {"include_hidden": data.include_hidden} if "include_hidden" in type(data).model_fields else {}
    current = sorted(sha256_file(source.path) for source in ingest.discover_files(list(data.inputs), **options))
    if recorded_config != config_hash(settings):
        return False, "the data or prompt settings changed since the last build"
    if current != recorded:
        changed = len(set(current) ^ set(recorded)) or abs(len(current) - len(recorded))
        return False, f"the input files changed since the last build ({changed} file hash(es) differ)"
    return True, "inputs and settings unchanged"


def sft_fingerprint(settings: Any, serving_k: int, retriever: Any = None) -> dict[str, Any]:
    """What an adapter trained now by the pipeline would be trained on (see the module docstring)."""
    from medscribe.ask.provenance import prompt_hash

    data_dir = Path(settings.paths.data)
    sft = settings.sft
    eval_file = data_dir / "eval.jsonl"
    parts: dict[str, Any] = {
        "train": fp.file_hash(data_dir / "train.jsonl"),
        "eval": fp.file_hash(eval_file) if eval_file.is_file() else None,
        # run_name names the folder, report_to/logging where progress goes: neither changes the adapter
        "sft": fp.short_hash(sft.model_dump(mode="json", exclude={"run_name", "report_to", "logging_steps"})),
        "prompt": prompt_hash(settings, [settings.data.task]),
        "task": settings.data.task,
        "base_model": str(sft.base_model),
        "base_model_files": fp.model_files_hash(str(sft.base_model)),
    }
    if sft.rag_context:
        parts["index"] = fp.index_fingerprint(settings, retriever)
        parts["rag_k"] = sft.rag_k or serving_k
    return fp.make(parts)


def sft_status(sft_dir: Path, record: dict[str, Any], data_dir: Path) -> tuple[bool, str, bool]:
    """(current, why, verified) for the adapter in `sft_dir` against `record` (sft_fingerprint)."""
    adapter = sft_dir / "adapter" / "adapter_config.json"
    if not adapter.is_file():
        return False, "no adapter yet", True
    stored = fp.read(sft_dir / SFT_RECORD)
    if stored is None:
        train = data_dir / "train.jsonl"
        if train.is_file() and train.stat().st_mtime_ns > adapter.stat().st_mtime_ns:
            return False, "train.jsonl is newer than the adapter (which has no record of its training data)", True
        return True, (f"{sft_dir / 'adapter'} has no record of what it was trained on ({SFT_RECORD}); kept, as it "
                      "is newer than train.jsonl: use --force sft to retrain it"), False
    diff = fp.changes(stored, record)
    if diff:
        return False, "the adapter was trained with " + fp.describe_changes(diff, SFT_LABELS), True
    return True, "training data and settings unchanged", True


def record_sft(sft_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_json(sft_dir / SFT_RECORD, {**record, "adapter": fp.adapter_hash(sft_dir / "adapter")})


def ask_status(run_dir: Path, record: dict[str, Any]) -> tuple[bool, str]:
    """(current, why): may the run in `run_dir` be resumed as the run `record` describes?"""
    from medscribe.ask.provenance import FINGERPRINT_FILE, LABELS

    stored = fp.read(run_dir / FINGERPRINT_FILE)
    if stored is None:
        has_results = (run_dir / "results.jsonl").is_file() and (run_dir / "results.jsonl").stat().st_size > 0
        return (not has_results), ("results without a fingerprint" if has_results else "a new run")
    diff = fp.changes(stored, record)
    if diff:
        return False, "made with " + fp.describe_changes(diff, LABELS)
    return True, "fingerprint unchanged"
