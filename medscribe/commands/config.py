"""`medscribe config show` and `medscribe config init [PATH]`."""

from pathlib import Path

import typer

from medscribe.commands._common import console, handle_errors, load_settings

app = typer.Typer(help="Show the resolved settings or write a commented medscribe.toml.", no_args_is_help=True)


@app.command("show")
@handle_errors
def show(ctx: typer.Context) -> None:
    """Print the fully resolved settings as TOML, each value tagged with its source (default, file, env, flag).

    Secrets are masked."""
    from medscribe.configfile import render_settings_toml
    from medscribe.settings import value_sources

    settings = load_settings(ctx)
    obj = ctx.find_root().obj or {}
    text = render_settings_toml(settings, value_sources(obj.get("config")))
    path = getattr(settings, "_config_path", None)
    console.print(f"# resolved settings (file: {path or 'none, defaults'})", style="dim", highlight=False)
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command("init")
@handle_errors
def init(
    path: Path = typer.Argument(Path("medscribe.toml"), help="Where to write the file."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing file."),
) -> None:
    """Write a commented medscribe.toml with every setting and its default."""
    from medscribe.configfile import template_text
    from medscribe.errors import UsageError
    from medscribe.io import atomic_write_text

    if path.exists() and not force:
        raise UsageError(f"{path}: already exists (use --force to overwrite)")
    atomic_write_text(path, template_text())
    console.print(f"wrote {path}")
