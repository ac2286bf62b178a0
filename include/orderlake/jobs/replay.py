"""Replay: re-read a bounded range of one Kafka topic and rewrite only what it affects.

    orderlake replay --topic tmall.user_actions --from 2026-11-25T10:00:00Z --to 2026-11-25T11:00Z
    orderlake replay --topic tmall.user_actions --from 0:100,1:100,2:100 --to 0:500,1:500,2:500

bronze: records of the range missing from bronze are inserted (MERGE on topic, partition,
offset); silver: the event dates the range touches are rebuilt from silver's rows plus the
range's (one row per event_id, earliest record wins); gold: those dates are recomputed. Running
the same replay again changes nothing. Before any work, the range is checked against what Kafka
still holds; every run leaves a row in ops.replays.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from orderlake import contracts, kafka_admin, lake, locks, schemas
from orderlake.errors import OrderlakeError, UsageError
from orderlake.jobs import batch
from orderlake.kafka_client import librdkafka_config
from orderlake.schemas import BRONZE_TABLE, QUARANTINE_TABLE, REPLAYS_TABLE, SILVER_ACTIONS_TABLE
from orderlake.settings import Settings
from orderlake.transforms import bronze as bronze_t
from orderlake.transforms import parsing
from orderlake.transforms import silver as silver_t

NAME = "replay"
LAYER_CHOICES = ("bronze", "silver", "gold")
_OFFSETS = re.compile(r"^\d+:\d+(,\d+:\d+)*$")


@dataclass(frozen=True)
class ReplayRequest:
    topic: str
    range_from: str
    range_to: str
    layers: tuple[str, ...]


def parse_layers(text: str) -> tuple[str, ...]:
    layers = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [layer for layer in layers if layer not in LAYER_CHOICES]
    if not layers or unknown:
        raise UsageError(
            f"--layers must be a comma-separated subset of {','.join(LAYER_CHOICES)}, got {text!r}."
        )
    return tuple(layer for layer in LAYER_CHOICES if layer in layers)


def validate(request: ReplayRequest) -> None:
    """Check the parameters before any work; one clear sentence for the first bad one."""
    if request.topic not in contracts.ALL_TOPICS:
        raise UsageError(
            f"--topic must be one of {', '.join(contracts.ALL_TOPICS)}, got {request.topic!r}."
        )
    for name, spec in (("--from", request.range_from), ("--to", request.range_to)):
        _spec_kind(name, spec)
    parse_layers(",".join(request.layers))


def _spec_kind(name: str, spec: str) -> str:
    """'offsets' (P:O,P:O... or one offset for every partition) or 'time' (ISO 8601)."""
    spec = spec.strip()
    if spec.isdigit() or _OFFSETS.match(spec):
        return "offsets"
    try:
        _parse_time(spec)
    except ValueError:
        raise UsageError(
            f"{name} must be offsets (e.g. 0:100,1:100 or 100 for every partition) or an "
            f"ISO time (e.g. 2026-11-25T10:00:00Z), got {spec!r}."
        ) from None
    return "time"


def _parse_time(spec: str) -> datetime:
    moment = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resolve(request: ReplayRequest, bootstrap: str) -> dict[int, tuple[int, int]]:
    """{partition: (from offset, to offset)} of the request, checked against Kafka: the range
    must still be held (retention may have removed its start) and must not pass the end."""
    consumer = Consumer(
        {
            **librdkafka_config(bootstrap, kafka_admin.env_auth()),
            "group.id": "orderlake-batch-replay",  # the batch principal's group prefix
            "enable.auto.commit": 0,
        }
    )
    try:
        md = consumer.list_topics(request.topic, timeout=10)
        partitions = sorted(md.topics[request.topic].partitions)
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(request.topic, p), timeout=10)
            for p in partitions
        }
        start = _offsets(consumer, request.topic, partitions, marks, request.range_from, "--from")
        end = _offsets(consumer, request.topic, partitions, marks, request.range_to, "--to")
    finally:
        consumer.close()
    ranges = {}
    for p in partitions:
        low, high = marks[p]
        begin, finish = start[p], min(end[p], high)
        if finish < begin:
            raise UsageError(f"--to is before --from on partition {p} ({finish} < {begin}).")
        if finish > begin and begin < low:
            raise OrderlakeError(
                f"Kafka no longer holds offsets {begin}..{low - 1} of {request.topic} partition "
                f"{p}: retention removed them (earliest is {low}); replay a range from {low} on."
            )
        ranges[p] = (begin, finish)
    return ranges


def _offsets(
    consumer: Consumer,
    topic: str,
    partitions: list[int],
    marks: dict[int, tuple[int, int]],
    spec: str,
    name: str,
) -> dict[int, int]:
    """{partition: offset} of one end of the range from ``spec``, the value of the ``name``
    option (--from or --to): one offset, P:O pairs or an ISO time."""
    spec = spec.strip()
    if spec.isdigit():
        return {p: int(spec) for p in partitions}
    if _OFFSETS.match(spec):
        given = {int(p): int(o) for p, o in (pair.split(":") for pair in spec.split(","))}
        unknown = set(given) - set(partitions)
        if unknown:
            raise UsageError(f"{name} names partitions {sorted(unknown)} that {topic} lacks.")
        # partitions not named: nothing to replay there (from = to = end)
        return {p: given.get(p, marks[p][1]) for p in partitions}
    millis = int(_parse_time(spec).timestamp() * 1000)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, millis) for p in partitions], timeout=10
    )
    # no record at or after the time: the partition's end
    return {tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1]) for tp in found}


def replay(spark: SparkSession, settings: Settings, request: ReplayRequest) -> dict:
    """Run one replay under the batch lock; returns its ops.replays row as a dict."""
    validate(request)
    started = datetime.now(UTC)
    ranges = resolve(request, settings.bootstrap)
    with locks.exclusive(settings, locks.BATCH, wait=True):
        batch.ensure_tables(spark, settings)
        plan = {(request.topic, p): bounds for p, bounds in ranges.items() if bounds[1] > bounds[0]}
        records = 0
        added = 0
        dates: set[date] = set()
        if plan:
            bronze = lake.read(spark, settings, BRONZE_TABLE.name)
            load_id = lake.one_row(bronze.agg(F.max("load_id")), "the newest bronze load")[0]
            raw = batch.read_kafka_range(spark, settings, plan)
            rows = bronze_t.to_bronze(raw, load_id or 0).persist()
            try:
                records = rows.count()
                if "bronze" in request.layers:
                    added = _merge_bronze(spark, settings, rows, request.topic)
                if "silver" in request.layers:
                    dates = _rebuild_silver(spark, settings, rows, request.topic)
            finally:
                rows.unpersist()
        if "gold" in request.layers and dates:
            batch.build_gold(spark, settings, dates=dates)
        affected = sorted(dates)
        finished = datetime.now(UTC)
        row = {
            "replay_id": str(uuid.uuid4()),
            "topic": request.topic,
            "range_from": request.range_from,
            "range_to": request.range_to,
            "offsets": json.dumps({str(p): list(b) for p, b in ranges.items()}),
            "layers": ",".join(request.layers),
            "records": records,
            "bronze_rows_added": added,
            "affected_dates": affected,
            "status": "succeeded",
            "message": None,
            "started_at": started,
            "finished_at": finished,
        }
        lake.append(spark.createDataFrame([row], schemas.REPLAYS), settings, REPLAYS_TABLE.name)
    return {
        **row,
        "affected_dates": [d.isoformat() for d in affected],
        "seconds": round((finished - started).total_seconds(), 2),
    }


def _merge_bronze(spark: SparkSession, settings: Settings, rows: DataFrame, topic: str) -> int:
    """Insert the range's records bronze lacks; returns how many were inserted."""
    counts = lake.merge(
        spark,
        settings,
        BRONZE_TABLE.name,
        rows,
        f"ON t.topic = '{topic}' AND t.topic = s.topic AND t.partition = s.partition "
        "AND t.offset = s.offset WHEN NOT MATCHED THEN INSERT *",
    )
    return counts.get("num_inserted_rows", 0)


def _rebuild_silver(
    spark: SparkSession, settings: Settings, rows: DataFrame, topic: str
) -> set[date]:
    """Rebuild the silver rows the range touches; returns the affected event dates."""
    records = bronze_t.as_kafka_records(rows)
    if topic == contracts.TOPIC_REJECTS:
        _merge_quarantine(spark, settings, silver_t.edge_rejects(records))
        return set()
    if topic == contracts.TOPIC_PROFILES:
        profiles = parsing.parse_profiles(records, carry=("load_id",)).persist()
        try:
            _merge_quarantine(spark, settings, parsing.quarantine_rows(profiles, "silver"))
            moved = batch._merge_users(
                spark, settings, parsing.latest_profiles(profiles), None, False
            )
            return batch._purchase_dates_of(spark, settings, moved)
        finally:
            profiles.unpersist()
    actions = parsing.slim(parsing.parse_actions(records, carry=("load_id",))).persist()
    try:
        _merge_quarantine(spark, settings, parsing.quarantine_rows(actions, "silver"))
        replayed = silver_t.unique_actions(actions)
        dates = sorted(r[0] for r in replayed.select("event_date").distinct().collect())
        if not dates:
            return set()
        in_list = ", ".join(f"DATE'{d.isoformat()}'" for d in dates)
        current = lake.read(spark, settings, SILVER_ACTIONS_TABLE.name).where(
            F.col("event_date").isin(dates)
        )
        # one row per event_id over what silver has and what the range holds
        # silver is read and overwritten: materialize first
        merged = lake.detached(
            silver_t.unique_actions(
                current.withColumn("reason", F.lit(None).cast("string")).unionByName(
                    replayed.withColumn("reason", F.lit(None).cast("string"))
                )
            )
        )
        lake.overwrite(merged, settings, SILVER_ACTIONS_TABLE.name, f"event_date IN ({in_list})")
        return set(dates)
    finally:
        actions.unpersist()


def _merge_quarantine(spark: SparkSession, settings: Settings, rows: DataFrame) -> None:
    lake.merge(
        spark,
        settings,
        QUARANTINE_TABLE.name,
        rows,
        "ON t.layer = s.layer AND t.topic = s.topic AND t.partition = s.partition "
        "AND t.offset = s.offset WHEN NOT MATCHED THEN INSERT *",
    )


# --- the job: `orderlake replay`, batch/replay.py, the replay DAG (jobs/runner.py) --------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", required=True, help="e.g. tmall.user_actions")
    parser.add_argument(
        "--from", dest="range_from", required=True, help="offsets P:O,.. or ISO time"
    )
    parser.add_argument(
        "--to", dest="range_to", required=True, help="exclusive; offsets or ISO time"
    )
    parser.add_argument("--layers", default="bronze,silver,gold", help="default bronze,silver,gold")


def request_of(args: argparse.Namespace) -> ReplayRequest:
    return ReplayRequest(args.topic, args.range_from, args.range_to, parse_layers(args.layers))


def check(settings: Settings, args: argparse.Namespace) -> None:
    """Bad parameters fail before any Spark work."""
    validate(request_of(args))


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[dict]:
    yield replay(spark, settings, request_of(args))


def main(argv: list[str] | None = None) -> int:
    """`orderlake replay ...` as a program of its own (batch/replay.py)."""
    from orderlake.jobs import runner

    return runner.main(sys.modules[__name__], argv)
