"""`medscribe sft` (train a LoRA adapter), `medscribe sft merge ADAPTER --out DIR` (merge it into 16-bit) and
`medscribe sft remote --run NAME` (a job on an OpenAI-compatible fine-tuning API).

Thin: parses flags, loads settings, calls `medscribe.sft.run_sft` / `merge_adapter` /
`medscribe.sft.remote.run_remote`. See docs/sft.md.
"""

from pathlib import Path

import typer

from medscribe.commands._common import console, handle_errors, load_settings

app = typer.Typer(
    help="Fine-tune a LoRA adapter on the `data` outputs (unsloth on CUDA, transformers+PEFT anywhere).",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback(invoke_without_command=True)
@handle_errors
def command(
    ctx: typer.Context,
    run: str | None = typer.Option(None, "--run", help="Run folder name under paths.sft (default: UTC timestamp)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run (--run, else the newest) from its last checkpoint."
    ),
    merge: bool | None = typer.Option(
        None, "--merge/--no-merge", help="Also write a merged 16-bit model (<run>/merged)."
    ),
    base_model: str | None = typer.Option(None, "--base-model", help="Model folder or cached hub id (sft.base_model)."),
    backend: str | None = typer.Option(None, "--backend", help="auto | unsloth | hf (sft.backend)."),
    load_in_4bit: bool | None = typer.Option(None, "--4bit/--no-4bit", help="4-bit QLoRA (sft.load_in_4bit)."),
    epochs: float | None = typer.Option(None, "--epochs", help="sft.epochs"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="sft.max_steps (overrides epochs when > 0)."),
    learning_rate: float | None = typer.Option(None, "--lr", help="sft.learning_rate"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="sft.batch_size (per device)."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", help="sft.grad_accum"),
    lora_r: int | None = typer.Option(None, "--lora-r", help="sft.lora_r"),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="sft.max_seq_length"),
    packing: bool | None = typer.Option(None, "--packing/--no-packing", help="sft.packing"),
    rag_context: bool | None = typer.Option(None, "--rag/--no-rag", help="Retrieved cases in training prompts."),
    eval_steps: int | None = typer.Option(None, "--eval-steps", help="sft.eval_steps (also the checkpoint interval)."),
    method: str | None = typer.Option(
        None, "--method", help="sft | dpo | orpo | distill (sft.method; dpo/orpo train on pairs, distill on a "
        "teacher's answers: sft.teacher_*)."),
    init_adapter: str | None = typer.Option(None, "--init-adapter", help="dpo/orpo: start from this SFT run/adapter."),
    pairs: str | None = typer.Option(None, "--pairs", help="dpo/orpo: JSONL/CSV of prompt/chosen/rejected."),
    pairs_eval: str | None = typer.Option(
        None, "--pairs-from-eval", help="dpo/orpo: pairs from an eval folder or ask run (sft.pairs_eval)."),
    pairs_threshold: float | None = typer.Option(
        None, "--pairs-threshold", help="sft.pairs_threshold: answers below it on sft.pairs_metric give pairs."),
    beta: float | None = typer.Option(None, "--beta", help="sft.beta (DPO / ORPO)."),
    teacher_backend: str | None = typer.Option(
        None, "--teacher-backend", help="distill: openai | local (sft.teacher_backend)."),
    teacher_model: str | None = typer.Option(
        None, "--teacher", help="distill: the teacher's server model name or model folder (sft.teacher_model)."),
    teacher_adapter: str | None = typer.Option(
        None, "--teacher-adapter", help="distill: the local teacher's adapter folder (sft.teacher_adapter)."),
) -> None:
    """Train a LoRA adapter on paths.data/train.jsonl (eval.jsonl for evaluation and early stopping)."""
    if ctx.invoked_subcommand is not None:
        return
    flags = {
        "sft": {
            "base_model": base_model, "backend": backend, "load_in_4bit": load_in_4bit, "epochs": epochs,
            "max_steps": max_steps, "learning_rate": learning_rate, "batch_size": batch_size,
            "grad_accum": grad_accum, "lora_r": lora_r, "max_seq_length": max_seq_length, "packing": packing,
            "rag_context": rag_context, "eval_steps": eval_steps, "run_name": run,
            "method": method, "init_adapter": init_adapter, "pairs_file": pairs, "pairs_eval": pairs_eval,
            "pairs_threshold": pairs_threshold, "beta": beta, "teacher_backend": teacher_backend,
            "teacher_model": teacher_model, "teacher_adapter": teacher_adapter,
        }
    }
    settings = load_settings(ctx, flags)
    from medscribe.sft.allocator import restart_with_fast_allocator

    restart_with_fast_allocator(settings)  # CPU training: this command again under tcmalloc/jemalloc
    from medscribe.sft import run_sft
    from medscribe.sft.trainer import summary_table

    manifest = run_sft(settings, resume=resume, merge=merge, console=console)
    if manifest["is_main_process"] and manifest.get("method") in ("dpo", "orpo"):
        from medscribe.sft.prefer_trainer import summary_table as prefer_table

        console.print(prefer_table(manifest))
    elif manifest["is_main_process"]:  # one table under torchrun, not one per rank
        console.print(summary_table(manifest))
        if manifest.get("stages"):
            from medscribe.sft.curriculum import stages_table

            console.print(stages_table(manifest))
        if manifest.get("serve"):
            console.print(f"serve it with: {manifest['serve']['command']}", highlight=False)


@app.command("remote")
@handle_errors
def remote_command(
    ctx: typer.Context,
    run: str = typer.Option(..., "--run", help="Run folder under paths.sft: holds job.json; rerun it to poll."),
    model: str | None = typer.Option(None, "--model", help="Base model of the job (sft.remote_model)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Fine-tuning API (sft.remote_base_url)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Poll until the job ends (else start it and return)."),
    rag_context: bool | None = typer.Option(None, "--rag/--no-rag", help="Retrieved cases in training prompts."),
) -> None:
    """Fine-tune on an OpenAI-compatible fine-tuning API: upload train/eval, start the job, poll it."""
    settings = load_settings(ctx, {"sft": {"remote_model": model, "remote_base_url": base_url,
                                           "rag_context": rag_context}})
    from medscribe.sft.remote import run_remote

    record = run_remote(settings, run=run, wait=wait, console=console)
    console.print_json(data={k: v for k, v in record.items() if v is not None})


@app.command("merge")
@handle_errors
def merge_command(
    ctx: typer.Context,
    adapter: Path = typer.Argument(..., help="Adapter folder (e.g. artifacts/sft/<run>/adapter)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged 16-bit model."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: the one recorded in the adapter)."),
    dtype: str | None = typer.Option(None, "--dtype", help="bf16 | fp16 (sft.merge_dtype)."),
) -> None:
    """Merge a LoRA adapter into its 16-bit base model: a plain HF folder vLLM can serve."""
    settings = load_settings(ctx, {"sft": {"merge_dtype": dtype}})
    from medscribe.sft import merge_adapter

    with console.status("merging adapter"):
        merged = merge_adapter(adapter, out, base_model=base, dtype=settings.sft.merge_dtype)
    console.print(f"merged model written to {merged}", highlight=False)
