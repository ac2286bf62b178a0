"""Free space of the platform's data directories, for `status` and the dashboard.

Kafka's log directory, the Flume file channels (an agent stops taking events below 500 MB
free: Flume's minimumRequiredSpace), the spool and the lake fill the disk at different rates;
a warning below ORDERLAKE_MIN_FREE_GB leaves time to act before any of them stops.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orderlake.settings import Settings

GIB = 1024**3


def free_space(settings: Settings, path: Path) -> dict:
    """{path, free_gb, total_gb, warning} of the filesystem holding ``path`` (or its nearest
    existing parent: a directory not created yet)."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free = usage.free / GIB
    warning = None
    if free < settings.min_free_gb:
        warning = (
            f"{path} has {free:.1f} GiB free, below ORDERLAKE_MIN_FREE_GB="
            f"{settings.min_free_gb:g}: free space or move it before writers stop"
        )
    return {
        "path": str(path),
        "free_gb": round(free, 2),
        "total_gb": round(usage.total / GIB, 1),
        "warning": warning,
    }
