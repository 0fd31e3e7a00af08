"""Local backend: a transformers causal LM (+ optional PEFT adapter from `medscribe sft`), batched generation.

    backend = LocalBackend(settings.ask)            # ask.local_model, ask.adapter, ask.device, ask.batch_size
    backend.generate([Request(messages, "report"), ...], on_done=lambda i, gen: ...)

With an adapter, the tokenizer and chat template come from the adapter folder (sft saves the tokenizer it
trained with there, `sft.chat_template` included), so serving renders prompts exactly as training did; an
adapter folder without a tokenizer falls back to the base model's, with a warning and
`tokenizer_source = "base model (adapter has no tokenizer)"` in `describe()`.

Prompts are rendered with that chat template (`add_generation_prompt=True`), left-padded and
generated `ask.batch_size` at a time, greedy unless `ask.temperature > 0`. Requests are sorted by prompt
length before batching so a batch pads as little as possible; results are reported under their original
index. The latency of a row is its batch's wall time (they finish together).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from medscribe.ask.generation import Generation, OnDone, Request, one_line
from medscribe.errors import RuntimeFailure, UsageError

log = logging.getLogger(__name__)
TOKENIZER_FROM_ADAPTER = "adapter"
TOKENIZER_FROM_BASE = "base model"
TOKENIZER_FALLBACK = "base model (adapter has no tokenizer)"


def check_adapter(adapter: str | None) -> Path | None:
    """An adapter must be a folder with adapter_config.json (what `medscribe sft` writes)."""
    if not adapter:
        return None
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise UsageError(f"{path}: --adapter must be a folder with adapter_config.json (the output of sft)")
    return path


def tokenizer_location(model_name: str, adapter: Path | None) -> tuple[str, str]:
    """(folder or hub id to load the tokenizer from, tokenizer_source for the run info)."""
    if adapter is None:
        return model_name, TOKENIZER_FROM_BASE
    if (adapter / "tokenizer_config.json").is_file():
        return str(adapter), TOKENIZER_FROM_ADAPTER
    log.warning(
        "%s has no tokenizer (tokenizer_config.json): serving with the base model's tokenizer and chat template, "
        "which may differ from the ones the adapter was trained with", adapter,
    )
    return model_name, TOKENIZER_FALLBACK


def adapter_base_mismatch(model_name: str, adapter: Path | None) -> str | None:
    """A warning when the adapter was trained on another local model folder than `model_name` (e.g. stage 2 of a
    two-stage sft run, trained on the merged stage-1 model, put on the original base): it loads, since the
    shapes match, but answers as neither model would. Hub ids and moved folders cannot be compared: no warning."""
    import json

    if adapter is None:
        return None
    try:
        trained_on = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        trained_on = trained_on.get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    if not trained_on or not Path(trained_on).is_dir() or not Path(model_name).is_dir():
        return None
    if Path(trained_on).resolve() == Path(model_name).resolve():
        return None
    return (f"{adapter} was trained on {trained_on}, not on ask.local_model {model_name}: answers may be "
            "wrong (a two-stage sft run names the model to use in its training_config.json 'serve' field)")


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class LocalBackend:
    name = "local"

    def __init__(self, ask: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.ask = ask
        self.model_name = ask.local_model
        self.adapter = check_adapter(ask.adapter)
        self.device = resolve_device(ask.device)
        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else None
        dtype = dtype or (torch.float16 if self.device in ("cuda", "mps") else torch.float32)
        tokenizer_from, self.tokenizer_source = tokenizer_location(self.model_name, self.adapter)
        self.base_mismatch = adapter_base_mismatch(str(self.model_name), self.adapter)
        if self.base_mismatch:
            log.warning("%s", self.base_mismatch)
        try:
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype)
        except OSError as exc:
            raise UsageError(f"ask.local_model: cannot load {self.model_name!r} ({one_line(exc, 200)})") from None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
        except (OSError, ValueError) as exc:
            what = f"ask.adapter: cannot load the tokenizer in {tokenizer_from}" if (
                self.tokenizer_source == TOKENIZER_FROM_ADAPTER) else f"ask.local_model: cannot load {tokenizer_from!r}"
            raise UsageError(f"{what} ({one_line(exc, 200)})") from None
        if self.adapter is not None:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(self.adapter))
            except Exception as exc:
                raise RuntimeFailure(f"{self.adapter}: cannot apply adapter ({one_line(exc, 200)})") from None
        self.model = model.to(self.device).eval()
        # Left padding: generation continues from the last real token of every row in the batch.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise UsageError(f"ask.local_model: the tokenizer from {tokenizer_from!r} has no chat template")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_name,
            "adapter": str(self.adapter) if self.adapter else None,
            "tokenizer_source": self.tokenizer_source,
            "adapter_base_mismatch": self.base_mismatch,
            "device": self.device,
        }

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        texts = [self.render(req.messages) for req in requests]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        # A prompt the model cannot hold fails alone, with a reason a user can act on (and is retried on a
        # rerun), instead of failing its whole batch with whatever the model's forward raises.
        limit = self.context_length()
        order = []
        for i in sorted(range(len(texts)), key=lambda i: lengths[i]):
            if limit is not None and lengths[i] + self.ask.max_new_tokens > limit:
                on_done(i, Generation(error=(
                    f"prompt too long: {lengths[i]} tokens + ask.max_new_tokens {self.ask.max_new_tokens} > the "
                    f"model's context of {limit} tokens; lower k (fewer retrieved cases) or max_new_tokens")))
            else:
                order.append(i)
        size = self.ask.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            try:
                generations = self._generate_batch([texts[i] for i in batch])
            except Exception as exc:  # e.g. CUDA OOM: these rows fail, are recorded and retried on rerun
                generations = [Generation(error=one_line(f"{type(exc).__name__}: {exc}")) for _ in batch]
            for i, generation in zip(batch, generations, strict=True):
                on_done(i, generation)

    def context_length(self) -> int | None:
        """Tokens the model can attend to (config.max_position_embeddings), None when it does not say."""
        value = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def _generate_batch(self, texts: list[str]) -> list[Generation]:
        import torch

        started = time.monotonic()
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sample = self.ask.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.ask.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs["temperature"] = self.ask.temperature
        else:  # silence "temperature is set but do_sample=False" from models shipping sampling defaults
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        elapsed = time.monotonic() - started
        eos_ids = self._stop_ids()
        generations = []
        for row, prompt_mask in zip(new_tokens, enc["attention_mask"], strict=True):
            ids = row.tolist()
            completion = len(ids)
            for pos, tok in enumerate(ids):
                if tok in eos_ids:
                    completion = pos + 1
                    break
            raw = self.tokenizer.decode(ids[:completion], skip_special_tokens=True)
            generations.append(
                Generation(
                    raw=raw.strip(),
                    latency_s=elapsed,
                    prompt_tokens=int(prompt_mask.sum()),
                    completion_tokens=completion,
                )
            )
        return generations

    def _stop_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        if self.tokenizer.pad_token_id is not None:
            ids.add(self.tokenizer.pad_token_id)
        return ids
