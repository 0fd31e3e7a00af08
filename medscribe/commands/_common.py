"""What every command shares: consoles, settings loading from the global options, error handling."""

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn every failure into a one-line message and the right exit code (2 usage, 1 runtime).

    medscribe's own errors print their message. Anything else is a bug or an environment failure: one line
    (what failed, in which command, where when known: errors.failure_context) plus the path of a log file with
    the full traceback, exit 1. Message and log are PHI-scrubbed (an exception text can quote a data value).
    `-v` also prints the traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import click

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
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # a command's own exit code (typer's Exit is not click's in typer >= 0.12), not a failure
        except Exception as exc:
            ctx = kwargs.get("ctx") or next((a for a in args if isinstance(a, click.Context)), None)
            report_unexpected(exc, ctx or click.get_current_context(silent=True))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# Where each command's failure log goes: under the folder it writes (settings.paths.<attr>)/logs.
_LOG_HOME = {"data": "data", "index": "index", "ask": "ask", "sft": "sft", "eval": "eval"}


def _scrub(texts: list[str]) -> list[str]:
    try:
        from medscribe.phi import Scrubber

        return Scrubber().scrub_texts(texts)
    except Exception:  # the scrubber itself failed: keep no free text at all
        return ["(message withheld: it could not be PHI-scrubbed)" for _ in texts]


def report_unexpected(exc: BaseException, ctx: Any = None) -> Path:
    """Print the one-line report of an unexpected exception and write its scrubbed traceback; return the log."""
    import os
    import tempfile
    import time
    import traceback

    from medscribe.errors import CONTEXT_ATTR

    root = ctx.find_root() if ctx is not None else None
    names = []
    while ctx is not None and ctx.parent is not None:  # "sft merge", not the program name
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(names) or "medscribe"
    stage = command.split(" ")[0]
    settings = ((root.obj or {}) if root is not None else {}).get("settings")
    message, trace = _scrub([str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "",
                             "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))])
    where = " <- ".join(getattr(exc, CONTEXT_ATTR, []))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"medscribe-{stage}-{stamp}-{os.getpid()}.log"
    log = None
    candidates = []
    if settings is not None:
        candidates.append(Path(getattr(settings.paths, _LOG_HOME.get(stage, "artifacts"))) / "logs")
    candidates.append(Path(tempfile.gettempdir()) / "medscribe-logs")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / name
            log.write_text(f"medscribe {command} failed at {stamp}\nwhere: {where or 'unknown'}\n\n{trace}",
                           encoding="utf-8")
            break
        except OSError:
            log = None
    line = f"{command} failed unexpectedly: {type(exc).__name__}" + (f": {message}" if message else "")
    if where:
        line += f" (while {where})"
    err_console.print(f"[red]error: [/red]{line}", markup=True, highlight=False, soft_wrap=True)
    if log is not None:
        err_console.print(f"  traceback: {log} (-v prints it here)", highlight=False, soft_wrap=True)
    if root is not None and verbose(root):
        err_console.print(trace, markup=False, highlight=False, soft_wrap=True)
    return log or Path(tempfile.gettempdir())


def load_settings(ctx: typer.Context, flags: dict[str, Any] | None = None):
    """Settings for this invocation: the global --config plus this command's flags (highest precedence)."""
    import logging

    from medscribe.settings import load_settings as _load

    # Every command loads settings before its heavy imports: the place to quiet what is only noise.
    # bitsandbytes warns on every import on a CPU that an optional fast kernel package is missing.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # transformers 5 draws a tqdm bar for every model load ("Loading weights") and save ("Writing model
    # shards"); medscribe shows its own rich progress. Read by huggingface_hub when transformers is imported.
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Deprecation notices of the libraries (not of anything a user set) are for their maintainers.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|trl|accelerate)\b")
    root = ctx.find_root()
    obj = root.obj if root.obj is not None else {}
    settings = _load(obj.get("config"), flags=flags)
    obj["settings"] = settings  # handle_errors writes its failure log under the command's output folder
    root.obj = obj
    return settings


def verbose(ctx: typer.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


def setup_logging(ctx: typer.Context) -> None:
    import logging

    level = logging.DEBUG if verbose(ctx) else logging.WARNING
    from rich.logging import RichHandler

    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)])
