"""Kafka records <-> bronze.kafka_records rows, losslessly.

Bronze keeps every record of every topic as it came: the value as text when it is UTF-8, and the
raw bytes only when it is not, so an analyst can read bronze with SQL and nothing is lost.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def to_bronze(records: DataFrame, load_id: int, ingested_at: Column | None = None) -> DataFrame:
    """Spark Kafka-source rows -> bronze rows (schemas.BRONZE_RECORDS) of one load."""
    utf8 = F.expr("is_valid_utf8(value)")
    return records.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.to_date("timestamp").alias("kafka_date"),
        F.col("key").cast("string").alias("key"),
        F.when(utf8, F.col("value").cast("string")).alias("value"),
        F.when(~utf8, F.col("value")).alias("value_bytes"),
        F.lit(load_id).cast("long").alias("load_id"),
        (F.current_timestamp() if ingested_at is None else ingested_at).alias("ingested_at"),
    )


def as_kafka_records(bronze: DataFrame) -> DataFrame:
    """Bronze rows -> the Kafka-source shape the contract parsers read, plus load_id."""
    return bronze.select(
        "topic",
        "partition",
        "offset",
        F.col("kafka_timestamp").alias("timestamp"),
        F.col("key").cast("binary").alias("key"),
        F.coalesce("value_bytes", F.col("value").cast("binary")).alias("value"),
        "load_id",
    )
