"""The `ask` stage: retrieval-augmented answers, single and batch, over an OpenAI-compatible API or a local model.

    from medscribe.settings import load_settings
    from medscribe.ask import ask_one, run_batch
    settings = load_settings(flags={"ask": {"backend": "local", "local_model": "path/to/model"}})
    row = ask_one(settings, "What are the symptoms of anemia?", task="qa")
    summary = run_batch(settings, "artifacts/data/test.jsonl", run="baseline")

CLI: `medscribe ask --help`. Docs: docs/ask.md.
"""

from medscribe.ask.batch import run_batch
from medscribe.ask.core import ask_one

__all__ = ["ask_one", "run_batch"]
