"""Tiny data, settings and a fake retriever shared by the sft tests (a plain module: `conftest` names clash)."""

from __future__ import annotations

import json
from pathlib import Path

from medscribe.schemas import Hit
from medscribe.settings import load_settings

ORGANS = [("печень", "КТ"), ("почка", "УЗИ"), ("головной мозг", "МРТ")]


def report_rows(n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        organ, modality = ORGANS[i % 3]
        rows.append({
            "id": f"r{i}", "task": "report", "input": f"Очаг {i} мм, {organ}, четкие контуры.",
            "target": f"Киста ({organ}) {i % 4}", "organ": organ, "modality": modality, "split": "train",
            "messages": [],  # data writes a chat-format column too: sft must ignore it
        })
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_data(root: Path, n_train: int = 8, n_eval: int = 4) -> Path:
    data = root / "data"
    write_jsonl(data / "train.jsonl", report_rows(n_train))
    if n_eval:
        write_jsonl(data / "eval.jsonl", report_rows(n_eval, start=100))
    return data


def tiny_sft_flags(root: Path, model_dir: Path, **sft) -> dict:
    """Settings flags for a 2-3 step run on the tiny model (fast on 2 CPU cores)."""
    base = {
        "backend": "hf", "base_model": str(model_dir), "load_in_4bit": False, "max_steps": 2, "batch_size": 2,
        "grad_accum": 1, "eval_steps": 1, "logging_steps": 1, "max_seq_length": 384, "lora_r": 4,
        "lora_alpha": 8, "report_to": "none", "run_name": "t",
    }
    base.update(sft)
    return {"paths": {"data": str(root / "data"), "sft": str(root / "sft")}, "sft": base}


def tiny_settings(root: Path, model_dir: Path, **sft):
    return load_settings(flags=tiny_sft_flags(root, model_dir, **sft))


def cli_args(root: Path, model_dir: Path, *extra: str) -> list[str]:
    """`medscribe sft` arguments mirroring tiny_sft_flags, through env-free flags and a TOML file."""
    return ["sft", "--base-model", str(model_dir), *extra]


def write_config(root: Path, model_dir: Path, **sft) -> Path:
    """A medscribe.toml for CLI tests (flags cover only the common knobs)."""
    flags = tiny_sft_flags(root, model_dir, **sft)
    lines = ["[paths]"] + [f'{k} = "{v}"' for k, v in flags["paths"].items()] + ["", "[sft]"]
    for key, value in flags["sft"].items():
        if value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path = root / "medscribe.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class FakeRetriever:
    """The Retriever's `search_many`: returns the query's own record, a duplicate of its answer under another
    id, and neighbours, so tests can prove that sft drops the first two. Records every call."""

    def __init__(self, corpus: list[dict]):
        self.corpus = {r["id"]: r for r in corpus}
        self.calls: list[dict] = []

    def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
        self.calls.append({"queries": list(queries), "k": k, "filters": filters, "exclude_ids": exclude_ids})
        out = []
        for query, _excluded in zip(queries, exclude_ids or [set()] * len(queries), strict=True):
            own = next((r for r in self.corpus.values() if r["input"] == query), None)
            hits = []
            if own is not None:  # a buggy index that ignores exclude_ids would return these first
                hits.append(Hit(id=own["id"], text=own["input"], answer=own["target"], score=1.0))
                hits.append(Hit(id=own["id"] + "-dup", text=own["input"], answer=own["target"], score=0.99))
            for r in self.corpus.values():
                if own is None or r["target"] != own["target"]:
                    hits.append(Hit(id=r["id"], text=r["input"], answer=r["target"], score=0.5,
                                    metadata={"organ": r.get("organ"), "modality": r.get("modality")}))
            out.append(hits[:k])
        return out
