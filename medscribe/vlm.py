"""Vision-language models (Qwen2-VL / Qwen2.5-VL family): the one loading path `sft` and `ask` share.

    from medscribe.vlm import is_vision_model, load_processor, load_vlm, save_processor, load_rgb
    if is_vision_model(path):
        processor, note = load_processor(path, max_pixels=None)   # tokenizer + image processor + chat template
        model = load_vlm(path, dtype=torch.float32)               # AutoModelForImageTextToText

Processors: transformers 5 builds a Qwen2-VL processor with a video processor, which needs torchvision. On a
machine without torchvision (the CPU build of torch these dev boxes and CI use) `AutoProcessor` cannot be built at
all, so the processor is assembled from its parts (tokenizer, PIL image processor, chat template) with no video
processor; `note` says so and sft/ask record it. Images only, then: medscribe sends no video.

`max_pixels` caps the pixels an image is resized to (Qwen2-VL: 28x28 pixels per image token), so it sets how
many tokens an image costs; sft saves the processor with it into the adapter folder and ask loads it from there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

NO_VIDEO_NOTE = "processor built without a video processor (torchvision is not installed): images only"


def model_config(path: str | Path) -> dict[str, Any]:
    """config.json of a local model folder ({} when there is none: a hub id, resolved elsewhere)."""
    file = Path(path) / "config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def model_dir(name: str | Path) -> Path | None:
    """A local model folder, or the cached snapshot of a hub id (never downloaded); None when neither."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:
        return None


def is_vision_model(path: str | Path) -> bool:
    """True for a model (folder or cached hub id) whose config has a vision tower (Qwen2-VL, Qwen2.5-VL, kin)."""
    folder = model_dir(path)
    return folder is not None and "vision_config" in model_config(folder)


@contextlib.contextmanager
def _without_video() -> Iterator[None]:
    """Let a processor be built with `video_processor=None` (transformers 5 checks every sub-processor's class,
    and without torchvision the video class cannot even be looked up)."""
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self: Any, name: str, arg: Any) -> Any:
        if arg is None and name == "video_processor":
            return None
        return original(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = check
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = original


def _processor_class(path: Path) -> Any:
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = model_config(path).get("model_type")
    stored = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (path / name).is_file():
            stored.update(json.loads((path / name).read_text(encoding="utf-8")))
    name = stored.get("processor_class") or PROCESSOR_MAPPING_NAMES.get(model_type or "")
    if not name or not hasattr(transformers, name):
        raise UsageError(f"{path}: no processor class known for model type {model_type!r}")
    return getattr(transformers, name)


def load_processor(path: str | Path, max_pixels: int | None = None) -> tuple[Any, str | None]:
    """(processor, note) for a model or adapter folder; `max_pixels` overrides the image processor's cap."""
    path = Path(path)
    note = None
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(path))
    else:
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        images = AutoImageProcessor.from_pretrained(str(path))
        template = tokenizer.chat_template
        if (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text(encoding="utf-8")
        with _without_video():
            processor = _processor_class(path)(image_processor=images, tokenizer=tokenizer, video_processor=None,
                                               chat_template=template)
        note = NO_VIDEO_NOTE
    if max_pixels is not None:
        size = dict(getattr(processor.image_processor, "size", None) or {})
        size["longest_edge"] = int(max_pixels)
        size["shortest_edge"] = min(int(size.get("shortest_edge") or 0) or 28 * 28, int(max_pixels))
        processor.image_processor.size = size
    if not getattr(processor, "chat_template", None):
        raise UsageError(f"{path}: the processor has no chat template (use an instruct vision-language model)")
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor, note


def save_processor(processor: Any, out_dir: str | Path) -> None:
    """Write the processor so `load_processor` (and AutoProcessor, where torchvision is installed) reads it back."""
    out_dir = Path(out_dir)
    if getattr(processor, "video_processor", None) is not None:
        processor.save_pretrained(str(out_dir))
        return
    processor.tokenizer.chat_template = processor.chat_template
    processor.tokenizer.save_pretrained(str(out_dir))
    processor.image_processor.save_pretrained(str(out_dir))
    # an adapter folder has no config.json to tell the model type: name the processor class (as save_pretrained does)
    from medscribe.io import atomic_write_json

    atomic_write_json(out_dir / "processor_config.json", {"processor_class": type(processor).__name__})


def load_vlm(path: str | Path, **kwargs: Any) -> Any:
    """AutoModelForImageTextToText.from_pretrained with medscribe's error wording."""
    from transformers import AutoModelForImageTextToText

    try:
        return AutoModelForImageTextToText.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot load as a vision-language model ({str(exc).splitlines()[0][:160]})") from None


def load_rgb(path: str | Path) -> Any:
    """The image at `path`, decoded, as RGB (what the processors expect)."""
    from medscribe.data.images import open_image

    image = open_image(Path(path))
    return image if image.mode == "RGB" else image.convert("RGB")
