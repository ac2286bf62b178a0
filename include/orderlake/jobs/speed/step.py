"""One micro-batch of parsed rows -> speed.quarantine, speed.user_profiles, speed.purchases.

SpeedLayer.process_batch is the query's foreachBatch: it quarantines malformed records, stores
new profiles, moves purchases counted before their user's profile arrived, and counts new
purchases once each (the order and the reasons are in the package docstring). It exists apart
from the source and the start-up so that a test can hand it any DataFrame of parsed rows.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import threading
import time
from collections.abc import Container, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from orderlake import lake, schemas
from orderlake.contracts import ACTION_PURCHASE, TOPIC_ACTIONS, TOPIC_PROFILES
from orderlake.errors import OrderlakeError
from orderlake.jobs import maintenance
from orderlake.jobs.speed import iso
from orderlake.jobs.speed.state import CountedKeys, StoredUsers
from orderlake.schemas import SPEED_PURCHASES_TABLE
from orderlake.settings import Settings
from orderlake.transforms import parsing
from orderlake.transforms import speed as transforms

KAFKA_KEY = ["topic", "partition", "offset"]  # a record's coordinates
USERS_VIEW = "speed.users"  # the latest stored profile per user (lake.VIEWS)


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
            committed_at=iso(committed),
            steps_ms=self._steps,
        )
        for key in ("kafka_ts_min", "kafka_ts_max"):
            if stats[key] is not None:
                stats[f"{key}_age_s"] = round(committed - stats[key].timestamp(), 3)
                stats[key] = iso(stats[key].timestamp())
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
            counted_keys: Container[tuple[str, int]]
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
