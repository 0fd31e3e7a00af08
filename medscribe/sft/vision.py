"""Vision-language fine-tuning: image + finding -> conclusion, LoRA on the language model, loss on the answer only.

    from medscribe.sft.vision import wants_vision, run_vision_sft
    if wants_vision(settings):                        # train.jsonl rows with an `image`, or a VLM base model
        manifest = run_vision_sft(settings, run="vlm")

`run_sft` hands over here when the training rows carry images (data.columns.image) or sft.base_model is a
vision-language model (Qwen2-VL / Qwen2.5-VL: a config with `vision_config`). The run folder is the text run's
(`adapter/`, `checkpoints/`, `history.json`, `training_config.json`, `examples.json`); the adapter folder also
holds the processor (tokenizer, chat template, image processor with sft.image_max_pixels), which `ask` loads.

- Prompt: `prompts.build_prompt_completion` (THE builder), the image attached to the user turn as a content part
  (`prompts.attach_image`); the processor's chat template renders it (`<|vision_start|><|image_pad|>...`).
- Labels: the answer span is found in the rendered text exactly as for text rows (`dataset.answer_span`), then
  moved past the image tokens the processor expands `<|image_pad|>` into; only answer + end-of-turn carry loss.
- Images are decoded per batch in the collator, not held in memory (a 448x448 image is ~5 MB of patches); a
  first pass measures every example's tokens to drop (and count) those over sft.max_seq_length.
- Backends: `hf` = AutoModelForImageTextToText + PEFT LoRA on the language model's linear layers (the vision tower
  stays frozen; 4-bit nf4 through bitsandbytes when sft.load_in_4bit and it works); `unsloth` (CUDA) =
  FastVisionModel QLoRA with finetune_vision_layers=False. The CPU fast path of text runs (cpu_fast.py) is for
  causal LMs and is not used here; the manifest says so.
Not supported for image runs (UsageError, never a text run that silently drops the images): sft.method other than
"sft" (dpo/orpo/distill), sft.stages, sft.rag_context, sft.packing, --merge.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json

IGNORE_INDEX = -100


def train_rows_with_images(data_dir: Path) -> int:
    path = data_dir / "train.jsonl"
    if not path.is_file():
        return 0
    # A text scan, not a JSON parse per row: every text run asks this of a possibly 200k-row file.
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if '"image":"' in line.replace('": "', '":"') and read_row_image(line))


def read_row_image(line: str) -> str | None:
    import json

    return json.loads(line).get("image")


def wants_vision(settings: Any) -> bool:
    """Image rows in train.jsonl, or a vision-language base model: the run goes through this module."""
    from medscribe.sft.backends import resolve_base_model
    from medscribe.vlm import is_vision_model

    try:
        vision_base = is_vision_model(resolve_base_model(settings.sft.base_model))
    except UsageError:
        vision_base = False  # reported where the model is loaded
    return vision_base or train_rows_with_images(Path(settings.paths.data)) > 0


def image_path(record: Any, data_dir: Path) -> str | None:
    """A record's `image` (relative to the data folder, as `data` writes it) as a path to open."""
    value = getattr(record, "image", None)
    if not value:
        return None
    path = Path(value)
    return str(path if path.is_absolute() else data_dir / path)


def build_vision_examples(records: list[Any], prompt: Any, data_dir: Path) -> tuple[list[dict], dict]:
    """Prompt/completion examples (the shared builder) with each row's image attached to its user turn."""
    from medscribe.prompts import attach_image, build_prompt_completion
    from medscribe.sft.dataset import build_dialogue_example

    examples = []
    for record in records:
        if record.task == "dialogue":  # chat-export samples: text turns, no image
            examples.append(build_dialogue_example(record, prompt))
            continue
        image = image_path(record, data_dir)
        example = build_prompt_completion(record, record.task, prompt)
        example.update(prompt=attach_image(example["prompt"], image), id=record.id, context_ids=[], image=image)
        examples.append(example)
    with_image = sum(1 for e in examples if e.get("image"))
    return examples, {"rows": len(records), "rag_context": False, "rows_with_image": with_image}


def encode_vision_example(example: dict, processor: Any) -> dict:
    """input_ids, labels (IGNORE_INDEX outside the answer), mm_token_type_ids, and pixel_values/image_grid_thw
    (None for a text-only row) for one example, through the processor's chat template."""
    from medscribe.sft.dataset import answer_span
    from medscribe.vlm import load_rgb

    try:
        prompt_text = processor.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        full_text = processor.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    except Exception as exc:  # jinja errors, templates rejecting a role or a content part
        raise UsageError(f"the processor's chat template cannot render the training messages "
                         f"({type(exc).__name__}: {str(exc)[:120]}); set sft.chat_template") from None
    answer = example["completion"][0]["content"]
    start, end = answer_span(prompt_text, full_text, answer)
    eos = processor.tokenizer.eos_token
    if end == start + len(answer) and eos:  # the template closes the turn with nothing: the model must learn to stop
        full_text = full_text[:end] + eos + full_text[end:]
        end += len(eos)
    image = example.get("image")
    try:
        images = [load_rgb(image)] if image else None
    except Exception as exc:  # the data stage checked it; a file removed or damaged since is named here
        raise RuntimeFailure(f"{image}: {getattr(exc, 'detail', type(exc).__name__)} (example {example.get('id')}); "
                             "rerun `medscribe data`") from None
    enc = processor(text=[full_text], images=images, return_offsets_mapping=True, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    offsets = enc["offset_mapping"][0].numpy().reshape(-1, 2)
    if images:
        # The processor replaced the one `<|image_pad|>` by N of them before tokenizing: offsets are in that longer
        # text, and the answer (after the image) moved by the added characters.
        merge = int(getattr(processor.image_processor, "merge_size", 2))
        n_tokens = int(enc["image_grid_thw"][0].prod()) // merge**2
        shift = (n_tokens - 1) * len(processor.image_token)
        start, end = start + shift, end + shift
    inside = (offsets[:, 0] < end) & (offsets[:, 1] > start)
    labels = np.where(inside, np.asarray(ids, dtype=np.int64), IGNORE_INDEX).tolist()
    mm = enc.get("mm_token_type_ids")
    return {
        "input_ids": ids, "labels": labels,
        "mm_token_type_ids": mm[0].tolist() if mm is not None else [0] * len(ids),
        "pixel_values": enc.get("pixel_values") if images else None,
        "image_grid_thw": enc.get("image_grid_thw") if images else None,
    }


def measure(examples: list[dict], processor: Any, max_length: int) -> tuple[list[dict], dict]:
    """Keep the examples that fit max_length (dropping, not truncating: see dataset.tokenize_examples) + stats."""
    kept, lengths, loss_tokens, too_long = [], [], 0, 0
    for example in examples:
        row = encode_vision_example(example, processor)
        if len(row["input_ids"]) > max_length:
            too_long += 1
            continue
        kept.append(example)
        lengths.append(len(row["input_ids"]))
        loss_tokens += sum(1 for t in row["labels"] if t != IGNORE_INDEX)
    return kept, {"examples": len(kept), "dropped_too_long": too_long, "tokens": sum(lengths),
                  "max_tokens": max(lengths, default=0), "loss_tokens": loss_tokens}


class VisionCollator:
    """Encodes a batch of examples (images decoded here) and right-pads it; pixel rows of the batch's images are
    concatenated, as Qwen2-VL's forward expects (one `image_grid_thw` row per image)."""

    def __init__(self, processor: Any):
        self.processor = processor
        self.pad_id = processor.tokenizer.pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        rows = [encode_vision_example(e, self.processor) for e in examples]
        width = max(len(r["input_ids"]) for r in rows)

        def pad(key: str, value: int) -> Any:
            return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows], dtype=torch.long)

        batch = {"input_ids": pad("input_ids", self.pad_id), "labels": pad("labels", IGNORE_INDEX),
                 "mm_token_type_ids": pad("mm_token_type_ids", 0),
                 "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                                 for r in rows], dtype=torch.long)}
        pixels = [r["pixel_values"] for r in rows if r["pixel_values"] is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
            batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in rows if r["image_grid_thw"] is not None])
        return batch


class _Examples:
    """A map-style dataset of example dicts (the Trainer only indexes it; the collator does the work)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


def language_lora_targets(names: list[str]) -> str:
    """PEFT target regex: the configured linear layers of the language model, never the vision tower."""
    import re

    return rf"^(?!.*\bvisual\b).*\.({'|'.join(re.escape(n) for n in names)})$"


def load_vision_model(sft: Any, setup: Any, model_path: str) -> tuple[Any, Any, str | None]:
    """(PEFT model ready to train, processor, note) for the chosen backend."""
    from medscribe.sft.backends import check_target_modules, placement_kwargs, torch_dtype
    from medscribe.vlm import is_vision_model, load_processor, load_vlm

    if not is_vision_model(model_path):
        raise UsageError(f"sft.base_model: {sft.base_model} is not a vision-language model (its config has no "
                         "vision_config), but train.jsonl rows have images; use a Qwen2-VL / Qwen2.5-VL model or "
                         "drop data.columns.image")
    if setup.backend == "unsloth":
        if setup.device != "cuda":  # unsloth 2026.10 on CPU: "vision / audio models are not supported"
            raise UsageError("sft.backend = 'unsloth': FastVisionModel needs a CUDA GPU (unsloth's CPU backend has "
                             "no vision models); on CPU set sft.backend = 'hf' (or 'auto')")
        import unsloth  # noqa: F401  (patches transformers/peft: first)
        from unsloth import FastVisionModel

        model, processor = FastVisionModel.from_pretrained(
            model_path, load_in_4bit=setup.quantization == "nf4", dtype=torch_dtype(setup.precision),
            use_gradient_checkpointing="unsloth" if sft.gradient_checkpointing else False, local_files_only=True)
        model = FastVisionModel.get_peft_model(
            model, finetune_vision_layers=False, finetune_language_layers=True, finetune_attention_modules=True,
            finetune_mlp_modules=True, r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout,
            bias="none", random_state=sft.seed)
        FastVisionModel.for_training(model)
        if sft.image_max_pixels is not None:
            processor.image_processor.size = {**dict(processor.image_processor.size or {}),
                                              "longest_edge": sft.image_max_pixels}
        return model, processor, None
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    processor, note = load_processor(model_path, sft.image_max_pixels)
    if sft.chat_template:
        from medscribe.sft.backends import prepare_tokenizer

        processor.chat_template = prepare_tokenizer(processor.tokenizer, sft.chat_template).chat_template
    kwargs: dict[str, Any] = {"dtype": torch_dtype(setup.precision),
                              **placement_kwargs(setup, torch_dtype(setup.precision), ["visual", "lm_head"])}
    model = load_vlm(model_path, **kwargs)
    check_target_modules(model, sft.target_modules)
    if setup.quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=sft.gradient_checkpointing)
    lora = LoraConfig(r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout, bias="none",
                      target_modules=language_lora_targets(list(sft.target_modules)), task_type="CAUSAL_LM")
    return get_peft_model(model, lora), processor, note


def _vision_setup(sft: Any) -> Any:
    """choose_setup, without the causal-LM CPU fast path (its precision and 4-bit choices undone)."""
    from medscribe.sft.backends import bitsandbytes_works, choose_precision, choose_setup

    setup = choose_setup(sft)
    if setup.cpu_fast.get("enabled"):
        setup.precision = choose_precision(sft.precision, cuda=False)
        setup.reason = setup.reason.split("; cpu fast path")[0]
        setup.quantization = "nf4" if sft.load_in_4bit and bitsandbytes_works()[0] else "none"
    setup.cpu_fast = {"enabled": False, "reason": "vision-language model: the CPU fast path is for causal LMs"}
    return setup


def run_vision_sft(settings: Any, run: str | None = None, resume: bool = False, merge: bool | None = None,
                   console: Any = None) -> dict:
    """Train a LoRA adapter on image + text rows; return (and write) the run manifest (same keys as text runs)."""
    from medscribe.sft.backends import loaded_summary, resolve_base_model
    from medscribe.sft.dataset import check_reasoning, load_records
    from medscribe.sft.train import open_run, versions

    sft = settings.sft
    say = console.print if console is not None else (lambda *a, **k: None)
    for flag, on in (("sft.method = " + repr(sft.method), sft.method != "sft"), ("sft.stages", bool(sft.stages)),
                     ("sft.rag_context", sft.rag_context), ("sft.packing", sft.packing),
                     ("--merge / sft.merge", merge if merge is not None else sft.merge)):
        if on:
            raise UsageError(f"{flag} is not supported for vision-language runs yet (image rows); turn it off")
    setup = _vision_setup(sft)
    if setup.world_size > 1:  # every rank would write the run's files: DDP for image runs is not built yet
        raise UsageError("vision-language runs train in one process; run `medscribe sft` without torchrun/accelerate")
    model_path = resolve_base_model(sft.base_model)
    run_dir, checkpoint = open_run(settings, run, resume)
    data_dir = Path(settings.paths.data)
    cache = run_dir / "examples.json"
    if resume and cache.is_file():  # a resumed run trains on exactly the examples it started with
        import json

        cached = json.loads(cache.read_text(encoding="utf-8"))
        (train_examples, train_stats), (eval_examples, eval_stats) = cached["train"], cached["eval"]
    else:
        train_records = load_records(data_dir / "train.jsonl")
        eval_records = load_records(data_dir / "eval.jsonl", required=False)[: sft.max_eval_samples or None]
        check_reasoning(train_records, data_dir / "train.jsonl", settings.prompt)
        check_reasoning(eval_records, data_dir / "eval.jsonl", settings.prompt)
        train_examples, train_stats = build_vision_examples(train_records, settings.prompt, data_dir)
        eval_examples, eval_stats = build_vision_examples(eval_records, settings.prompt, data_dir)
        atomic_write_json(cache, {"train": [train_examples, train_stats], "eval": [eval_examples, eval_stats]})
    say(f"[bold]backend[/bold] {setup.backend} ({setup.reason}) · vision-language · device {setup.device} · dtype "
        f"{setup.precision} · quantization {setup.quantization}", highlight=False)
    for note in setup.notes:
        say(f"[yellow]warning:[/yellow] {note}", highlight=False)
    model, processor, note = load_vision_model(sft, setup, model_path)
    if note:
        setup.notes.append(note)
        say(f"[yellow]note:[/yellow] {note}", highlight=False)
    loaded = loaded_summary(model)
    if setup.quantization == "nf4" and not loaded["linear_4bit_layers"]:
        setup.quantization = "none (4-bit requested, not applied by the backend)"
        setup.notes.append(f"{setup.backend}: sft.load_in_4bit = true, but the loaded model has no 4-bit layers")
    train_examples, train_tok = measure(train_examples, processor, sft.max_seq_length)
    eval_examples, eval_tok = measure(eval_examples, processor, sft.max_seq_length)
    if not train_examples:
        raise UsageError(f"all training rows are longer than sft.max_seq_length={sft.max_seq_length} tokens (images "
                         "included: lower sft.image_max_pixels or raise sft.max_seq_length)")
    if train_tok["dropped_too_long"]:
        say(f"[yellow]warning:[/yellow] dropped {train_tok['dropped_too_long']} training rows longer than "
            f"sft.max_seq_length={sft.max_seq_length}", highlight=False)
    trainer = _trainer(model, processor, sft, setup, run_dir, train_examples, eval_examples, train_tok, console)
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir), "base_model": sft.base_model, "base_model_path": model_path,
        "setup": setup.as_dict(), "model": loaded, "vision": True,
        "settings": {"sft": sft.model_dump(mode="json"), "prompt": settings.prompt.model_dump(mode="json")},
        "data": {"train_file": str(data_dir / "train.jsonl"), "train": {**train_stats, **train_tok},
                 "eval": {**eval_stats, **eval_tok}},
        "image_processor": {"max_pixels": (getattr(processor.image_processor, "size", None) or {}).get("longest_edge")},
        "versions": versions(), "resumed_from": str(checkpoint) if checkpoint else None, "is_main_process": True,
    }
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    manifest["train_seconds"] = round(time.perf_counter() - started, 2)
    speed = getattr(trainer, "medscribe_speed", None)
    manifest["speed"] = speed.summary() if speed is not None else {}
    state = trainer.state
    manifest["result"] = {
        "global_step": state.global_step, "max_steps": state.max_steps,
        "stopped_early": bool(eval_examples and sft.early_stopping_patience) and state.global_step < state.max_steps,
        "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
        "final_train_loss": next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None),
        "train_tokens_with_loss": train_tok["loss_tokens"],
    }
    from medscribe.vlm import save_processor

    adapter_dir = run_dir / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))
    save_processor(processor, adapter_dir)  # what ask renders and resizes images with
    manifest["adapter"] = str(adapter_dir)
    atomic_write_json(run_dir / "training_config.json", manifest)
    return manifest


def _trainer(model: Any, processor: Any, sft: Any, setup: Any, run_dir: Path, train: list[dict], evals: list[dict],
             train_tok: dict, console: Any) -> Any:
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainingArguments

    from medscribe.sft.callbacks import HistoryCallback, RichProgressCallback, SpeedCallback
    from medscribe.sft.trainer import _checkpointing_args, _config

    use_eval = bool(evals)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    args = _config(
        TrainingArguments, output_dir=str(run_dir / "checkpoints"), run_name=run_dir.name,
        num_train_epochs=sft.epochs, max_steps=sft.max_steps, learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler, warmup_steps=sft.warmup_ratio, weight_decay=sft.weight_decay,
        per_device_train_batch_size=sft.batch_size, per_device_eval_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.grad_accum,
        **_checkpointing_args(sft.gradient_checkpointing and setup.backend == "hf", TrainingArguments),
        eval_strategy="steps" if use_eval else "no", eval_steps=sft.eval_steps, save_strategy="steps",
        save_steps=sft.eval_steps, save_total_limit=sft.save_total_limit, load_best_model_at_end=use_eval,
        metric_for_best_model="eval_loss" if use_eval else None, greater_is_better=False if use_eval else None,
        logging_steps=sft.logging_steps, logging_first_step=True,
        report_to=[] if sft.report_to == "none" else [sft.report_to], seed=sft.seed, data_seed=sft.seed,
        bf16=setup.precision == "bf16", fp16=setup.precision == "fp16", use_cpu=setup.device == "cpu",
        disable_tqdm=True, remove_unused_columns=False,  # the collator needs the example dicts as they are
    )
    speed = SpeedCallback(console, examples=len(train), tokens=train_tok["tokens"])
    callbacks: list[Any] = [RichProgressCallback(console), HistoryCallback(run_dir / "history.json"), speed]
    if use_eval and sft.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=sft.early_stopping_patience,
                                               early_stopping_threshold=sft.early_stopping_threshold))
    trainer = Trainer(model=model, args=args, train_dataset=_Examples(train),
                      eval_dataset=_Examples(evals) if use_eval else None, data_collator=VisionCollator(processor),
                      callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.medscribe_speed = speed
    return trainer
