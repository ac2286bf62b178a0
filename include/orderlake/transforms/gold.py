"""Silver -> gold: the paper's figures per day, and the serving view over both layers.

gold.orders_by_age_gender_daily: orders (purchases, action_type 2) per event date x age bracket
x gender and the share of the day's orders; a purchase whose user has no profile counts under
unknown/unknown. The view gold.orders_by_age_gender gives the best number available: batch-final
days from gold, the other days provisional from the speed layer, with a status column.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from orderlake import contracts


def daily_orders(
    actions: DataFrame,
    users: DataFrame,
    closed_through: date | None,
    computed_at: Column | None = None,
) -> DataFrame:
    """silver.user_actions + silver.users -> rows of gold.orders_by_age_gender_daily.

    ``closed_through``: days up to and including it are final (no more data is expected).
    """
    buckets = users.select(
        "user_id", F.col("age_bracket").alias("_bracket"), F.col("gender_label").alias("_gender")
    )
    day = Window.partitionBy("event_date")
    final = F.lit(False) if closed_through is None else F.col("event_date") <= F.lit(closed_through)
    return (
        actions.where(F.col("action_type") == contracts.ACTION_PURCHASE)
        .join(buckets, "user_id", "left")
        .select(
            "event_date",
            F.coalesce("_bracket", F.lit(contracts.UNKNOWN)).alias("age_bracket"),
            F.coalesce("_gender", F.lit(contracts.UNKNOWN)).alias("gender"),
        )
        .groupBy("event_date", "age_bracket", "gender")
        .agg(F.count("*").alias("orders"))
        .select(
            "event_date",
            "age_bracket",
            "gender",
            "orders",
            (F.col("orders") / F.sum("orders").over(day)).alias("share"),
            final.alias("final"),
            (F.current_timestamp() if computed_at is None else computed_at).alias("computed_at"),
            F.lit(None).cast("timestamp").alias("restated_at"),
            F.lit(None).cast("string").alias("restated_reason"),
        )
    )


def with_restatements(new: DataFrame, previous: DataFrame, at: Column | None = None) -> DataFrame:
    """New gold rows (daily_orders) of some days + the rows gold held for them -> the new rows
    saying when a day already final changed, and why: late data is counted, never dropped, and
    the restatement is visible (the serving view, the reconciliation).

    A day's restatement is kept by later runs that leave its orders as they are.
    """
    bucket = F.struct("age_bracket", "gender", "orders")
    before = previous.groupBy("event_date").agg(
        F.max(F.col("final").cast("int")).alias("_was_final"),
        F.sort_array(F.collect_list(bucket)).alias("_was"),
        F.sum("orders").alias("_was_orders"),
        F.max("restated_at").alias("_was_restated_at"),
        F.max_by("restated_reason", "restated_at").alias("_was_reason"),
    )
    after = new.groupBy("event_date").agg(
        F.sort_array(F.collect_list(bucket)).alias("_is"), F.sum("orders").alias("_is_orders")
    )
    days = before.join(after, "event_date")
    changed = (F.col("_was_final") == 1) & (F.col("_was") != F.col("_is"))
    reason = F.format_string(
        "recomputed after the day was final: %d -> %d orders (data that arrived late)",
        F.col("_was_orders"),
        F.col("_is_orders"),
    )
    now = F.current_timestamp() if at is None else at
    return (
        new.drop("restated_at", "restated_reason")
        .join(days, "event_date", "left")
        .withColumn("restated_at", F.when(changed, now).otherwise(F.col("_was_restated_at")))
        .withColumn("restated_reason", F.when(changed, reason).otherwise(F.col("_was_reason")))
        .select(*new.columns)
    )


def serving_view_sql(gold_daily: str, speed_1m: str) -> str:
    """SQL of gold.orders_by_age_gender: final days from gold, other days from the speed layer;
    ``restated_at`` and ``restated_reason`` say when and why a final day changed."""
    return f"""
        SELECT event_date, age_bracket, gender, orders, share,
               'final' AS status, computed_at AS as_of, restated_at, restated_reason
        FROM {gold_daily}
        WHERE final
        UNION ALL
        SELECT event_date, age_bracket, gender, orders,
               orders / SUM(orders) OVER (PARTITION BY event_date) AS share,
               'provisional' AS status, as_of,
               CAST(NULL AS TIMESTAMP) AS restated_at, CAST(NULL AS STRING) AS restated_reason
        FROM (
            SELECT event_date, age_bracket, gender, SUM(orders) AS orders,
                   MAX(updated_at) AS as_of
            FROM {speed_1m}
            GROUP BY event_date, age_bracket, gender
        )
        WHERE event_date NOT IN (SELECT event_date FROM {gold_daily} WHERE final)"""


def batch_only_view_sql(gold_daily: str) -> str:
    """SQL of gold.orders_by_age_gender when no speed layer runs: gold's days, final or not."""
    return f"""
        SELECT event_date, age_bracket, gender, orders, share,
               CASE WHEN final THEN 'final' ELSE 'provisional' END AS status,
               computed_at AS as_of, restated_at, restated_reason
        FROM {gold_daily}"""
