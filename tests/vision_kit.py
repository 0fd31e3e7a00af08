"""Offline kit for the image tests: a tiny random Qwen2-VL and small PNG images, built on the spot (no hub).

- `build_tiny_vlm(dir)`: a Qwen2-VL (vision depth 1, embed 32; text hidden 64, 2 layers) + a Qwen2VLProcessor
  whose byte-level BPE tokenizer is trained here (English and Russian) with the Qwen2-VL special tokens and the
  Qwen2-VL chat template (image content parts -> `<|vision_start|><|image_pad|><|vision_end|>`). Images are
  resized to at most 56x56 pixels: 4 image tokens each, so a training step takes well under a second on CPU.
- `write_png(path, seed)`: a small deterministic RGB image; `write_corrupt(path)`: a PNG header and garbage.
"""

from __future__ import annotations

from pathlib import Path

# The Qwen2-VL chat template (as shipped with Qwen/Qwen2-VL-*-Instruct), without video.
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]
_CORPUS = [
    "Organ: liver Modality: CT Findings: a hypodense lesion 12 mm in segment 7. Conclusion: liver cyst.",
    "Орган: легкие. Модальность: рентген. Описание: затемнение в нижней доле справа. Заключение: пневмония.",
    '{"result": "Киста печени", "result": "pneumonia"} You are an experienced radiologist. Answer with JSON only.',
    "system user assistant Findings: Organ: Modality: норма без патологии",
]


def build_tiny_processor(max_pixels: int = 56 * 56):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = QWEN2_VL_TEMPLATE
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=max_pixels)
    from medscribe.vlm import _without_video  # transformers 5 needs torchvision for a video processor

    with _without_video():
        return Qwen2VLProcessor(image_processor=images, tokenizer=fast, video_processor=None,
                                chat_template=QWEN2_VL_TEMPLATE)


def build_tiny_vlm(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Qwen2-VL + its processor to `out_dir` as an HF folder."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    out_dir = Path(out_dir)
    processor = build_tiny_processor()
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(name) for name in SPECIALS}
    torch.manual_seed(seed)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(out_dir)
    from medscribe.vlm import save_processor

    save_processor(processor, out_dir)
    return out_dir


def write_png(path: str | Path, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    """A deterministic RGB image (different seeds: different pixels)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    pixels = bytes(((x * 7 + y * 13 + seed * 61) * (c + 1)) % 256
                   for y in range(height) for x in range(width) for c in range(3))
    Image.frombytes("RGB", size, pixels).save(path)
    return path


def write_corrupt(path: str | Path) -> Path:
    """A file named like a PNG that is not one: the PNG signature, then garbage."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image at all" * 10)
    return path
