"""Files only their owner may read: secrets and the configurations that carry them.

A file holding a secret is written to a new file created with mode 0600 and renamed over the
old one, so no other local user can read it at any moment (a file created, then chmod-ed,
is readable in between) and a reader never sees half of it.
"""

from __future__ import annotations

import os
from pathlib import Path

MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, MODE)
    try:
        os.fchmod(fd, MODE)  # an old temporary file of the same name keeps its own mode
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def is_private(path: Path) -> bool:
    """True when neither the group nor others may read or write the file."""
    return path.stat().st_mode & 0o077 == 0
