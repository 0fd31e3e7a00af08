"""What every command shares: consoles, settings loading from the global options, error handling."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn medscribe errors into a one-line message and the right exit code (2 usage, 1 runtime)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from medscribe.errors import MedscribeError

        try:
            return func(*args, **kwargs)
        except MedscribeError as exc:
            for i, line in enumerate(str(exc).splitlines() or [type(exc).__name__]):
                prefix = "error: " if i == 0 else "  "
                err_console.print(f"[red]{prefix}[/red]{line}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def load_settings(ctx: typer.Context, flags: dict[str, Any] | None = None):
    """Settings for this invocation: the global --config plus this command's flags (highest precedence)."""
    import logging

    from medscribe.settings import load_settings as _load

    # Every command loads settings before its heavy imports: the place to quiet what is only noise.
    # bitsandbytes warns on every import on a CPU that an optional fast kernel package is missing.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    obj = ctx.find_root().obj or {}
    return _load(obj.get("config"), flags=flags)


def verbose(ctx: typer.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


def setup_logging(ctx: typer.Context) -> None:
    import logging

    level = logging.DEBUG if verbose(ctx) else logging.WARNING
    from rich.logging import RichHandler

    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)])
