"""Images in ask: image_url parts (base64 data URLs) to an OpenAI-compatible server, a local tiny Qwen2-VL (base
and with a LoRA adapter saved like sft saves one), and bad images as errors naming file, row and field."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from ask_helpers import read_results, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vision_kit import build_tiny_vlm, write_corrupt, write_png  # noqa: E402

from medscribe.ask import ask_one, run_batch  # noqa: E402
from medscribe.errors import UsageError  # noqa: E402


def _image_part(message: dict) -> dict:
    parts = [p for p in message["content"] if p["type"] == "image_url"]
    assert len(parts) == 1
    return parts[0]


def test_single_ask_sends_the_image_as_a_data_url(tmp_path, server, make_settings):
    image = write_png(tmp_path / "scan.png", seed=5)
    row = ask_one(make_settings(base_url=server.base_url, k=0), "Затемнение в нижней доле справа",
                  organ="легкие", modality="рентген", image=str(image))
    assert row["parse_ok"] and row["prediction"].startswith("conclusion:")
    user = server.requests[0]["messages"][-1]
    url = _image_part(user)["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image.read_bytes()  # the picture itself, not a path
    text = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert text and "Затемнение в нижней доле справа" in text[0] and "легкие" in text[0]
    assert isinstance(server.requests[0]["messages"][0]["content"], str)  # only the user turn has parts


def test_batch_reads_an_image_column_relative_to_the_input_file(tmp_path, server, make_settings):
    from PIL import Image

    folder = tmp_path / "batch"
    write_png(folder / "images" / "a.png", seed=1)
    Image.open(write_png(folder / "b.png", seed=2)).save(folder / "b.tiff")  # re-encoded as PNG for the server
    rows = [{"id": "a", "input": "Очаг 5 мм", "image": "images/a.png"},
            {"id": "b", "input": "Очаг 7 мм", "image": str(folder / "b.tiff")},
            {"id": "c", "input": "Очаг 9 мм"}]
    summary = run_batch(make_settings(base_url=server.base_url, k=0), write_jsonl(folder / "in.jsonl", rows), run="v")
    assert summary["answered"] == 3
    sent = {json.dumps(r["messages"][-1]["content"], ensure_ascii=False): r for r in server.requests}
    with_images = [r for r in server.requests if isinstance(r["messages"][-1]["content"], list)]
    assert len(with_images) == 2 and len(sent) == 3
    urls = sorted(_image_part(r["messages"][-1])["image_url"]["url"][:22] for r in with_images)
    assert urls == ["data:image/png;base64,", "data:image/png;base64,"]
    log = [json.loads(line) for line in (tmp_path / "ask" / "v" / "log.jsonl").read_text().splitlines()]
    logged = [m for entry in log for m in entry["messages"] if isinstance(m["content"], list)]
    assert logged and all("base64" not in json.dumps(m) for m in logged)  # the log keeps paths, not pixels


def test_bad_images_are_errors_naming_file_row_and_field(tmp_path, server, make_settings):
    settings = make_settings(base_url=server.base_url, k=0)
    write_corrupt(tmp_path / "broken.png")
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "input": "x y z", "image": "Иванов.png"}])
    with pytest.raises(UsageError, match=r"in\.jsonl:line 1: field 'image': file not found") as missing:
        run_batch(settings, path, run="bad")
    assert "Иванов" not in str(missing.value)  # the file name may be the patient's
    path = write_jsonl(tmp_path / "in2.jsonl", [{"id": "a", "input": "x y z"}, {"id": "b", "input": "q",
                                                                                  "image": "broken.png"}])
    with pytest.raises(UsageError, match=r"in2\.jsonl:line 2: field 'image': not an image"):
        run_batch(settings, path, run="bad2")
    with pytest.raises(UsageError, match="--image: field 'image': file not found"):
        ask_one(settings, "Очаг", image=str(tmp_path / "nope.png"))
    assert server.requests == []  # nothing was asked


def test_cli_image_flag(tmp_path, server, monkeypatch):
    from typer.testing import CliRunner

    from medscribe.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDSCRIBE_PATHS__ASK", str(tmp_path / "ask"))
    write_png(tmp_path / "scan.png", seed=4)
    runner = CliRunner()
    result = runner.invoke(app, ["ask", "Очаг 5 мм", "--image", "scan.png", "--base-url", server.base_url,
                                 "--no-rag", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parse_ok"] is True
    assert _image_part(server.requests[0]["messages"][-1])["image_url"]["url"].startswith("data:image/png;base64,")
    missing = runner.invoke(app, ["ask", "Очаг", "--image", "Иванов.png", "--base-url", server.base_url, "--no-rag"])
    assert missing.exit_code == 2 and "--image: field 'image': file not found" in missing.output
    batch = runner.invoke(app, ["ask", "--input", "x.jsonl", "--image", "scan.png", "--base-url", server.base_url])
    assert batch.exit_code == 2 and "--image are for a single TEXT" in batch.output


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")


def _lora_adapter(model_dir: Path, out: Path) -> Path:
    """A LoRA adapter + processor folder as a vision sft run writes it (no training: weights made non-zero)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from medscribe.sft.vision import language_lora_targets
    from medscribe.vlm import load_processor, load_vlm, save_processor

    model = get_peft_model(load_vlm(model_dir), LoraConfig(r=2, lora_alpha=4, target_modules=language_lora_targets(
        ["q_proj", "v_proj"]), task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(str(out))
    save_processor(load_processor(model_dir, max_pixels=56 * 56)[0], out)
    return out


def test_local_vision_model_answers_with_the_image(tmp_path, tiny_vlm, make_settings):
    write_png(tmp_path / "images" / "a.png", seed=1)
    write_png(tmp_path / "images" / "b.png", seed=9)
    rows = [{"id": "a", "input": "Очаг 5 мм", "image": "images/a.png"},
            {"id": "b", "input": "Очаг 5 мм", "image": "images/b.png"},
            {"id": "c", "input": "Очаг 5 мм"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    # one batch of rows with and without an image: the processor matches images to their rows
    settings = make_settings(backend="local", local_model=str(tiny_vlm), k=0, max_new_tokens=6, batch_size=3,
                             device="cpu")
    summary = run_batch(settings, path, run="base")
    results = {r["id"]: r for r in read_results(tmp_path / "ask" / "base")}
    assert summary["answered"] == 3 and all(r["completion_tokens"] for r in results.values())
    # a random model, so the answer is noise: but the image changed it (same text, other picture / no picture)
    assert len({results[i]["raw"] for i in "abc"}) > 1 or len({results[i]["prompt_tokens"] for i in "ac"}) > 1
    assert results["a"]["prompt_tokens"] > results["c"]["prompt_tokens"]  # image tokens reached the model

    adapter = _lora_adapter(tiny_vlm, tmp_path / "adapter")
    settings = make_settings(backend="local", local_model=str(tiny_vlm), adapter=str(adapter), k=0,
                             max_new_tokens=6, device="cpu")
    tuned = ask_one(settings, "Очаг 5 мм", image=str(tmp_path / "images" / "a.png"))
    assert tuned["raw"] != results["a"]["raw"]  # the adapter was applied
    from medscribe.ask.core import make_backend

    info = make_backend(settings).describe()
    assert info["vision"] is True and info["tokenizer_source"] == "adapter"


def test_text_only_local_model_refuses_images(tmp_path, tiny_model_dir, make_settings):
    write_png(tmp_path / "a.png")
    settings = make_settings(backend="local", local_model=str(tiny_model_dir), k=0)
    with pytest.raises(UsageError, match="not a vision-language model"):
        ask_one(settings, "Очаг 5 мм", image=str(tmp_path / "a.png"))
