"""Fixtures for the ask tests: the fault-injecting OpenAI-compatible server, a fake retriever, settings."""

from __future__ import annotations

import pytest
from fake_server import FakeServer

from medscribe.schemas import Hit


class FakeRetriever:
    """Has the Retriever's `search_many`; records each call so tests can check batching and exclusions."""

    def __init__(self):
        self.calls: list[dict] = []

    def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
        self.calls.append({"queries": list(queries), "k": k, "filters": filters, "exclude_ids": exclude_ids})
        return [
            [
                Hit(id=f"case-{j}", text=f"similar finding {j}", answer=f"similar conclusion {j}",
                    score=round(0.9 - j / 10, 2), metadata={"organ": "печень", "modality": "КТ"})
                for j in range(k)
            ]
            for _ in queries
        ]


@pytest.fixture
def fake_retriever() -> FakeRetriever:
    return FakeRetriever()


@pytest.fixture
def server():
    srv = FakeServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_settings(tmp_path):
    """Settings for tests: artifacts under tmp_path, short backoff and timeout, flags merged on top."""
    from medscribe.settings import load_settings

    def make(**ask):
        flags = {
            "paths": {"ask": str(tmp_path / "ask"), "index": str(tmp_path / "index")},
            "ask": {"retry_backoff": 0.01, "max_backoff": 0.05, "timeout": 1.0, "max_retries": 2, **ask},
        }
        return load_settings(None, flags)

    return make
