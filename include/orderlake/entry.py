"""The boundary every command runs inside: expected failures (an OrderlakeError) become one
sentence on stderr and their exit code; a bug becomes one sentence naming the log that holds
its trace. Shared by the CLI and the batch entry points (jobs.runner), so neither imports the
other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings


def run_command(command: str, work: Callable[[Settings], object]) -> int:
    """Run ``work`` with the settings of the environment; expected failures print one
    sentence on stderr and give their exit code, a bug its first line and a logged trace."""
    settings = None
    try:
        settings = Settings.from_env()
        result = work(settings)
        return result if isinstance(result, int) else 0
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orderlake: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one sentence here, the trace in a log
        where = log_trace(settings, command)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"orderlake: error: {command} failed unexpectedly ({type(exc).__name__}: "
            f"{first}); the full trace is in {where}.",
            file=sys.stderr,
        )
        return 1


def log_trace(settings: Settings | None, command: str) -> Path:
    """Append the current exception's trace to ORDERLAKE_HOME/logs/cli-errors.log."""
    import traceback
    from datetime import UTC, datetime

    logs = settings.logs_dir if settings else Path.cwd()
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "cli-errors.log"
    with path.open("a") as out:
        out.write(f"--- {datetime.now(UTC).isoformat()} orderlake {command}\n")
        out.write(traceback.format_exc())
    return path
