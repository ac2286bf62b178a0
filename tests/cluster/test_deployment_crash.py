"""`orderlake cluster` after a crash: its supervisord SIGKILLed, then `up` again and `down`.

A one-host cluster (the dashboard service: no dependencies, healthy in seconds) keeps this
cheap. supervisord owns the network run, so once it is dead the run is stale: its programs may
still run in their namespace, and the next `up` or `down` must remove them with the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orderlake.cluster import netns

from .conftest import PACKAGE_ROOT, leftovers

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ORDERLAKE_CLUSTER_ROOT": str(root),
        "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, str(Path(PACKAGE_ROOT).parent)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "orderlake.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture
def root(tmp_path):
    try:
        netns.require_tools()
    except Exception as exc:  # noqa: BLE001 - not root or no iproute2
        pytest.skip(str(exc))
    yield tmp_path
    cli(tmp_path, "cluster", "down", "--volumes")


def run_id(root: Path) -> str:
    import json

    done = cli(root, "cluster", "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_a_killed_supervisor_leaves_a_stale_run_that_up_and_down_remove(root):
    done = cli(root, "cluster", "up", "--service", "dashboard")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = run_id(root)
    network = netns.Network.load(first)
    supervisord = int((root / "run" / "supervisord.pid").read_text())
    os.kill(supervisord, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while network.owner_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not network.owner_alive()
    assert network.pids("dashboard"), "the dashboard died with supervisord"

    again = cli(root, "cluster", "up", "--service", "dashboard")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"removed the leftovers of cluster network {first}" in again.stdout
    assert leftovers(first) == []
    second = run_id(root)
    assert second != first

    down = cli(root, "cluster", "down")
    assert down.returncode == 0, down.stderr
    assert leftovers(second) == []


def test_bad_input_gets_one_sentence_and_a_non_zero_exit(root):
    for args, words in (
        (("cluster", "status"), "No cluster is running"),
        (("cluster", "exec", "host-1", "--", "true"), "No cluster is running"),
        (("cluster", "up", "--service", "nope"), "No service nope"),
    ):
        done = cli(root, *args)
        assert done.returncode != 0, args
        assert words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, args
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
