"""Whether a recorded process is still the one that was recorded: its pid and its start time.

A pid alone is not enough: the kernel reuses pids, so a record outliving its process could
name an unrelated one. The start time (clock ticks after boot, /proc/<pid>/stat field 22)
tells them apart.
"""

from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> int | None:
    """A process's start time (clock ticks after boot), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def still_running(pid: int, start: int | None) -> bool:
    """True while the process recorded as (pid, start) runs."""
    return start is not None and process_start(pid) == start
