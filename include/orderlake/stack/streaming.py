"""The speed layer as a platform component: its readiness at `up` and its figures in `status`,
both from its progress file (orderlake.speed_progress), so neither needs a Spark session.
"""

from __future__ import annotations

import time
from datetime import datetime

from orderlake import speed_progress
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

NAME = "streaming"


def wait_ready(settings: Settings, timeout: float = 180) -> None:
    """Wait until a query started after now reports (the file may hold a previous run's).

    Silence fails after ``timeout``; a job that keeps saying it is starting (a slow JVM on a
    busy machine, a long profile preload) is given up to ``speed_startup_limit_s``."""
    since = time.time()
    while True:
        progress = speed_progress.read(settings) or {}
        beat = progress.get("heartbeat_at")
        fresh = beat is not None and datetime.fromisoformat(beat).timestamp() >= since
        if fresh and progress.get("state") != "starting":
            if progress.get("state") == "terminated":
                raise OrderlakeError(
                    f"The speed layer stopped at start ({progress.get('error')}); see "
                    f"{settings.logs_dir / (NAME + '.log')}."
                )
            return
        starting = fresh and speed_progress.heartbeat_age(progress) < speed_progress.STALE_AFTER_S
        waited = time.time() - since
        if waited > (settings.speed_startup_limit_s if starting else timeout):
            what = "was still starting after" if starting else "did not report within"
            raise OrderlakeError(
                f"The speed layer {what} {waited:.0f} s; see {settings.logs_dir / (NAME + '.log')}."
            )
        time.sleep(1)


def metrics(settings: Settings) -> dict:
    progress = speed_progress.read(settings)
    if not progress:
        return {"query": "not reported yet"}
    batches = progress.get("batches", [])
    last = batches[-1] if batches else {}
    out = {
        "query_state": progress.get("state"),
        "phase": progress.get("phase") if progress.get("state") == "starting" else None,
        "heartbeat_age_s": round(speed_progress.heartbeat_age(progress), 1),
        "healthy": speed_progress.heartbeat_age(progress) < speed_progress.STALE_AFTER_S,
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
        per_partition = speed_progress.lag(settings, progress.get("processed_offsets", {}))
        out["kafka_lag"] = per_partition
        out["kafka_lag_total"] = sum(sum(p.values()) for p in per_partition.values())
    except Exception as exc:  # noqa: BLE001 - status renders even when Kafka is down
        out["kafka_lag"] = {"error": str(exc)}
    return out
