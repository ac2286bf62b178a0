"""The speed layer as a platform component: readiness, progress and Kafka lag for `status`.

The streaming job keeps ORDERLAKE_HOME/run/speed-progress.json (orderlake.jobs.speed); this
module only reads it, so `status` never needs a Spark session.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from orderlake import contracts, kafka_admin
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

NAME = "streaming"
STALE_AFTER_S = 60  # no progress or idle event for this long: the job is not healthy


def progress_path(settings: Settings) -> Path:
    return settings.run_dir / "speed-progress.json"


def read_progress(settings: Settings) -> dict | None:
    try:
        return json.loads(progress_path(settings).read_text())
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


def wait_ready(settings: Settings, timeout: float = 180) -> None:
    """Wait until a query started after now reports (the file may hold a previous run's).

    Silence fails after ``timeout``; a job that keeps saying it is starting (a slow JVM on a
    busy machine, a long profile preload) is given up to ``speed_startup_limit_s``."""
    since = time.time()
    while True:
        progress = read_progress(settings) or {}
        beat = progress.get("heartbeat_at")
        fresh = beat is not None and datetime.fromisoformat(beat).timestamp() >= since
        if fresh and progress.get("state") != "starting":
            if progress.get("state") == "terminated":
                raise OrderlakeError(
                    f"The speed layer stopped at start ({progress.get('error')}); see "
                    f"{settings.logs_dir / (NAME + '.log')}."
                )
            return
        starting = fresh and heartbeat_age(progress) < STALE_AFTER_S
        waited = time.time() - since
        if waited > (settings.speed_startup_limit_s if starting else timeout):
            what = "was still starting after" if starting else "did not report within"
            raise OrderlakeError(
                f"The speed layer {what} {waited:.0f} s; see {settings.logs_dir / (NAME + '.log')}."
            )
        time.sleep(1)


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
    progress = read_progress(settings)
    if not progress:
        return None
    per_partition = lag(settings, progress.get("processed_offsets", {}))
    return sum(sum(p.values()) for p in per_partition.values())


def metrics(settings: Settings) -> dict:
    progress = read_progress(settings)
    if not progress:
        return {"query": "not reported yet"}
    batches = progress.get("batches", [])
    last = batches[-1] if batches else {}
    out = {
        "query_state": progress.get("state"),
        "phase": progress.get("phase") if progress.get("state") == "starting" else None,
        "heartbeat_age_s": round(heartbeat_age(progress), 1),
        "healthy": heartbeat_age(progress) < STALE_AFTER_S,
        "batches": len(batches),
        "last_batch": {
            k: last.get(k)
            for k in (
                "batch_id",
                "input_rows",
                "input_rows_per_s",
                "processed_rows_per_s",
                "batch_duration_ms",
                "quarantined",
                "purchases_counted",
                "event_time_max",
                "kafka_ts_min_age_s",
                "committed_at",
            )
        },
    }
    try:
        per_partition = lag(settings, progress.get("processed_offsets", {}))
        out["kafka_lag"] = per_partition
        out["kafka_lag_total"] = sum(sum(p.values()) for p in per_partition.values())
    except Exception as exc:  # noqa: BLE001 - status renders even when Kafka is down
        out["kafka_lag"] = {"error": str(exc)}
    return out
