"""The one SparkSession factory: Delta, the Kafka source jars, and the lake's tables by name.

Jobs and tests never call ``SparkSession.builder`` themselves. Each session registers the lake's
Delta tables (``<lake>/<database>/<table>``) and views in its own in-memory catalog, so any new
process (streaming job, batch job, `orderlake sql`) sees every table as ``database.table``
without a shared metastore (an embedded Derby metastore admits one JVM at a time).

Example::

    spark = get_spark(Settings.from_env(), "orderlake-sql")
    spark.sql("SELECT * FROM speed.orders_by_age_gender_1m").show()
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import SparkSession

from orderlake.settings import Settings
from orderlake.stack import jvm

LOG4J2 = """\
# orderlake: quiet Spark driver logs (warnings and errors only)
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{ISO8601} %-5p %c{1}: %m%n
logger.kafka.name = org.apache.kafka
logger.kafka.level = error
logger.delta_kernel.name = io.delta.kernel
logger.delta_kernel.level = error
# a killed query's restart logs the expected "already committed" skips at INFO only
logger.checkpoint.name = org.apache.spark.sql.execution.streaming.CheckpointFileManager
logger.checkpoint.level = error
# start-up chatter that says nothing actionable on a one-machine deployment
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
logger.sparkconf.name = org.apache.spark.SparkConf
logger.sparkconf.level = error
"""


def _log4j2_file(settings: Settings) -> Path:
    path = settings.run_dir / "spark-log4j2.properties"
    if not path.exists() or path.read_text() != LOG4J2:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LOG4J2)
    return path


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at a file while the JVM starts: the JVM keeps writing its logs
    there, and this process's stderr is restored for the user's messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def get_spark(
    settings: Settings,
    app_name: str,
    *,
    register: bool = True,
    conf: dict[str, str] | None = None,
    quiet: bool = False,
) -> SparkSession:
    """Build (or return the active) SparkSession configured for the lake.

    ``register=False`` skips registering the lake's tables (a job that creates them first);
    ``quiet=True`` sends the JVM's own output to ORDERLAKE_HOME/logs/spark-<app>.log so a
    command-line user sees only the command's answer.
    """
    # the Python workers must be this interpreter, whatever `python` is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java = jvm.java_executable(settings.java_home)
    os.environ.setdefault("JAVA_HOME", str(Path(java).resolve().parents[1]))
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    log4j = _log4j2_file(settings)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.jars", ",".join(jvm.spark_extra_jars()))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(settings.lake_dir / "_warehouse"))
        .config("spark.sql.session.timeZone", "UTC")
        # enough shuffle partitions for a full rebuild to fit in memory; adaptive execution
        # coalesces them for small inputs
        .config("spark.sql.shuffle.partitions", "16")
        .config("spark.default.parallelism", "4")
        # Delta reads its log with this many partitions: the default 50 is for clusters
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.databricks.delta.autoCompact.enabled", "false")
        # VACUUM lists a table with this many tasks: the default 10,000 is for clusters (82 s
        # for an empty table on 2 cores, 12 s with 4)
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "4")
        # Delta 4.4 ignores VACUUM's RETAIN hours unless this is off; the VACUUM guard
        # (jobs/maintenance.py) decides a retention and relies on it being honoured
        .config("spark.databricks.delta.vacuum.retentionWindowIgnore.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # -XX:-DontCompileHugeMethods: Spark's generated code for the contract parse is one
        # method over HotSpot's 8,000-byte JIT limit, so it ran interpreted (parse of 92,000
        # records 1.55 s -> 1.0-1.2 s with it)
        .config(
            "spark.driver.extraJavaOptions",
            f"-Dlog4j2.configurationFile=file:{log4j} -XX:-DontCompileHugeMethods",
        )
        .config("spark.local.dir", str(settings.home / "spark-tmp"))
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    if quiet:
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        with _stderr_to(settings.logs_dir / f"spark-{app_name}.log"):
            spark = builder.getOrCreate()
    else:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if register:
        from orderlake import lake

        lake.register_tables(spark, settings)
    return spark
