"""Reconciliation: proof that nothing was lost between Kafka and the lake, and that the speed
and batch layers agree. Kafka + bronze + silver + gold + speed.purchases -> ops.reconciliation.

Four checks, one ops.reconciliation row per scope:

    bronze_retention  per topic partition with records bronze has not loaded: failed once the
                      oldest is ORDERLAKE_RETENTION_WARN_SHARE of Kafka's retention old, while
                      there is still time to load it.
    kafka_vs_bronze   per topic partition: Kafka's offsets vs the bronze rows. Records Kafka got
                      after bronze's last load are explained (pending); a missing offset or a
                      duplicated one is a failure, named by partition and offset.
    bronze_vs_silver  per topic: every bronze record is in silver, in quarantine, or a duplicate
                      of an event silver holds (actions) / a profile of a user silver.users holds
                      (profiles). Records silver has not processed yet are explained (pending).
    speed_vs_batch    per closed day x age bracket x gender: gold's orders vs the purchases the
                      speed layer counted. Legitimate differences are explained and counted: a
                      purchase counted under another bucket because its user's profile arrived
                      (late_profile) or changed (profile_changed) later, a purchase the speed layer
                      has not read yet (in_flight), a duplicate past the speed layer's
                      de-duplication bound (speed_duplicate). Anything else fails.

``expected - actual = difference``; a row is ``ok`` when the difference is 0, ``explained`` when
the explained part covers it, ``failed`` otherwise. Failed rows make the run raise, after they
are written, naming what differs.

This module reads the lake and Kafka and writes the rows; the arithmetic that decides each
status is orderlake.jobs.findings, the speed-vs-batch classification of purchases is
orderlake.transforms.reconcile (both tested on literal values).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime

from pyspark.sql import Column, SparkSession, Window
from pyspark.sql import functions as F

from orderlake import contracts, kafka_admin, kafka_log, lake, locks, schemas
from orderlake.errors import CheckFailed
from orderlake.jobs import batch
from orderlake.jobs.findings import (
    Bucket,
    Finding,
    bucket_findings,
    partition_finding,
    speed_vs_batch_causes,
)
from orderlake.schemas import (
    BRONZE_TABLE,
    GOLD_DAILY_TABLE,
    QUARANTINE_TABLE,
    RECONCILIATION_TABLE,
    SILVER_ACTIONS_TABLE,
    SILVER_USERS,
    SPEED_PURCHASES_TABLE,
)
from orderlake.settings import Settings
from orderlake.transforms import reconcile as transforms

NAME = "reconcile"
SAMPLE = 20  # at most this many offsets / event ids named per finding
COMPARED_TABLES = (
    BRONZE_TABLE.name,
    SILVER_ACTIONS_TABLE.name,
    SILVER_USERS.name,
    QUARANTINE_TABLE.name,
    GOLD_DAILY_TABLE.name,
    SPEED_PURCHASES_TABLE.name,
)


# --- the checks over the lake -------------------------------------------------------------------
def check_kafka_vs_bronze(spark: SparkSession, settings: Settings) -> list[Finding]:
    marks = kafka_admin.watermarks(settings.bootstrap)
    bronze = lake.read(spark, settings, BRONZE_TABLE.name).select("topic", "partition", "offset")
    stats = {
        (r["topic"], r["partition"]): (r["rows"], r["distinct"], r["first"], r["last"])
        for r in bronze.groupBy("topic", "partition")
        .agg(
            F.count("*").alias("rows"),
            F.count_distinct("offset").alias("distinct"),
            F.min("offset").alias("first"),
            F.max("offset").alias("last"),
        )
        .collect()
    }
    previous = F.lag("offset").over(Window.partitionBy("topic", "partition").orderBy("offset"))
    gap_rows = (
        bronze.withColumn("prev", previous)
        .where(F.col("offset") - F.col("prev") > 1)
        .select(
            "topic", "partition", (F.col("prev") + 1).alias("a"), (F.col("offset") - 1).alias("b")
        )
        .limit(1000)
        .collect()
    )
    gaps: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for r in gap_rows:
        gaps[(r["topic"], r["partition"])].append((r["a"], r["b"]))
    return [
        partition_finding(
            tp[0], tp[1], marks.get(tp, (0, 0)), stats.get(tp), sorted(gaps.get(tp, []))[:SAMPLE]
        )
        for tp in sorted(set(marks) | set(stats))
    ]


def check_bronze_retention(settings: Settings) -> list[Finding]:
    """Per partition with records bronze has not loaded: failed once the oldest of them is
    ORDERLAKE_RETENTION_WARN_SHARE of the retention old, before Kafka can delete it."""
    findings = []
    for h in kafka_log.retention_headroom(settings):
        detail: dict = {
            "unloaded": h.unloaded,
            "oldest_age_h": round(h.oldest_age_s / 3600, 2),
            "share_of_retention": round(h.share, 3),
        }
        if h.warning(settings):
            detail["unexplained"] = {
                "retention_share": f"{h.share:.0%} >= {settings.retention_warn_share:.0%}"
            }
        findings.append(
            Finding("bronze_retention", f"{h.topic}/{h.partition}", 0, 0, detail=detail)
        )
    return findings


def check_bronze_vs_silver(spark: SparkSession, settings: Settings) -> list[Finding]:
    last = batch.last_run(spark, settings, "silver")
    cursor = last["cursor_to"] if last else 0
    coords = ["topic", "partition", "offset"]
    bronze = lake.read(spark, settings, BRONZE_TABLE.name)
    silver = lake.read(spark, settings, SILVER_ACTIONS_TABLE.name)
    quarantined = (
        lake.read(spark, settings, QUARANTINE_TABLE.name)
        .where(F.col("layer") == "silver")
        .select(*coords)
        .distinct()
        .withColumn("_quarantined", F.lit(True))
    )
    users = lake.read(spark, settings, SILVER_USERS.name).select(
        "user_id", F.lit(True).alias("_user_known")
    )
    in_silver = silver.select(*coords, F.lit(True).alias("_in_silver"))
    silver_ids = silver.select("event_id", F.lit(True).alias("_duplicate"))
    # only a record its coordinates do not explain is parsed: JSON is most of this scan's cost
    unexplained_so_far = (
        (F.col("load_id") <= cursor) & F.col("_quarantined").isNull() & F.col("_in_silver").isNull()
    )

    def field(name: str) -> Column:
        return F.when(unexplained_so_far, F.get_json_object(F.col("value"), f"$.{name}"))

    classified = (
        bronze.select(*coords, "load_id", "value")
        .join(quarantined, coords, "left")
        .join(in_silver, coords, "left")
        .withColumn("event_id", field("event_id"))
        .withColumn("user_id", field("user_id").cast("long"))
        .join(silver_ids, "event_id", "left")
        .join(users, "user_id", "left")
        .select(
            *coords,
            F.when(F.col("load_id") > cursor, "pending")
            .when(F.col("_quarantined"), "quarantined")
            .when((F.col("topic") == contracts.TOPIC_ACTIONS) & F.col("_in_silver"), "in_silver")
            .when((F.col("topic") == contracts.TOPIC_ACTIONS) & F.col("_duplicate"), "duplicate")
            .when((F.col("topic") == contracts.TOPIC_PROFILES) & F.col("_user_known"), "profile")
            .otherwise("unexplained")
            .alias("fate"),
        )
    ).persist()
    try:
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for r in classified.groupBy("topic", "fate").count().collect():
            counts[r["topic"]][r["fate"]] = r["count"]
        lost = (
            classified.where(F.col("fate") == "unexplained")
            .orderBy(*coords)
            .limit(SAMPLE)
            .collect()
        )
    finally:
        classified.unpersist()
    findings = []
    for topic in sorted(counts):
        fates = counts[topic]
        total = sum(fates.values())
        unexplained = {}
        if fates.get("unexplained"):
            unexplained["unaccounted_records"] = [
                f"{r['partition']}:{r['offset']}" for r in lost if r["topic"] == topic
            ] or fates["unexplained"]
        findings.append(
            Finding(
                "bronze_vs_silver",
                topic,
                expected=total,
                actual=total - fates.get("pending", 0) - fates.get("unexplained", 0),
                explained=fates.get("pending", 0),
                detail={"records_by_fate": fates, "unexplained": unexplained},
            )
        )
    return findings


def check_speed_vs_batch(
    spark: SparkSession, settings: Settings, day: date | None = None
) -> list[Finding]:
    if not lake.exists(settings, SPEED_PURCHASES_TABLE.name):
        return [
            Finding(
                "speed_vs_batch",
                "all",
                0,
                0,
                detail={"skipped": "the speed layer has not written speed.purchases yet"},
            )
        ]
    gold_rows = lake.read(spark, settings, GOLD_DAILY_TABLE.name).where(F.col("final"))
    if day is not None:
        gold_rows = gold_rows.where(F.col("event_date") == F.lit(day))
    collected = gold_rows.collect()
    gold = {Bucket(r["event_date"], r["age_bracket"], r["gender"]): r["orders"] for r in collected}
    # a final day gold recomputed because data arrived late says so on each of its rows
    restated = {r["event_date"]: r["restated_reason"] for r in collected if r["restated_reason"]}
    days = sorted({b.event_date for b in gold})
    if not days:
        return [
            Finding(
                "speed_vs_batch",
                day.isoformat() if day else "all",
                0,
                0,
                detail={"skipped": "no closed (final) day in gold to compare"},
                event_date=day,
            )
        ]
    speed_rows = lake.read(spark, settings, SPEED_PURCHASES_TABLE.name).where(
        F.col("event_date").isin(days)
    )
    differences = transforms.speed_vs_batch(
        lake.read(spark, settings, SILVER_ACTIONS_TABLE.name).where(F.col("event_date").isin(days)),
        lake.read(spark, settings, SILVER_USERS.name),
        speed_rows,
        _speed_processed_offsets(settings),
    )
    causes = speed_vs_batch_causes(transforms.differences_by_bucket(differences, SAMPLE).collect())
    speed = {
        Bucket(r["event_date"], r["age_bracket"], r["gender"]): r["count"]
        for r in speed_rows.groupBy("event_date", "age_bracket", "gender").count().collect()
    }
    findings = bucket_findings(gold, speed, causes)
    for finding in findings:
        if finding.event_date in restated:
            finding.detail["restated"] = restated[finding.event_date]
    return findings


def _speed_processed_offsets(settings: Settings) -> dict[int, int]:
    """{partition of tmall.user_actions: next offset the speed layer will read}, from the
    progress file the streaming job keeps; empty when it never reported (nothing is then
    considered in flight: every missing purchase is unexplained)."""
    from orderlake import speed_progress

    progress = speed_progress.read(settings) or {}
    offsets = progress.get("processed_offsets", {}).get(contracts.TOPIC_ACTIONS, {})
    return {int(p): int(o) for p, o in offsets.items()}


# --- the run ------------------------------------------------------------------------------------
def table_versions(settings: Settings) -> dict[str, int]:
    """The newest version of each compared table, from its log's file names (no Spark)."""
    versions = {name: lake.latest_version(settings, name) for name in COMPARED_TABLES}
    return {name: version for name, version in versions.items() if version is not None}


def reconcile(spark: SparkSession, settings: Settings, day: date | None = None) -> dict:
    """Run the three checks, append their rows to ops.reconciliation and return a summary;
    raise CheckFailed naming every failed scope (after writing them)."""
    run_id = str(uuid.uuid4())
    checked_at = datetime.now(UTC)
    with locks.exclusive(settings, locks.BATCH, wait=True):
        batch.ensure_tables(spark, settings)
        versions = table_versions(settings)
        findings = (
            check_bronze_retention(settings)
            + check_kafka_vs_bronze(spark, settings)
            + check_bronze_vs_silver(spark, settings)
            + check_speed_vs_batch(spark, settings, day)
        )
        rows = [
            {
                "run_id": run_id,
                "checked_at": checked_at,
                "check": f.check,
                "scope": f.scope,
                "event_date": f.event_date,
                "expected": f.expected,
                "actual": f.actual,
                "difference": f.difference,
                "explained": f.explained,
                "status": f.status,
                "detail": json.dumps(f.detail, default=str, sort_keys=True),
                "table_versions": json.dumps(versions, sort_keys=True),
            }
            for f in findings
        ]
        lake.append(
            spark.createDataFrame(rows, schemas.RECONCILIATION), settings, RECONCILIATION_TABLE.name
        )
    summary: dict = {"run_id": run_id, "checked_at": checked_at.isoformat(), "date": day}
    for check in ("bronze_retention", "kafka_vs_bronze", "bronze_vs_silver", "speed_vs_batch"):
        statuses = [f.status for f in findings if f.check == check]
        summary[check] = {s: statuses.count(s) for s in sorted(set(statuses))}
    failed = [f for f in findings if f.status == "failed"]
    summary["failed"] = [f.summary() for f in failed]
    if failed:
        shown = "; ".join(f.summary() for f in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise CheckFailed(
            f"Reconciliation failed in {len(failed)} scope(s): {shown}{more} "
            f"(ops.reconciliation run_id {run_id})."
        )
    return summary


# --- the job: `orderlake reconcile`, batch/reconcile.py, the reconcile_layers DAG (runner.py) ---
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from orderlake.arguments import iso_date

    parser.add_argument(
        "--date", type=iso_date, metavar="YYYY-MM-DD", help="speed vs batch for this day only"
    )


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[dict]:
    yield reconcile(spark, settings, args.date)


def main(argv: list[str] | None = None) -> int:
    """`orderlake reconcile ...` as a program of its own (batch/reconcile.py)."""
    from orderlake.jobs import runner

    return runner.main(sys.modules[__name__], argv)
