"""The warm Spark: a Spark Connect server every batch job, validation and query attaches to.

Started by `orderlake up` as the supervised component `spark`: Spark's own Connect server
(org.apache.spark.sql.connect.service.SparkConnectServer, shipped in pyspark's jars) run with
spark-submit from pyspark's distribution, configured like every lake session (spark.py's
session_conf: Delta's SQL extension and catalog, the Kafka source jars) and bound to
ORDERLAKE_BIND_HOST:ORDERLAKE_SPARK_CONNECT_PORT. Its driver runs on ORDERLAKE_SPARK_MASTER:
`local[2]` in the embedded default, the standalone master in a cluster.

In cluster mode (ORDERLAKE_SPARK_CONNECT_AUTH_DIR set) the server listens on loopback only and
demands a bearer token, behind a TLS gate on the public address (stack/connect_gate.py).

Jobs come and go as Connect sessions (spark.connect); the JVM, its compiled code and its caches
stay, so a batch step pays no JVM start. The FAIR scheduler lets an analyst's query run beside
a long batch job instead of queueing behind it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from orderlake import jvm
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack.supervisor import Program

NAME = "spark"
MAIN_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def spark_home() -> Path:
    """pyspark's own Spark distribution (bin/spark-submit, jars/)."""
    import pyspark

    return Path(pyspark.__file__).parent


def command(settings: Settings, bind: tuple[str, int] | None = None) -> list[str]:
    """spark-submit of the Connect server with the lake's session configuration, listening on
    ``bind`` (default ORDERLAKE_BIND_HOST:ORDERLAKE_SPARK_CONNECT_PORT)."""
    from orderlake.spark import session_conf

    host, port = bind or (settings.bind_host, settings.spark_connect_port)
    conf = {
        **session_conf(settings, settings.spark_server_memory),
        "spark.app.name": "orderlake-spark",
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        # concurrent sessions share the cores instead of queueing behind one another
        "spark.scheduler.mode": "FAIR",
    }
    argv = [str(spark_home() / "bin" / "spark-submit"), "--class", MAIN_CLASS]
    argv += ["--driver-memory", settings.spark_server_memory]
    for key, value in sorted(conf.items()):
        argv += ["--conf", f"{key}={value}"]
    return [*argv, "spark-internal"]


def environment(settings: Settings) -> dict[str, str]:
    java = jvm.java_executable(settings.java_home)
    return {
        "JAVA_HOME": str(Path(java).resolve().parents[1]),
        "SPARK_HOME": str(spark_home()),
        # Python workers (a UDF, createDataFrame from rows) use this interpreter
        "PYSPARK_PYTHON": sys.executable,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def program(settings: Settings) -> Program:
    """The server; with ORDERLAKE_SPARK_CONNECT_AUTH_DIR, the server behind its TLS gate
    (stack/connect_gate.py), which starts it."""
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    secured = settings.spark_connect_auth_dir is not None
    return Program(
        NAME,
        [sys.executable, "-m", "orderlake.stack.connect_gate"] if secured else command(settings),
        directory=settings.home,
        environment=environment(settings),
        startsecs=5,
        stopwaitsecs=60,
    )


def wait_ready(settings: Settings) -> None:
    """Block until a session can run a query (within ``spark_startup_limit_s``); register the
    lake's tables in its catalog."""
    from orderlake.spark import connect

    timeout = settings.spark_startup_limit_s
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(settings, "orderlake-up"):
                return
        except OrderlakeError:
            if time.monotonic() > deadline:
                raise OrderlakeError(
                    f"The Spark server did not answer at {settings.spark_connect_url} within "
                    f"{timeout:.0f} s; see {settings.logs_dir / (NAME + '.log')}."
                ) from None
            time.sleep(1)


def address(settings: Settings) -> dict:
    return {"url": settings.spark_connect_url, "master": settings.spark_master}
