"""Errors that the CLI turns into one-line messages and exit codes (no tracebacks for user mistakes).

Raise `UsageError` for anything the user can fix by changing input, flags or config (exit 2) and
`RuntimeFailure` for things that went wrong while doing the work (exit 1). Messages must name the file,
line/row and field where there is one, and must never contain PHI or secrets.
"""

from __future__ import annotations

from contextlib import contextmanager


class MedscribeError(Exception):
    exit_code = 1


class UsageError(MedscribeError):
    """Bad input, flags or configuration: exit code 2."""

    exit_code = 2


class RuntimeFailure(MedscribeError):
    """The work itself failed (server down for every row, out of memory, ...): exit code 1."""

    exit_code = 1


CONTEXT_ATTR = "_medscribe_context"


@contextmanager
def failure_context(what: str):
    """Say where an unexpected failure happened ("sft: retrieving context, rows 2,048-4,095 of 50,000").

    The CLI prints the innermost-first chain of these in its one-line message (commands/_common.py). Use it
    around batch loops and per-file work; never put row text in `what` (it is printed), only positions/paths.
    """
    try:
        yield
    except MedscribeError:
        raise
    except Exception as exc:
        try:
            setattr(exc, CONTEXT_ATTR, [*getattr(exc, CONTEXT_ATTR, []), what])
        except AttributeError:  # an exception type without __dict__: nothing to attach the place to
            pass
        raise
