"""The whole pipeline in one call: data -> index -> ask (base, no RAG) -> ask (base + RAG) -> sft -> ask (tuned +
RAG) -> eval comparing the three runs. What `make demo` and `make all CONFIG=...` run.

    medscribe -c examples/demo.toml pipeline
    from medscribe.pipeline import run_pipeline; run_pipeline(settings)

Rerunnable: every step is skipped or fast when its output is already there (data is rebuilt only when its
manifest is missing, the index update embeds nothing for an unchanged corpus, ask runs resume and skip answered
ids, sft is skipped when the named run already has an adapter). `--force STEP` redoes one step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

STEPS = ("data", "index", "ask-base", "ask-base-rag", "sft", "ask-tuned-rag", "eval")
RUN_NAMES = {"ask-base": "base-norag", "ask-base-rag": "base-rag", "ask-tuned-rag": "tuned-rag"}


@dataclass
class PipelineResult:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_dir: Path | None = None
    report: dict | None = None


def _ask_settings(settings: Any, k: int, adapter: str | None) -> Any:
    """A copy of settings for one ask run; the caller's object is left untouched."""
    copy = settings.model_copy(deep=True)
    copy.ask.k = k
    copy.ask.adapter = adapter
    return copy


def run_pipeline(
    settings: Any,
    sft_run: str = "pipeline",
    force: tuple[str, ...] = (),
    console: Any = None,
) -> PipelineResult:
    """Run every stage in order; return what each step did and the eval report."""
    unknown = [s for s in force if s not in STEPS]
    if unknown:
        raise UsageError(f"--force: unknown step {unknown[0]!r} (steps: {', '.join(STEPS)})")
    if settings.ask.backend != "local":
        raise UsageError("pipeline: ask.backend must be 'local' (it trains an adapter and serves it in-process)")
    say = console.print if console is not None else (lambda *a, **k: None)
    result = PipelineResult()
    data_dir = Path(settings.paths.data)
    k = settings.ask.k if settings.ask.k is not None else settings.index.k

    def step(name: str, what: str) -> float:
        say(f"\n[bold cyan]== {name}[/bold cyan]: {what}")
        return time.perf_counter()

    def done(name: str, started: float, **info: Any) -> None:
        info["seconds"] = round(time.perf_counter() - started, 1)
        result.steps[name] = info
        say(f"[green]{name} done[/green] in {info['seconds']} s")

    started = step("data", f"{settings.data.inputs} -> {data_dir}")
    if (data_dir / "manifest.json").is_file() and "data" not in force:
        done("data", started, skipped=True)
    else:
        from medscribe.data import run_data

        data = run_data(settings, console=console)
        done("data", started, splits=data.splits, rows_in=data.counts.get("rows_in"))
    test_path = data_dir / "test.jsonl"

    started = step("index", f"{data_dir / 'corpus.jsonl'} -> {settings.paths.index}")
    from medscribe.index import build_index

    report = build_index(settings, prune=True)
    done("index", started, report=_plain(report))

    retriever = None
    if k > 0:
        from medscribe.index import Retriever

        retriever = Retriever.open(settings)

    from medscribe.ask import run_batch

    def ask(name: str, k_run: int, adapter: str | None) -> None:
        run = RUN_NAMES[name]
        target = Path(settings.paths.ask) / run
        started = step(name, f"{test_path} -> {target} (k={k_run}, adapter={adapter or 'none'})")
        if name in force:
            import shutil

            shutil.rmtree(Path(settings.paths.ask) / run, ignore_errors=True)
        summary = run_batch(
            _ask_settings(settings, k_run, adapter), test_path, run=run,
            retriever=retriever if k_run > 0 else None, console=console,
        )
        done(name, started, summary={key: summary.get(key) for key in ("count", "failures", "json_valid_rate")})

    ask("ask-base", 0, None)
    ask("ask-base-rag", k, None)

    sft_dir = Path(settings.paths.sft) / sft_run
    adapter = sft_dir / "adapter"
    started = step("sft", f"{settings.sft.base_model} -> {sft_dir}")
    if (adapter / "adapter_config.json").is_file() and "sft" not in force:
        done("sft", started, skipped=True, adapter=str(adapter))
    else:
        from medscribe.sft import run_sft

        manifest = run_sft(settings, run=sft_run, retriever=retriever, console=console)
        done("sft", started, adapter=manifest.get("adapter"), backend=manifest.get("backend"))
    ask("ask-tuned-rag", k, str(adapter))

    started = step("eval", "compare the three runs")
    from medscribe.evaluate import run_eval

    runs = [Path(settings.paths.ask) / RUN_NAMES[n] for n in ("ask-base", "ask-base-rag", "ask-tuned-rag")]
    evaluation = run_eval(settings, runs, name="pipeline", console=console)
    result.eval_dir = evaluation.out_dir
    result.report = evaluation.report
    done("eval", started, out=str(evaluation.out_dir))
    return result


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: v for k, v in asdict(obj).items() if isinstance(v, int | float | str)}
    return obj
