"""The dashboard's pure pieces on literal status dicts: component rows, speed-layer numbers,
Data Docs links that never leave reports/data_docs."""

from __future__ import annotations

from orderlake.dashboard import api
from orderlake.dashboard.api import Dashboard, component_health, speed_health
from orderlake.settings import Settings


def test_a_component_is_up_only_when_running_and_healthy():
    running = {"state": "RUNNING", "pid": 7, "uptime_s": 30, "bootstrap": "127.0.0.1:9092"}
    assert component_health("kafka", running) == {
        "name": "kafka",
        "state": "RUNNING",
        "up": True,
        "pid": 7,
        "uptime_s": 30,
        "address": "127.0.0.1:9092",
        "free_gb": None,
        "warnings": [],
    }
    stale = {"state": "RUNNING", "healthy": False, "progress": "/x/speed-progress.json"}
    assert component_health("streaming", stale)["up"] is False
    assert component_health("kafka", {"state": "FATAL"})["up"] is False
    assert component_health("kafka", {"state": "NOT RUNNING"})["state"] == "NOT RUNNING"


def test_low_disk_retention_and_restarted_edges_are_warnings_on_the_row():
    info = {
        "state": "RUNNING",
        "disk": [
            {"path": "/k", "free_gb": 0.4, "warning": "/k has 0.4 GiB free"},
            {"path": "/s", "free_gb": 9.0, "warning": None},
        ],
        "bronze_retention": {"warnings": ["bronze has not loaded 3 records"]},
        "health": {"state": "restarting", "last_reason": "its source read nothing"},
    }
    row = component_health("flume-edge-host-1", info)
    assert row["free_gb"] == 0.4
    assert row["warnings"] == [
        "/k has 0.4 GiB free",
        "bronze has not loaded 3 records",
        "restarting: its source read nothing",
    ]


def test_airflow_parts_that_report_a_problem_are_warnings_on_its_row():
    down = {"state": "RUNNING", "health": {"api-server": "not answering"}}
    assert component_health("airflow", down)["warnings"] == ["api-server not answering"]
    parts = {"metadatabase": "healthy", "scheduler": "unhealthy", "triggerer": None}
    row = component_health("airflow", {"state": "RUNNING", "health": parts})
    assert row["warnings"] == ["scheduler unhealthy"]


def test_speed_numbers_come_from_the_last_micro_batch_and_the_lag_total():
    streaming = {
        "query_state": "running",
        "healthy": True,
        "heartbeat_age_s": 1.2,
        "last_batch": {
            "batch_id": 41,
            "input_rows_per_s": 950.5,
            "processed_rows_per_s": 1200.0,
            "batch_duration_ms": 830,
            "kafka_ts_min_age_s": 2.4,
            "committed_at": "2026-01-01T00:00:00.000+00:00",
        },
        "kafka_lag": {"tmall.user_actions": {0: 3, 1: 4}},
        "kafka_lag_total": 7,
    }
    speed = speed_health(streaming)
    assert (speed["events_per_s"], speed["batch_duration_ms"], speed["latency_s"]) == (
        950.5,
        830,
        2.4,
    )
    assert (speed["kafka_lag"], speed["kafka_lag_error"], speed["batch_id"]) == (7, None, 41)


def test_speed_numbers_are_empty_when_the_job_is_not_running_or_kafka_is_down():
    assert set(speed_health({}).values()) == {None}
    down = speed_health({"query": "not reported yet", "kafka_lag": {"error": "timed out"}})
    assert down["query_state"] == "not reported yet"
    assert down["kafka_lag_error"] == "timed out"


def test_data_docs_links_stay_inside_the_data_docs_directory(tmp_path):
    settings = Settings(home=tmp_path / "home")
    board = Dashboard(settings)
    try:
        docs = settings.reports_dir / "data_docs"
        assert (
            board.docs_link(str(docs / "validations" / "a.html")) == "/data-docs/validations/a.html"
        )
        assert board.docs_link("file://" + str(docs / "index.html")) == "/data-docs/index.html"
        assert board.docs_link("validations/b.html") == "/data-docs/validations/b.html"
        assert board.docs_link(str(tmp_path / "elsewhere.html")) is None
        assert board.docs_link("../../lake/gold") is None
        assert board.docs_link(None) is None
    finally:
        board.close()


def test_the_status_cache_asks_again_only_after_its_ttl():
    calls = []

    def status() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    cache = api.TTLCache(status, ttl=60)
    assert cache.get() == {"n": 1}
    assert cache.get() == {"n": 1}
    cache.ttl = 0
    assert cache.get() == {"n": 2}
