"""Bronze against Kafka's retention, on a real broker: a warning while there is still time,
then, once records are gone, a load that fails in one sentence and the documented recovery."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from orderlake import contracts, kafka_admin
from tests.fixtures.stack import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DAY_MS = 86_400_000


def actions(marker: str, n: int) -> list[dict]:
    return [
        {"event_id": f"{marker}:{i}", "user_id": 5, "item_id": 1, "cat_id": 1, "seller_id": 1,
         "brand_id": None, "action_type": 2, "event_time": "2015-11-11T10:00:00.000Z"}
        for i in range(n)
    ]  # fmt: skip


def test_bronze_lagging_towards_retention_warns_then_fails_loudly_and_recovers(kafka_only):
    platform = kafka_only
    settings = platform.settings
    bootstrap = settings.bootstrap
    # records 20 of the 30 retention days old that bronze has not loaded: two thirds, past the
    # default 50% share
    old = int(time.time() * 1000) - 20 * DAY_MS
    produce(bootstrap, contracts.TOPIC_ACTIONS, actions("aged", 30), timestamp_ms=old)
    status = platform.status()["kafka"]["bronze_retention"]
    assert status["oldest_unloaded_share"] > 0.6
    assert any("tmall.user_actions partition" in w and "67%" in w for w in status["warnings"])
    assert "WARNING: bronze has not loaded" in platform.cli("status").stdout
    failed = platform.cli("reconcile", check=False)
    assert failed.returncode == 3, failed.stderr
    assert "bronze_retention tmall.user_actions/" in failed.stderr
    assert "retention_share 67% >= 50%" in failed.stderr

    platform.cli("batch", "bronze")  # loaded in time: no warning any more
    assert platform.status()["kafka"]["bronze_retention"]["warnings"] == []

    # too late: retention removes records bronze never loaded
    produce(bootstrap, contracts.TOPIC_ACTIONS, actions("lost", 60), key_of=lambda _: "5")
    marks = kafka_admin.watermarks(bootstrap, (contracts.TOPIC_ACTIONS,))
    tp = next(tp for tp, (_, high) in marks.items() if high >= 60)  # key 5: one partition
    low, high = marks[tp]
    cut = high - 20  # what retention deletes: the first 40 of the 60 new records
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(tp[0], tp[1], cut)]).values():
        future.result(timeout=30)
    load = platform.cli("batch", "bronze", check=False)
    assert load.returncode == 1 and "Traceback" not in load.stderr
    assert f"Kafka no longer holds offsets {high - 60}..{cut - 1} of tmall.user_actions" in (
        load.stderr
    )
    assert f"orderlake replay --topic tmall.user_actions --from {cut} --to {high}" in load.stderr
    # the recovery the sentence names: replay what Kafka still holds ...
    platform.cli("replay", "--topic", tp[0], "--from", f"{tp[1]}:{cut}", "--to", f"{tp[1]}:{high}")
    # ... after which loads go on, and the reconciliation names the gap by offset range
    platform.cli("batch", "bronze")
    done = platform.cli("reconcile", check=False)
    assert done.returncode == 3
    scope = f"kafka_vs_bronze {tp[0]}/{tp[1]} (missing_offsets [{high - 60}..{cut - 1}])"
    assert scope in done.stderr, done.stderr
    assert "bronze_retention" not in done.stderr
    assert (
        json.loads(platform.cli("status", "--json").stdout)["kafka"]["bronze_retention"]["warnings"]
        == []
    )
