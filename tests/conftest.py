"""Session fixtures of the offline test kit (see tests/kit.py). Everything runs with the hub switched off."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub, so an accidental hub call fails loudly instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.pop("MEDSCRIBE_CONFIG", None)
os.environ.pop("OPENAI_API_KEY", None)

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kit import SAMPLE_DIR, build_tiny_causal_lm, minilm_path  # noqa: E402


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No test sees the developer's MEDSCRIBE_* variables or medscribe.toml in the working directory."""
    for key in list(os.environ):
        if key.startswith("MEDSCRIBE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def minilm() -> str:
    return minilm_path()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR
