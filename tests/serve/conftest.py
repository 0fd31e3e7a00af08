"""Fixtures for the serve tests: a tiny model + LoRA adapter, a small real index, uvicorn on a free port.

The server runs in a thread of the test process (uvicorn.Server on 127.0.0.1), so tests can look at the
engine (batch sizes, queue depth) and the log while the real `openai` client drives it over HTTP.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

CASES = [
    {"id": "q-anemia", "text": "What are the symptoms of anemia?", "answer": "Fatigue, pallor and shortness of breath.",
     "task": "qa", "specialty": "hematology", "split": "train"},
    {"id": "q-diabetes", "text": "How is type 2 diabetes treated?", "answer": "Diet, exercise and metformin.",
     "task": "qa", "specialty": "endocrinology", "split": "train"},
    {"id": "q-asthma", "text": "What causes asthma attacks?", "answer": "Allergens, infections, cold air.",
     "task": "qa", "specialty": "pulmonology", "split": "train"},
    {"id": "q-migraine", "text": "Как предотвратить мигрень?",
     "answer": "Избегать триггеров; профилактические препараты.", "task": "qa", "specialty": "neurology",
     "split": "train"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter(model_dir: Path, out: Path) -> Path:
    """A LoRA adapter with non-zero weights (so tuned answers differ from base) and the tokenizer, like sft saves."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "adapter")


@pytest.fixture(scope="session")
def serve_root(tiny_model_dir, tiny_adapter, minilm, tmp_path_factory) -> dict:
    """Paths + flags of a served setup with a real (embedded Chroma) index over CASES."""
    root = tmp_path_factory.mktemp("serve")
    corpus = root / "data" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CASES), encoding="utf-8")
    flags = {
        "paths": {"data": str(root / "data"), "index": str(root / "index"), "artifacts": str(root)},
        "index": {"embedding_model": minilm, "batch_size": 16, "device": "cpu", "k": 1},
        "data": {"task": "qa"},
        "ask": {"backend": "local", "local_model": str(tiny_model_dir), "adapter": str(tiny_adapter),
                "device": "cpu", "max_new_tokens": 16},
        "serve": {"batch_wait_ms": 30.0, "max_batch": 8},
    }
    from medscribe.index import build_index
    from medscribe.settings import load_settings

    build_index(load_settings(None, flags), show_progress=False)
    return {"root": root, "flags": flags}


class RunningServer:
    def __init__(self, app, port: int):
        import uvicorn

        self.app, self.port = app, port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def engine(self):
        return self.app.state.engine

    def client(self, **kwargs):
        from openai import OpenAI

        return OpenAI(base_url=self.url + "/v1", api_key=kwargs.pop("api_key", "none"), max_retries=0,
                      timeout=kwargs.pop("timeout", 60), **kwargs)


def start_server(flags: dict, retriever=None, **serve) -> RunningServer:
    from medscribe.serve import build_app
    from medscribe.settings import load_settings

    merged = {**flags, "serve": {**flags.get("serve", {}), **serve}}
    settings = load_settings(None, merged)
    return RunningServer(build_app(settings, retriever=retriever), free_port())


@pytest.fixture(scope="module")
def server(serve_root):
    with start_server(serve_root["flags"]) as srv:
        yield srv
