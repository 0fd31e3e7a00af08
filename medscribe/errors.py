"""Errors that the CLI turns into one-line messages and exit codes (no tracebacks for user mistakes).

Raise `UsageError` for anything the user can fix by changing input, flags or config (exit 2) and
`RuntimeFailure` for things that went wrong while doing the work (exit 1). Messages must name the file,
line/row and field where there is one, and must never contain PHI or secrets.
"""

from __future__ import annotations


class MedscribeError(Exception):
    exit_code = 1


class UsageError(MedscribeError):
    """Bad input, flags or configuration: exit code 2."""

    exit_code = 2


class RuntimeFailure(MedscribeError):
    """The work itself failed (server down for every row, out of memory, ...): exit code 1."""

    exit_code = 1
