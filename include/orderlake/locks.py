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

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings


def lock_path(settings: Settings, name: str):
    return settings.run_dir / "locks" / f"{name}.lock"


@contextlib.contextmanager
def exclusive(settings: Settings, name: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock `name` for the duration; fail with one sentence if another process has it
    (or wait for it with ``wait=True``)."""
    path = lock_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise OrderlakeError(
                f"Another orderlake job holds the {name} lock ({holder}); wait for it to finish."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
