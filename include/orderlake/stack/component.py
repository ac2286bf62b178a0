"""What the embedded platform knows of each of its parts: a ``Component`` (its supervised
programs, ports, readiness, address, metrics and data directories), shared by the platform's
`up`/`down`/`status` and by the modules that describe one component (the dashboard's), so
neither imports the other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orderlake.stack.supervisor import Program


@dataclass
class Component:
    """One part of the platform as `up`, `down` and `status` see it."""

    name: str
    programs: Callable[[], list[Program]]
    ports: dict[str, tuple[int, str]] = field(default_factory=dict)  # what -> (port, env var)
    ready: Callable[[], None] = lambda: None  # blocks until usable, raises OrderlakeError
    address: Callable[[], dict] = dict  # where to reach it (shown even when it is down)
    metrics: Callable[[], dict] = dict  # live numbers (asked only while it runs)
    # supervised program names, when they are not just the component's own name
    program_names: list[str] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)  # whose free space `status` shows
    # components that must be ready before this one's programs start (`up` starts the others
    # at once: independent JVMs and Airflow come up side by side)
    needs: tuple[str, ...] = ()

    @property
    def supervised(self) -> list[str]:
        return self.program_names or [self.name]


def venv_path() -> str:
    """PATH for a supervised process: `python`, `airflow`, ... of this virtualenv first."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
