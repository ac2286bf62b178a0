"""User-facing errors: one clear sentence saying what is wrong and what to do.

The CLI prints ``OrderlakeError`` messages without a stack trace and exits non-zero; every other
exception is a bug and keeps its trace.
"""

from __future__ import annotations


class OrderlakeError(Exception):
    """An expected failure with a message meant for the person at the terminal."""

    exit_code = 1


class UsageError(OrderlakeError):
    """A bad flag or argument value."""

    exit_code = 2


class CheckFailed(OrderlakeError):
    """A data check (validation, reconciliation) found a problem: re-running cannot fix it, so
    orchestration fails at once instead of retrying."""

    exit_code = 3
