"""The e2e tier's one platform: the main job run once, in a fresh ORDERLAKE_HOME on free ports,
and left running for every e2e test (then `orderlake down`)."""

from __future__ import annotations

import subprocess

import pytest

from orderlake.private import write_private
from tests.fixtures.stack import MAIN_JOB, Platform, isolated_env, settings_from


@pytest.fixture(scope="package")
def main_job(tmp_path_factory):
    """(platform, the main job's CompletedProcess) with ORDERLAKE_RUN_EVENTS=20000 and 15 s
    between a task's attempts.

    Package scope: the platform (Airflow's schedules start Spark jobs, the speed layer polls)
    stops after the last e2e test instead of taking CPU from every later test."""
    env = isolated_env(tmp_path_factory.mktemp("main-job") / "home")
    env["ORDERLAKE_RUN_EVENTS"] = "20000"
    # a retry comes while the restarted Spark server is still starting, and waits for it
    env["ORDERLAKE_TASK_RETRY_DELAY_S"] = "15"
    platform = Platform(env, settings_from(env))
    try:
        done = subprocess.run(MAIN_JOB, env=env, capture_output=True, text=True, timeout=2700)
        # kept beside the platform's logs: what a user would have seen, for failures; it shows
        # the Airflow login, as the user's terminal does: readable by its owner only
        write_private(platform.settings.logs_dir / "main-job.out", done.stdout + done.stderr)
        yield platform, done
    finally:
        platform.cli("down", check=False, timeout=300)
