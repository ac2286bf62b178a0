"""The speed layer: tmall.user_profiles + tmall.user_actions -> speed.* Delta tables, always on.

One Structured Streaming query reads both topics (a Kafka source each) and parses them against
the contract (parsed_stream). Before it starts, the profiles Kafka holds beyond what it
processed are stored (preload_profiles: a backlog's purchases then find their
users' profiles). Each micro-batch reads Kafka and parses once: an Observation counts every
row on the way (progress statistics) while only the rows that need more than counting reach
the driver, through Arrow: valid purchases (about one record in 16: ~25,000 at the default
400,000 offsets per trigger), malformed records and profiles not stored yet. Nothing is
cached: this pass catches up on a backlog at 1.29 times the records/s of one that cached the
batch for a statistics job and collected from the cache (bench/results/speed-ab-one-pass-400k/).
Then, in this order:
  1. malformed records       -> speed.quarantine (raw value, Kafka coordinates, reason)
  2. profiles                -> speed.user_profiles: a user's first profile and each newer one
                                that changes it, appended (the view speed.users is the latest
                                per user by updated_at); the latest stay in memory too
                                (StoredUsers), so no micro-batch reads the table
  3. late profiles           -> purchases counted earlier under unknown (no profile yet) move to
                                the profile's bucket in speed.purchases (only while such
                                purchases exist: none in the steady state)
  4. purchases               -> de-duplicated by (event_id, event_time) against the purchases
                                counted in the batch's event-time range and given their user's
                                bucket in plain Python -> speed.purchases (one row per counted
                                purchase, with its bucket); the keys of recently counted
                                purchases stay in memory (CountedKeys), so a micro-batch reads
                                speed.purchases for this only when it holds purchases older
                                than what memory covers
The per-minute counts are the view speed.orders_by_age_gender_1m over speed.purchases: counting
and de-duplication are one append, so they can never disagree, and a micro-batch needs no MERGE
for its counts (a MERGE costs about 2 s here, an append about 0.5 s).

Exactly once: Kafka offsets are checkpointed; the write to speed.quarantine carries a Delta
transaction id (checkpoint's app id, batch id), so a micro-batch re-run after a crash commits it
at most once. speed.purchases and speed.user_profiles need none: a re-run finds its own
purchases among the counted ones and its own profiles among the stored ones, and writes nothing.
(A transaction id would make Delta reconstruct the table's state before every write to look it
up: 0.8 s of a 10,000-record micro-batch once the de-duplication keys are in memory.) Late
events count in their window whatever its age: nothing is dropped by a watermark.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaException
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from orderlake import lake, locks, schemas
from orderlake.contracts import ACTION_PURCHASE, TOPIC_ACTIONS, TOPIC_PROFILES
from orderlake.errors import OrderlakeError
from orderlake.jobs import maintenance
from orderlake.kafka_client import spark_options
from orderlake.schemas import SPEED_PURCHASES_TABLE
from orderlake.settings import Settings
from orderlake.stack import kafka
from orderlake.transforms import parsing
from orderlake.transforms import speed as transforms

QUERY_NAME = "speed"
KAFKA_KEY = ["topic", "partition", "offset"]  # a record's coordinates
USERS_VIEW = "speed.users"  # the latest stored profile per user (lake.VIEWS)
PROGRESS_HISTORY = 120  # micro-batches kept in the progress file
# The streaming session writes only speed.* tables: compact their small files as it goes.
SESSION_CONF = {
    "spark.databricks.delta.autoCompact.enabled": "true",
    # micro-batches are small: one shuffle partition per core
    "spark.sql.shuffle.partitions": "2",
    # each micro-batch materializes its results (lake.detached): a JVM GC at least this
    # often lets Spark's cleaner drop the blocks of finished batches
    "spark.cleaner.periodicGC.interval": "5min",
    # compiled code of 100 queries (the default) is too little: a micro-batch runs ~20
    # queries whose literals differ every time, which evicted the contract parse's code, so it
    # was compiled again and ran cold (0.3-0.6 s of a 10,000-record micro-batch)
    "spark.sql.codegen.cache.maxEntries": "1000",
}


def progress_path(settings: Settings) -> Path:
    return settings.run_dir / "speed-progress.json"


def kafka_source(spark: SparkSession, settings: Settings, topic: str) -> DataFrame:
    """One topic from its first offset; lost offsets fail the query (failOnDataLoss)."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .options(**spark_options(settings.kafka_auth(), "orderlake-speed"))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", settings.speed_max_offsets_per_trigger)
        # larger polls than the consumer's default 500 records: 100,000 records read in
        # 1.5 s instead of 1.8 s here
        .option("kafka.max.poll.records", "20000")
        # the longest the broker holds a fetch that finds no data; at the default 500 ms, 3 of
        # 13 backlog micro-batches had a Kafka task waiting ~0.5 s off-CPU (none at 20 ms):
        # parse step 508 -> 395 ms, records/s unchanged within noise (speed-ab-fetch-wait-10k)
        .option("kafka.fetch.max.wait.ms", "20")
        .load()
    )


def parsed_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """Both topics, parsed against the contract, as one stream. The parse is part of the
    streaming query, so Spark analyses it once when the query starts, not in every micro-batch
    (about 0.3 s each when foreachBatch parsed the raw records)."""
    return parse(
        kafka_source(spark, settings, TOPIC_ACTIONS), kafka_source(spark, settings, TOPIC_PROFILES)
    )


def parse(actions: DataFrame, profiles: DataFrame) -> DataFrame:
    """Kafka records of each topic -> one DataFrame of parsed rows with the actions' and the
    profiles' columns (a row has only its own topic's): what a micro-batch receives."""
    return parsing.slim(parsing.parse_actions(actions)).unionByName(
        parsing.slim(parsing.parse_profiles(profiles)), allowMissingColumns=True
    )


def check_checkpoint(checkpoint: Path) -> None:
    """Refuse a checkpoint of the older query shape (one Kafka source for both topics): Spark
    would fail on it with a stack trace, micro-batch after micro-batch under supervision."""
    offsets = checkpoint / "offsets"
    written = [f for f in offsets.iterdir() if f.name.isdigit()] if offsets.is_dir() else []
    if not written:
        return
    latest = max(written, key=lambda f: int(f.name))
    sources = len(latest.read_text().splitlines()[2:])  # version, metadata, one line per source
    if sources != 2:
        raise OrderlakeError(
            f"The speed checkpoint {checkpoint} holds {sources} Kafka source(s), this speed layer"
            " reads one per topic (2): stop the speed layer and remove the checkpoint, its"
            " .app-id file and the speed tables (lake/speed) to rebuild them from Kafka."
        )


def app_id(checkpoint: Path) -> str:
    """The Delta transaction app id of the speed writes: the id of the streaming query the
    checkpoint belongs to, which Spark keeps in ``<checkpoint>/metadata`` from the query's first
    start. A new checkpoint is a new query with a new id, so its batch ids (from 0 again) never
    meet transaction versions an older checkpoint committed: nothing outside the checkpoint can
    outlive it and make Delta skip a write as already done."""
    metadata = checkpoint / "metadata"
    try:
        return f"orderlake-speed-{json.loads(metadata.read_text())['id']}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OrderlakeError(
            f"The speed checkpoint's query id cannot be read from {metadata} ({exc}); remove "
            f"the checkpoint {checkpoint} to start a new one (the speed tables stay exact: "
            "re-read records are found among the counted ones)."
        ) from None


class CountedKeys:
    """(event_id, event_time) of the purchases in speed.purchases, in driver memory by minute: a
    micro-batch de-duplicates against them instead of reading the Delta table, which makes Delta
    reconstruct the new version's state and skip files (three Spark jobs, about 0.8 s of a
    3.7 s micro-batch of 10,000 records; bench/results/speed-ab-counted-keys-no-txn-10k.md).

    Complete for event times at or after ``since`` (None: for all): loaded from the table when
    the query starts, extended by each micro-batch's counted keys once they are committed, and,
    past ``limit`` keys, trimmed to the newest minutes holding at most half of it. The speed
    layer is the only writer of speed.purchases, and nothing changes a counted row's key, so the
    keys cannot go stale. A micro-batch with purchases older than ``since`` reads the table.
    About 230 bytes a key (tracemalloc, Flume-style event ids): the default limit of 500,000
    holds ~120 MB in the driver's Python process, outside the JVM's heap.
    """

    MINUTE = 60_000_000  # microseconds

    def __init__(self, table: DataFrame, limit: int):
        self.limit = limit
        self.since: int | None = None  # epoch microseconds
        self.rows = 0
        self._minutes: dict[int, set[tuple[str, int]]] = {}
        keys = table.select("event_id", F.unix_micros("event_time"))
        rows = keys.count()  # Delta answers this from file statistics
        if rows > limit:
            share = min(1.0, limit / 2 / rows)
            cutoff = keys.select(F.percentile_approx(keys.columns[1], 1 - share)).first()[0]
            keys = keys.where(F.col(keys.columns[1]) >= cutoff - cutoff % self.MINUTE)
            self.since = cutoff - cutoff % self.MINUTE
        self.add(lake.collected(keys))

    def covers(self, earliest_us: int) -> bool:
        return self.since is None or earliest_us >= self.since

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._minutes.get(key[1] - key[1] % self.MINUTE, ())

    def add(self, keys: list[tuple[str, int]]) -> None:
        """Take in committed keys; past the limit, drop the oldest minutes."""
        for key in keys:
            self._minutes.setdefault(key[1] - key[1] % self.MINUTE, set()).add(key)
        self.rows += len(keys)
        if self.rows <= self.limit:
            return
        for minute in sorted(self._minutes)[:-1]:
            if self.rows <= self.limit // 2:
                break
            self.rows -= len(self._minutes.pop(minute))
        oldest = min(self._minutes)
        self.since = oldest if self.since is None else max(self.since, oldest)


class StoredUsers:
    """The latest profile per user (the view speed.users), kept in memory twice: as a
    DataFrame on the executors, which new profiles are compared against (a replay brings
    hundreds of thousands), and as {user_id: (age bracket, gender)} in the driver, which each
    micro-batch's purchases take their bucket from. Neither reads the Delta table, which costs a
    listing of its files every micro-batch and, after each profile write, a reconstruction of
    the new version's state (bench/results/speed-profiles-ab.md).

    Loaded when the query starts and updated after each write to speed.user_profiles; the
    speed layer is its only writer.
    """

    def __init__(self, table: DataFrame):
        self.rows = lake.detached(table)
        self.buckets: dict[int, tuple[str, str]] = {}
        self._take_buckets(self.rows)

    def take(self, stored: DataFrame) -> None:
        """Take in profiles just stored (detached): each replaces its user's row."""
        kept = self.rows.join(stored.select("user_id"), "user_id", "left_anti")
        self.rows = lake.detached(kept.unionByName(stored))
        self._take_buckets(stored)

    def _take_buckets(self, profiles: DataFrame) -> None:
        rows = lake.collected(profiles.select("user_id", "age_bracket", "gender_label"))
        self.buckets.update((user, (bracket, gender)) for user, bracket, gender in rows)


class SpeedLayer:
    """Writes one micro-batch into the speed tables; keeps per-batch statistics."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        app_id: str | None = None,
        checkpoint: Path | None = None,
    ):
        """``app_id`` names the Delta transactions of the writes; without it, the query's id
        from ``checkpoint`` (app_id()), read at the first micro-batch, when Spark has written it."""
        self.spark = spark
        self.settings = settings
        self._app_id = app_id
        self.checkpoint = checkpoint
        self.between = threading.Lock()  # held by a micro-batch, taken by table maintenance
        self.maintenance: maintenance.SpeedMaintenance | None = None  # while the query runs
        self.batch_stats: dict[int, dict] = {}
        retire_users_table(spark, settings)
        for spec in schemas.SPEED_TABLES:
            lake.ensure_table(spark, settings, spec)
        # purchases counted under unknown that a late profile could still move (an upper bound:
        # a re-run batch may add its rows twice); zero in the steady state, which skips the
        # restate step's Spark jobs in every micro-batch
        self.waiting = self._count_waiting(spark)
        # {profiles partition: (first, end) offsets} whose records preload_profiles stored
        # already: a micro-batch with no valid profile outside skips the users step
        self.profiles_preloaded: dict[int, tuple[int, int]] = {}
        self.counted_keys = CountedKeys(
            lake.read(spark, settings, SPEED_PURCHASES_TABLE.name), settings.speed_counted_keys
        )
        self.users = StoredUsers(spark.table(USERS_VIEW))

    def path(self, spec: schemas.TableSpec) -> str:
        return str(lake.table_path(self.settings, spec.name))

    @property
    def app_id(self) -> str:
        if self._app_id is None:
            if self.checkpoint is None:
                raise ValueError("SpeedLayer needs an app_id or the query's checkpoint.")
            self._app_id = app_id(self.checkpoint)
        return self._app_id

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[None]:
        """Time one step of the micro-batch (reported as steps_ms in the progress file)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._steps[name] = round((time.perf_counter() - started) * 1000)

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        # maintenance of the speed tables (jobs/maintenance.py) runs between micro-batches
        with self.between:
            self._process_batch(batch, batch_id)

    def _process_batch(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        self._steps: dict[str, int] = {}
        spark = batch.sparkSession
        txn = lake.Txn(self.app_id, batch_id)
        # one pass (see the module docstring): the Observation counts every row, the driver
        # receives only the kept ones
        with self._step("plan"):
            observation = Observation()  # a unique name: batch ids restart with a checkpoint
            kept = self._kept_rows(batch.observe(observation, *self._stat_columns()))
        with self._step("parse"):
            rows = kept.toArrow()
            stats = self._stats(observation.get)
        invalid = rows.filter(pc.is_valid(rows["reason"]))
        if invalid.num_rows:
            with self._step("quarantine"):
                quarantined = parsing.quarantine_rows(self._frame(spark, invalid, kept), "speed")
                fresh = quarantined.join(self._quarantined(spark, invalid), KAFKA_KEY, "left_anti")
                lake.append(fresh, self.settings, schemas.SPEED_QUARANTINE.name, txn)
        valid = pc.is_null(rows["reason"])
        profiles = rows.filter(pc.and_(valid, pc.equal(rows["topic"], TOPIC_PROFILES)))
        if profiles.num_rows:
            latest = parsing.latest_profiles(self._frame(spark, profiles, kept))
            with self._step("users"):
                self.store_profiles(latest)
            if self.waiting:
                with self._step("restate"):
                    restate_txn = lake.Txn(f"{self.app_id}:restate", batch_id)
                    self.restate_late_profiles(spark, latest, restate_txn)
        purchases = transforms.purchases_in(rows)
        counted, dedup_read = 0, None
        if purchases:
            counted, dedup_read = self._count_purchases(spark, purchases, batch_id)
        committed = time.time()
        stats.update(
            batch_id=batch_id,
            purchases_counted=counted,
            dedup_read=dedup_read,
            write_seconds=round(committed - started, 3),
            committed_at=_iso(committed),
            steps_ms=self._steps,
        )
        for key in ("kafka_ts_min", "kafka_ts_max"):
            if stats[key] is not None:
                stats[f"{key}_age_s"] = round(committed - stats[key].timestamp(), 3)
                stats[key] = _iso(stats[key].timestamp())
        if stats["event_time_max"] is not None:
            stats["event_time_max"] = stats["event_time_max"].isoformat()
        self.batch_stats[batch_id] = stats

    def _quarantined(self, spark: SparkSession, invalid: pa.Table) -> DataFrame:
        """The Kafka coordinates speed.quarantine holds already within the offsets of these
        invalid rows: records read again after the checkpoint was removed are not quarantined
        twice (the transaction id is new with the new checkpoint). Malformed records are rare,
        and file statistics keep the read to the files of those offsets."""
        table = lake.read(spark, self.settings, schemas.SPEED_QUARANTINE.name)
        ranges = invalid.group_by(["topic", "partition"]).aggregate(
            [("offset", "min"), ("offset", "max")]
        )
        within = [
            (F.col("topic") == topic)
            & (F.col("partition") == partition)
            & F.col("offset").between(low, high)
            for topic, partition, low, high in zip(
                *(
                    ranges[c].to_pylist()
                    for c in ("topic", "partition", "offset_min", "offset_max")
                ),
                strict=True,
            )
        ]
        return table.where(functools.reduce(operator.or_, within)).select(*KAFKA_KEY)

    def _kept_rows(self, batch: DataFrame) -> DataFrame:
        """The parsed rows a micro-batch does more with than count: valid purchases, malformed
        records of either topic and profiles outside the ranges preload_profiles stored."""
        action = F.col("topic") == TOPIC_ACTIONS
        invalid = F.col("reason").isNotNull()
        purchase = action & (F.col("action_type") == ACTION_PURCHASE)
        kept = batch.where(invalid | purchase | (~action & self._not_preloaded()))
        return transforms.with_epoch_micros(kept)

    def _stat_columns(self) -> list[Column]:
        """Row counts and time ranges of a micro-batch, observed while its rows are read."""
        action = F.col("topic") == TOPIC_ACTIONS
        valid = F.col("reason").isNull()
        buy = action & valid & (F.col("action_type") == ACTION_PURCHASE)
        not_stored = ~action & valid & self._not_preloaded()
        return [
            F.sum(action.cast("int")).alias("actions"),
            F.count(F.lit(1)).alias("rows"),
            F.sum((~valid).cast("int")).alias("quarantined"),
            F.sum(buy.cast("int")).alias("purchases"),
            F.sum(not_stored.cast("int")).alias("profiles_not_stored"),
            F.max(F.when(action, F.col("event_time"))).alias("event_time_max"),
            F.min("kafka_timestamp").alias("kafka_ts_min"),
            F.max("kafka_timestamp").alias("kafka_ts_max"),
        ]

    @staticmethod
    def _stats(observed: dict) -> dict:
        """The observed values as the progress file keeps them (counts as ints, never None)."""
        stats = dict(observed)
        for key in ("actions", "rows", "quarantined", "purchases", "profiles_not_stored"):
            stats[key] = int(stats.get(key) or 0)
        stats["profiles"] = stats["rows"] - stats["actions"]
        return stats

    @staticmethod
    def _frame(spark: SparkSession, rows: pa.Table, kept: DataFrame) -> DataFrame:
        """Rows the driver collected, as a DataFrame again (they are few)."""
        return spark.createDataFrame(rows, schema=kept.schema)

    def _not_preloaded(self) -> Column:
        """A profile record outside the ranges preload_profiles stored."""
        preloaded = F.lit(False)
        for partition, (first, end) in self.profiles_preloaded.items():
            preloaded = preloaded | (
                (F.col("partition") == partition)
                & (F.col("offset") >= first)
                & (F.col("offset") < end)
            )
        return ~preloaded

    def store_profiles(self, latest: DataFrame) -> int:
        """Append the latest profiles that are newer than the stored ones (older and re-sent
        identical profiles cost no write, and a re-run micro-batch finds its own) to
        speed.user_profiles. Returns the number of profiles stored."""
        staged = lake.detached(transforms.profiles_to_store(latest, self.users.rows))
        stored = staged.count()
        if stored:
            lake.append(staged, self.settings, schemas.SPEED_USER_PROFILES.name)
            self.users.take(staged)
        return stored

    def _waiting_purchases(self, spark: SparkSession) -> DataFrame:
        """Purchases counted under unknown whose user's profile has not arrived yet; file
        statistics on profile_found skip every file without one."""
        return lake.read(spark, self.settings, SPEED_PURCHASES_TABLE.name).where(
            ~F.col("profile_found")
        )

    def _count_waiting(self, spark: SparkSession) -> int:
        return self._waiting_purchases(spark).count()

    def restate_late_profiles(
        self, spark: SparkSession, latest: DataFrame, txn: lake.Txn | None
    ) -> None:
        """Purchases counted under unknown because their user's profile had not arrived yet move
        to the bucket of the profile that arrived in this batch.

        Profiles and actions are separate topics: nothing orders them. A profile sent after
        its user's purchases were counted, or (while catching up) read in a later micro-batch
        than they were, lands here. Without this the speed layer's figures would keep that
        skew until the batch layer replaced them.
        """
        target = DeltaTable.forPath(spark, self.path(SPEED_PURCHASES_TABLE))
        waiting = self._waiting_purchases(spark).select("user_id").distinct()
        arrived = lake.detached(
            self.users.rows.join(latest.select("user_id"), "user_id", "left_semi")
            .join(waiting, "user_id", "left_semi")
            .select("user_id", "age_bracket", "gender_label")
        )
        if arrived.isEmpty():
            return
        # txn: "<app id>:restate", the app id this MERGE has always carried (Delta keeps one
        # transaction version per table and app id)
        with lake.transaction(spark, txn):
            (
                target.alias("t")
                .merge(arrived.alias("s"), "t.user_id = s.user_id AND NOT t.profile_found")
                .whenMatchedUpdate(
                    set={
                        "age_bracket": "s.age_bracket",
                        "gender": "s.gender_label",
                        "profile_found": "true",
                        "counted_at": "current_timestamp()",
                    }
                )
                .execute()
            )
        self.waiting = self._count_waiting(spark)

    def _count_purchases(
        self, spark: SparkSession, purchases: list[transforms.Purchase], batch_id: int
    ) -> tuple[int, str]:
        """Counts the batch's new purchases (the valid ones it collected); returns
        (rows counted, where de-duplication read the counted keys: "memory" or "table")."""
        with self._step("bucket"):
            purchases = transforms.first_per_key(purchases)
            # the de-duplication set: the purchases counted in this batch's event-time range,
            # by any batch (a re-run of this batch finds its own and counts nothing again);
            # from memory when it covers the range, else the batch's keys found in the table
            # (file statistics skip the files outside the range)
            earliest = min(p.event_time for p in purchases)
            if self.counted_keys.covers(earliest):
                source, counted_keys = "memory", self.counted_keys
            else:
                source = "table"
                counted_keys = self._counted_in_table(spark, purchases)
            fresh = transforms.not_counted_before(purchases, counted_keys)
            bucketed = transforms.assign_buckets(fresh, self.users.buckets)
        if bucketed:
            # one file per micro-batch: fewer files to list and read for the next
            # de-duplication; no transaction id: de-duplication makes the append idempotent
            with self._step("purchases"):
                frame = lake.local_frame(spark, bucketed, transforms.BUCKETED)
                counted = transforms.counted_rows(frame, batch_id).coalesce(1)
                lake.append(counted, self.settings, SPEED_PURCHASES_TABLE.name)
            self.counted_keys.add([p.key for p in fresh])
            self.waiting += sum(1 for row in bucketed if not row[-1])
        return len(bucketed), source

    def _counted_in_table(
        self, spark: SparkSession, purchases: list[transforms.Purchase]
    ) -> set[tuple[str, int]]:
        """The keys of ``purchases`` speed.purchases holds, read from the table: file
        statistics skip the files outside the purchases' event-time range."""
        times = [p.event_time for p in purchases]
        keys = lake.local_frame(spark, [p.key for p in purchases], transforms.PURCHASE_KEY)
        in_range = lake.read(spark, self.settings, SPEED_PURCHASES_TABLE.name).where(
            F.col("event_time").between(
                F.timestamp_micros(F.lit(min(times))), F.timestamp_micros(F.lit(max(times)))
            )
        )
        found = in_range.select("event_id", F.unix_micros("event_time").alias("event_time_us"))
        return set(lake.collected(found.join(keys, ["event_id", "event_time_us"], "left_semi")))


class ProgressWriter(StreamingQueryListener):
    """Keeps ORDERLAKE_HOME/run/speed-progress.json: the last micro-batches (input rows/s, batch
    duration, rows quarantined, purchases counted, event-to-commit latency), the offsets the
    query has processed (for Kafka lag) and a heartbeat, for `orderlake status` and the dashboard.
    """

    def __init__(self, settings: Settings, layer: SpeedLayer):
        self.path = progress_path(settings)
        self.layer = layer
        self.query_id: str | None = None  # set once the query runs: ignore other queries
        # keep the batches reported before a restart: status and the dashboard show history
        previous = _read_json(self.path)
        self.history: list[dict] = previous.get("batches", [])
        self.offsets: dict = previous.get("processed_offsets", {})
        self.started_at = _iso(time.time())
        self.preload: dict | None = None  # what preload_profiles did before the query started

    def onQueryStarted(self, event) -> None:  # noqa: N802 - Spark's listener API
        self._write(state="started")

    def onQueryProgress(self, event) -> None:  # noqa: N802
        p = event.progress
        if str(p.id) != self.query_id:
            return
        entry = {
            "batch_id": p.batchId,
            "timestamp": p.timestamp,
            "input_rows": p.numInputRows,
            "input_rows_per_s": round(p.inputRowsPerSecond or 0.0, 1),
            "processed_rows_per_s": round(p.processedRowsPerSecond or 0.0, 1),
            "batch_duration_ms": p.batchDuration,
            "duration_ms": dict(p.durationMs or {}),
        }
        entry.update(self.layer.batch_stats.pop(p.batchId, {}))
        for source in p.sources:  # one per topic
            if source.endOffset:
                self.offsets = {**self.offsets, **json.loads(source.endOffset)}
        self.history = [*self.history, entry][-PROGRESS_HISTORY:]
        self._write(state="running")

    def onQueryIdle(self, event) -> None:  # noqa: N802
        if str(event.id) == self.query_id:
            self._write(state="idle")

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        if str(event.id) == self.query_id:
            self._write(state="terminated", error=event.exception)
            if self.layer.maintenance is not None:
                self.layer.maintenance.stop.set()

    def _write(self, **extra: object) -> None:
        doc = {
            "query": QUERY_NAME,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat_at": _iso(time.time()),
            "processed_offsets": self.offsets,
            "profiles_preloaded": self.preload,
            "batches": self.history,
            **extra,
        }
        _write_json(self.path, doc)


def retire_users_table(spark: SparkSession, settings: Settings) -> None:
    """A lake from before speed.user_profiles (up to 2026-12-01) kept the latest profiles in a
    table speed.users, where the view of that name now goes: its rows become the first stored
    versions, and its directory moves to <lake>/_retired/ (kept, no longer a table)."""
    old = lake.table_path(settings, USERS_VIEW)
    if not (old / "_delta_log").is_dir():
        return
    rows = lake.detached(spark.read.format("delta").load(str(old)))
    lake.forget(spark, USERS_VIEW)
    lake.ensure_table(spark, settings, schemas.SPEED_USER_PROFILES)
    # at most once, should the move below fail and this run again
    txn = lake.Txn("orderlake-retire-speed-users", 0)
    lake.append(rows, settings, schemas.SPEED_USER_PROFILES.name, txn)
    retired = settings.lake_dir / "_retired" / f"speed.users-{int(time.time())}"
    retired.parent.mkdir(parents=True, exist_ok=True)
    old.rename(retired)


def preload_profiles(
    spark: SparkSession, settings: Settings, layer: SpeedLayer, processed: dict
) -> dict:
    """Profiles Kafka holds past the offsets the query last processed -> speed.user_profiles,
    before the query starts.

    Catching up on a backlog, maxOffsetsPerTrigger gives each micro-batch a share of both
    topics in proportion to what they hold, so most purchases would be read before their
    users' profiles, counted under unknown and moved by the restate step later (5 s of a 10 s
    micro-batch in the benchmark's backlog). speed.users shows the newest profile by
    updated_at whatever order profiles come in, and a purchase takes the profile known when
    it is counted, as the batch layer takes the newest: storing them early brings the speed
    layer closer to it. The query still reads every profile record (a stored one again costs
    a join, no write) and quarantines the invalid ones.
    """
    started = time.perf_counter()
    try:
        marks = kafka.watermarks(settings.bootstrap, (TOPIC_PROFILES,))
    except KafkaException as exc:  # the query reports an unreachable broker in its own way
        return {"skipped": f"Kafka offsets not read: {exc}"}
    done = processed.get(TOPIC_PROFILES, {})
    # from where the query got to (the earliest offset Kafka still holds for a partition it
    # has not read), so every offset read exists and failOnDataLoss stays on
    ends = {p: high for (_, p), (_, high) in marks.items()}
    starts = {
        p: min(max(int(done.get(str(p), low)), low), high) for (_, p), (low, high) in marks.items()
    }
    if all(ends[p] <= starts[p] for p in ends):
        return {"users_stored": 0, "seconds": round(time.perf_counter() - started, 3)}
    records = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .options(**spark_options(settings.kafka_auth(), "orderlake-speed"))
        .option("subscribe", TOPIC_PROFILES)
        .option("startingOffsets", json.dumps({TOPIC_PROFILES: starts}))
        .option("endingOffsets", json.dumps({TOPIC_PROFILES: ends}))
        .option("failOnDataLoss", "true")
        .load()
    )
    latest = parsing.latest_profiles(parsing.parse_profiles(records))
    stored = layer.store_profiles(latest)
    if layer.waiting:  # purchases counted before a crash or stop may wait for these profiles
        layer.restate_late_profiles(spark, latest, txn=None)
    layer.profiles_preloaded = {p: (starts[p], ends[p]) for p in ends}
    return {"users_stored": stored, "seconds": round(time.perf_counter() - started, 3)}


STARTING_BEAT_S = 5.0  # heartbeat while starting (JVM, profile preload): well inside STALE_AFTER_S


# the speed lock of each lake this process has taken, kept until the process ends: one process
# runs one speed layer per lake (Spark refuses a second active query of the same name)
_HELD: dict[Path, locks.Held] = {}


def hold_lock(settings: Settings) -> locks.Held:
    """The speed layer's single-instance lock, held by this process from now on, or one
    sentence naming the process that runs the speed layer already."""
    path = locks.lock_path(settings, locks.SPEED)
    if path in _HELD:
        return _HELD[path]
    try:
        _HELD[path] = locks.acquire(settings, locks.SPEED)
        return _HELD[path]
    except OrderlakeError:
        holder = locks.holder(settings, locks.SPEED) or "unknown"
        raise OrderlakeError(
            f"A speed layer already runs on the lake {settings.lake_dir} ({holder}); two would "
            "write the same speed tables. `orderlake status` shows it; stop it first."
        ) from None


@contextlib.contextmanager
def starting(settings: Settings) -> Iterator[Callable[[str | None], None]]:
    """Report state "starting" with a fresh heartbeat every few seconds while the block runs,
    so the streaming supervisor never restarts a job that is still starting (a JVM start and a
    profile preload after an outage can take minutes) while the last run's heartbeat is stale.

    The block gets ``phase(name)`` to name what it is doing (shown by `orderlake status`) and
    calls ``phase(None)`` once the query is about to report for itself.
    """
    path = progress_path(settings)
    started_at = _iso(time.time())
    current: list[str | None] = ["starting"]
    stop = threading.Event()

    def beat() -> None:
        doc = _read_json(path)
        doc.update(
            state="starting",
            phase=current[0],
            pid=os.getpid(),
            started_at=started_at,
            heartbeat_at=_iso(time.time()),
        )
        _write_json(path, doc)

    def loop() -> None:
        while not stop.wait(STARTING_BEAT_S):
            beat()

    beat()
    thread = threading.Thread(target=loop, name="speed-starting", daemon=True)
    thread.start()

    def phase(name: str | None) -> None:
        if name is None:
            stop.set()
            thread.join()
            return
        current[0] = name
        beat()

    try:
        yield phase
    finally:
        stop.set()
        thread.join()


def start(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool = False,
    checkpoint: Path | None = None,
    phase: Callable[[str | None], None] = lambda _: None,
) -> StreamingQuery:
    """Start the speed-layer query and return it.

    ``available_now`` processes what is there and stops (tests, catch-up runs); otherwise
    micro-batches run back to back, always on. The process holds the speed lock from here on
    (hold_lock); ``phase`` hears what start-up is doing (``starting``).
    """
    checkpoint = checkpoint or lake.checkpoint_path(settings, QUERY_NAME)
    hold_lock(settings)
    check_checkpoint(checkpoint)
    layer = SpeedLayer(spark, settings, checkpoint=checkpoint)
    listener = ProgressWriter(settings, layer)
    phase("profile preload")
    listener.preload = preload_profiles(spark, settings, layer, listener.offsets)
    spark.streams.addListener(listener)
    writer = (
        parsed_stream(spark, settings)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(layer.process_batch)
        .option("checkpointLocation", str(checkpoint))
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime="0 seconds")
    )
    phase(None)  # from here the query's listener reports
    query = writer.start()
    listener.query_id = str(query.id)
    layer.maintenance = maintenance.SpeedMaintenance(spark, settings, layer.between).start()
    return query


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str))
    tmp.replace(path)  # readers never see a half-written file


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
