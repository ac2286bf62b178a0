"""Schemas as named constants, shared by parsers, writers and tests.

Every Delta table of the lake is declared once in ``TABLES`` (schema and partition columns);
writers create tables from here and tests build literal rows against the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
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
    # repartition a write's rows by partition_by first: worth a shuffle when the input's tasks
    # each span many partition values (silver: every task holds every event date)
    cluster_writes: bool = False
    # Delta table properties (TBLPROPERTIES) the table must have; ensure_table sets them
    properties: tuple[tuple[str, str], ...] = ()

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
    ("counted_at", TimestampType(), False),
)

# The speed layer commits to its tables every few seconds. Delta writes a checkpoint of a table's
# log every 10 commits by default, inside the commit: every tenth micro-batch took about twice
# as long, which set the p95 freshness. Every 100 commits keeps the log short enough for
# readers (at most 99 JSON commits to replay).
SPEED_TABLE_PROPERTIES = (("delta.checkpointInterval", "100"),)
# Every profile the speed layer stored: a user's first and each newer one that changed it. Only
# appended: a MERGE of changed profiles into a latest-per-user table rewrites files and took
# many times an append's time in a live micro-batch (bench/results/speed-profiles-ab.md). The
# latest per user is the view speed.users.
SPEED_USER_PROFILES = TableSpec(
    "speed.user_profiles",
    USERS,
    writer="streaming",
    comment="every stored profile version; the latest per user is the view speed.users",
    properties=SPEED_TABLE_PROPERTIES,
)
SPEED_QUARANTINE = TableSpec(
    "speed.quarantine",
    QUARANTINE,
    writer="streaming",
    comment="malformed records with a reason",
    properties=SPEED_TABLE_PROPERTIES,
)
# Speed tables are not partitioned: a micro-batch of a historical replay touches hundreds of
# event dates, and one file per date per batch would bury the tables in small files.
# speed.purchases is both the de-duplication set and the source of the per-minute counts (the
# view speed.orders_by_age_gender_1m): one append per micro-batch, so the two cannot disagree.
SPEED_PURCHASES_TABLE = TableSpec(
    "speed.purchases",
    SPEED_PURCHASES,
    writer="streaming",
    comment="one row per counted purchase, with the bucket it was counted under",
    properties=SPEED_TABLE_PROPERTIES,
)

SPEED_TABLES = (SPEED_USER_PROFILES, SPEED_QUARANTINE, SPEED_PURCHASES_TABLE)
TABLES: dict[str, TableSpec] = {t.name: t for t in SPEED_TABLES}

# --- batch layer -----------------------------------------------------------------------------
BRONZE_RECORDS = _struct(
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_timestamp", TimestampType(), True),
    ("kafka_date", DateType(), True),
    ("key", StringType(), True),
    ("value", StringType(), True),  # the record as text; null when it is not UTF-8
    ("value_bytes", BinaryType(), True),  # the raw bytes, kept only when value is not UTF-8
    ("load_id", LongType(), False),
    ("ingested_at", TimestampType(), False),
)

SILVER_ACTIONS = _struct(
    ("event_id", StringType(), False),
    ("user_id", LongType(), False),
    ("item_id", LongType(), False),
    ("cat_id", LongType(), False),
    ("seller_id", LongType(), False),
    ("brand_id", LongType(), True),
    ("action_type", IntegerType(), False),
    ("event_time", TimestampType(), False),
    ("event_date", DateType(), False),
    ("topic", StringType(), False),
    ("partition", IntegerType(), False),
    ("offset", LongType(), False),
    ("kafka_timestamp", TimestampType(), True),
    ("load_id", LongType(), False),
)

GOLD_DAILY = _struct(
    ("event_date", DateType(), False),
    ("age_bracket", StringType(), False),
    ("gender", StringType(), False),
    ("orders", LongType(), False),
    ("share", DoubleType(), False),  # of the day's orders
    ("final", BooleanType(), False),  # the day is closed: later data is not expected
    ("computed_at", TimestampType(), False),
    # set when a final day's orders changed because data arrived after it was closed
    ("restated_at", TimestampType(), True),
    ("restated_reason", StringType(), True),
)

BATCH_RUNS = _struct(
    ("layer", StringType(), False),
    ("run_id", StringType(), False),
    ("cursor_from", LongType(), False),
    ("cursor_to", LongType(), False),
    ("affected_dates", ArrayType(DateType()), False),
    ("rows_in", LongType(), False),
    ("rows_out", LongType(), False),
    ("duplicates_removed", LongType(), False),
    ("quarantined", LongType(), False),
    ("mode", StringType(), False),  # incremental | full | replay
    ("closed_through", DateType(), True),  # gold: days up to this one are final
    ("started_at", TimestampType(), False),
    ("finished_at", TimestampType(), False),
)

REPLAYS = _struct(
    ("replay_id", StringType(), False),
    ("topic", StringType(), False),
    ("range_from", StringType(), False),
    ("range_to", StringType(), False),
    ("offsets", StringType(), False),  # JSON {partition: [from, to)}
    ("layers", StringType(), False),
    ("records", LongType(), False),
    ("bronze_rows_added", LongType(), False),
    ("affected_dates", ArrayType(DateType()), False),
    ("status", StringType(), False),
    ("message", StringType(), True),
    ("started_at", TimestampType(), False),
    ("finished_at", TimestampType(), False),
)

RECONCILIATION = _struct(
    ("run_id", StringType(), False),
    ("checked_at", TimestampType(), False),
    ("check", StringType(), False),  # kafka_vs_bronze | bronze_vs_silver | speed_vs_batch
    ("scope", StringType(), False),  # e.g. tmall.user_actions/1 or 2015-11-11/25-29/female
    ("event_date", DateType(), True),
    ("expected", LongType(), False),
    ("actual", LongType(), False),
    ("difference", LongType(), False),  # expected - actual
    ("explained", LongType(), False),  # the part of the difference with a legitimate cause
    ("status", StringType(), False),  # ok | explained | failed
    ("detail", StringType(), True),  # JSON: what differs (offsets, event ids, causes)
    ("table_versions", StringType(), True),  # JSON {table: Delta version compared}
)

DQ_RESULTS = _struct(
    ("run_id", StringType(), False),
    ("validated_at", TimestampType(), False),
    ("suite", StringType(), False),
    ("table_name", StringType(), False),
    ("table_version", LongType(), True),
    ("expectation", StringType(), False),  # GX expectation type
    ("column", StringType(), True),
    ("success", BooleanType(), False),
    ("element_count", LongType(), True),
    ("unexpected_count", LongType(), True),
    ("observed", StringType(), True),  # JSON of GX's result
    ("data_docs", StringType(), True),  # path of the Data Docs page of this validation
)

BRONZE_TABLE = TableSpec(
    "bronze.kafka_records",
    BRONZE_RECORDS,
    partition_by=("topic", "kafka_date"),
    comment="one row per Kafka record of every topic, exactly once",
)
SILVER_ACTIONS_TABLE = TableSpec(
    "silver.user_actions",
    SILVER_ACTIONS,
    partition_by=("event_date",),
    cluster_writes=True,
    comment="one row per event_id: typed, de-duplicated user actions",
)
SILVER_USERS = TableSpec("silver.users", USERS, comment="latest profile per user")
QUARANTINE_TABLE = TableSpec(
    "quarantine.records", QUARANTINE, comment="records the batch layer could not use, with why"
)
GOLD_DAILY_TABLE = TableSpec(
    "gold.orders_by_age_gender_daily",
    GOLD_DAILY,
    comment="orders and share of the day per event date x age bracket x gender",
)
BATCH_RUNS_TABLE = TableSpec("ops.batch_runs", BATCH_RUNS, comment="one row per batch layer run")
REPLAYS_TABLE = TableSpec("ops.replays", REPLAYS, comment="one row per replay")
RECONCILIATION_TABLE = TableSpec(
    "ops.reconciliation", RECONCILIATION, comment="one row per reconciliation check and scope"
)
DQ_RESULTS_TABLE = TableSpec(
    "ops.dq_results", DQ_RESULTS, comment="one row per Great Expectations expectation result"
)

BATCH_TABLES = (
    BRONZE_TABLE,
    SILVER_ACTIONS_TABLE,
    SILVER_USERS,
    QUARANTINE_TABLE,
    GOLD_DAILY_TABLE,
    BATCH_RUNS_TABLE,
    REPLAYS_TABLE,
    RECONCILIATION_TABLE,
    DQ_RESULTS_TABLE,
)
TABLES.update({t.name: t for t in BATCH_TABLES})
