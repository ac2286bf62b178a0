"""The dashboard as a platform component: `python -m orderlake.dashboard` under supervision.

`orderlake up` checks its port is free (ORDERLAKE_DASHBOARD_PORT), starts it, and waits until
GET /healthz answers 200; `status` shows its URL.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack.component import Component, venv_path
from orderlake.stack.supervisor import Program

NAME = "dashboard"
READY_TIMEOUT_S = 60


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.dashboard_port}/"


def answers(settings: Settings, timeout: float = 2) -> bool:
    """True when the dashboard answers GET /healthz with 200."""
    try:
        with urllib.request.urlopen(url(settings) + "healthz", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(settings: Settings, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not answers(settings):
        if time.monotonic() > deadline:
            raise OrderlakeError(
                f"The dashboard did not answer on {url(settings)} within {timeout:.0f} s; see "
                f"{settings.logs_dir / (NAME + '.log')}."
            )
        time.sleep(0.5)


def component(settings: Settings) -> Component:
    """The supervised dashboard process, its port, readiness and address."""
    # imported here: platform.py imports this module to register the component

    def programs() -> list[Program]:
        env = {**settings.to_env(), "PATH": venv_path(), "PYTHONUNBUFFERED": "1"}
        return [
            Program(
                NAME,
                [sys.executable, "-m", "orderlake.dashboard"],
                directory=PROJECT_ROOT,
                environment=env,
                startsecs=2,
                stopwaitsecs=10,
            )
        ]

    return Component(
        NAME,
        programs,
        ports={"the dashboard": (settings.dashboard_port, "ORDERLAKE_DASHBOARD_PORT")},
        ready=lambda: wait_ready(settings),
        address=lambda: {"url": url(settings)},
    )
