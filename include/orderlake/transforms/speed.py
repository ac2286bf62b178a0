"""Speed-layer transformations of one micro-batch: parsed actions -> counted purchases -> counts.

Pure DataFrame -> DataFrame functions; the streaming job (orderlake.jobs.speed) reads, joins with
the tables it keeps and writes. An order is a purchase (action_type 2) counted once per event_id.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from orderlake import contracts, schemas


def batch_purchases(parsed_actions: DataFrame) -> DataFrame:
    """Valid purchases of a micro-batch, one per event_id (the earliest Kafka record wins)."""
    first = F.min_by(
        F.struct("user_id", "event_time", "partition", "offset", "kafka_timestamp"),
        F.struct("partition", "offset"),
    )
    return (
        parsed_actions.where(
            F.col("reason").isNull() & (F.col("action_type") == contracts.ACTION_PURCHASE)
        )
        .groupBy("event_id")
        .agg(first.alias("p"))
        .select("event_id", "p.*")
    )


def not_counted_before(purchases: DataFrame, counted: DataFrame) -> DataFrame:
    """Purchases whose (event_id, event_time) is not among rows counted before (speed.purchases).

    A duplicate as Flume produces it is the same line delivered again, so it carries the same
    event_time: keying on both lets the caller read only the counted rows of the batch's
    event-time range, whatever the table's size. Two different records sharing an event_id at
    different times both count (reconciliation names them speed_duplicate).
    """
    keys = ["event_id", "event_time"]
    return purchases.join(counted.select(*keys), keys, "left_anti").select(*purchases.columns)


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


def assign_buckets(
    purchases: DataFrame, users: DataFrame, batch_id: int, counted_at: Column | None = None
) -> DataFrame:
    """Purchases + the users known now -> rows of speed.purchases (schemas.SPEED_PURCHASES).

    A purchase whose user has no profile yet is counted under unknown/unknown and flagged
    (profile_found = false), so reconciliation can explain it when the profile arrives later.
    """
    known = users.select(
        "user_id",
        F.col("age_bracket").alias("_bracket"),
        F.col("gender_label").alias("_gender"),
        F.lit(True).alias("_found"),
    )
    return purchases.join(known, "user_id", "left").select(
        "event_id",
        "user_id",
        "event_time",
        F.to_date("event_time").alias("event_date"),
        F.date_trunc("minute", "event_time").alias("window_start"),
        F.coalesce("_bracket", F.lit(contracts.UNKNOWN)).alias("age_bracket"),
        F.coalesce("_gender", F.lit(contracts.UNKNOWN)).alias("gender"),
        F.coalesce("_found", F.lit(False)).alias("profile_found"),
        "partition",
        "offset",
        "kafka_timestamp",
        F.lit(batch_id).cast("long").alias("batch_id"),
        (F.current_timestamp() if counted_at is None else counted_at).alias("counted_at"),
    )


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
