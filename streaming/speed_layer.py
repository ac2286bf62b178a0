"""Speed-layer entry point: tmall.user_profiles + tmall.user_actions -> speed.* Delta tables.

Runs until stopped. `orderlake up` starts it under supervisord (restarted if it dies); by hand:

    .venv/bin/python streaming/speed_layer.py            # always on
    .venv/bin/python streaming/speed_layer.py --once     # process what Kafka holds, then stop

The logic lives in orderlake.jobs.speed; this file only wires settings, session and query.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from py4j.protocol import Py4JError

from orderlake.errors import OrderlakeError
from orderlake.jobs.speed import app, progress
from orderlake.settings import Settings
from orderlake.spark import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="stop when caught up")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        app.hold_lock(settings)  # before the JVM: a second speed layer fails at once
        with progress.starting(settings) as phase:
            phase("spark session")
            conf = {
                **app.SESSION_CONF,
                "spark.driver.memory": settings.speed_driver_memory,
                "spark.sql.streaming.pollingDelay": f"{settings.speed_idle_poll_ms}ms",
            }
            spark = get_spark(settings, "orderlake-speed-layer", conf=conf)
            query = app.start(spark, settings, available_now=args.once, phase=phase)
    except OrderlakeError as exc:
        print(f"speed layer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    # SIGTERM (orderlake down) only sets a flag: calling into the JVM from the signal handler
    # while the main thread waits in the JVM is a re-entrant py4j call
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # awaitTermination re-raises the query's failure: non-zero exit, supervisord restarts
    try:
        while not query.awaitTermination(1):
            if stopping.is_set():
                query.stop()  # between micro-batches' commits
                break
    except (Py4JError, OSError):
        # supervisord signals the whole process group: the JVM got the SIGTERM too and its
        # shutdown hook is already stopping the query and the SparkContext (or the JVM is
        # gone and its gateway refuses the connection)
        if not stopping.is_set():
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
