"""quarantine.records + bronze.kafka_records -> suite `quarantine_rate`.

The share of bronze records the silver layer quarantined stays at or under
ORDERLAKE_DQ_MAX_QUARANTINE_RATE (default 0.01). A few malformed lines are normal; many mean
a producer or the parser broke, and silver is quietly missing data.
"""

from __future__ import annotations

from collections.abc import Mapping

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from orderlake.settings import Settings

NAME = "quarantine_rate"
TABLES = ("quarantine.records", "bronze.kafka_records")


def build(settings: Settings) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=NAME,
        expectations=[
            gxe.ExpectColumnValuesToBeBetween(
                column="rate", min_value=0, max_value=settings.dq_max_quarantine_rate
            ),
        ],
    )


def select(frames: Mapping[str, DataFrame]) -> DataFrame:
    """One row: bronze_records, quarantined (by silver), rate (0 for an empty bronze)."""
    quarantined = (
        frames["quarantine.records"]
        .where(F.col("layer") == "silver")
        .agg(F.count("*").alias("quarantined"))
    )
    bronze = frames["bronze.kafka_records"].agg(F.count("*").alias("bronze_records"))
    rate = F.when(F.col("bronze_records") > 0, F.col("quarantined") / F.col("bronze_records"))
    return bronze.crossJoin(quarantined).withColumn("rate", F.coalesce(rate, F.lit(0.0)))
