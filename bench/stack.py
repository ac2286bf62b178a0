"""An isolated embedded platform for benchmarks: its own ORDERLAKE_HOME and free ports.

Started and stopped through the real CLI (`orderlake up` / `orderlake down`), exactly as a user
would, so a benchmark never touches another platform running on the same machine. Example::

    with running_platform() as platform:
        print(platform.pids())
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orderlake.settings import Settings
from tests.fixtures.stack import isolated_env, settings_from

ORDERLAKE = [sys.executable, "-m", "orderlake.cli"]


@dataclass
class Platform:
    """A platform started by this process, and the CLI bound to its environment."""

    env: dict[str, str]
    settings: Settings
    keep_home: bool = False  # set it to keep the home after `down` (e.g. for its logs)

    def cli(self, *args: str, timeout: float = 600) -> str:
        """Run `orderlake ARGS`; its stdout, or RuntimeError with its output when it fails."""
        done = subprocess.run(
            [*ORDERLAKE, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"orderlake {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen:
        return subprocess.Popen([*ORDERLAKE, *args], env=self.env, **kwargs)  # type: ignore[call-overload]

    def supervisorctl(self, *args: str) -> str:
        """Run supervisorctl against this platform's own supervisord (never another one)."""
        conf = self.settings.run_dir / "supervisord.conf"
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json"))

    def pids(self) -> dict[str, int]:
        """{component: pid} of every running component (kafka, flume-collector, ...)."""
        return {name: info["pid"] for name, info in self.status().items() if info.get("pid")}


@contextmanager
def running_platform(
    hosts: int = 2,
    keep_home: bool = False,
    only: str | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """Start a platform in a fresh temp home; always `orderlake down` it. The home (spool,
    channels, Kafka log: gigabytes after a benchmark) is then deleted, unless an error happened
    or ``keep_home``.

    ``only`` (e.g. "kafka,flume") is passed as `up --only` when this CLI has that option;
    otherwise every component starts. ``settings`` are ORDERLAKE_* variables the platform
    runs with (a setting under test), on top of its own home and ports.
    """
    home = Path(tempfile.mkdtemp(prefix="orderlake-bench-")) / "home"
    env = {**isolated_env(home, hosts=hosts), **(settings or {})}
    platform = Platform(env, settings_from(env), keep_home)
    try:
        up = ["up"]
        if only and "--only" in platform.cli("up", "--help"):
            up += ["--only", only]
        platform.cli(*up, timeout=300)
        yield platform
    except Exception:
        platform.keep_home = True  # its logs explain the failure (Ctrl-C is no failure)
        raise
    finally:
        platform.cli("down", timeout=300)  # when this fails, the home stays as well
        if platform.keep_home:
            print(f"kept ORDERLAKE_HOME={home} (logs in {home / 'logs'})", file=sys.stderr)
        else:
            shutil.rmtree(home.parent, ignore_errors=True)
