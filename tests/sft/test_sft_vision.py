"""Vision-language sft on a tiny random Qwen2-VL built here: data with an image column -> sft -> adapter + processor;
labels on the answer only (past the expanded image tokens); the prompt is the shared builder's with the image part."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sft_helpers import tiny_settings  # noqa: E402
from vision_kit import build_tiny_vlm, write_png  # noqa: E402

from medscribe.errors import UsageError  # noqa: E402
from medscribe.prompts import build_messages  # noqa: E402
from medscribe.schemas import Record  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")


def _example(tmp_path: Path, image: bool = True) -> tuple[dict, Record]:
    from medscribe.settings import PromptSection
    from medscribe.sft.vision import build_vision_examples

    (tmp_path / "images").mkdir(exist_ok=True)
    if image:
        write_png(tmp_path / "images" / "a.png", seed=3, size=(70, 50))
    record = Record(id="r1", task="report", input="Затемнение 12 мм в нижней доле.", target="Пневмония справа.",
                    organ="легкие", modality="рентген", image="images/a.png" if image else None)
    examples, stats = build_vision_examples([record], PromptSection(), tmp_path)
    return examples[0], record


def test_prompt_is_the_shared_builders_with_the_image_part(tmp_path):
    from medscribe.settings import PromptSection

    example, record = _example(tmp_path)
    text = build_messages(record, "report", PromptSection())
    assert example["prompt"][0] == text[0]  # the system prompt, untouched
    user = example["prompt"][-1]["content"]
    assert user[0] == {"type": "image", "image": str(tmp_path / "images" / "a.png")}
    assert user[1] == {"type": "text", "text": text[-1]["content"]}
    assert json.loads(example["completion"][0]["content"]) == {"result": "Пневмония справа."}
    plain, _ = _example(tmp_path, image=False)
    assert plain["prompt"] == text  # a row without an image: exactly the text prompt


def test_labels_are_the_answer_after_the_expanded_image_tokens(tmp_path, tiny_vlm):
    from medscribe.sft.vision import IGNORE_INDEX, encode_vision_example
    from medscribe.vlm import load_processor

    processor, _ = load_processor(tiny_vlm)
    example, _ = _example(tmp_path)
    row = encode_vision_example(example, processor)
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    n_image = row["input_ids"].count(image_id)
    assert n_image == int(row["image_grid_thw"][0].prod()) // 4 and n_image > 1  # the pad token was expanded
    labelled = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(labelled) == example["completion"][0]["content"] + "<|im_end|>"
    assert all(lab == IGNORE_INDEX or lab == t for t, lab in zip(row["input_ids"], row["labels"], strict=True))
    assert row["mm_token_type_ids"].count(1) == n_image
    assert row["pixel_values"].shape[0] == int(row["image_grid_thw"][0].prod())


def test_a_batch_mixes_image_and_text_only_rows(tmp_path, tiny_vlm):
    from medscribe.sft.vision import IGNORE_INDEX, VisionCollator
    from medscribe.vlm import load_processor, load_vlm

    processor, _ = load_processor(tiny_vlm)
    with_image, _ = _example(tmp_path)
    text_only, _ = _example(tmp_path, image=False)
    batch = VisionCollator(processor)([with_image, text_only])
    assert batch["image_grid_thw"].shape == (1, 3)  # one image in the batch, for its row only
    assert batch["input_ids"].shape == batch["labels"].shape == batch["mm_token_type_ids"].shape
    assert int(batch["mm_token_type_ids"][1].sum()) == 0 and int(batch["mm_token_type_ids"][0].sum()) > 0
    assert all((row != IGNORE_INDEX).any() for row in batch["labels"])
    loss = load_vlm(tiny_vlm)(**batch).loss
    assert math.isfinite(float(loss))


def _image_data(root: Path, n: int) -> None:
    """`medscribe data` output with an image column, made by the data stage itself."""
    from medscribe.data import run_data
    from medscribe.settings import load_settings

    src = root / "raw"
    lines = ["ID;Орган;Описание;Заключение;Снимок"]
    for i in range(n):
        write_png(src / "img" / f"Пациент_{i}.png", seed=i)
        lines.append(f"r{i};легкие;Затемнение {i} мм в нижней доле справа.;Пневмония {i % 3};img/Пациент_{i}.png")
    (src / "r.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    columns = {"id": "ID", "organ": "Орган", "finding": "Описание", "conclusion": "Заключение", "image": "Снимок"}
    run_data(load_settings(flags={"paths": {"data": str(root / "data")}, "data": {
        "inputs": [str(src / "r.csv")], "columns": columns, "test_per_group": 2, "eval_fraction": 0.2}}))


def test_data_with_images_to_a_vision_adapter(tmp_path, tiny_vlm):
    from medscribe.sft import run_sft

    _image_data(tmp_path, 12)
    train = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert train and all(r["image"].startswith("images/") for r in train)
    settings = tiny_settings(tmp_path, tiny_vlm, max_steps=2, eval_steps=2, image_max_pixels=56 * 56,
                             gradient_checkpointing=False)
    manifest = run_sft(settings)
    assert manifest["vision"] is True and manifest["data"]["train"]["rows_with_image"] == len(train)
    assert manifest["result"]["global_step"] == 2 and math.isfinite(manifest["result"]["final_train_loss"])
    assert manifest["data"]["train"]["loss_tokens"] > 0 and manifest["setup"]["cpu_fast"]["enabled"] is False
    adapter = Path(manifest["adapter"])
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert "visual" in config["target_modules"] and "(?!" in config["target_modules"]  # vision tower excluded
    assert (adapter / "preprocessor_config.json").is_file() and (adapter / "tokenizer.json").is_file()
    saved = json.loads((adapter / "preprocessor_config.json").read_text())
    assert saved["size"]["longest_edge"] == 56 * 56  # ask resizes like training did
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("visual" in k for k in keys) and any("language_model" in k for k in keys)
    history = json.loads((Path(manifest["run_dir"]) / "history.json").read_text())
    assert history  # the shared callbacks ran

    # ... and ask serves the test split with it: the images (images/<hash>.png, relative to test.jsonl) reach it
    from medscribe.ask import run_batch
    from medscribe.settings import load_settings

    test_rows = (tmp_path / "data" / "test.jsonl").read_text().splitlines()
    ask = load_settings(flags={"paths": {"ask": str(tmp_path / "ask")}, "ask": {
        "backend": "local", "local_model": str(tiny_vlm), "adapter": str(adapter), "k": 0, "max_new_tokens": 4,
        "device": "cpu"}})
    summary = run_batch(ask, tmp_path / "data" / "test.jsonl", run="tuned")
    assert summary["answered"] == len(test_rows) > 0 and summary["tokenizer_source"] == "adapter"
    log = [json.loads(line) for line in (tmp_path / "ask" / "tuned" / "log.jsonl").read_text().splitlines()]
    assert all(entry["messages"][-1]["content"][0]["type"] == "image" for entry in log)


def test_a_killed_vision_run_resumes_from_its_checkpoint(tmp_path, tiny_vlm):
    from medscribe.sft import run_sft

    _image_data(tmp_path, 10)
    first = run_sft(tiny_settings(tmp_path, tiny_vlm, max_steps=2, eval_steps=2, image_max_pixels=56 * 56,
                                  gradient_checkpointing=False))
    examples = (Path(first["run_dir"]) / "examples.json").read_text()
    with pytest.raises(UsageError, match="already has checkpoints"):
        run_sft(tiny_settings(tmp_path, tiny_vlm, max_steps=4, eval_steps=2))
    resumed = run_sft(tiny_settings(tmp_path, tiny_vlm, max_steps=4, eval_steps=2, image_max_pixels=56 * 56,
                                    gradient_checkpointing=False), resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["result"]["global_step"] == 4
    assert (Path(resumed["run_dir"]) / "examples.json").read_text() == examples  # the same examples
    steps = [e["step"] for e in json.loads((Path(resumed["run_dir"]) / "history.json").read_text())["train"]]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # no duplicated history


def test_image_rows_need_a_vision_language_base_model(tmp_path, tiny_model_dir):
    from medscribe.sft import run_sft

    _image_data(tmp_path, 6)
    with pytest.raises(UsageError, match="not a vision-language model"):
        run_sft(tiny_settings(tmp_path, tiny_model_dir))


def test_vision_runs_refuse_what_they_do_not_support(tmp_path, tiny_vlm):
    from medscribe.sft import run_sft

    _image_data(tmp_path, 6)
    with pytest.raises(UsageError, match="sft.rag_context is not supported"):
        run_sft(tiny_settings(tmp_path, tiny_vlm, rag_context=True))
    # a text-only method would silently train without the images: refused instead
    with pytest.raises(UsageError, match="sft.method = 'distill' is not supported"):
        run_sft(tiny_settings(tmp_path, tiny_vlm, method="distill"))


def _write_config(root: Path, model: Path, **sft) -> Path:
    values = {"backend": "unsloth", "base_model": str(model), "max_steps": 2, "batch_size": 2, "grad_accum": 1,
              "eval_steps": 2, "logging_steps": 1, "max_seq_length": 384, "lora_r": 4, "lora_alpha": 8,
              "report_to": "none", "run_name": "t", "image_max_pixels": 56 * 56, **sft}
    lines = ["[paths]", f'data = "{root / "data"}"', f'sft = "{root / "sft"}"', "", "[sft]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (root / "medscribe.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "medscribe.toml"


def _cli(config: Path, cwd: Path):
    import os
    import subprocess

    # a subprocess: unsloth patches transformers/peft on import, which must not leak into the other tests
    env = {**os.environ, "UNSLOTH_DISABLE_STATISTICS": "1"}
    return subprocess.run([sys.executable, "-c", "from medscribe.cli import app; app()", "--config", str(config),
                           "sft"], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_unsloth_vision_on_cpu_is_a_usage_error(tmp_path, tiny_vlm):
    pytest.importorskip("unsloth", reason="unsloth not installed")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the gpu test covers unsloth")
    _image_data(tmp_path, 6)
    proc = _cli(_write_config(tmp_path, tiny_vlm, load_in_4bit=False), tmp_path)
    assert proc.returncode == 2 and "FastVisionModel needs a CUDA GPU" in proc.stderr


@pytest.mark.gpu
def test_unsloth_fastvisionmodel_qlora_on_cuda(tmp_path, tiny_vlm):
    """The production path on CUDA: unsloth's FastVisionModel, 4-bit QLoRA, language layers only."""
    pytest.importorskip("unsloth", reason="unsloth not installed")
    _image_data(tmp_path, 12)
    proc = _cli(_write_config(tmp_path, tiny_vlm, load_in_4bit=True), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    manifest = json.loads((tmp_path / "sft" / "t" / "training_config.json").read_text())
    assert manifest["vision"] is True and manifest["setup"]["backend"] == "unsloth"
    assert manifest["setup"]["quantization"] == "nf4" and manifest["model"]["linear_4bit_layers"] > 0
    assert manifest["result"]["global_step"] == 2 and math.isfinite(manifest["result"]["final_train_loss"])
    assert (tmp_path / "sft" / "t" / "adapter" / "adapter_config.json").is_file()
