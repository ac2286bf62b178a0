"""The dashboard's JSON answers: lake tables and platform status -> dicts the page draws.

    figures(date_from, date_to)  gold.orders_by_age_gender -> both figures and the date range
    health()                     orderlake.stack.platform.status -> components up/down, speed rates
    checks()                     ops.reconciliation, ops.dq_results -> last run of each, links

No answer raises for missing or unreadable data: it says ``"ok": false`` with the reason, and
the page shows "no data yet". Platform status asks Kafka and Flume, so it is cached briefly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from orderlake import figures, serving
from orderlake.settings import Settings
from orderlake.stack import airflow

HEALTH_TTL_S = 2.0
NO_DATA = "no data yet"
# fields of status()["streaming"]["last_batch"] the page shows, under the page's names
SPEED_FIELDS = {
    "batch_id": "batch_id",
    "input_rows_per_s": "events_per_s",
    "processed_rows_per_s": "processed_per_s",
    "batch_duration_ms": "batch_duration_ms",
    "kafka_ts_min_age_s": "latency_s",  # oldest record of the batch: Kafka -> committed
    "committed_at": "committed_at",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TTLCache:
    """One value recomputed at most every ``ttl`` seconds; callers meanwhile share it."""

    def __init__(self, compute: Callable[[], dict], ttl: float):
        self.compute, self.ttl = compute, ttl
        self._value: dict | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl:
                self._value = self.compute()
                self._at = time.monotonic()
            return self._value


class Dashboard:
    """The answers of one dashboard process (one LakeReader, one status cache)."""

    def __init__(self, settings: Settings):
        from orderlake.stack import platform

        self.settings = settings
        self.reader = serving.LakeReader(settings)
        self._status = TTLCache(lambda: platform.status(settings), HEALTH_TTL_S)

    @property
    def data_docs_dir(self) -> Path:
        return self.settings.reports_dir / "data_docs"

    # --- figures ------------------------------------------------------------------------------
    def figures(self, date_from: date | None = None, date_to: date | None = None) -> dict:
        started = time.perf_counter()
        try:
            rows = serving.serving_rows(self.reader, date_from, date_to)
        except serving.NoData as exc:
            return _no_data(exc, started)
        except Exception as exc:  # noqa: BLE001 - a table being rewritten must not break the page
            return _no_data(f"{type(exc).__name__}: {exc}", started)
        if not rows:
            return _no_data("the serving view has no orders yet", started)
        data = figures.figures(rows)
        return {
            "ok": True,
            **data,
            "title": figures.range_title(data["range"]),
            "stale": dict(self.reader.stale),
            "generated_at": _now(),
            "elapsed_ms": _ms(started),
        }

    # --- health -------------------------------------------------------------------------------
    def health(self) -> dict:
        started = time.perf_counter()
        try:
            state = self._status.get()
        except Exception as exc:  # noqa: BLE001 - the page must render whatever status raises
            return {"ok": False, "message": f"status unavailable: {exc}", "components": []}
        return {
            "ok": True,
            "components": [component_health(name, info) for name, info in state.items()],
            "speed": speed_health(state.get("streaming", {})),
            "generated_at": _now(),
            "elapsed_ms": _ms(started),
        }

    # --- checks -------------------------------------------------------------------------------
    def checks(self) -> dict:
        started = time.perf_counter()
        airflow = f"http://127.0.0.1:{self.settings.airflow_port}/dags"
        return {
            "ok": True,
            "reconciliation": self._answer(serving.latest_reconciliation),
            "reconciliation_url": f"{airflow}/reconcile_layers",
            "validation": self._with_docs_links(self._answer(serving.latest_validation)),
            "validation_url": f"{airflow}/validate_quality",
            "data_docs_url": "/data-docs/index.html",
            "data_docs_present": (self.data_docs_dir / "index.html").is_file(),
            "generated_at": _now(),
            "elapsed_ms": _ms(started),
        }

    def _answer(self, latest: Callable[[serving.LakeReader], dict]) -> dict:
        try:
            return {"ok": True, **latest(self.reader)}
        except serving.NoData as exc:
            return {"ok": False, "message": NO_DATA, "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - another team's table may change shape
            return {"ok": False, "message": NO_DATA, "reason": f"{type(exc).__name__}: {exc}"}

    def _with_docs_links(self, validation: dict) -> dict:
        for suite in validation.get("suites", []):
            suite["data_docs_url"] = self.docs_link(suite.get("data_docs"))
        return validation

    def docs_link(self, page: str | None) -> str | None:
        """/data-docs/<page> for a Data Docs page under reports/data_docs, else None."""
        if not page:
            return None
        path = Path(page.removeprefix("file://"))
        root = self.data_docs_dir.resolve()
        path = (path if path.is_absolute() else root / path).resolve()
        if not path.is_relative_to(root):
            return None
        return "/data-docs/" + path.relative_to(root).as_posix()

    def close(self) -> None:
        self.reader.close()


def component_health(name: str, info: dict) -> dict:
    """One row of the health table: up when supervisord says RUNNING (and, for the streaming
    job, when its heartbeat is fresh)."""
    state = info.get("state", "UNKNOWN")
    up = state == "RUNNING" and info.get("healthy", True) is not False
    address = info.get("url") or info.get("bootstrap") or info.get("progress") or ""
    disks = info.get("disk") or []
    warnings = [d["warning"] for d in disks if d.get("warning")]
    warnings += (info.get("bronze_retention") or {}).get("warnings", [])
    health = info.get("health") or {}
    if name == airflow.NAME:
        warnings += airflow.unhealthy_parts(health)
    elif health.get("state") in ("restarting", "exited"):  # an edge agent's watchdog
        warnings.append(f"{health['state']}: {health.get('last_reason')}")
    return {
        "name": name,
        "state": state,
        "up": up,
        "pid": info.get("pid"),
        "uptime_s": info.get("uptime_s"),
        "address": address,
        "free_gb": min((d["free_gb"] for d in disks), default=None),
        "warnings": warnings,
    }


def speed_health(streaming: dict) -> dict:
    """events/s, last micro-batch duration and latency, Kafka lag of the speed layer."""
    last = streaming.get("last_batch") or {}
    out = {page: last.get(field) for field, page in SPEED_FIELDS.items()}
    lag = streaming.get("kafka_lag")
    out.update(
        kafka_lag=streaming.get("kafka_lag_total"),
        kafka_lag_error=lag.get("error") if isinstance(lag, dict) else None,
        query_state=streaming.get("query_state") or streaming.get("query"),
        heartbeat_age_s=streaming.get("heartbeat_age_s"),
        healthy=streaming.get("healthy"),
    )
    return out


def _no_data(reason: object, started: float) -> dict:
    return {"ok": False, "message": NO_DATA, "reason": str(reason), "elapsed_ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
