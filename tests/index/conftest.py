"""Fixtures for the index tests: settings pointing into tmp_path, a tiny corpus, a shared MiniLM embedder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from index_helpers import CASES, write_corpus  # noqa: E402


@pytest.fixture
def cases() -> list[dict]:
    return [dict(r) for r in CASES]


@pytest.fixture
def make_settings(tmp_path, minilm):
    """settings(**index_overrides) with paths.data/index inside tmp_path and the packaged MiniLM."""
    from medscribe.settings import load_settings

    def make(**index):
        return load_settings(
            None,
            flags={
                "paths": {"data": str(tmp_path / "data"), "index": str(tmp_path / "index")},
                "index": {"embedding_model": minilm, "batch_size": 16, "device": "cpu", **index},
            },
        )

    return make


@pytest.fixture
def corpus(tmp_path, cases) -> Path:
    return write_corpus(tmp_path / "data" / "corpus.jsonl", cases)


@pytest.fixture
def built(make_settings, corpus):
    """(settings, build report) for the tiny corpus."""
    from medscribe.index import build_index

    settings = make_settings()
    return settings, build_index(settings, show_progress=False)
