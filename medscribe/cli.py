"""The `medscribe` command line. Run `medscribe --help`.

Kept thin and import-light: stage commands live in `medscribe.commands.*` and import their stage module
(and torch, transformers, chromadb, ...) only when they run.
"""

from pathlib import Path

import typer

from medscribe import __version__
from medscribe.commands import ask as ask_cmd
from medscribe.commands import chat as chat_cmd
from medscribe.commands import config as config_cmd
from medscribe.commands import data as data_cmd
from medscribe.commands import doctor as doctor_cmd
from medscribe.commands import eval as eval_cmd
from medscribe.commands import index as index_cmd
from medscribe.commands import model as model_cmd
from medscribe.commands import pipeline as pipeline_cmd
from medscribe.commands import serve as serve_cmd
from medscribe.commands import sft as sft_cmd

app = typer.Typer(
    name="medscribe",
    help="Raw clinical text -> anonymized data -> fine-tuned, retrieval-augmented assistant -> honest metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medscribe {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="MEDSCRIBE_CONFIG", help="Settings file (default: ./medscribe.toml if present)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """medscribe: one pipeline from raw clinical exports to a measured assistant."""
    # Settings are loaded by each command (lazily), so `--help` never pays for pydantic-settings.
    ctx.obj = {"config": config, "verbose": verbose}


app.add_typer(config_cmd.app, name="config")
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(model_cmd.app, name="model")
app.command("pipeline")(pipeline_cmd.command)
# --- stage commands: one line each, `app.command("NAME")(MODULE.command)` ---
app.command("ask")(ask_cmd.command)
app.command("index")(index_cmd.command)
app.add_typer(sft_cmd.app, name="sft")
app.command("data")(data_cmd.command)
app.command("eval")(eval_cmd.command)
app.command("serve")(serve_cmd.command)
app.command("chat")(chat_cmd.command)


def run() -> None:
    """The `medscribe` console command ([project.scripts]; `python -m medscribe` too). Marks the process as the
    command itself, the only one that may restart itself under jemalloc for CPU training (sft/allocator.py)."""
    from medscribe.sft import allocator

    allocator.standalone = True
    app()

