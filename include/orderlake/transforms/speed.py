"""Speed-layer transformations of one micro-batch: parsed actions -> counted purchases -> counts.

Pure functions; the streaming job (orderlake.jobs.speed) reads, looks up what it keeps and
writes. A micro-batch's purchases are few (one action in ~16: ~25,000 of 400,000 records), so
they are de-duplicated and given their bucket in the driver, in plain Python, against the
counted keys and the users' buckets it holds: the same steps as Spark joins cost three
shuffles per micro-batch (bench/results/speed-ab-driver-buckets-10k). An order is a purchase
(action_type 2) counted once per (event_id, event_time): see not_counted_before.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from orderlake import contracts, schemas


class Purchase(NamedTuple):
    """A valid purchase record of a micro-batch, as the driver holds it (times in epoch
    microseconds: no time-zone conversion between Spark and Python)."""

    event_id: str
    user_id: int
    event_time: int
    partition: int
    offset: int
    kafka_timestamp: int | None

    @property
    def key(self) -> tuple[str, int]:
        """What makes two records the same purchase (see not_counted_before)."""
        return (self.event_id, self.event_time)


# a purchase with its bucket: the driver's half of a speed.purchases row (counted_rows adds
# the rest)
BUCKETED = StructType(
    [
        StructField("event_id", StringType(), False),
        StructField("user_id", LongType(), False),
        StructField("event_time_us", LongType(), False),
        StructField("partition", IntegerType(), False),
        StructField("offset", LongType(), False),
        StructField("kafka_timestamp_us", LongType(), True),
        StructField("age_bracket", StringType(), False),
        StructField("gender", StringType(), False),
        StructField("profile_found", BooleanType(), False),
    ]
)


# the driver's key of a counted purchase (Purchase.key), as a DataFrame's schema
PURCHASE_KEY = StructType(
    [StructField("event_id", StringType(), False), StructField("event_time_us", LongType(), False)]
)
# the columns of collected rows (with_epoch_micros) that make a Purchase, in its fields' order
PURCHASE_COLUMNS = (
    "event_id",
    "user_id",
    "event_time_us",
    "partition",
    "offset",
    "kafka_timestamp_us",
)


def with_epoch_micros(parsed: DataFrame) -> DataFrame:
    """Parsed rows with their times in epoch microseconds too, as the driver takes them."""
    return parsed.withColumns(
        {
            "event_time_us": F.unix_micros("event_time"),
            "kafka_timestamp_us": F.unix_micros("kafka_timestamp"),
        }
    )


def purchases_in(rows: pa.Table) -> list[Purchase]:
    """The valid purchases among parsed rows collected to the driver (with_epoch_micros)."""
    purchase = pc.and_(
        pc.is_null(rows["reason"]), pc.equal(rows["action_type"], contracts.ACTION_PURCHASE)
    )
    found = rows.filter(purchase)  # a null (a profile's action_type) does not select
    columns = [found[name].to_pylist() for name in PURCHASE_COLUMNS]
    return [Purchase(*row) for row in zip(*columns, strict=True)]


def first_per_key(purchases: Iterable[Purchase]) -> list[Purchase]:
    """One purchase per key (event_id, event_time), the rule across micro-batches too, so the
    count never depends on where micro-batches split: the earliest Kafka record (by partition,
    offset) of a key wins."""
    first: dict[tuple[str, int], Purchase] = {}
    for purchase in purchases:
        seen = first.get(purchase.key)
        if seen is None or (purchase.partition, purchase.offset) < (seen.partition, seen.offset):
            first[purchase.key] = purchase
    return list(first.values())


def not_counted_before(
    purchases: Iterable[Purchase], counted: Container[tuple[str, int]]
) -> list[Purchase]:
    """Purchases whose (event_id, event_time) is not among the keys counted before
    (speed.purchases).

    A duplicate as Flume produces it is the same line delivered again, so it carries the same
    event_time: keying on both lets the caller look up only the counted keys of the batch's
    event-time range, whatever the table's size. Two different records sharing an event_id at
    different times both count (reconciliation names them speed_duplicate).
    """
    return [p for p in purchases if p.key not in counted]


def assign_buckets(
    purchases: Iterable[Purchase], buckets: Mapping[int, tuple[str, str]]
) -> list[tuple]:
    """Purchases + the users' (age bracket, gender) known now -> rows of BUCKETED.

    A purchase whose user has no profile yet is counted under unknown/unknown and flagged
    (profile_found = false), so reconciliation can explain it when the profile arrives later.
    """
    unknown = (contracts.UNKNOWN, contracts.UNKNOWN)
    rows = []
    for p in purchases:
        bucket = buckets.get(p.user_id)
        rows.append((*p, *(bucket or unknown), bucket is not None))
    return rows


def counted_rows(bucketed: DataFrame, batch_id: int, counted_at: Column | None = None) -> DataFrame:
    """Rows of BUCKETED -> rows of speed.purchases (schemas.SPEED_PURCHASES): the event time's
    date and minute as Spark (session time zone UTC) computes them everywhere else."""
    event_time = F.timestamp_micros("event_time_us")
    return bucketed.select(
        "event_id",
        "user_id",
        event_time.alias("event_time"),
        F.to_date(event_time).alias("event_date"),
        F.date_trunc("minute", event_time).alias("window_start"),
        "age_bracket",
        "gender",
        "profile_found",
        "partition",
        "offset",
        F.timestamp_micros("kafka_timestamp_us").alias("kafka_timestamp"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        (F.current_timestamp() if counted_at is None else counted_at).alias("counted_at"),
    )


def profiles_to_store(latest: DataFrame, stored: DataFrame) -> DataFrame:
    """The rows of ``latest`` (parsing.latest_profiles) speed.user_profiles must take: a user's
    first profile, or one newer than the stored one (by updated_at, then Kafka position, as
    latest_profiles orders them) that changes it.

    An older profile, as a backlog read after preload brings, and an identical one sent again
    are left out, so they cost no write.
    """
    position = F.struct("updated_at", "partition", "offset")
    content = F.struct("age_range", "gender", "updated_at")
    current = stored.select("user_id", position.alias("_position"), content.alias("_content"))
    known = F.col("_position").isNotNull()
    newer = ~known | ((position > F.col("_position")) & ~content.eqNullSafe(F.col("_content")))
    return latest.join(current, "user_id", "left").where(newer).select(*latest.columns)


def latest_users_sql(profiles: str) -> str:
    """SQL of the latest stored profile per user over a table of stored profile versions
    (speed.user_profiles): the body of the view speed.users. Newest by updated_at, then Kafka
    position, the order profiles_to_store stores them in. Spark's and DuckDB's SQL (the
    dashboard runs the views too): ``partition`` and ``offset`` are keywords, named qualified."""
    columns = ", ".join(f"v.{c}" for c in schemas.USERS.fieldNames())
    return f"""
        SELECT {columns}
        FROM (
            SELECT p.*,
                   ROW_NUMBER() OVER (
                       PARTITION BY p.user_id
                       ORDER BY p.updated_at DESC, p.partition DESC, p.offset DESC
                   ) AS _newest
            FROM {profiles} AS p
        ) AS v
        WHERE v._newest = 1"""


def orders_by_window_sql(purchases: str) -> str:
    """SQL of orders per (1-minute event-time window, age bracket, gender) over a table or view
    of counted purchases (speed.purchases); the body of the view
    speed.orders_by_age_gender_1m."""
    return f"""
        SELECT window_start,
               window_start + INTERVAL 1 MINUTE AS window_end,
               event_date,
               age_bracket,
               gender,
               COUNT(*) AS orders,
               MAX(counted_at) AS updated_at
        FROM {purchases}
        GROUP BY window_start, event_date, age_bracket, gender"""
