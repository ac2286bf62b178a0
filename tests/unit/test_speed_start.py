"""The speed layer's start-up bookkeeping, on real files: the "starting" heartbeat the
streaming supervisor trusts, the single-instance lock and the checkpoint's own app id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from orderlake import speed_progress
from orderlake.errors import OrderlakeError
from orderlake.jobs.speed import app, progress, step
from orderlake.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_starting_beats_a_fresh_heartbeat_over_a_stale_one(settings, monkeypatch):
    monkeypatch.setattr(progress, "STARTING_BEAT_S", 0.05)
    path = speed_progress.path(settings)
    path.parent.mkdir(parents=True)
    stale = {"state": "running", "heartbeat_at": "2026-01-01T00:00:00+00:00", "batches": [1]}
    path.write_text(json.dumps(stale))
    with progress.starting(settings) as phase:
        phase("profile preload")
        first = speed_progress.read(settings)
        time.sleep(0.3)
        later = speed_progress.read(settings)
        phase(None)
    assert first["state"] == later["state"] == "starting"
    assert later["phase"] == "profile preload" and later["batches"] == [1]
    assert speed_progress.heartbeat_age(later) < 5
    assert later["heartbeat_at"] > first["heartbeat_at"]
    assert 0 <= speed_progress.starting_for(later) < 5
    # once the query reports for itself, the start-up thread writes nothing more
    path.write_text(json.dumps({**later, "state": "running"}))
    time.sleep(0.2)
    assert speed_progress.read(settings)["state"] == "running"


def test_a_second_speed_layer_on_the_same_lake_is_refused_in_one_sentence(settings):
    """The lock is the process's: taken again in the same process it is the same lock, taken
    by another process it is refused, naming the holder."""
    held = app.hold_lock(settings)
    assert app.hold_lock(settings) is held
    other = subprocess.run(
        [sys.executable, "-c", HOLD_LOCK, str(settings.home)], capture_output=True, text=True
    )
    assert other.returncode == 1, other.stderr
    assert other.stdout.startswith("A speed layer already runs on the lake")
    assert f"pid {os.getpid()}" in other.stdout


HOLD_LOCK = """
import sys
from orderlake.errors import OrderlakeError
from orderlake.jobs.speed import app
from orderlake.settings import Settings
try:
    app.hold_lock(Settings(home=sys.argv[1]))
except OrderlakeError as exc:
    print(exc)
    sys.exit(1)
"""


def test_the_app_id_is_the_checkpoints_own_query_id(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text('{"id":"9d1c6f2e-0000-4000-8000-000000000001"}')
    assert step.app_id(checkpoint) == "orderlake-speed-9d1c6f2e-0000-4000-8000-000000000001"
    (checkpoint / "metadata").write_text('{"id": ')
    with pytest.raises(OrderlakeError, match="query id cannot be read"):
        step.app_id(checkpoint)


def _progress_event(query_id: str, run_id: str, batch_id: int) -> SimpleNamespace:
    """What Spark hands a listener after a micro-batch (the fields ProgressWriter reads)."""
    return SimpleNamespace(
        progress=SimpleNamespace(
            id=query_id, runId=run_id, batchId=batch_id, timestamp="2026-12-07T00:00:00.000Z",
            numInputRows=7, inputRowsPerSecond=1.0, processedRowsPerSecond=2.0,
            batchDuration=10, durationMs={}, sources=[],
        )
    )  # fmt: skip


def test_a_query_started_again_in_the_same_process_reports_through_its_own_listener(settings):
    """A query restarted on its checkpoint keeps its id; the listener of the earlier run (never
    removed from the session) must not write the new run's batches without their statistics."""
    earlier = progress.ProgressWriter(settings, SimpleNamespace(batch_stats={}, maintenance=None))
    earlier.run_id = "run-1"
    now = progress.ProgressWriter(
        settings, SimpleNamespace(batch_stats={3: {"rows": 7}}, maintenance=None)
    )
    now.run_id = "run-2"
    event = _progress_event("query-1", "run-2", 3)
    now.onQueryProgress(event)
    earlier.onQueryProgress(event)  # Spark calls every listener; this one comes last
    (batch,) = speed_progress.read(settings)["batches"]
    assert (batch["batch_id"], batch["input_rows"], batch["rows"]) == (3, 7, 7)
