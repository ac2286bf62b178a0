"""How a batch job runs: the same code by hand (`orderlake batch ...`, batch/*.py) and as an
Airflow task, on a session of the warm Spark server.

A job is a module with

    NAME                              the command name (`orderlake NAME ...`; its help line
                                      is in orderlake.jobs.BATCH_JOBS)
    add_arguments(parser)             its flags
    run(spark, settings, args)        the work: yields one summary per step
    check(settings, args)             optional: refuses bad parameters before any Spark work
    shortcut(settings, args)          optional: the summaries when Spark is not needed, else None

The summary contract: a summary is a flat JSON-serialisable dict describing one step (a layer
loaded, a suite validated, a replay done). The command line prints each as one JSON line on
stdout as soon as the step ends; an Airflow task calls ``execute`` in its own process and gets
the list back (its return value, Airflow's XCom), each one also written to the task's log.
Failures are exceptions: CheckFailed (a check found a problem, exit code 3) and UsageError
(a bad parameter, exit code 2) are not worth retrying; any other error is.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from orderlake.entry import run_command
from orderlake.settings import Settings

log = logging.getLogger(__name__)

Summary = dict[str, Any]


def parser(job: ModuleType, prog: str | None = None) -> argparse.ArgumentParser:
    """The job's own argument parser (batch/*.py, Airflow tasks)."""
    from orderlake.jobs import BATCH_JOBS

    parsed = argparse.ArgumentParser(
        prog=prog or f"orderlake {job.NAME}", description=BATCH_JOBS[job.NAME][1]
    )
    job.add_arguments(parsed)
    return parsed


def execute(
    job: ModuleType,
    settings: Settings,
    args: argparse.Namespace,
    report: Callable[[Summary], None] | None = None,
) -> list[Summary]:
    """Run the job on a new session of the warm Spark server; return its summaries.

    ``report`` sees each summary as its step ends (the command line prints it at once).
    """
    from orderlake.spark import connect

    summaries: list[Summary] = []

    def emit(summary: Summary) -> None:
        summaries.append(summary)
        log.info("%s", dumps(summary))
        if report:
            report(summary)

    if hasattr(job, "check"):
        job.check(settings, args)
    shortcut = job.shortcut(settings, args) if hasattr(job, "shortcut") else None
    if shortcut is not None:
        for summary in shortcut:
            emit(summary)
        return summaries
    with connect(settings, f"orderlake-{job.NAME}") as spark:
        steps: Iterator[Summary] = job.run(spark, settings, args)
        for summary in steps:
            emit(summary)
    return summaries


def dumps(summary: Summary) -> str:
    """A summary as the one JSON line the command line prints."""
    return json.dumps(summary, default=str)


def main(job: ModuleType, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of batch/<job>.py: parse ``argv``, run, print the summaries; exit code."""
    args = parser(job, prog).parse_args(argv)
    return run_command(
        job.NAME,
        lambda settings: execute(job, settings, args, lambda s: print(dumps(s), flush=True)),
    )
