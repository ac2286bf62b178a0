"""What bronze holds of Kafka's log, answered without Spark: its next offsets, whether it is
current, and how close its oldest unloaded record is to Kafka's retention.

Each bronze load leaves its next offset per partition and its load id beside the lake, tagged
with the bronze version they describe (``<lake>/_state/bronze_positions.json``). While bronze is
still at that version they are what a scan of bronze would find: a scheduled load whose Kafka
end offsets equal them needs no Spark, the next load and silver's cursor need no scan of all of
bronze. `orderlake status` and the reconciliation use the same offsets to warn while bronze
lags, well before retention removes records it has not loaded (a load then fails, never skips
them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from orderlake import contracts, kafka_admin, lake
from orderlake.errors import OrderlakeError
from orderlake.kafka_client import librdkafka_config
from orderlake.schemas import BRONZE_TABLE
from orderlake.settings import Settings

Offsets = dict[tuple[str, int], int]
# topics whose records retention deletes by age; the compacted profiles topic keeps each
# user's latest profile whatever its age
AGED_TOPICS = (contracts.TOPIC_ACTIONS, contracts.TOPIC_REJECTS)


def positions_path(settings: Settings) -> Path:
    return lake.state_path(settings, "bronze_positions.json")


def save_positions(settings: Settings, positions: Offsets, load_id: int) -> None:
    """Called by the bronze load holding the lake's writer lock, right after its commit: no
    other commit can come between it and the version read here."""
    doc = {
        "version": lake.latest_version(settings, BRONZE_TABLE.name),
        "next_offsets": [[topic, partition, end] for (topic, partition), end in positions.items()],
        "load_id": load_id,
    }
    lake.write_state(positions_path(settings), json.dumps(doc))


def saved_positions(settings: Settings) -> tuple[int | None, Offsets, int | None] | None:
    """(bronze version, next offsets, load id) of the last load, None when there is no usable
    file (a file from before the load id was kept has None there)."""
    try:
        doc = json.loads(positions_path(settings).read_text())
        positions = {(t, int(p)): int(end) for t, p, end in doc["next_offsets"]}
        load_id = doc.get("load_id")
        return doc["version"], positions, None if load_id is None else int(load_id)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def current_positions(settings: Settings) -> tuple[Offsets, int] | None:
    """(next offsets, highest load id) of bronze as it is now, from the last load's file; None
    when bronze changed since (a replay, a restore, a delete: any commit after it) or the file
    is missing, torn or older than its load id, and bronze itself must be read."""
    saved = saved_positions(settings)
    if saved is None:
        return None
    version, positions, load_id = saved
    if load_id is None or version is None:
        return None
    if version != lake.latest_version(settings, BRONZE_TABLE.name):
        return None
    return positions, load_id


def plan_load(positions: Offsets, marks: dict[tuple[str, int], tuple]) -> dict:
    """{(topic, partition): (start, end)} to load; refuses to skip records Kafka no longer has.

    A partition bronze has never seen starts at Kafka's earliest offset. A partition whose next
    offset is below Kafka's earliest lost records to retention before bronze loaded them: that
    is an error, never a silent gap.
    """
    plan = {}
    for tp, (low, high) in sorted(marks.items()):
        start = positions.get(tp, low)
        if start < low:
            topic, partition = tp
            raise OrderlakeError(
                f"Kafka no longer holds offsets {start}..{low - 1} of {topic} partition "
                f"{partition} (retention removed them before bronze loaded them); bronze would "
                "have a gap. Load what Kafka still holds with `orderlake replay --topic "
                f"{topic} --from {low} --to {high}`, then check ops.reconciliation."
            )
        if high > start:
            plan[tp] = (start, high)
    return plan


def bronze_is_current(settings: Settings) -> bool:
    """True when bronze provably holds every record Kafka holds, decided without Spark."""
    current = current_positions(settings)
    if current is None:
        return False
    try:
        return not plan_load(current[0], kafka_admin.watermarks(settings.bootstrap))
    except OrderlakeError:
        return False  # a retention gap, which the full load reports


@dataclass(frozen=True)
class Headroom:
    """The oldest record of a partition bronze has not loaded, against the topic's retention."""

    topic: str
    partition: int
    unloaded: int  # records
    oldest_age_s: float
    share: float  # oldest_age_s / retention: 1.0 is when retention may delete it

    def warning(self, settings: Settings) -> str | None:
        if self.share < settings.retention_warn_share:
            return None
        return (
            f"bronze has not loaded {self.unloaded:,} records of {self.topic} partition "
            f"{self.partition}; the oldest is {self.oldest_age_s / 3600:.1f} h old, "
            f"{self.share:.0%} of the {settings.retention_days:g}-day retention: load bronze "
            "(the ingest_bronze DAG, `orderlake batch bronze`) before Kafka deletes it"
        )


def retention_headroom(settings: Settings, timeout: float = 10.0) -> list[Headroom]:
    """Per partition of the aged topics with records bronze has not loaded: how old the oldest
    of them is, as a share of the retention (Kafka's record time stamps)."""
    saved = saved_positions(settings)
    positions = saved[1] if saved else {}
    marks = kafka_admin.watermarks(settings.bootstrap, AGED_TOPICS)
    waiting = {
        tp: (max(positions.get(tp, low), low), high)
        for tp, (low, high) in marks.items()
        if high > max(positions.get(tp, low), low)
    }
    if not waiting:
        return []
    stamps = _timestamps(
        settings.bootstrap, {tp: start for tp, (start, _) in waiting.items()}, timeout
    )
    now = time.time()
    found = []
    for (topic, partition), (start, high) in sorted(waiting.items()):
        stamp = stamps.get((topic, partition))
        if stamp is None:
            continue
        age = max(0.0, now - stamp / 1000)
        found.append(
            Headroom(topic, partition, high - start, age, age * 1000 / settings.retention_ms)
        )
    return found


def _timestamps(bootstrap: str, offsets: Offsets, timeout: float) -> dict[tuple[str, int], int]:
    """Kafka's time stamp (ms) of the record at each given offset."""
    consumer = Consumer(
        {
            **librdkafka_config(bootstrap, kafka_admin.env_auth()),
            "group.id": "orderlake-batch-retention-check",  # the batch principal's prefix
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        found: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(offsets) and time.monotonic() < deadline:
            for msg in consumer.consume(len(offsets) * 10, timeout=0.5):
                topic, partition = msg.topic(), msg.partition()
                # a record (no error) always names its topic and partition
                if msg.error() is not None or topic is None or partition is None:
                    continue
                if (topic, partition) not in found:
                    found[(topic, partition)] = msg.timestamp()[1]
                    consumer.pause([TopicPartition(topic, partition)])
        return found
    finally:
        consumer.close()
