"""Two-stage LoRA in one run on the tiny model: stage 1 (MLP modules, knowledge documents as plain text) merged
into the base, stage 2 (attention +
gate_proj, retrieved context in the prompt) trained as a fresh adapter on the merged model; each stage in the
manifest, and `ask` loading what the run folder names (the merged stage-1 model + the stage-2 adapter)."""

from __future__ import annotations

import json

from sft_helpers import FakeRetriever, report_rows, tiny_settings, write_data

MLP = ["gate_proj", "up_proj", "down_proj"]
KNOWLEDGE = ("# Кисты печени\n\n" + "Киста печени — полость с жидкостью, чаще доброкачественная. " * 12
             + "\n\n## Liver cysts\n\n" + "A simple liver cyst is a thin-walled fluid-filled cavity. " * 12)
ATTENTION_GATE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _logits(local_model, adapter, text="Очаг 5 мм, печень."):
    import torch

    from medscribe.ask.backend_local import LocalBackend
    from medscribe.settings import load_settings

    ask = load_settings(flags={"ask": {"backend": "local", "local_model": str(local_model),
                                       "adapter": str(adapter) if adapter else None, "device": "cpu"}}).ask
    backend = LocalBackend(ask)
    enc = backend.tokenizer(backend.render([{"role": "user", "content": text}]), return_tensors="pt")
    with torch.inference_mode():
        return backend.model(**enc).logits[0, -1].float()


def test_two_stage_lora_merges_stage_one_and_ask_loads_the_pair(tiny_model_dir, tmp_path):
    import torch

    from medscribe.sft import run_sft

    write_data(tmp_path)
    knowledge = tmp_path / "knowledge" / "cysts.md"
    knowledge.parent.mkdir()
    knowledge.write_text(KNOWLEDGE, encoding="utf-8")
    stages = [
        {"name": "knowledge", "text": [str(knowledge.parent)], "target_modules": MLP, "max_steps": 2,
         "learning_rate": 0.05, "merge": True},
        {"name": "rag", "target_modules": ATTENTION_GATE, "rag_context": True, "max_steps": 2,
         "learning_rate": 0.05},
    ]
    settings = tiny_settings(tmp_path, tiny_model_dir, stages=stages, warmup_ratio=0.0, merge_dtype="bf16", rag_k=1,
                             max_seq_length=1024)
    manifest = run_sft(settings, retriever=FakeRetriever(report_rows(8)), merge=True)
    run = tmp_path / "sft" / "t"
    one, two = manifest["stages"]
    merged = run / "stages" / "knowledge" / "merged"
    # each stage is in the manifest: its modules, its base, whether it was merged, its context
    assert one["merged"] == str(merged) and one["base_model_path"] == str(tiny_model_dir)
    assert two["base_model_path"] == str(merged) and "merged" not in two
    assert one["settings"]["target_modules"] == MLP and two["settings"]["target_modules"] == ATTENTION_GATE
    # stage 1 trained on the document's chunks as plain text: every token carries loss
    assert one["selection"]["documents"] == ["cysts.md"] and one["selection"]["chunks"] >= 2
    assert one["data"]["train"]["knowledge_text"] is True
    assert one["data"]["train"]["loss_tokens"] == one["data"]["train"]["tokens"] > 0
    examples = json.loads((run / "stages" / "knowledge" / "examples.json").read_text())
    assert "".join(c["text"] for c in examples["train"][0]).count("Киста печени") >= 1
    assert two["data"]["train"]["rag_context"] is True and two["data"]["train"]["mean_context_hits"] > 0
    saved = json.loads((run / "training_config.json").read_text())
    assert [s["name"] for s in saved["stages"]] == ["knowledge", "rag"]

    # stage 1 really is in the merged model: MLP weights moved, attention weights are the base's
    base, stage1 = _weights(tiny_model_dir), _weights(merged)
    mlp = [k for k in base if any(f".{m}." in k for m in MLP)]
    attention = [k for k in base if any(f".{m}." in k for m in ("q_proj", "k_proj", "v_proj", "o_proj"))]
    assert mlp and attention
    assert all(not torch.equal(stage1[k], base[k].to(stage1[k].dtype)) for k in mlp)
    assert all(torch.equal(stage1[k], base[k].to(stage1[k].dtype)) for k in attention)

    # stage 2 is a fresh adapter on the merged model, on the other modules
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(merged)
    assert sorted(config["target_modules"]) == sorted(ATTENTION_GATE)

    # the run folder says what ask loads, and that pair is the trained model (the base + stage 2 is not)
    assert manifest["serve"]["local_model"] == str(merged) and manifest["serve"]["adapter"] == str(run / "adapter")
    served = _logits(manifest["serve"]["local_model"], manifest["serve"]["adapter"])
    wrong = _logits(tiny_model_dir, run / "adapter")
    full = _logits(run / "merged", None)  # --merge: stage 2 merged into the merged stage 1
    assert manifest["merged"] == str(run / "merged")
    assert (served - wrong).abs().max() > 10 * (served - full).abs().max(), (
        float((served - wrong).abs().max()), float((served - full).abs().max()))

    # and ask answers through it end to end
    from medscribe.ask import ask_one
    from medscribe.settings import load_settings

    ask_settings = load_settings(flags={"ask": {"backend": "local", "local_model": manifest["serve"]["local_model"],
                                                "adapter": manifest["serve"]["adapter"], "k": 0, "device": "cpu",
                                                "max_new_tokens": 4}})
    row = ask_one(ask_settings, "Очаг 5 мм, печень.", task="report")
    assert row["error"] is None and row["raw"] is not None
