"""The always-on speed layer as `orderlake up` runs it: kill -9 of the streaming driver three
times while a stream flows; supervisord restarts it; the final counts are still exact."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import psutil
import pytest

from orderlake import lake, schemas
from orderlake.stack import streaming
from tests.fixtures.stack import start_platform
from tests.fixtures.workload import expected_counts, generated_workload, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def speed_platform(tmp_path_factory):
    running = start_platform(tmp_path_factory.mktemp("speed") / "home", only="kafka,streaming")
    try:
        yield running
    finally:
        running.cli("down", check=False, timeout=300)


def last_committed_batch(settings) -> int:
    """Highest micro-batch id that wrote its rows (batch ids continue across restarts)."""
    progress = streaming.read_progress(settings) or {}
    return max(
        (b["batch_id"] for b in progress.get("batches", []) if b.get("committed_at")), default=-1
    )


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def test_kill_9_three_times_mid_stream_keeps_counts_exact(speed_platform, spark, tmp_path):
    settings = speed_platform.settings
    profiles, actions = generated_workload(tmp_path, events=60_000, seed=21)

    def stream() -> None:
        # profiles first, then actions in slices: a stream that flows for a minute or two
        send(settings.bootstrap, profiles, [])
        step = 2_000
        for i in range(0, len(actions), step):
            send(settings.bootstrap, [], actions[i : i + step])
            time.sleep(2)

    producer = threading.Thread(target=stream)
    producer.start()
    kills = []
    for _ in range(3):
        before = last_committed_batch(settings)
        wait_until(lambda b=before: last_committed_batch(settings) > b, 300, "a committed batch")
        pid = speed_platform.pid("streaming")
        children = psutil.Process(pid).children(recursive=True)  # the Spark driver JVM
        os.kill(pid, signal.SIGKILL)
        kills.append(pid)
        speed_platform.wait_restarted("streaming", pid, timeout=120)
        # the orphaned driver JVM exits on its own (stdin EOF): never two writers at once
        gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, f"driver JVM of killed pid {pid} still running: {alive}"
    producer.join()
    assert len(set(kills)) == 3

    def caught_up() -> bool:
        info = speed_platform.status()["streaming"]
        return info.get("kafka_lag_total") == 0 and info.get("query_state") in ("running", "idle")

    wait_until(caught_up, 600, "the speed layer to catch up (Kafka lag 0)")

    expected = expected_counts(profiles, actions)
    lake.register_tables(spark, settings)
    rows = spark.table("speed.orders_by_age_gender_1m").collect()
    got = Counter({(r["window_start"], r["age_bracket"], r["gender"]): r["orders"] for r in rows})
    assert sum(got.values()) == sum(expected.values())
    assert got == expected
    # every counted purchase exactly once in the de-duplication set as well
    purchases = spark.read.format("delta").load(
        str(lake.table_path(settings, schemas.SPEED_PURCHASES_TABLE.name))
    )
    assert purchases.count() == purchases.select("event_id").distinct().count()
