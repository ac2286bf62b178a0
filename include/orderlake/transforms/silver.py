"""Bronze records -> silver tables: typed actions (one per event_id), users, quarantine.

Pure functions; orderlake.jobs.batch reads bronze and writes silver. Parsing and the reason
codes are the speed layer's (orderlake.transforms.parsing), so both layers agree on what is bad.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from orderlake import schemas


def unique_actions(parsed_actions: DataFrame) -> DataFrame:
    """Valid parsed actions -> one row per event_id (schemas.SILVER_ACTIONS).

    Flume delivers at least once, so an event may arrive twice; the earliest Kafka record
    (lowest partition, offset) wins, the same rule as the speed layer's. The same record twice
    (a replay merges silver's row with the one it loaded again, under a new load id) keeps the
    earliest load's row: without that tie-break the pick, and so silver, would vary run to run.
    """
    columns = [
        c for c in schemas.SILVER_ACTIONS.fieldNames() if c not in ("event_id", "event_date")
    ]
    first = F.min_by(F.struct(*columns), F.struct("partition", "offset", "load_id"))
    return (
        parsed_actions.where(F.col("reason").isNull())
        .groupBy("event_id")
        .agg(first.alias("a"))
        .select("event_id", "a.*")
        .withColumn("event_date", F.to_date("event_time"))
        .select(*schemas.SILVER_ACTIONS.fieldNames())
    )


def edge_rejects(records: DataFrame, at: Column | None = None) -> DataFrame:
    """Kafka-shaped records of tmall.rejects (lines the Flume edge guard refused) -> quarantine
    rows with reason ``edge_<guard reason>``: edge_oversize, edge_invalid_utf8, edge_missing_key,
    edge_duplicate_key (``key_name`` in the detail names the field given twice).
    """
    text = F.when(F.expr("is_valid_utf8(value)"), F.col("value").cast("string"))
    guard_reason = F.get_json_object(text, "$.reason")
    detail = F.to_json(
        F.struct(
            F.get_json_object(text, "$.topic").alias("topic"),
            F.get_json_object(text, "$.file").alias("file"),
            F.get_json_object(text, "$.bytes").cast("long").alias("bytes"),
            F.get_json_object(text, "$.sha256").alias("sha256"),
            F.get_json_object(text, "$.key_name").alias("key_name"),
        )
    )
    return records.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("key"),
        "value",
        text.alias("value_text"),
        F.concat(F.lit("edge_"), F.coalesce(guard_reason, F.lit("unknown"))).alias("reason"),
        detail.alias("detail"),
        F.lit("silver").alias("layer"),
        (F.current_timestamp() if at is None else at).alias("quarantined_at"),
    )
