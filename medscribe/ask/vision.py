"""Images in `ask`: checking an input image, `image_url` parts for OpenAI-compatible servers, a local VLM backend.

    from medscribe.ask.vision import check_image, openai_messages, VisionLocalBackend
    path = check_image("scans/a.png", base=Path("."), where="--image")    # UsageError if missing / corrupt
    payload = openai_messages(request.messages)      # {"type": "image"} parts -> image_url with a data URL

A request's messages carry the image as `{"type": "image", "image": PATH}` in the last user turn
(`prompts.attach_image`): the form Qwen2-VL chat templates render, and small enough for log.jsonl. Only what goes
to a server is rewritten: `image_url` parts with a base64 data URL (`data:image/png;base64,...`: the image never
needs a public URL, and no hospital file server is exposed). PNG, JPEG, WebP and GIF go as they are; other formats
(TIFF, BMP) are re-encoded as PNG, which every vision server accepts.

`VisionLocalBackend` is the local backend for vision-language models (ask.backend = "local" with a Qwen2-VL /
Qwen2.5-VL `ask.local_model`): the model, processor and adapter load through `medscribe.vlm`, the loading path sft
uses, and the processor (chat template, image size cap) comes from the adapter folder when sft saved one there.
"""

from __future__ import annotations

import base64
import functools
import io
import time
from pathlib import Path
from typing import Any

from medscribe.ask.generation import Generation, OnDone, Request, one_line
from medscribe.errors import RuntimeFailure, UsageError

SERVER_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def check_image(value: str, base: Path, where: str) -> str:
    """The image path (absolute, or relative to `base`) after a full decode; a UsageError `where: field 'image':
    why` otherwise (the path itself is not repeated: file names can carry a patient's name)."""
    from medscribe.data.images import ImageProblem, open_image, resolve

    path = resolve(value, base)
    try:
        open_image(path)
    except ImageProblem as problem:
        raise UsageError(f"{where}: field 'image': {problem.detail} ({problem.reason})") from None
    return str(path)


@functools.lru_cache(maxsize=256)
def image_data_url(path: str) -> str:
    """`data:<mime>;base64,<bytes>` for an image file (re-encoded as PNG when servers may not take its format)."""
    from PIL import Image

    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        mime = SERVER_FORMATS.get(img.format or "")
        if mime is None:
            buffer = io.BytesIO()
            (img if img.mode in ("RGB", "L", "RGBA") else img.convert("RGB")).save(buffer, format="PNG")
            data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the OpenAI chat API takes them: image parts become `image_url` parts (data URLs)."""
    if all(isinstance(m.get("content"), str) for m in messages):
        return messages
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [{"type": "image_url", "image_url": {"url": image_data_url(str(part["image"]))}}
                       if part.get("type") == "image" else part for part in content]
        out.append({**message, "content": content})
    return out


def has_image(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") == "image" for p in m["content"])
               for m in messages)


def image_paths(messages: list[dict[str, Any]]) -> list[str]:
    return [str(p["image"]) for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image"]


def check_backend_takes_images(settings: Any) -> None:
    """A text-only local model cannot see an image: say so before any row is asked (never drop the image)."""
    from medscribe.vlm import is_vision_model

    ask = settings.ask
    if ask.backend == "local" and not is_vision_model(ask.local_model):
        raise UsageError(f"ask.local_model: {ask.local_model} is not a vision-language model (no vision_config), "
                         "but the input has images; use a Qwen2-VL / Qwen2.5-VL model (e.g. the base of a vision "
                         "sft run) or the openai backend with a vision server")


class VisionLocalBackend:
    """Batched generation with a local vision-language model (+ optional PEFT adapter from a vision sft run)."""

    name = "local"

    def __init__(self, ask: Any):
        import torch

        from medscribe.ask.backend_local import check_adapter, resolve_device
        from medscribe.vlm import load_processor, load_vlm, model_dir

        self.ask = ask
        self.model_name = ask.local_model
        self.adapter = check_adapter(ask.adapter)
        self.device = resolve_device(ask.device)
        folder = model_dir(self.model_name)
        if folder is None:
            raise UsageError(f"ask.local_model: {self.model_name!r} is neither a folder nor in the Hugging Face cache")
        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        model = load_vlm(folder, dtype=dtype)
        source = self.adapter if self.adapter is not None and (self.adapter / "preprocessor_config.json").is_file() \
            else folder
        self.tokenizer_source = "adapter" if source == self.adapter else "base model"
        self.processor, self.note = load_processor(source)
        if self.adapter is not None:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(self.adapter))
            except Exception as exc:
                raise RuntimeFailure(f"{self.adapter}: cannot apply adapter ({one_line(exc, 200)})") from None
        self.model = model.to(self.device).eval()
        self.processor.tokenizer.padding_side = "left"  # generation continues from each row's last real token

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_name, "adapter": str(self.adapter) if self.adapter else None,
                "tokenizer_source": self.tokenizer_source, "device": self.device, "vision": True,
                "processor_note": self.note}

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        size = self.ask.batch_size
        for start in range(0, len(requests), size):
            batch = list(range(start, min(start + size, len(requests))))
            try:
                generations = self._generate_batch([requests[i] for i in batch])
            except Exception as exc:  # e.g. an image removed since it was checked, OOM: these rows fail alone
                generations = [Generation(error=one_line(f"{type(exc).__name__}: {exc}")) for _ in batch]
            for i, generation in zip(batch, generations, strict=True):
                on_done(i, generation)

    def _generate_batch(self, requests: list[Request]) -> list[Generation]:
        import torch

        from medscribe.vlm import load_rgb

        started = time.monotonic()
        texts = [self.processor.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                 for r in requests]
        images = [load_rgb(p) for r in requests for p in image_paths(r.messages)]
        enc = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(self.device)
        tok = self.processor.tokenizer
        sample = self.ask.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": self.ask.max_new_tokens, "do_sample": sample,
                                  "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs["temperature"] = self.ask.temperature
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        elapsed = time.monotonic() - started
        stop = {tok.eos_token_id, tok.pad_token_id} | set(_as_list(self.model.generation_config.eos_token_id))
        generations = []
        for row, mask in zip(new_tokens.tolist(), enc["attention_mask"], strict=True):
            length = next((pos + 1 for pos, t in enumerate(row) if t in stop), len(row))
            raw = tok.decode(row[:length], skip_special_tokens=True).strip()
            generations.append(Generation(raw=raw, latency_s=elapsed, prompt_tokens=int(mask.sum()),
                                          completion_tokens=length))
        return generations


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]
