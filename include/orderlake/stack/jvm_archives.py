"""Class-data archives of the three JVM programs, dumped once by ``make setup``.

    python -m orderlake.stack.jvm_archives [kafka] [flume] [spark]

Each program is started once in a scratch home as the platform starts it (a KRaft broker that
creates the topics, an edge agent tailing a spool line, a Spark session writing and reading a
Delta table) with ``-XX:ArchiveClassesAtExit``; the JVM writes the classes it loaded when it
exits. Every later start of that program maps the archive (jvm.class_archive_options) instead of
parsing and verifying those classes again: on two cores, where every start competes with the
running platform, class loading is much of what a start costs.

An archive is renamed into place only after the JVM exited and a second JVM mapped it with
``-Xshare:on`` (a torn archive would crash every JVM given it). A program whose jars change gets
a new archive from ``make setup`` (its Makefile rule depends on the jars' stamp); until then the
JVM finds the recorded jar sizes and times changed and ignores the old one.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orderlake import contracts, jvm, kafka_admin
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack import flume, kafka
from orderlake.stack.ports import free_port, in_use
from orderlake.workload.spool import SpoolWriter

PROGRAMS = ("kafka", "flume", "spark")
READY_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 120.0
# the Spark run, in a Python process of its own: the JVM is pyspark's child and dumps when
# that process ends the session and exits
SPARK_RUN = """
import sys
from orderlake.settings import Settings
from orderlake.spark import get_spark, session_conf
settings = Settings(home=sys.argv[1], spark_master="local[2]")
options = session_conf(settings, "1g")["spark.driver.extraJavaOptions"]
conf = {"spark.driver.extraJavaOptions": f"{options} -XX:ArchiveClassesAtExit={sys.argv[2]}"}
spark = get_spark(settings, "orderlake-class-archive", register=False, conf=conf, quiet=True)
table = f"{sys.argv[1]}/table"
spark.range(1000).selectExpr("id", "id % 7 AS day").write.format("delta").save(table)
spark.read.format("delta").load(table).groupBy("day").count().collect()
jvm = spark.sparkContext._jvm
print("jvm-pid", jvm.java.lang.ProcessHandle.current().pid(), flush=True)
print("jvm-classpath", jvm.java.lang.System.getProperty("java.class.path"), flush=True)
spark.stop()
"""


def _with_dump(command: list[str], archive: Path) -> list[str]:
    return [command[0], f"-XX:ArchiveClassesAtExit={archive}", *command[1:]]


def _wait(ready: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise OrderlakeError(f"{what} did not start while dumping its class archive.")
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, as supervisord stops it: the JVM runs its shutdown hooks, then dumps."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=EXIT_TIMEOUT_S)


def _dump_kafka(settings: Settings, archive: Path) -> str:
    config = kafka.prepare(settings)
    with open(settings.home / "kafka.log", "wb") as log:
        broker = subprocess.Popen(
            _with_dump(kafka.command(settings, config), archive), stdout=log, stderr=log
        )
    try:
        _wait(lambda: in_use(settings.kafka_port), broker, "Kafka")
        kafka_admin.ensure_topics(settings)
    finally:
        _stop(broker)
    return jvm.classpath("kafka")


def _dump_flume(settings: Settings, archive: Path) -> str:
    host = settings.host_names[0]
    config = flume.write_config(settings, host)
    with SpoolWriter(settings.spool_dir, [host]) as spool:
        spool.write(host, contracts.ACTIONS_FILE, '{"event_id": "class-archive"}')
    with open(settings.home / "flume.log", "wb") as log:
        agent = subprocess.Popen(
            _with_dump(flume.command(settings, host, config), archive), stdout=log, stderr=log
        )
    try:
        _wait(lambda: flume.metrics(settings, host) is not None, agent, "The Flume edge agent")
        time.sleep(3)  # its source reads the line and the sink tries the (absent) collector
    finally:
        _stop(agent)
    return jvm.classpath("flume")


def _dump_spark(settings: Settings, archive: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SPARK_RUN, str(settings.home), str(archive)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OrderlakeError(f"The Spark session failed while dumping its class archive: {last}")
    pid = int(_reported("jvm-pid", done.stdout))
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while Path(f"/proc/{pid}").exists():  # pyspark's JVM, still writing the archive
        if time.monotonic() > deadline:
            raise OrderlakeError("Spark's JVM did not exit while dumping its class archive.")
        time.sleep(0.5)
    return _reported("jvm-classpath", done.stdout)


def _reported(name: str, stdout: str) -> str:
    """A value the Spark run printed as ``name value`` on a line of its own (the JVM shares
    that stdout and warns there about classes it cannot archive)."""
    found = re.search(rf"^{name} (.+)$", stdout, re.M)
    if found is None:
        raise OrderlakeError(f"The Spark run did not report its {name}.")
    return found[1]


DUMPS: dict[str, Callable[[Settings, Path], str]] = {
    "kafka": _dump_kafka,
    "flume": _dump_flume,
    "spark": _dump_spark,
}


def build(program: str) -> Path:
    """Dump ``program``'s archive and rename it into place once a JVM maps it; returns it."""
    final = jvm.class_archive(program)
    final.unlink(missing_ok=True)  # the dumping JVM must not map an old one
    dumped = final.with_suffix(".jsa.tmp")  # beside it: renamed into place, never copied
    dumped.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"orderlake-archive-{program}-") as scratch:
        home = Path(scratch) / "home"
        home.mkdir()
        settings = Settings(
            home=home,
            hosts=1,
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            flume_monitor_port=free_port() - 1,  # the edge host-1 listens on this + 1
            flume_collector_port=free_port(),
        )
        classpath = DUMPS[program](settings, dumped)
        java = jvm.java_executable(settings.java_home)
        check = [java, "-Xshare:on", f"-XX:SharedArchiveFile={dumped}", "-cp", classpath]
        mapped = subprocess.run([*check, "-version"], capture_output=True, text=True, check=False)
        if not dumped.is_file() or mapped.returncode != 0:
            dumped.unlink(missing_ok=True)
            raise OrderlakeError(
                f"The {program} class archive could not be made or mapped: "
                f"{(mapped.stderr.strip().splitlines() or ['no output'])[-1]}"
            )
    dumped.replace(final)
    return final


def main(argv: list[str] | None = None) -> int:
    programs = (argv if argv is not None else sys.argv[1:]) or list(PROGRAMS)
    unknown = sorted(set(programs) - set(PROGRAMS))
    if unknown:
        print(f"Unknown program {unknown[0]}; choose from {', '.join(PROGRAMS)}.", file=sys.stderr)
        return 2
    for program in programs:
        started = time.monotonic()
        try:
            path = build(program)
        except Exception as exc:  # noqa: BLE001 - an archive only speeds starts up
            # the platform runs without it, only slower to start: say so in one line, go on
            print(f"No class archive for {program}: {exc}", file=sys.stderr)
            continue
        size = path.stat().st_size / 2**20
        print(f"{program}: {path} ({size:.0f} MiB, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
