"""The speed layer's progress file as its readers see it: `orderlake status`, the streaming
supervisor DAG, the reconciliation, the main job, the benchmarks and the tests.

The streaming job writes ORDERLAKE_HOME/run/speed-progress.json (jobs/speed/progress.py);
reading it needs no Spark, so a cluster host or a status call imports this module alone.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from orderlake import contracts, kafka_admin
from orderlake.settings import Settings

STALE_AFTER_S = 60  # no progress or idle event for this long: the job is not healthy


def path(settings: Settings) -> Path:
    return settings.run_dir / "speed-progress.json"


def read(settings: Settings) -> dict | None:
    """The last report, or None before the job's first one (or while it is half written)."""
    try:
        return json.loads(path(settings).read_text())
    except (OSError, ValueError):
        return None


def heartbeat_age(progress: dict) -> float:
    beat = datetime.fromisoformat(progress["heartbeat_at"])
    return time.time() - beat.timestamp()


def starting_for(progress: dict) -> float | None:
    """Seconds the job has reported itself starting (JVM, profile preload); None otherwise."""
    if progress.get("state") != "starting" or not progress.get("started_at"):
        return None
    return time.time() - datetime.fromisoformat(progress["started_at"]).timestamp()


def lag(settings: Settings, processed: dict) -> dict[str, dict[int, int]]:
    """Kafka end offsets minus the offsets the query has processed, per topic and partition."""
    ends = kafka_admin.end_offsets(
        settings.bootstrap, (contracts.TOPIC_ACTIONS, contracts.TOPIC_PROFILES)
    )
    return {
        topic: {p: end - int(processed.get(topic, {}).get(str(p), 0)) for p, end in parts.items()}
        for topic, parts in ends.items()
    }


def total_lag(settings: Settings) -> int | None:
    """Records Kafka holds that the speed layer has not processed; None before it reports."""
    progress = read(settings)
    if not progress:
        return None
    per_partition = lag(settings, progress.get("processed_offsets", {}))
    return sum(sum(p.values()) for p in per_partition.values())
