"""The speed layer's progress file, ORDERLAKE_HOME/run/speed-progress.json: what it reports to
`orderlake status`, the dashboard, the streaming supervisor and the benchmarks.

ProgressWriter fills it from the query's own progress events once the query runs; ``starting``
keeps its heartbeat fresh before that (a JVM start and a profile preload can take minutes),
so the supervisor never takes a job that is still starting for a hung one.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
)

from orderlake import speed_progress
from orderlake.jobs.speed import QUERY_NAME, iso
from orderlake.settings import Settings

if TYPE_CHECKING:
    from orderlake.jobs.speed.step import SpeedLayer

PROGRESS_HISTORY = 120  # micro-batches kept in the progress file
STARTING_BEAT_S = 5.0  # heartbeat while starting (JVM, profile preload): well inside STALE_AFTER_S


class ProgressWriter(StreamingQueryListener):
    """Keeps ORDERLAKE_HOME/run/speed-progress.json: the last micro-batches (input rows/s, batch
    duration, rows quarantined, purchases counted, event-to-commit latency), the offsets the
    query has processed (for Kafka lag) and a heartbeat, for `orderlake status` and the dashboard.
    """

    def __init__(self, settings: Settings, layer: SpeedLayer):
        self.path = speed_progress.path(settings)
        self.layer = layer
        # this run of the query, set once it runs: events of any other are ignored. The run id,
        # not the query id: a query started again on the same checkpoint keeps its id, and a
        # listener of an earlier run in the same process (one never removed) would otherwise
        # write the new run's batches without their statistics
        self.run_id: str | None = None
        # keep the batches reported before a restart: status and the dashboard show history
        previous = _read_json(self.path)
        self.history: list[dict] = previous.get("batches", [])
        self.offsets: dict = previous.get("processed_offsets", {})
        self.started_at = iso(time.time())
        self.preload: dict | None = None  # what preload_profiles did before the query started

    def onQueryStarted(self, event: QueryStartedEvent) -> None:  # noqa: N802 - Spark's listener API
        self._write(state="started")

    def onQueryProgress(self, event: QueryProgressEvent) -> None:  # noqa: N802
        p = event.progress
        if str(p.runId) != self.run_id:
            return
        entry = {
            "batch_id": p.batchId,
            "timestamp": p.timestamp,
            "input_rows": p.numInputRows,
            "input_rows_per_s": round(p.inputRowsPerSecond or 0.0, 1),
            "processed_rows_per_s": round(p.processedRowsPerSecond or 0.0, 1),
            "batch_duration_ms": p.batchDuration,
            "duration_ms": dict(p.durationMs or {}),
        }
        entry.update(self.layer.batch_stats.pop(p.batchId, {}))
        for source in p.sources:  # one per topic
            end = json.loads(source.endOffset) if source.endOffset else None
            # a Kafka source's is {topic: {partition: offset}}; an injected source's is not
            if isinstance(end, dict):
                self.offsets = {
                    **self.offsets,
                    **{t: o for t, o in end.items() if isinstance(o, dict)},
                }
        self.history = [*self.history, entry][-PROGRESS_HISTORY:]
        self._write(state="running")

    def onQueryIdle(self, event: QueryIdleEvent) -> None:  # noqa: N802
        if str(event.runId) == self.run_id:
            self._write(state="idle")

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:  # noqa: N802
        if str(event.runId) == self.run_id:
            self._write(state="terminated", error=event.exception)
            if self.layer.maintenance is not None:
                self.layer.maintenance.stop.set()

    def _write(self, **extra: object) -> None:
        doc = {
            "query": QUERY_NAME,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat_at": iso(time.time()),
            "processed_offsets": self.offsets,
            "profiles_preloaded": self.preload,
            "batches": self.history,
            **extra,
        }
        _write_json(self.path, doc)


@contextlib.contextmanager
def starting(settings: Settings) -> Iterator[Callable[[str | None], None]]:
    """Report state "starting" with a fresh heartbeat every few seconds while the block runs,
    so the streaming supervisor never restarts a job that is still starting (a JVM start and a
    profile preload after an outage can take minutes) while the last run's heartbeat is stale.

    The block gets ``phase(name)`` to name what it is doing (shown by `orderlake status`) and
    calls ``phase(None)`` once the query is about to report for itself.
    """
    path = speed_progress.path(settings)
    started_at = iso(time.time())
    current: list[str | None] = ["starting"]
    stop = threading.Event()

    def beat() -> None:
        doc = _read_json(path)
        doc.update(
            state="starting",
            phase=current[0],
            pid=os.getpid(),
            started_at=started_at,
            heartbeat_at=iso(time.time()),
        )
        _write_json(path, doc)

    def loop() -> None:
        while not stop.wait(STARTING_BEAT_S):
            beat()

    beat()
    thread = threading.Thread(target=loop, name="speed-starting", daemon=True)
    thread.start()

    def phase(name: str | None) -> None:
        if name is None:
            stop.set()
            thread.join()
            return
        current[0] = name
        beat()

    try:
        yield phase
    finally:
        stop.set()
        thread.join()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str))
    tmp.replace(path)  # readers never see a half-written file
