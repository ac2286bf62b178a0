"""Schemas as named constants, shared by parsers, writers and tests.

Every Delta table of the lake is declared once in ``TABLES`` (schema and partition columns);
writers create tables from here and tests build literal rows against the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _struct(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(name, dtype, nullable) for name, dtype, nullable in fields])  # type: ignore[arg-type]


# --- what the Kafka source delivers (Spark's Kafka source schema, the columns we use) -----------
KAFKA_RECORD = _struct(
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("timestamp", TimestampType(), True),
    ("key", BinaryType(), True),
    ("value", BinaryType(), True),
)

# --- parsed contract rows (DESIGN.md section 3) -----------------------------------------------
USER_ACTION = _struct(
    ("event_id", StringType(), False),
    ("user_id", LongType(), False),
    ("item_id", LongType(), False),
    ("cat_id", LongType(), False),
    ("seller_id", LongType(), False),
    ("brand_id", LongType(), True),
    ("action_type", IntegerType(), False),
    ("event_time", TimestampType(), False),
)

USER_PROFILE = _struct(
    ("user_id", LongType(), False),
    ("age_range", IntegerType(), True),
    ("gender", IntegerType(), True),
    ("updated_at", TimestampType(), False),
)

# Kafka coordinates carried along for lineage and quarantine
SOURCE_COLUMNS = _struct(
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_timestamp", TimestampType(), True),
)


@dataclass(frozen=True)
class TableSpec:
    """One Delta table of the lake: `database.table`, schema, partitioning, its one writer."""

    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    writer: str = "batch"
    comment: str = ""

    @property
    def database(self) -> str:
        return self.name.split(".")[0]

    @property
    def table(self) -> str:
        return self.name.split(".")[1]


USERS = _struct(
    ("user_id", LongType(), False),
    ("age_range", IntegerType(), True),
    ("gender", IntegerType(), True),
    ("age_bracket", StringType(), False),
    ("gender_label", StringType(), False),
    ("updated_at", TimestampType(), False),
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
)

QUARANTINE = _struct(
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_timestamp", TimestampType(), True),
    ("key", StringType(), True),
    ("value", BinaryType(), True),
    ("value_text", StringType(), True),
    ("reason", StringType(), False),
    ("detail", StringType(), True),
    ("layer", StringType(), False),
    ("quarantined_at", TimestampType(), False),
)

SPEED_PURCHASES = _struct(
    ("event_id", StringType(), False),
    ("user_id", LongType(), False),
    ("event_time", TimestampType(), False),
    ("event_date", DateType(), False),
    ("window_start", TimestampType(), False),
    ("age_bracket", StringType(), False),
    ("gender", StringType(), False),
    ("profile_found", BooleanType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_timestamp", TimestampType(), True),
    ("batch_id", LongType(), False),
)

ORDERS_1M = _struct(
    ("window_start", TimestampType(), False),
    ("window_end", TimestampType(), False),
    ("event_date", DateType(), False),
    ("age_bracket", StringType(), False),
    ("gender", StringType(), False),
    ("orders", LongType(), False),
    ("updated_at", TimestampType(), False),
)

SPEED_USERS = TableSpec("speed.users", USERS, writer="streaming", comment="latest profile per user")
SPEED_QUARANTINE = TableSpec(
    "speed.quarantine", QUARANTINE, writer="streaming", comment="malformed records with a reason"
)
# Speed tables are not partitioned: a micro-batch of a historical replay touches hundreds of
# event dates, and one file per date per batch would bury the tables in small files.
SPEED_PURCHASES_TABLE = TableSpec(
    "speed.purchases",
    SPEED_PURCHASES,
    writer="streaming",
    comment="one row per counted purchase (the de-duplication set) with the bucket it went to",
)
SPEED_ORDERS_1M = TableSpec(
    "speed.orders_by_age_gender_1m",
    ORDERS_1M,
    writer="streaming",
    comment="orders per 1-minute event-time window x age bracket x gender",
)

SPEED_TABLES = (SPEED_USERS, SPEED_QUARANTINE, SPEED_PURCHASES_TABLE, SPEED_ORDERS_1M)
TABLES: dict[str, TableSpec] = {t.name: t for t in SPEED_TABLES}
