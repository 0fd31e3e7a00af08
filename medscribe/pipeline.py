"""The whole pipeline in one call: data -> index -> ask (base, no RAG) -> ask (base + RAG) -> ask (retrieval-copy)
-> sft -> ask (tuned + RAG) -> eval comparing the four runs. What `make demo` and `make all CONFIG=...` run.

    medscribe -c examples/demo.toml pipeline
    from medscribe.pipeline import run_pipeline; run_pipeline(settings)

Every ask step answers with the local backend on `sft.base_model` (+ the adapter for the tuned run): base and
tuned answers then come from the same weights, which is what the comparison needs. A config whose `ask` points
elsewhere (an OpenAI-compatible server, another local model) is not an error: the pipeline says so on its first
line and records it in the result; `medscribe ask` keeps using the configured backend. `retrieval-copy` answers
with the nearest training case's answer (ask.mode = "copy", k = 1, no model): a tuned model that does not beat
it adds nothing, and the headline says so.

Rerunnable like make (medscribe/pipeline_state.py): a step is redone when anything upstream of it changed.
data: when the input files' contents or the data/prompt settings differ from the data manifest's record. index:
always updated (incremental: nothing is embedded for an unchanged corpus). sft: when the training data, sft or
prompt settings, base model or (with sft.rag_context) the index differ from what the adapter was trained on. ask
runs: resumed when their fingerprint is unchanged, else asked afresh (a new adapter means new tuned answers).
eval: always. `--force STEP` redoes that step and every step downstream of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

STEPS = ("data", "index", "ask-base", "ask-base-rag", "ask-copy", "sft", "ask-tuned-rag", "eval")
RUN_NAMES = {"ask-base": "base-norag", "ask-base-rag": "base-rag", "ask-copy": "retrieval-copy",
             "ask-tuned-rag": "tuned-rag"}
ASK_STEPS = ("ask-base", "ask-base-rag", "ask-copy", "ask-tuned-rag")  # eval's run order: the candidate last


def upstream(settings: Any) -> dict[str, tuple[str, ...]]:
    """The steps each step reads from (directly)."""
    return {
        "data": (), "index": ("data",), "ask-base": ("data",), "ask-base-rag": ("data", "index"),
        "ask-copy": ("data", "index"), "sft": ("data", "index") if settings.sft.rag_context else ("data",),
        "ask-tuned-rag": ("data", "index", "sft"), "eval": ASK_STEPS,
    }


def forced_steps(settings: Any, force: tuple[str, ...]) -> set[str]:
    """The forced steps and everything downstream of them."""
    graph, forced = upstream(settings), set(force)
    changed = True
    while changed:
        changed = False
        for step in STEPS:
            if step not in forced and forced.intersection(graph[step]):
                forced.add(step)
                changed = True
    return forced


@dataclass
class PipelineResult:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_dir: Path | None = None
    report: dict | None = None
    notes: list[str] = field(default_factory=list)
    headline: str | None = None


def _ask_settings(settings: Any, k: int, adapter: str | None, mode: str = "generate") -> Any:
    """A copy of settings for one ask run (local backend on sft.base_model); the caller's object is untouched."""
    copy = settings.model_copy(deep=True)
    copy.ask.backend = "local"
    copy.ask.local_model = settings.sft.base_model
    copy.ask.k = k
    copy.ask.adapter = adapter
    copy.ask.mode = mode
    copy.ask.copy_threshold = None
    return copy


def serving_note(settings: Any) -> str | None:
    """What the pipeline serves differently from the configured `ask` section, or None."""
    ask, base = settings.ask, settings.sft.base_model
    if ask.backend != "local":
        return (f"pipeline: ask.backend is {ask.backend!r}; every ask step runs locally on sft.base_model "
                f"{base!r} (base and tuned from the same weights)")
    if str(ask.local_model) != str(base):
        return f"pipeline: ask.local_model {ask.local_model!r} != sft.base_model {base!r}; every ask step uses {base!r}"
    return None


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
    say = console.print if console is not None else (lambda *a, **k: None)
    result = PipelineResult()
    forced = forced_steps(settings, force)
    k = settings.ask.k if settings.ask.k is not None else settings.index.k
    notes = [serving_note(settings)]
    if settings.sft.rag_context and settings.sft.rag_k not in (None, k):
        notes.append(f"pipeline: sft.rag_k={settings.sft.rag_k} but the tuned run is served with k={k}: training "
                     "and serving prompts differ; leave sft.rag_k unset to train with what ask serves")
    for note in filter(None, notes):
        result.notes.append(note)
        say(f"[yellow]warning:[/yellow] {note}")
    data_dir = Path(settings.paths.data)

    def step(name: str, what: str) -> float:
        say(f"\n[bold cyan]== {name}[/bold cyan]: {what}")
        return time.perf_counter()

    def done(name: str, started: float, **info: Any) -> None:
        info["seconds"] = round(time.perf_counter() - started, 1)
        result.steps[name] = info
        say(f"[green]{name} done[/green] in {info['seconds']} s")

    from medscribe.pipeline_state import data_status

    started = step("data", f"{settings.data.inputs} -> {data_dir}")
    current, why = data_status(settings)
    if current and "data" not in forced:
        done("data", started, skipped=True)
    else:
        from medscribe.data import run_data

        say(f"data: {'forced' if 'data' in forced else why}: building")
        data = run_data(settings, console=console)
        done("data", started, splits=data.splits, rows_in=data.counts.get("rows_in"))
    test_path = data_dir / "test.jsonl"

    started = step("index", f"{data_dir / 'corpus.jsonl'} -> {settings.paths.index}")
    from medscribe.index import build_index

    report = build_index(settings, prune=True)
    done("index", started, report=_plain(report))

    # One retriever for every step that searches (retrieval-copy always does, with k = 1).
    from medscribe.index import Retriever

    retriever = Retriever.open(settings)

    from medscribe.ask import run_batch
    from medscribe.ask.inputs import read_inputs
    from medscribe.ask.provenance import run_fingerprint
    from medscribe.pipeline_state import ask_status

    def ask(name: str, k_run: int, adapter: str | None, mode: str = "generate") -> None:
        run = RUN_NAMES[name]
        target = Path(settings.paths.ask) / run
        what = "nearest case's answer, no model" if mode == "copy" else f"adapter={adapter or 'none'}"
        started = step(name, f"{test_path} -> {target} (k={k_run}, {what})")
        run_settings = _ask_settings(settings, k_run, adapter, mode)
        records, _ = read_inputs(test_path, run_settings.ask.columns, run_settings.data.task)
        record = run_fingerprint(run_settings, records, test_path, retriever if k_run > 0 else None, k_run)
        current, why = ask_status(target, record)
        fresh = name in forced or not current
        if fresh and (target / "results.jsonl").is_file():
            say(f"{name}: {'forced' if name in forced else why}: asking afresh")
        summary = run_batch(run_settings, test_path, run=run, retriever=retriever if k_run > 0 else None,
                            console=console, overwrite=fresh)
        done(name, started, fresh=fresh, asked=summary.get("asked_this_run"),
             summary={key: summary.get(key) for key in ("count", "failures", "json_valid_rate")})

    ask("ask-base", 0, None)
    ask("ask-base-rag", k, None)
    ask("ask-copy", 1, None, mode="copy")

    from medscribe.pipeline_state import SFT_RECORD, record_sft, sft_fingerprint, sft_status

    sft_dir = Path(settings.paths.sft) / sft_run
    adapter = sft_dir / "adapter"
    started = step("sft", f"{settings.sft.base_model} -> {sft_dir}")
    sft_record = sft_fingerprint(settings, k, retriever)
    current, why, verified = sft_status(sft_dir, sft_record, data_dir)
    if current and "sft" not in forced:
        if not verified:
            result.notes.append(f"pipeline: {why}")
            say(f"[yellow]warning:[/yellow] {why}")
        done("sft", started, skipped=True, adapter=str(adapter))
    else:
        import shutil

        from medscribe.sft import run_sft

        say(f"sft: {'forced' if 'sft' in forced else why}: training")
        # A new training in this run folder: the old adapter, checkpoints and record are another training's
        # (the record is written again only once this training has finished).
        for old in (adapter, sft_dir / "checkpoints"):
            shutil.rmtree(old, ignore_errors=True)
        (sft_dir / SFT_RECORD).unlink(missing_ok=True)
        manifest = run_sft(settings, run=sft_run, retriever=retriever, console=console)
        record_sft(sft_dir, sft_record)
        done("sft", started, adapter=manifest.get("adapter"), backend=(manifest.get("setup") or {}).get("backend"))
    ask("ask-tuned-rag", k, str(adapter))

    started = step("eval", "compare the four runs")
    from medscribe.evaluate import run_eval

    runs = [Path(settings.paths.ask) / RUN_NAMES[n] for n in ASK_STEPS]
    evaluation = run_eval(settings, runs, name="pipeline", console=console)
    result.eval_dir = evaluation.out_dir
    result.report = evaluation.report
    result.headline = headline(evaluation.report)
    done("eval", started, out=str(evaluation.out_dir))
    return result


COPY_RUN = RUN_NAMES["ask-copy"]


def headline(report: dict) -> str | None:
    """The two questions the demo asks, in one line: does the tuned model beat the base model, and does it beat
    copying the nearest training case (paired bootstrap deltas and 95% CIs from eval's report), e.g.
    'rougeL: base-norag 0.0512 -> tuned-rag 0.5571 (+0.5059, 95% CI [+0.4100, +0.6000]); vs retrieval-copy
    0.6012: -0.0441 (95% CI [-0.0900, +0.0010]): tuned-rag does not beat copying the nearest training case'."""
    runs = list(report.get("runs") or {})
    if len(runs) < 2:
        return None
    metric = report.get("primary_metric") or "rougeL"
    base, last = runs[0], runs[-1]
    before = report["runs"][base]["metrics"].get(metric)
    after = report["runs"][last]["metrics"].get(metric)
    if before is None or after is None:
        return None
    line = f"{metric}: {base} {before:.4f} -> {last} {after:.4f} ({after - before:+.4f}"
    delta = _pair_delta(report, base, last, metric)
    if delta and delta.get("low") is not None:
        line += f", 95% CI [{delta['low']:+.4f}, {delta['high']:+.4f}]"
    line += ")"
    copied = report["runs"].get(COPY_RUN, {}).get("metrics", {}).get(metric) if COPY_RUN != last else None
    if copied is None:
        return line
    line += f"; vs {COPY_RUN} {copied:.4f}: {after - copied:+.4f}"
    delta = _pair_delta(report, COPY_RUN, last, metric)
    if delta and delta.get("low") is not None:
        line += f" (95% CI [{delta['low']:+.4f}, {delta['high']:+.4f}])"
        if delta["low"] > 0:
            verdict = f"{last} beats copying the nearest training case"
        elif delta["high"] < 0:
            verdict = f"{last} does not beat copying the nearest training case: copying scores higher"
        else:
            verdict = f"{last} does not beat copying the nearest training case (the CI includes 0)"
    else:  # an eval report without pairwise intervals: the means only, and say that no CI backs them
        verdict = (f"{last} {'scores above' if after > copied else 'does not beat'} copying the nearest training "
                   "case (means only: the eval report has no paired interval for this pair)")
    return f"{line}: {verdict}"


def _pair_delta(report: dict, a: str, b: str, metric: str) -> dict | None:
    """{"delta": b - a, "low", "high"} from eval's pairwise table (or its comparison with the first run)."""
    pair = (report.get("pairwise") or {}).get(f"{a}|{b}", {}).get(metric)
    if pair is not None:
        return pair
    if a == next(iter(report.get("runs") or {}), None):
        return (report.get("comparison") or {}).get(b, {}).get(metric)
    return None


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: v for k, v in asdict(obj).items() if isinstance(v, int | float | str)}
    return obj
