"""The lake on disk: where each Delta table lives, how sessions find it, how writers commit.

Layout: ``<ORDERLAKE_HOME>/lake/<database>/<table>`` for tables, ``<lake>/_checkpoints/<query>``
for streaming checkpoints. Every session registers what it finds there, so `database.table`
names work in any process. Writes that may be retried carry a Delta transaction id
(``Txn``): a retried micro-batch or task commits at most once per table.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from orderlake.errors import OrderlakeError
from orderlake.schemas import TABLES, TableSpec
from orderlake.settings import Settings
from orderlake.transforms import gold as gold_transforms
from orderlake.transforms import speed as speed_transforms

# Views are (re)created by every session from these definitions: {view: [(tables it reads,
# SQL), ...]}; the first alternative whose tables all exist is used.
VIEWS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "speed.users": [
        (("speed.user_profiles",), speed_transforms.latest_users_sql("speed.user_profiles")),
    ],
    "speed.orders_by_age_gender_1m": [
        (("speed.purchases",), speed_transforms.orders_by_window_sql("speed.purchases")),
    ],
    "gold.orders_by_age_gender": [
        (
            ("gold.orders_by_age_gender_daily", "speed.purchases"),
            gold_transforms.serving_view_sql(
                "gold.orders_by_age_gender_daily", "speed.orders_by_age_gender_1m"
            ),
        ),
        # a batch-only lake (no speed layer has run): gold alone
        (
            ("gold.orders_by_age_gender_daily",),
            gold_transforms.batch_only_view_sql("gold.orders_by_age_gender_daily"),
        ),
    ],
}


def table_path(settings: Settings, name: str) -> Path:
    database, table = name.split(".")
    return settings.lake_dir / database / table


def checkpoint_path(settings: Settings, query: str) -> Path:
    return settings.lake_dir / "_checkpoints" / query


def state_path(settings: Settings, name: str) -> Path:
    """``<lake>/_state/<name>``: what a writer leaves for the next one beside the tables (bronze's
    positions, the batch runs' cursors), each file tagged with the table version it describes."""
    return settings.lake_dir / "_state" / name


def write_state(path: Path, text: str) -> None:
    """Replace a state file whole: a reader finds the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def exists(settings: Settings, name: str) -> bool:
    return (table_path(settings, name) / "_delta_log").is_dir()


def latest_version(settings: Settings, name: str) -> int | None:
    """The table's newest version from its log's file names, without Spark (None: no table).
    Any commit, by any writer, creates the next ``<version>.json``."""
    log = table_path(settings, name) / "_delta_log"
    versions = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
    return max(versions, default=None)


def discovered_tables(settings: Settings) -> list[str]:
    """`database.table` for every Delta table under the lake directory."""
    found = []
    if settings.lake_dir.is_dir():
        for db_dir in sorted(settings.lake_dir.iterdir()):
            if db_dir.name.startswith(("_", ".")) or not db_dir.is_dir():
                continue
            for table_dir in sorted(db_dir.iterdir()):
                if (table_dir / "_delta_log").is_dir():
                    found.append(f"{db_dir.name}.{table_dir.name}")
    return found


# The names a catalog holds point at one lake; a global temporary view records which lake and
# which tables, so a session on a server that already registered them (every job on the warm
# Spark) checks them with one query instead of re-creating each.
_MARKER = "orderlake_lake"


def register_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Make every table found on disk, and the views whose tables exist, known by name.

    Cheap when nothing changed since the catalog last registered this lake (one query); tables
    that appeared since are added without touching the others, so a query running in another
    session never sees a name vanish. A catalog holding another lake's names (tests that switch
    lakes in one session) is re-pointed entirely.
    """
    names = discovered_tables(settings)
    lake_dir = str(settings.lake_dir)
    registered = _registered(spark)
    if registered == (lake_dir, names):
        return names
    if registered is None or registered[0] != lake_dir:
        for name in names:
            _register(spark, settings, name)
    else:
        for name in sorted(set(names) - set(registered[1])):
            _register(spark, settings, name)
    register_views(spark, set(names))
    spark.sql(
        f"CREATE OR REPLACE GLOBAL TEMPORARY VIEW {_MARKER} AS SELECT "
        f"{_literal(lake_dir)} AS lake, {_literal(','.join(names))} AS tables"
    )
    return names


def _registered(spark: SparkSession) -> tuple[str, list[str]] | None:
    """(lake directory, table names) the catalog registered last, None when none."""
    # asked first: a failed SELECT is logged by Spark as an ERROR with its stack trace
    if not spark.catalog.tableExists(f"global_temp.{_MARKER}"):
        return None
    try:
        row = spark.sql(f"SELECT lake, tables FROM global_temp.{_MARKER}").first()
    except PySparkException:  # dropped in between by another session's registration
        return None
    return (row["lake"], [n for n in row["tables"].split(",") if n]) if row else None


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def register_views(spark: SparkSession, existing: set[str]) -> None:
    for view, alternatives in VIEWS.items():
        for needs, sql in alternatives:
            if set(needs) <= existing:
                spark.sql(f"CREATE DATABASE IF NOT EXISTS {view.split('.')[0]}")
                _create(spark, f"CREATE OR REPLACE VIEW {view} AS {sql}")
                break


def _create(spark: SparkSession, statement: str) -> None:
    """Run a CREATE that another session may be running at the same moment (jobs started
    together on a fresh server each register the lake): the catalog's replace is a drop and a
    create, so one of them can find the name taken; it is there, as wanted."""
    try:
        spark.sql(statement)
    except PySparkException as exc:
        if "TABLE_OR_VIEW_ALREADY_EXISTS" not in str(exc):
            raise


def _register(spark: SparkSession, settings: Settings, name: str) -> None:
    database = name.split(".")[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    # re-creating the entry makes the name point at this lake even if the catalog registered
    # another lake's table before (tests)
    forget(spark, name)
    _create(spark, f"CREATE TABLE {name} USING DELTA LOCATION '{table_path(settings, name)}'")


def forget(spark: SparkSession, name: str) -> None:
    """Drop the catalog entry of a table or view; a table's files stay (external). Another
    session may drop it in between: IF EXISTS."""
    if spark.catalog.tableExists(name):
        try:
            kind = "VIEW" if spark.catalog.getTable(name).tableType == "VIEW" else "TABLE"
        except PySparkException:  # gone since tableExists
            return
        spark.sql(f"DROP {kind} IF EXISTS {name}")


def ensure_tables(spark: SparkSession, settings: Settings, specs: list[TableSpec | str]) -> None:
    """Create the tables that do not exist (empty, with their declared schema, partitioning and
    properties, all in the first commit) and register them by name."""
    for spec in specs:
        spec = TABLES[spec] if isinstance(spec, str) else spec
        path = table_path(settings, spec.name)
        if not exists(settings, spec.name):
            spark.sql(create_statement(spec, path))
        elif spec.properties:  # a table created before its properties were declared
            _set_properties(spark, path, dict(spec.properties))
    register_tables(spark, settings)


def create_statement(spec: TableSpec, path: Path) -> str:
    """The CREATE TABLE of an empty table at ``path``: one commit, where a DataFrame write of no
    rows and then SET TBLPROPERTIES took two and a DESCRIBE (a fresh lake's first start paid
    for each table). Columns are nullable, as a DataFrame write creates them: a schema's NOT
    NULL is the writers' contract here, not a Delta constraint."""
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in spec.schema.fields)
    statement = f"CREATE TABLE IF NOT EXISTS delta.`{path}` ({columns}) USING DELTA"
    if spec.partition_by:
        statement += " PARTITIONED BY (" + ", ".join(f"`{c}`" for c in spec.partition_by) + ")"
    if spec.properties:
        assignments = ", ".join(f"'{key}' = '{value}'" for key, value in spec.properties)
        statement += f" TBLPROPERTIES ({assignments})"
    return statement


def ensure_table(spark: SparkSession, settings: Settings, spec: TableSpec | str) -> str:
    """``ensure_tables`` for one table; returns its name."""
    ensure_tables(spark, settings, [spec])
    return TABLES[spec].name if isinstance(spec, str) else spec.name


def sql_name(settings: Settings, name: str) -> str:
    """The table as Delta's SQL names it by path (delta.`/lake/db/table`): a statement works
    whatever the session's catalog holds."""
    return f"delta.`{table_path(settings, name)}`"


def _set_properties(spark: SparkSession, path: Path, wanted: dict[str, str]) -> None:
    """Give the table these TBLPROPERTIES, also when it was created without them (a commit
    only when one differs)."""
    detail = one_row(spark.sql(f"DESCRIBE DETAIL delta.`{path}`"), f"DESCRIBE DETAIL of {path}")
    current = detail["properties"]
    if all(current.get(key) == value for key, value in wanted.items()):
        return
    assignments = ", ".join(f"'{key}' = '{value}'" for key, value in wanted.items())
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")


def last_commit(spark: SparkSession, settings: Settings, name: str) -> dict:
    """The table's newest history entry (version, operation, operationMetrics, ...)."""
    row = spark.sql(f"DESCRIBE HISTORY {sql_name(settings, name)} LIMIT 1").first()
    return row.asDict(recursive=True) if row else {}


def merge(
    spark: SparkSession, settings: Settings, name: str, source: DataFrame, statement: str
) -> dict[str, int]:
    """MERGE ``source`` into a table: ``statement`` is the part after ``USING ... AS s``
    (``ON ... WHEN ...``), the table is ``t``. Returns Delta's counts (num_inserted_rows, ...).

    The same SQL runs in an in-process session and over Spark Connect, where Delta's Python
    DeltaTable API needs a server plugin that is not published for this Spark line.
    """
    view = f"merge_source_{uuid.uuid4().hex[:12]}"
    source.createOrReplaceTempView(view)
    try:
        row = spark.sql(
            f"MERGE INTO {sql_name(settings, name)} AS t USING {view} AS s {statement}"
        ).first()
    finally:
        spark.catalog.dropTempView(view)
    return {key: int(value) for key, value in row.asDict().items()} if row else {}


@dataclass(frozen=True)
class Txn:
    """A Delta transaction identifier: (application id, monotonically increasing version).

    Delta records the highest version committed per application id in each table and skips a
    write whose version is not higher, which makes a retried micro-batch idempotent.
    """

    app_id: str
    version: int


def read(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    """The current version of a table, read by path (no catalog needed)."""
    return spark.read.format("delta").load(str(table_path(settings, name)))


def detached(df: DataFrame) -> DataFrame:
    """``df`` computed now and kept without its lineage, as the input of a Delta write: safe
    when the write replaces rows the input reads, and cheaper when the input reads Delta tables.

    A Delta write plans its input again; an input that still reads Delta tables would list
    their files a second time (Delta's "Filtering files for query" jobs in every speed-layer
    micro-batch). Blocks live on the executors until the DataFrame is
    garbage-collected in the driver.
    """
    return df.localCheckpoint()


def collected(df: DataFrame) -> list[tuple]:
    """The rows of ``df`` in the driver as plain tuples, through Arrow (Row objects cost a
    pickle round trip per row: 500,000 counted keys took seconds)."""
    table = df.toArrow()
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def one_row(df: DataFrame, what: str) -> Row:
    """The first row of a query that always returns one (an aggregate without GROUP BY,
    DESCRIBE DETAIL, OPTIMIZE); ``what`` names the query in the error raised if it returned none.

        cursor = one_row(bronze.agg(F.max("load_id")), "the newest bronze load")[0] or 0
    """
    row = df.first()
    if row is None:
        raise OrderlakeError(
            f"Spark returned no row for {what}, a query that always returns one: "
            "the session or the table is broken; see the Spark log."
        )
    return row


def local_frame(spark: SparkSession, rows: list[tuple], schema: StructType) -> DataFrame:
    """A DataFrame of rows the driver holds, handed to Spark through Arrow: no Python worker
    processes (createDataFrame of a list starts them, which costs more than the rows)."""
    arrow_schema = to_arrow_schema(schema)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(columns, arrow_schema, strict=True)
    ]
    table = pa.Table.from_arrays(arrays, schema=arrow_schema)
    return spark.createDataFrame(table, schema=schema)


def overwrite(
    df: DataFrame, settings: Settings, name: str, replace_where: str | None = None
) -> None:
    """Replace the whole table, or only the rows matching ``replace_where`` (idempotent)."""
    writer = _clustered(df, name).write.format("delta").mode("overwrite")
    if replace_where is not None:
        writer = writer.option("replaceWhere", replace_where)
    writer.save(str(table_path(settings, name)))


def append(df: DataFrame, settings: Settings, name: str, txn: Txn | None = None) -> None:
    """Append rows to a table; with a Txn the append happens at most once per table."""
    writer = _clustered(df, name).write.format("delta").mode("append")
    if txn is not None:
        writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
    writer.save(str(table_path(settings, name)))


def _clustered(df: DataFrame, name: str) -> DataFrame:
    """``df`` with each value of the table's partition columns in one task when the table asks
    for it (``cluster_writes``), so a write adds one file per partition rather than one per
    task and partition (16 x 186 event dates for a half-year replay into silver: thousands of
    tiny files that every later read lists and opens). Bronze does not: its Kafka-partition
    tasks touch a few days each, and the shuffle made its loads slower (bench/results/batch.md)."""
    spec = TABLES.get(name)
    if spec is None or not spec.cluster_writes:
        return df
    return df.repartition(*spec.partition_by)


@contextlib.contextmanager
def transaction(spark: SparkSession, txn: Txn | None) -> Iterator[None]:
    """Make the MERGE/UPDATE/DELETE statements inside idempotent for this Txn.

    Use one statement per table inside: Delta keys the check by (table, app id).
    """
    if txn is None:
        yield
        return
    spark.conf.set("spark.databricks.delta.write.txnAppId", txn.app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(txn.version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")
