"""The cluster tier: real network namespaces on a real bridge (root and iproute2), no mocks.

``harness`` hands out networks and processes inside them and removes all of it when the test
ends, passed or failed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from orderlake.cluster import netns
from orderlake.errors import OrderlakeError

# the worktree's package for every Python started inside a namespace
PACKAGE_ROOT = str(Path(netns.__file__).resolve().parents[2])


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


class Harness:
    """Networks and processes of one test, undone in reverse order by ``close``."""

    def __init__(self) -> None:
        self._undo = contextlib.ExitStack()

    def network(self, hosts: Mapping[str, Sequence[str]] | Sequence[str]) -> netns.Network:
        network = netns.Network.create(hosts, label="tests/cluster")
        self._undo.callback(network.teardown)
        return network

    def start(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env()
        )
        self._undo.callback(_stop, process)
        return process

    def close(self) -> None:
        self._undo.close()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    try:
        netns.require_tools()
    except OrderlakeError as exc:
        pytest.skip(str(exc))
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


def leftovers(run_id: str) -> list[str]:
    """Everything of ``run_id`` on the machine, read with `ip` and the file system directly."""
    mark = f"ol-{run_id}-"
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    found = [f"netns {n['name']}" for n in json.loads(out or "[]") if n["name"].startswith(mark)]
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {n['ifname']}" for n in json.loads(out) if n["ifname"].startswith(mark)]
    if netns.ETC_NETNS.is_dir():
        found += [f"etc {p}" for p in netns.ETC_NETNS.iterdir() if p.name.startswith(mark)]
    state = netns.STATE_DIR / f"{run_id}.json"
    return [*found, f"state {state}"] if state.exists() else found


def python(*lines: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(lines)]
