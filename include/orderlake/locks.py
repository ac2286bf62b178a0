"""Single-writer locks: Delta on a local filesystem is safe for commits from one JVM at a time.

Airflow already runs the batch writers one at a time (a pool of size 1); these locks also keep a
job started by hand from overlapping one started by Airflow. A lock held by a dead process is
released by the kernel with its file descriptor, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

BATCH = "batch"  # every batch writer of the lake (jobs, replays, maintenance, `sql --write`)
SPEED = "speed"  # the speed layer, one per lake: two would write the same speed tables


def lock_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / "locks" / f"{name}.lock"


class Held:
    """A lock this process holds until ``release()`` (or until it exits: the kernel releases a
    dead process's locks with its file descriptors)."""

    def __init__(self, name: str, handle: IO[str]):
        self.name = name
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


WAIT_TIMEOUT_S = 60 * 60.0  # a batch job waiting for another: longer than any one job here


def acquire(
    settings: Settings, name: str, wait: bool = False, timeout: float = WAIT_TIMEOUT_S
) -> Held:
    """Take the lock `name`. Held by another process (or another holder in this one): fail
    with one sentence naming the holder, or with ``wait=True`` wait for it, saying once on
    stderr whom it waits for, up to ``timeout`` seconds."""
    path = lock_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open: the open file is the lock
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            if not wait or time.monotonic() > deadline:
                handle.close()
                waited = f" after waiting {timeout / 60:.0f} min" if wait else ""
                raise OrderlakeError(
                    f"Another orderlake job holds the {name} lock ({holder}){waited}; wait for "
                    "it to finish."
                ) from None
            if not said:
                print(f"orderlake: waiting for the {name} lock ({holder})", file=sys.stderr)
                said = True
            time.sleep(0.5)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return Held(name, handle)


@contextlib.contextmanager
def exclusive(settings: Settings, name: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock `name` for the duration (see ``acquire``). Batch writers wait for each
    other (``wait=True``): a job, a replay and a maintenance run started at the same moment run
    one after the other."""
    held = acquire(settings, name, wait)
    try:
        yield
    finally:
        held.release()


def holder(settings: Settings, name: str) -> str | None:
    """Who holds the lock ("pid N"), None when nobody does."""
    path = lock_path(settings, name)
    if not is_held(settings, name):
        return None
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def is_held(settings: Settings, name: str) -> bool:
    """True while some process holds the lock (maintenance checks this before VACUUM)."""
    path = lock_path(settings, name)
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
