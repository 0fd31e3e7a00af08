"""A curriculum (`[[sft.stages]]`) through the real CLI on the tiny model: stages in order on one adapter, one
history tagged by stage, each stage's settings reaching its trainer, resume at the right stage (mid-stage and
between stages), a changed curriculum refused on resume, and bad stages refused before any training."""

from __future__ import annotations

import json

import pytest
from sft_helpers import report_rows, write_config, write_jsonl
from typer.testing import CliRunner

from medscribe.cli import app

runner = CliRunner()

TURNS = [
    {"role": "user", "content": "Болит голова третий день."},
    {"role": "assistant", "content": "Есть ли температура?"},
    {"role": "user", "content": "Нет, температуры нет."},
    {"role": "assistant", "content": "Измерьте давление и примите парацетамол."},
]


def dialogue_rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"d{i}", "task": "dialogue", "input": TURNS[-2]["content"], "target": f"{TURNS[-1]['content']} {i}",
             "turns": [*TURNS[:-1], {"role": "assistant", "content": f"{TURNS[-1]['content']} {i}"}],
             "loss": "last", "split": "train"} for i in range(start, start + n)]


def write_curriculum_data(root):
    write_jsonl(root / "data" / "train.jsonl", report_rows(6) + dialogue_rows(4))
    write_jsonl(root / "data" / "eval.jsonl", report_rows(2, start=100) + dialogue_rows(2, start=100))
    return write_jsonl(root / "hard.jsonl", report_rows(4, start=200))


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def curriculum_config(root, model_dir, stages: list[dict], **sft):
    config = write_config(root, model_dir, warmup_ratio=0.0, save_total_limit=5, **sft)
    text = config.read_text(encoding="utf-8")
    for stage in stages:
        text += "\n[[sft.stages]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in stage.items())
    config.write_text(text, encoding="utf-8")
    return config


THREE = [
    {"name": "single-turn", "turns": "single", "max_steps": 2, "learning_rate": 1e-3},
    {"name": "multi-turn", "turns": "multi", "max_steps": 1, "learning_rate": 5e-4},
    {"name": "hard-negatives", "data": "HARD", "where": {"organ": ["печень", "почка"]}, "max_steps": 1,
     "learning_rate": 2e-4},
]


def three_stages(hard) -> list[dict]:
    return [{**s, "data": str(hard)} if s.get("data") == "HARD" else dict(s) for s in THREE]


def invoke(config, *args):
    return runner.invoke(app, ["--config", str(config), "sft", *args])


def manifest(root, run="t"):
    return json.loads((root / "sft" / run / "training_config.json").read_text(encoding="utf-8"))


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_stages_train_in_order_on_one_adapter_with_one_history(tiny_model_dir, tmp_path):
    import torch

    hard = write_curriculum_data(tmp_path)
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, three_stages(hard)))
    assert result.exit_code == 0, result.output
    assert "stage 1/3 single-turn: 6 rows" in result.output and "stage 2/3 multi-turn: 4 rows" in result.output
    run = tmp_path / "sft" / "t"
    m = manifest(tmp_path)
    assert [s["name"] for s in m["stages"]] == ["single-turn", "multi-turn", "hard-negatives"]
    assert [s["selection"]["rows_selected"] for s in m["stages"]] == [6, 4, 2]
    assert [s["data"]["train"]["examples"] for s in m["stages"]] == [6, 4, 2]
    hard_examples = json.loads((run / "stages" / "hard-negatives" / "examples.json").read_text())["train"][0]
    assert [e["id"] for e in hard_examples] == ["r201", "r202"]  # where organ in (печень, почка)
    assert m["stages"][1]["data"]["train"]["dialogue_rows"] == 4
    assert "dialogue_rows" not in m["stages"][0]["data"]["train"]
    assert m["stages"][2]["selection"]["file"] == str(hard)
    assert [(s["first_step"], s["last_step"]) for s in m["stages"]] == [(1, 2), (3, 3), (4, 4)]
    assert m["result"]["global_step"] == 4 and m["data"]["train"]["examples"] == 12
    # ONE history over the run, each entry tagged with its stage, steps counted over the whole run
    history = json.loads((run / "history.json").read_text())
    assert [(e["step"], e["stage"], e["stage_step"]) for e in history["train"]] == [
        (1, "single-turn", 1), (2, "single-turn", 2), (3, "multi-turn", 1), (4, "hard-negatives", 1)]
    assert [e["stage"] for e in history["eval"]] == ["single-turn", "single-turn", "multi-turn", "hard-negatives"]
    assert [s["name"] for s in history["stages"]] == ["single-turn", "multi-turn", "hard-negatives"]
    # each stage's trainer got the stage's learning rate and steps
    for stage, lr, steps in (("single-turn", 1e-3, 2), ("multi-turn", 5e-4, 1), ("hard-negatives", 2e-4, 1)):
        ckpt = run / "stages" / stage / "checkpoints" / f"checkpoint-{steps}"
        args = torch.load(ckpt / "training_args.bin", weights_only=False)
        assert args.learning_rate == lr and args.max_steps == steps, stage
    # the same adapter goes on: stage 2 starts from stage 1's weights (a fresh LoRA B is zero)
    single = adapter_weights(run / "stages" / "single-turn" / "adapter")
    multi = adapter_weights(run / "stages" / "multi-turn" / "adapter")
    b = [k for k in single if "lora_B" in k]
    moved = sum(float((multi[k] - single[k]).abs().sum()) for k in b)
    size = sum(float(single[k].abs().sum()) for k in b)
    assert 0 < moved < size, (moved, size)
    final = adapter_weights(run / "adapter")
    last = adapter_weights(run / "stages" / "hard-negatives" / "adapter")
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert m["serve"] == {"local_model": str(tiny_model_dir), "adapter": str(run / "adapter"),
                          "command": f"medscribe ask --backend local --local-model {tiny_model_dir} "
                                     f"--adapter {run / 'adapter'}"}


def _kill(monkeypatch, stage: str, event: str):
    """Make the curriculum raise KeyboardInterrupt in stage `stage` at `event` (on_save after checkpoint-1, or
    on_train_begin: before the stage's first checkpoint)."""
    from medscribe.sft import curriculum

    original = curriculum._combined_history_callback

    def patched(run_dir, records, name, offset):
        callback = original(run_dir, records, name, offset)
        if name == stage:
            def stop(*args, **kwargs):
                raise KeyboardInterrupt
            setattr(callback, event, stop)
        return callback

    monkeypatch.setattr(curriculum, "_combined_history_callback", patched)


def test_resume_mid_stage_continues_that_stage_without_duplicate_steps(tiny_model_dir, tmp_path, monkeypatch):
    write_curriculum_data(tmp_path)
    stages = [{"name": "single", "turns": "single", "max_steps": 2},
              {"name": "multi", "turns": "multi", "max_steps": 2}]
    config = curriculum_config(tmp_path, tiny_model_dir, stages)
    _kill(monkeypatch, "multi", "on_save")
    assert invoke(config).exit_code == 130
    monkeypatch.undo()
    run = tmp_path / "sft" / "t"
    assert (run / "stages" / "single" / "done.json").is_file() and not (run / "stages" / "multi" / "done.json").exists()
    again = invoke(config)  # a plain rerun would start a second run over the first
    assert again.exit_code == 2 and "continue it with --resume" in again.output
    single_done = (run / "stages" / "single" / "done.json").stat().st_mtime_ns
    result = invoke(config, "--resume")
    assert result.exit_code == 0, result.output
    assert "stage 1/2" not in result.output and "resuming from checkpoint-1" in result.output
    assert (run / "stages" / "single" / "done.json").stat().st_mtime_ns == single_done  # not trained again
    m = manifest(tmp_path)
    assert m["stages"][1]["resumed_from"].endswith("multi/checkpoints/checkpoint-1")
    history = json.loads((run / "history.json").read_text())
    assert [(e["step"], e["stage"]) for e in history["train"]] == [(1, "single"), (2, "single"), (3, "multi"),
                                                                    (4, "multi")]


def test_resume_between_stages_equals_an_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    write_curriculum_data(tmp_path)
    stages = [{"name": "single", "turns": "single", "max_steps": 2},
              {"name": "multi", "turns": "multi", "max_steps": 1}]
    config = curriculum_config(tmp_path, tiny_model_dir, stages, run_name="full")
    assert invoke(config).exit_code == 0
    config = curriculum_config(tmp_path, tiny_model_dir, stages, run_name="cut")
    _kill(monkeypatch, "multi", "on_train_begin")  # stage 2 killed before its first checkpoint
    assert invoke(config).exit_code == 130
    monkeypatch.undo()
    result = invoke(config, "--resume")
    assert result.exit_code == 0, result.output
    # stage 2 starts again from stage 1's saved adapter: the same weights as the run that was never killed
    full = adapter_weights(tmp_path / "sft" / "full" / "adapter")
    cut = adapter_weights(tmp_path / "sft" / "cut" / "adapter")
    assert full.keys() == cut.keys() and all(torch.allclose(full[k], cut[k], atol=1e-6) for k in full)


def test_resume_across_a_changed_curriculum_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    write_curriculum_data(tmp_path)
    stages = [{"name": "single", "turns": "single", "max_steps": 1},
              {"name": "multi", "turns": "multi", "max_steps": 1}]
    _kill(monkeypatch, "multi", "on_train_begin")
    assert invoke(curriculum_config(tmp_path, tiny_model_dir, stages)).exit_code == 130
    monkeypatch.undo()
    changed = [stages[0], {**stages[1], "learning_rate": 1e-5}]
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, changed), "--resume")
    assert result.exit_code == 2, result.output
    assert "the curriculum changed since the run started" in result.output
    assert "stages[1].learning_rate: none -> 1e-05" in result.output
    # a changed data file counts too
    write_jsonl(tmp_path / "data" / "train.jsonl", report_rows(7) + dialogue_rows(4))
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, stages), "--resume")
    assert result.exit_code == 2 and "stages[0].data_content" in result.output


@pytest.mark.parametrize(("stages", "message"), [
    ([{"name": "single", "max_steps": 1}, {"name": "hard", "data": "missing/hard.jsonl", "max_steps": 1}],
     "sft.stages[1] (hard).data: missing/hard.jsonl: file not found (no stage has been trained)"),
    ([{"name": "none", "where": {"organ": ["сердце"]}}], "sft.stages[0] (none): no row of"),
    ([{"name": "k", "text": ["missing/docs"]}],
     "sft.stages[0] (k).text: 'missing/docs' matches no TXT/MD/HTML/PDF/DOCX/image file (no stage has been trained)"),
    ([{"name": "k", "text": ["HARD"], "where": {"organ": ["печень"]}}],
     "sft.stages[0] (k).text: a knowledge-text stage trains on documents, not rows: remove where"),
    ([{"name": "typo", "where": {"orgn": ["печень"]}}], "sft.stages[0] (typo).where: unknown row field 'orgn'"),
    ([{"name": "a"}, {"name": "b", "target_modules": ["q_proj"]}],
     "sft.stages[1] (b).target_modules: differs from stage 'a', which is not merged"),
    ([{"name": "a"}, {"name": "a"}], "sft.stages: Value error, stage names must be unique (a repeated)"),
    ([{"name": "bad name"}], "sft.stages.0.name: String should match pattern"),
    ([{"name": "a", "epocs": 1}], "sft.stages.0.epocs: unknown setting (typo?)"),
])
def test_bad_stages_are_exit_2_before_any_training(tiny_model_dir, tmp_path, stages, message, monkeypatch):
    from medscribe.sft import backends

    hard = write_curriculum_data(tmp_path)
    stages = [{**s, "text": [str(hard)] if s.get("text") == ["HARD"] else s["text"]} if "text" in s else s
              for s in stages]

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(backends, "load_model", no_load)
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, stages))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not list((tmp_path / "sft").rglob("checkpoint-*"))


def _scored_eval(root, scores: dict[str, float]):
    """An eval output folder as `medscribe eval` writes it (metrics.json + rows.csv) over an ask run folder."""
    import csv

    ask = root / "ask" / "sft-train"
    write_jsonl(ask / "results.jsonl", [{"id": i, "answer": "x", "reference": "y"} for i in scores])
    out = root / "eval" / "sft-train"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"runs": {"sft-train": {"path": str(ask)}}}), encoding="utf-8")
    with open(out / "rows.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "id", "reference", "prediction", "token_f1"])
        writer.writerows(["sft-train", i, "y", "x", s] for i, s in scores.items())
    return out


def test_hard_stage_takes_the_rows_an_eval_scored_below_the_threshold(tiny_model_dir, tmp_path):
    write_curriculum_data(tmp_path)
    source = _scored_eval(tmp_path, {"r0": 0.9, "r1": 0.2, "r2": 0.49, "r3": 0.5, "d0": 0.1})
    stages = [{"name": "all", "max_steps": 1},
              {"name": "hard", "hard_from_eval": str(source), "where": {"task": ["report"]}, "max_steps": 1}]
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, stages))
    assert result.exit_code == 0, result.output
    hard = manifest(tmp_path)["stages"][1]["selection"]
    assert (hard["rows_selected"], hard["rows_scored"], hard["rows_below_threshold"]) == (2, 4, 2)
    assert (hard["hard_metric"], hard["hard_threshold"]) == ("token_f1", 0.5)
    examples = json.loads((tmp_path / "sft" / "t" / "stages" / "hard" / "examples.json").read_text())["train"][0]
    assert sorted(e["id"] for e in examples) == ["r1", "r2"]  # d0 is below too, but not a report row
    # new scores are another curriculum: a resume is refused
    _scored_eval(tmp_path / "v2", {"r0": 0.1, "r1": 0.2})
    stages[1]["hard_from_eval"] = str(tmp_path / "v2" / "eval" / "sft-train")
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, stages), "--resume")
    assert result.exit_code == 2 and "stages[1].hard_from_eval" in result.output, result.output


def test_hard_stage_with_no_row_below_the_threshold_is_exit_2(tiny_model_dir, tmp_path):
    write_curriculum_data(tmp_path)
    source = _scored_eval(tmp_path, {"r0": 0.9, "r1": 0.8})
    result = invoke(curriculum_config(tmp_path, tiny_model_dir, [{"name": "hard", "hard_from_eval": str(source)}]))
    assert result.exit_code == 2
    assert ("sft.stages[0] (hard).hard_from_eval: no row scored below sft.pairs_threshold = 0.5 on token_f1"
            in " ".join(result.output.split())), result.output
    assert "(2 of the stage's 10 rows were scored there" in " ".join(result.output.split())
    missing = invoke(curriculum_config(tmp_path, tiny_model_dir, [{"name": "h", "hard_from_eval": "no/such"}]))
    assert missing.exit_code == 2 and "hard_from_eval: no/such: not found" in missing.output
