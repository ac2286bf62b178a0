"""The one place Spark sessions come from: a warm Spark Connect session for batch work and
queries, and an in-process session for the always-on speed layer.

Every batch job, validation, reconciliation, replay, maintenance run and `orderlake sql`
attaches to the platform's Spark Connect server (the `spark` component of `orderlake up`;
stack/spark_server.py starts it): a session there costs a fraction of starting a JVM of its
own (bench/results/warm-spark.md). Each job gets a session of its own; sessions share only the
lake's tables. The speed layer keeps its own JVM (``get_spark``): it is one long application
whose micro-batches must not wait behind batch work.

Both kinds of session are configured from ``session_conf`` (Delta, the Kafka source jars, the
lake's catalog, small-machine defaults), and both see the lake's tables as `database.table`
(lake.register_tables: from the lake's directory layout, no shared metastore).

Example::

    with connect(Settings.from_env(), "orderlake-sql") as spark:
        spark.sql("SELECT * FROM speed.orders_by_age_gender_1m").show()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, cast

import grpc
from pyspark.errors import PySparkException
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql import SparkSession

from orderlake import jvm, procs, supervised
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

SERVER_COMPONENT = "spark"  # the warm Spark's component (and supervisord program) name

LOG4J2 = """\
# orderlake: quiet Spark logs (warnings and errors only)
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
# the Connect server says where it listens, once
logger.connect_server.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.connect_server.level = info
"""


def log4j2_file(settings: Settings) -> Path:
    path = settings.run_dir / "spark-log4j2.properties"
    if not path.exists() or path.read_text() != LOG4J2:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LOG4J2)
    return path


def session_conf(settings: Settings, driver_memory: str) -> dict[str, str]:
    """Spark configuration of a session over the lake, for the speed layer's own JVM and for
    the Connect server alike."""
    log4j = log4j2_file(settings)
    # the driver's and a cluster's executors' JVM options
    jvm_options = [
        f"-XX:CompileThresholdScaling={settings.spark_jit_scaling:g}",
        *jvm.class_archive_options("spark"),
    ]
    return {
        "spark.master": settings.spark_master,
        "spark.driver.memory": driver_memory,
        "spark.jars": ",".join(jvm.spark_extra_jars()),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # each session registers the lake's tables from its directories (lake.register_tables):
        # an embedded Derby metastore would admit one JVM at a time
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(settings.lake_dir / "_warehouse"),
        "spark.sql.session.timeZone": "UTC",
        # enough shuffle partitions for a full rebuild to fit in memory; adaptive execution
        # coalesces them for small inputs
        "spark.sql.shuffle.partitions": "16",
        "spark.default.parallelism": "4",
        # Delta reads its log with this many partitions: the default 50 is for clusters
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.autoCompact.enabled": "false",
        # VACUUM lists a table with this many tasks: the default 10,000 is for clusters
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
        # Delta 4.4 ignores VACUUM's RETAIN hours unless this is off; the VACUUM guard
        # (jobs/maintenance.py) decides a retention and relies on it being honoured
        "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # -XX:-DontCompileHugeMethods: Spark's generated code for the contract parse is one
        # method over HotSpot's 8,000-byte JIT limit, which otherwise runs interpreted
        "spark.driver.extraJavaOptions": " ".join(
            [
                f"-Dlog4j2.configurationFile=file:{log4j}",
                "-XX:-DontCompileHugeMethods",
                *jvm_options,
            ]
        ),
        "spark.local.dir": str(settings.home / "spark-tmp"),
        "spark.executor.extraJavaOptions": " ".join(jvm_options),
    }


def _python_env(settings: Settings) -> None:
    # the Python workers must be this interpreter, whatever `python` is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java = jvm.java_executable(settings.java_home)
    os.environ.setdefault("JAVA_HOME", str(Path(java).resolve().parents[1]))


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
    """Build (or return the active) SparkSession in this process, configured for the lake: the
    speed layer's and the tests' own JVM. Batch work attaches to the warm server (``connect``).

    ``register=False`` skips registering the lake's tables (a job that creates them first);
    ``quiet=True`` sends the JVM's own output to ORDERLAKE_HOME/logs/spark-<app>.log.
    """
    _python_env(settings)
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name)
    wanted = {**session_conf(settings, settings.spark_driver_memory), **(conf or {})}
    for key, value in wanted.items():
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


def server_down(settings: Settings, why: str) -> OrderlakeError:
    """The one sentence every job and `orderlake sql` gives when the warm Spark is missing."""
    how = (
        "start it with `orderlake up` (or `orderlake up --only spark`)"
        if settings.env == "local"
        else "check the spark-connect service of the cluster"
    )
    return OrderlakeError(
        f"The Spark server (component `{SERVER_COMPONENT}`) does not answer at "
        f"{settings.spark_connect_url} ({why}); {how}."
    )


def _reachable(settings: Settings, timeout: float = 3.0) -> str | None:
    """None when the server's port accepts a connection, else why not. The Connect client
    itself retries an unreachable server for minutes; a job should fail in seconds."""
    try:
        with socket.create_connection(
            (settings.spark_connect_host, settings.spark_connect_port), timeout=timeout
        ):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _wait_while_starting(settings: Settings, why: str) -> str | None:
    """A job that comes while `orderlake up` or `orderlake restart spark` brings the server up
    waits for it (within the server's readiness limit) instead of failing; a server that is
    not running fails the job at once. None once it answers, else why it does not."""
    deadline = time.monotonic() + settings.spark_startup_limit_s  # a server in a crash loop
    told = False
    while (up := _starting_for(settings)) is not None and time.monotonic() < deadline:
        if not told:
            logging.getLogger(__name__).info("the Spark server is starting (%.0f s): waiting", up)
            told = True
        time.sleep(1.0)
        if (why_now := _reachable(settings)) is None:
            return None
        why = why_now
    return why


def _starting_for(settings: Settings) -> float | None:
    """Seconds since this home's supervisord (re)started the server, while it has not yet been
    up for its readiness limit; None when supervisord does not run it here (stopped, failed,
    or a server elsewhere, as in a cluster)."""
    info = supervised.processes(settings).get(SERVER_COMPONENT)
    if not info or info.get("statename") not in ("STARTING", "RUNNING"):
        return None
    up = float(info.get("now", time.time())) - float(info.get("start") or 0)
    return up if up < settings.spark_startup_limit_s else None


# Each process's Connect session, recorded while it lives: the server keeps running what a
# killed client asked for (a batch load would go on and commit after its client, and the file
# lock it held, are gone), so the next session started on this host interrupts the sessions of
# processes that no longer run before it does anything.
def _sessions_dir(settings: Settings) -> Path:
    return settings.run_dir / "spark-sessions"


class _ConnectSession(Protocol):
    """What a Spark Connect session has beyond pyspark's classic SparkSession stub, the type
    ``SparkSession.builder.remote(...).create()`` is declared to return."""

    @property
    def session_id(self) -> str: ...


def _record_session(settings: Settings, spark: SparkSession, app_name: str) -> Path:
    session_id = cast(_ConnectSession, spark).session_id  # a Connect session (``connect``)
    path = _sessions_dir(settings) / f"{session_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "session_id": session_id,
        "pid": os.getpid(),
        "start": procs.process_start(os.getpid()),
        "host": socket.gethostname(),
        "app": app_name,
    }
    path.write_text(json.dumps(doc))
    return path


def interrupt_orphans(settings: Settings) -> list[str]:
    """Interrupt and release the server sessions of dead processes of this host; returns the
    apps whose work was interrupted."""
    found = []
    for path in sorted(_sessions_dir(settings).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("host") != socket.gethostname() or procs.still_running(
            doc["pid"], doc.get("start")
        ):
            continue
        with contextlib.suppress(PySparkException, ValueError):
            orphan = _remote(settings, session_id=doc["session_id"])
            if orphan.interruptAll():
                found.append(doc.get("app", "?"))
            orphan.stop()  # releases the session on the server
        path.unlink(missing_ok=True)
    return found


def _remote(settings: Settings, **params: str) -> SparkSession:
    """A new session on the warm server: in cluster mode through its TLS gate, trusting the
    cluster's CA and with the server's token (orderlake.connect_auth)."""
    url = f"{settings.spark_connect_url}/;" + ";".join(f"{k}={v}" for k, v in params.items())
    if settings.spark_connect_auth_dir is None:
        return SparkSession.builder.remote(url).create()
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    from orderlake import connect_auth

    channel = connect_auth.channel_builder(url, settings.spark_connect_auth_dir)
    # what SparkSession.builder.remote() sets: pyspark.sql.functions and DataFrame helpers
    # dispatch to their Connect implementations only while it is set
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    return cast(SparkSession, RemoteSparkSession.builder.channelBuilder(channel).create())


@contextlib.contextmanager
def connect(settings: Settings, app_name: str, *, register: bool = True) -> Iterator[SparkSession]:
    """A new session on the warm Spark Connect server, stopped when the block ends.

    Fails in one sentence naming the `spark` component when the server is down or refuses.
    Work left on the server by a killed client of this host is interrupted first.
    ``register=False`` skips registering the lake's tables in the server's catalog.
    """
    why = _reachable(settings)
    if why is not None:
        why = _wait_while_starting(settings, why)
    if why is not None:
        raise server_down(settings, why)
    # pyspark logs a failed query's error, and the Connect client a retried call's gRPC error:
    # the user gets one sentence from the caller instead
    for logger in ("SQLQueryContextLogger", "pyspark.sql.connect.client.logging"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    try:
        # the application's name travels as the client's user agent (the server's logs show it)
        spark = _remote(settings, user_agent=app_name)
        spark.sql("SELECT 1").collect()
    except PySparkException as exc:
        if (
            isinstance(exc, SparkConnectGrpcException)
            and exc.getGrpcStatusCode() == grpc.StatusCode.UNAUTHENTICATED
        ):
            raise OrderlakeError(
                f"The Spark server at {settings.spark_connect_url} refused this client's token; "
                f"use the spark-connect.token of the cluster's secrets in "
                f"ORDERLAKE_SPARK_CONNECT_AUTH_DIR ({settings.spark_connect_auth_dir})."
            ) from None
        raise server_down(settings, str(exc).strip().splitlines()[0][:200]) from None
    record = _record_session(settings, spark, app_name)
    try:
        for app in interrupt_orphans(settings):
            logging.getLogger(__name__).warning("interrupted what a killed %s left running", app)
        if register:
            from orderlake import lake

            lake.register_tables(spark, settings)
        yield spark
    finally:
        # a Connect session holds gRPC threads that keep the process alive until stopped
        with contextlib.suppress(Exception):
            spark.stop()
        record.unlink(missing_ok=True)
