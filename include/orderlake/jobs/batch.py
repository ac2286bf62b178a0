"""The batch layer: Kafka's log -> bronze -> silver -> gold, incremental and exactly once.

    bronze  new Kafka records of every topic -> bronze.kafka_records
    silver  new bronze records -> silver.user_actions (one row per event_id), silver.users
            (latest profile per user), quarantine.records (with reason codes)
    gold    affected event dates -> gold.orders_by_age_gender_daily (and the serving view)

Exactly once without a separate offset store: bronze resumes from the highest offset it holds
per partition, so a load killed mid-write (no Delta commit) is simply done again. Every later
write carries a Delta transaction id (layer, cursor), so a re-run after a crash commits each
table at most once. Each run leaves a row in ops.batch_runs (cursor, counts, affected dates).

One module because the three layers are chained by that run log: each reads the cursor the one
before it wrote, so a change to one layer's cursor changes the next.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from orderlake import contracts, kafka_admin, kafka_log, lake, locks, schemas
from orderlake.arguments import iso_date
from orderlake.kafka_client import spark_options
from orderlake.schemas import (
    BATCH_RUNS_TABLE,
    BRONZE_TABLE,
    GOLD_DAILY_TABLE,
    QUARANTINE_TABLE,
    SILVER_ACTIONS_TABLE,
    SILVER_USERS,
)
from orderlake.settings import Settings
from orderlake.transforms import bronze as bronze_t
from orderlake.transforms import gold as gold_t
from orderlake.transforms import parsing
from orderlake.transforms import silver as silver_t

NAME = "batch"
LAYERS = ("bronze", "silver", "gold")


def ensure_tables(spark: SparkSession, settings: Settings) -> None:
    lake.ensure_tables(spark, settings, list(schemas.BATCH_TABLES))


# --- bronze -------------------------------------------------------------------------------------
def bronze_positions(
    spark: SparkSession, settings: Settings
) -> tuple[dict[tuple[str, int], int], int]:
    """({(topic, partition): next offset to load}, the highest load id) from what bronze holds:
    the last load's record of them while bronze is unchanged since, else a scan of bronze."""
    known = kafka_log.current_positions(settings)
    if known is not None:
        return known
    rows = (
        lake.read(spark, settings, BRONZE_TABLE.name)
        .groupBy("topic", "partition")
        .agg(F.max("offset").alias("last"), F.max("load_id").alias("load_id"))
        .collect()
    )
    positions = {(r["topic"], r["partition"]): r["last"] + 1 for r in rows}
    return positions, max((r["load_id"] for r in rows), default=0)


def offsets_json(plan: dict[tuple[str, int], tuple[int, int]], index: int) -> str:
    doc: dict[str, dict[str, int]] = {}
    for (topic, partition), bounds in plan.items():
        doc.setdefault(topic, {})[str(partition)] = bounds[index]
    return json.dumps(doc)


def read_kafka_range(
    spark: SparkSession, settings: Settings, plan: dict[tuple[str, int], tuple[int, int]]
) -> DataFrame:
    """Exactly the planned offsets of the planned partitions (failOnDataLoss stays on).

    ``assign`` rather than ``subscribe``: a plan may cover only some partitions of a topic."""
    assigned: dict[str, list[int]] = {}
    for topic, partition in sorted(plan):
        assigned.setdefault(topic, []).append(partition)
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .options(**spark_options(settings.kafka_auth(), "orderlake-batch"))
        .option("assign", json.dumps(assigned))
        .option("startingOffsets", offsets_json(plan, 0))
        .option("endingOffsets", offsets_json(plan, 1))
        .option("failOnDataLoss", "true")
        .load()
    )


def load_bronze(spark: SparkSession, settings: Settings) -> dict:
    """Append every Kafka record bronze does not hold yet. Returns a summary."""
    started = time.time()
    positions, last_load_id = bronze_positions(spark, settings)
    plan = kafka_log.plan_load(positions, kafka_admin.watermarks(settings.bootstrap))
    if not plan:
        kafka_log.save_positions(settings, positions, last_load_id)
        return {"layer": "bronze", "records": 0, "seconds": round(time.time() - started, 2)}
    positions = {**positions, **{tp: end for tp, (_, end) in plan.items()}}
    # the load id grows with every load: the sum over all partitions of the next offset after
    # it, and above every earlier load's even when bronze lost its newest records (deleted,
    # restored): reloading them under an old id, the transaction check would skip the append
    # and silver's cursor the rows. A re-run of a load that did not commit gets the same id.
    load_id = max(sum(positions.values()), last_load_id + 1)
    rows = bronze_t.to_bronze(read_kafka_range(spark, settings, plan), load_id)
    lake.append(rows, settings, BRONZE_TABLE.name, lake.Txn("orderlake-bronze", load_id))
    kafka_log.save_positions(settings, positions, load_id)
    written = _last_commit_rows(spark, settings, BRONZE_TABLE.name)
    seconds = time.time() - started
    return {
        "layer": "bronze",
        "load_id": load_id,
        "records": written,
        "ranges": {f"{t}:{p}": list(bounds) for (t, p), bounds in plan.items()},
        "seconds": round(seconds, 2),
        "records_per_s": round(written / seconds) if seconds else None,
    }


def _last_commit_rows(spark: SparkSession, settings: Settings, name: str) -> int:
    metrics = lake.last_commit(spark, settings, name).get("operationMetrics") or {}
    return int(metrics.get("numOutputRows", 0))


# --- runs and cursors ---------------------------------------------------------------------------
class Cursor(TypedDict):
    cursor_to: int  # the highest bronze load id the run took in (silver) or followed (gold)
    closed_through: date | None  # gold: the last final day


@dataclass
class Runs:
    """What the next runs start from, as ops.batch_runs says: each layer's newest run (highest
    cursor, then latest) and the silver runs gold has not followed yet (cursor_to, dates).

    Each recorded run leaves them beside the lake, tagged with the table version they describe,
    as a bronze load leaves its positions (kafka_log): while the table is at that version they
    are what reading it would find, and a run starts without querying it (the table gains a
    commit with every run, so each query paid a snapshot update and Spark jobs first)."""

    newest: dict[str, Cursor] = field(default_factory=dict)
    silver_since_gold: list[tuple[int, list[date]]] = field(default_factory=list)

    def record(self, run: dict) -> None:
        """Take in a run that finished after every run known so far."""
        layer, newest = run["layer"], self.newest.get(run["layer"])
        if newest is None or run["cursor_to"] >= newest["cursor_to"]:
            self.newest[layer] = Cursor(
                cursor_to=run["cursor_to"], closed_through=run.get("closed_through")
            )
        gold = self.newest.get("gold", {"cursor_to": 0})["cursor_to"]
        if layer == "silver" and run["cursor_to"] > gold:
            self.silver_since_gold.append((run["cursor_to"], sorted(run["affected_dates"] or [])))
        self.silver_since_gold = [(to, dates) for to, dates in self.silver_since_gold if to > gold]

    def to_json(self, version: int | None) -> str:
        return json.dumps(
            {
                "version": version,
                "newest": {
                    layer: {
                        **c,
                        "closed_through": c["closed_through"] and c["closed_through"].isoformat(),
                    }
                    for layer, c in self.newest.items()
                },
                "silver_since_gold": [
                    [to, [d.isoformat() for d in dates]] for to, dates in self.silver_since_gold
                ],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> tuple[int, Runs]:
        doc = json.loads(text)
        newest = {
            layer: Cursor(
                cursor_to=int(c["cursor_to"]),
                closed_through=c["closed_through"] and date.fromisoformat(c["closed_through"]),
            )
            for layer, c in doc["newest"].items()
        }
        pending = [
            (int(to), [date.fromisoformat(d) for d in dates])
            for to, dates in doc["silver_since_gold"]
        ]
        return int(doc["version"]), cls(newest, pending)


def runs_path(settings: Settings) -> Path:
    return lake.state_path(settings, "batch_runs.json")


def runs(spark: SparkSession, settings: Settings) -> Runs:
    """``Runs`` from the file the last recorded run left while ops.batch_runs is unchanged
    since (any commit, by anyone, changes its version), else from the table."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        version, saved = Runs.from_json(runs_path(settings).read_text())
        if version == lake.latest_version(settings, BATCH_RUNS_TABLE.name):
            return saved
    return runs_in_table(spark, settings)


def runs_in_table(spark: SparkSession, settings: Settings) -> Runs:
    table = lake.read(spark, settings, BATCH_RUNS_TABLE.name)
    order = Window.partitionBy("layer").orderBy(
        F.col("cursor_to").desc(), F.col("finished_at").desc()
    )
    newest = {
        r["layer"]: Cursor(cursor_to=r["cursor_to"], closed_through=r["closed_through"])
        for r in table.withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") == 1)
        .select("layer", "cursor_to", "closed_through")
        .collect()
    }
    gold = newest.get("gold", {"cursor_to": 0})["cursor_to"]
    pending = (
        table.where((F.col("layer") == "silver") & (F.col("cursor_to") > gold))
        .select("cursor_to", "affected_dates")
        .collect()
    )
    return Runs(newest, [(r["cursor_to"], list(r["affected_dates"] or [])) for r in pending])


def last_run(spark: SparkSession, settings: Settings, layer: str) -> Cursor | None:
    """The newest run of ``layer``: where the next one starts (None before its first)."""
    return runs(spark, settings).newest.get(layer)


def record_run(spark: SparkSession, settings: Settings, run: dict) -> None:
    """Append the run to ops.batch_runs and leave ``Runs`` for the next runs.

    Called holding the lake's writer lock, as every writer of ops.batch_runs is: no commit can
    come between the append and the version read after it."""
    known = runs(spark, settings)
    row = {name: run.get(name) for name in schemas.BATCH_RUNS.fieldNames()}
    row["affected_dates"] = sorted(row["affected_dates"] or [])
    lake.append(spark.createDataFrame([row], schemas.BATCH_RUNS), settings, BATCH_RUNS_TABLE.name)
    known.record(run)
    version = lake.latest_version(settings, BATCH_RUNS_TABLE.name)
    lake.write_state(runs_path(settings), known.to_json(version))


# --- silver -------------------------------------------------------------------------------------
def build_silver(spark: SparkSession, settings: Settings, full: bool = False) -> dict:
    """Parse new bronze records into silver and quarantine; ``full`` rebuilds from all bronze."""
    started = datetime.now(UTC)
    previous = None if full else last_run(spark, settings, "silver")
    cursor_from = previous["cursor_to"] if previous else 0
    bronze = lake.read(spark, settings, BRONZE_TABLE.name)
    cursor_to = bronze_positions(spark, settings)[1]
    if cursor_to <= cursor_from:
        return {"layer": "silver", "records": 0, "affected_dates": []}
    new = bronze.where((F.col("load_id") > cursor_from) & (F.col("load_id") <= cursor_to))
    records = bronze_t.as_kafka_records(new)
    actions = parsing.slim(
        parsing.parse_actions(
            records.where(F.col("topic") == contracts.TOPIC_ACTIONS), carry=("load_id",)
        )
    ).persist()
    profiles = parsing.slim(
        parsing.parse_profiles(
            records.where(F.col("topic") == contracts.TOPIC_PROFILES), carry=("load_id",)
        )
    ).persist()
    rejects = records.where(F.col("topic") == contracts.TOPIC_REJECTS)
    txn = None if full else lake.Txn("orderlake-silver", cursor_to)
    cached = [actions, profiles]
    try:
        unique = silver_t.unique_actions(actions).persist()
        cached.append(unique)
        dates = [r[0] for r in unique.select("event_date").distinct().collect()]
        if full:
            rows_out = unique.count()
            lake.overwrite(unique, settings, SILVER_ACTIONS_TABLE.name)
        else:
            # rows of earlier runs on the same dates; a re-run must not count its own first
            # attempt's rows as duplicates (load_id <= cursor_from)
            earlier = (
                lake.read(spark, settings, SILVER_ACTIONS_TABLE.name)
                .where(F.col("event_date").isin(dates) & (F.col("load_id") <= cursor_from))
                .select("event_id")
            )
            fresh = unique.join(earlier, "event_id", "left_anti").persist()
            cached.append(fresh)
            # counted before the append, which then reads the cache the count filled: the
            # commit drops the cache of every plan reading silver, ``fresh`` too (a count
            # after it computed ``fresh`` a second time)
            rows_out = fresh.count()
            lake.append(fresh, settings, SILVER_ACTIONS_TABLE.name, txn)
        quarantined = (
            parsing.quarantine_rows(actions, "silver")
            .unionByName(parsing.quarantine_rows(profiles, "silver"))
            .unionByName(silver_t.edge_rejects(rejects))
        ).persist()
        cached.append(quarantined)
        quarantined_count = quarantined.count()
        if full:
            lake.overwrite(quarantined, settings, QUARANTINE_TABLE.name)
        elif quarantined_count:  # most loads have nothing to quarantine: no empty commit
            lake.append(quarantined, settings, QUARANTINE_TABLE.name, txn)
        changed_users = _merge_users(spark, settings, parsing.latest_profiles(profiles), txn, full)
        affected = set(dates) | _purchase_dates_of(spark, settings, changed_users)
        counts = {
            "rows_in": new.count(),
            "valid": actions.where(F.col("reason").isNull()).count(),
            "rows_out": rows_out,
            "quarantined": lake.read(spark, settings, QUARANTINE_TABLE.name)
            .where(F.col("layer") == "silver")
            .count()
            if full
            else quarantined_count,
        }
    finally:
        for frame in cached:
            frame.unpersist()
    run = {
        "layer": "silver",
        "run_id": str(uuid.uuid4()),
        "cursor_from": cursor_from,
        "cursor_to": cursor_to,
        "affected_dates": sorted(affected),
        "rows_in": counts["rows_in"],
        "rows_out": counts["rows_out"],
        "duplicates_removed": counts["valid"] - counts["rows_out"],
        "quarantined": counts["quarantined"],
        "mode": "full" if full else "incremental",
        "started_at": started,
        "finished_at": datetime.now(UTC),
    }
    record_run(spark, settings, run)
    return {**_public(run), "records": run["rows_in"]}


def _merge_users(
    spark: SparkSession, settings: Settings, latest: DataFrame, txn: lake.Txn | None, full: bool
) -> DataFrame | None:
    """Upsert the latest profiles into silver.users; returns the users whose bucket changed
    (None after a full rebuild).

    The changed users stay a DataFrame in Spark: a first load changes every user (424,170 in
    the full Tianchi log), and as a literal IN list in a plan they overflowed the Spark
    server's heap."""
    if full:
        lake.overwrite(latest, settings, SILVER_USERS.name)
        return None  # a full rebuild recomputes every gold day anyway
    current = lake.read(spark, settings, SILVER_USERS.name)
    changed = latest.join(
        current,
        [
            latest.user_id == current.user_id,
            latest.age_bracket == current.age_bracket,
            latest.gender_label == current.gender_label,
        ],
        "left_anti",
    ).select("user_id")
    moved = lake.detached(changed)  # computed before the merge below changes silver.users
    newer = "s.updated_at > t.updated_at OR (s.updated_at = t.updated_at AND s.offset > t.offset)"
    with lake.transaction(spark, txn):
        lake.merge(
            spark,
            settings,
            SILVER_USERS.name,
            latest,
            "ON t.user_id = s.user_id "
            f"WHEN MATCHED AND ({newer}) THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        )
    return moved


def _purchase_dates_of(
    spark: SparkSession, settings: Settings, users: DataFrame | None
) -> set[date]:
    """Event dates of the purchases of these users: their gold days change with their profile."""
    if users is None or users.isEmpty():  # most loads move nobody: no scan of silver
        return set()
    rows = (
        lake.read(spark, settings, SILVER_ACTIONS_TABLE.name)
        .where(F.col("action_type") == contracts.ACTION_PURCHASE)
        .join(users, "user_id", "left_semi")
        .select("event_date")
        .distinct()
        .collect()
    )
    return {r[0] for r in rows}


# --- gold ---------------------------------------------------------------------------------------
def build_gold(
    spark: SparkSession,
    settings: Settings,
    full: bool = False,
    close_through: date | None = None,
    dates: set[date] | None = None,
) -> dict:
    """Recompute gold for the dates silver changed since the last gold run (or ``dates``, or
    every date with ``full``); days up to the closing date are marked final."""
    started = datetime.now(UTC)
    known = runs(spark, settings)
    previous = known.newest.get("gold")
    cursor_from = previous["cursor_to"] if previous else 0
    cursor_to = known.newest["silver"]["cursor_to"] if "silver" in known.newest else 0
    actions = lake.read(spark, settings, SILVER_ACTIONS_TABLE.name)
    if full:
        affected = {r[0] for r in actions.select("event_date").distinct().collect()}
    elif dates is not None:
        affected = set(dates)
    else:
        affected = {d for to, days in known.silver_since_gold if to > cursor_from for d in days}
    incremental = previous is not None and not full and dates is None
    closed = closing_date(
        spark, settings, previous, close_through, affected if incremental else None
    )
    # days that became final since the last run change their flag
    was_closed = previous["closed_through"] if previous else None
    if closed and (was_closed is None or closed > was_closed):
        start = (was_closed + timedelta(days=1)) if was_closed else None
        newly = actions.select("event_date").distinct()
        newly = newly.where(F.col("event_date") <= F.lit(closed))
        if start:
            newly = newly.where(F.col("event_date") >= F.lit(start))
        affected |= {r[0] for r in newly.collect()}
    if affected:
        dated = actions.where(F.col("event_date").isin(sorted(affected)))
        users = lake.read(spark, settings, SILVER_USERS.name)
        held = lake.read(spark, settings, GOLD_DAILY_TABLE.name).where(
            F.col("event_date").isin(sorted(affected))
        )
        # gold is read and overwritten: materialize first
        rows = lake.detached(
            gold_t.with_restatements(gold_t.daily_orders(dated, users, closed), held)
        )
        in_list = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(affected))
        lake.overwrite(rows, settings, GOLD_DAILY_TABLE.name, f"event_date IN ({in_list})")
    run = {
        "layer": "gold",
        "run_id": str(uuid.uuid4()),
        "cursor_from": cursor_from,
        "cursor_to": max(cursor_to, cursor_from),
        "affected_dates": sorted(affected),
        "rows_in": 0,
        "rows_out": 0,
        "duplicates_removed": 0,
        "quarantined": 0,
        "mode": "full" if full else ("dates" if dates is not None else "incremental"),
        "closed_through": closed,
        "started_at": started,
        "finished_at": datetime.now(UTC),
    }
    record_run(spark, settings, run)
    lake.register_tables(spark, settings)
    return _public(run)


def closing_date(
    spark: SparkSession,
    settings: Settings,
    previous: Cursor | None,
    explicit: date | None,
    changed: set[date] | None = None,
) -> date | None:
    """The last final day: the latest of the previous run's, an explicit close (`--close-through`)
    and the last day the data has moved past by more than the allowed lateness.

    ``changed``: the dates silver changed since ``previous`` run; only they are scanned for the
    newest event, since the previous run's closing date already accounts for every older one."""
    actions = lake.read(spark, settings, SILVER_ACTIONS_TABLE.name)
    if changed is not None:
        actions = actions.where(F.col("event_date").isin(sorted(changed)))
    seen = lake.one_row(actions.agg(F.max("event_time")), "the newest silver event")[0]
    automatic = None
    if seen is not None:
        automatic = (seen - timedelta(minutes=settings.lateness_minutes)).date() - timedelta(days=1)
    candidates = [d for d in (automatic, explicit, previous and previous["closed_through"]) if d]
    return max(candidates) if candidates else None


def _public(run: dict) -> dict:
    out = {k: v for k, v in run.items() if k not in ("started_at", "finished_at", "run_id")}
    out["affected_dates"] = [d.isoformat() for d in out["affected_dates"]]
    if out.get("closed_through"):
        out["closed_through"] = out["closed_through"].isoformat()
    out["seconds"] = round((run["finished_at"] - run["started_at"]).total_seconds(), 2)
    return out


# --- the job: `orderlake batch LAYER`, batch/<layer>.py, the Airflow tasks (jobs/runner.py) -----
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layer", choices=(*LAYERS, "all"))
    parser.add_argument("--full", action="store_true", help="rebuild from all of bronze")
    parser.add_argument(
        "--close-through", type=iso_date, metavar="YYYY-MM-DD", help="mark days up to this final"
    )


def _layers(args: argparse.Namespace) -> tuple[str, ...]:
    return LAYERS if args.layer == "all" else (args.layer,)


def shortcut(settings: Settings, args: argparse.Namespace) -> list[dict] | None:
    """The scheduled bronze load's usual case, nothing new in Kafka, answered without Spark."""
    if _layers(args) == ("bronze",) and kafka_log.bronze_is_current(settings):
        return [{"layer": "bronze", "records": 0, "spark": False}]
    return None


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[dict]:
    """The layers asked for, in order, under the batch lock; one summary per layer."""
    layers = _layers(args)
    with locks.exclusive(settings, locks.BATCH, wait=True):
        ensure_tables(spark, settings)
        if "bronze" in layers:
            yield load_bronze(spark, settings)
        if "silver" in layers:
            yield build_silver(spark, settings, full=args.full)
        if "gold" in layers:
            yield build_gold(spark, settings, full=args.full, close_through=args.close_through)


def main(argv: list[str] | None = None) -> int:
    """`orderlake batch LAYER ...` as a program of its own (batch/*.py)."""
    from orderlake.jobs import runner

    return runner.main(sys.modules[__name__], argv)
