"""--engine vllm: the `vllm serve` command, and the front end's ProxyEngine against a real OpenAI-compatible
server (a local `medscribe serve`; on a CUDA machine with vllm installed, vllm itself)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import RunningServer, free_port

ASK = [{"role": "user", "content": "What are the symptoms of anemia?"}]


def settings_for(serve_root, **serve):
    from medscribe.settings import load_settings

    flags = {**serve_root["flags"], "serve": {**serve_root["flags"]["serve"], **serve}}
    return load_settings(None, flags)


def test_vllm_command(serve_root, tiny_adapter, tiny_model_dir, tmp_path):
    from medscribe.serve.vllm import vllm_command

    settings = settings_for(serve_root, vllm_port=8123, vllm_args=["--gpu-memory-utilization", "0.8"])
    cmd = vllm_command(settings)
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)]
    assert cmd[cmd.index("--port") + 1] == "8123" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--served-model-name") + 1] == tiny_model_dir.name
    assert "--enable-lora" in cmd and cmd[cmd.index("--lora-modules") + 1] == f"medscribe-tuned={tiny_adapter}"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16"  # r = 4, vLLM's minimum is 16
    assert cmd[-2:] == ["--gpu-memory-utilization", "0.8"]
    # the template sft saved beside the adapter (tokenizer.save_pretrained writes chat_template.jinja)
    assert cmd[cmd.index("--chat-template") + 1] == str(tiny_adapter / "chat_template.jinja")
    # A bigger rank is passed on; no template file: no --chat-template; no adapter: no LoRA flags.
    adapter = tmp_path / "a"
    shutil.copytree(tiny_adapter, adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 64}))
    (adapter / "chat_template.jinja").unlink()
    cmd = vllm_command(settings_for(serve_root, adapter=str(adapter)))
    assert cmd[cmd.index("--max-lora-rank") + 1] == "64" and "--chat-template" not in cmd
    plain = settings_for(serve_root)
    plain.ask.adapter = None
    assert "--enable-lora" not in vllm_command(plain)


def test_front_end_over_an_openai_compatible_upstream(server, serve_root):
    """The vllm engine's front end (ProxyEngine) with a medscribe serve as the upstream: same API and answers."""
    from medscribe.serve import served_models
    from medscribe.serve.app import create_app
    from medscribe.serve.metrics import Metrics
    from medscribe.serve.rag import RagFrontEnd
    from medscribe.serve.vllm import ProxyEngine

    settings = settings_for(serve_root, cache=False)
    metrics = Metrics()
    engine = ProxyEngine(server.url + "/v1", "tiny-llama0", "medscribe-tuned", metrics=metrics)
    rag = RagFrontEnd(settings)
    app = create_app(settings, engine, served_models(settings, True, rag.retriever()), rag=rag, metrics=metrics)
    with RunningServer(app, free_port()) as front:
        client, upstream = front.client(), server.client()
        direct = upstream.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=8, user="px")
        proxied = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=8, user="px")
        assert proxied.choices[0].message.content == direct.choices[0].message.content
        assert proxied.usage.completion_tokens == direct.usage.completion_tokens
        streamed = list(client.chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=8, stream=True))
        assert any(c.choices and c.choices[0].delta.content for c in streamed)
        rag_reply = client.chat.completions.create(model="medscribe-rag", messages=ASK)
        assert json.loads(rag_reply.choices[0].message.content)["citations"] is not None
        assert [h["id"] for h in rag_reply.model_extra["medscribe"]["retrieved"]] == ["q-anemia"]
        assert engine.depth == 0


@pytest.mark.gpu
def test_vllm_engine_end_to_end(serve_root):  # pragma: no cover - needs CUDA and vllm
    if shutil.which("vllm") is None:
        pytest.skip("vllm is not installed")
    from medscribe.serve.vllm import build_vllm_app

    settings = settings_for(serve_root, vllm_port=free_port())
    app, process = build_vllm_app(settings)
    try:
        with RunningServer(app, free_port()) as front:
            reply = front.client().chat.completions.create(model="medscribe-rag", messages=ASK)
            assert json.loads(reply.choices[0].message.content)
    finally:
        process.terminate()
        process.wait(timeout=60)
