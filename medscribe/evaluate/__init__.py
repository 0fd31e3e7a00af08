"""The `eval` stage: metrics, breakdowns and run comparisons over `ask` results (or any CSV/JSONL with
prediction and reference columns). Run `medscribe eval RUN [RUN ...]`, or from Python:

    from medscribe.evaluate import run_eval
    result = run_eval(settings, [Path("artifacts/ask/base"), Path("artifacts/ask/tuned")])

Modules: loading (inputs), metrics (lexical), semantic (BERTScore, embeddings), structured (JSON fields,
retrieval), scoring (all of them per run), compare (paired bootstrap), breakdown (groups, recommendations),
report (plots, HTML/Markdown), display (rich tables), runner (run_eval).
"""

from medscribe.evaluate.runner import EvalResult, GateFailed, run_eval

__all__ = ["EvalResult", "GateFailed", "run_eval"]
