"""Single-writer locks: Delta on a local filesystem is safe for commits from one JVM at a time.

Airflow already runs the batch writers one at a time (a pool of size 1); these locks also keep a
job started by hand from overlapping one started by Airflow. A lock held by a dead process is
released by the kernel with its file descriptor, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import IO

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

BATCH = "batch"  # every batch writer of the lake (jobs, replays, maintenance, `sql --write`)
SPEED = "speed"  # the speed layer, one per lake: two would write the same speed tables


def lock_path(settings: Settings, name: str):
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


def acquire(settings: Settings, name: str, wait: bool = False) -> Held:
    """Take the lock `name`; fail with one sentence naming its holder if another process (or
    another holder in this process) has it, or wait for it with ``wait=True``."""
    path = lock_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open: the open file is the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise OrderlakeError(
            f"Another orderlake job holds the {name} lock ({holder}); wait for it to finish."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return Held(name, handle)


@contextlib.contextmanager
def exclusive(settings: Settings, name: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock `name` for the duration (see ``acquire``)."""
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
