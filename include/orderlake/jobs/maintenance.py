"""Table maintenance of the lake's Delta tables: OPTIMIZE (compaction) and guarded VACUUM.

    orderlake maintain [--optimize] [--vacuum] [--retain-hours H]     (both by default)

VACUUM deletes files no longer in a table's current version; a reader still on an older version
would then fail. The guard refuses a VACUUM that could delete files someone may still read:
  - a retention shorter than ORDERLAKE_VACUUM_MIN_HOURS (default 168 h, Delta's own default);
  - while a batch job or a replay runs (it may read older versions it started from): VACUUM
    waits for the batch lock;
  - a retention younger than the oldest table version a recent reconciliation compared
    (ops.reconciliation rows of the last ORDERLAKE_PIN_DAYS days pin their versions).
A table whose every file is younger than the retention has nothing VACUUM may delete: it is
skipped (``may_delete``), and its entry in the output says so.

Batch tables are maintained under the batch lock. The speed tables have one writer, the speed
layer: while it runs, `maintain` hands it a request (``<run>/speed-maintenance/``) and its own
JVM does the work between micro-batches (``SpeedMaintenance``), with the same guard; while it is
stopped, `maintain` takes the speed lock and does the work itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from orderlake import lake, locks, schemas
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

NAME = "maintain"
RECONCILIATION = "ops.reconciliation"
SPEED_REQUEST_TIMEOUT_S = 15 * 60.0  # a busy speed layer takes a request between micro-batches
VACUUM_THREADS = 3  # more gained nothing on 2 cores (see guarded_vacuum)


def batch_tables(settings: Settings) -> list[str]:
    return [t.name for t in schemas.BATCH_TABLES if lake.exists(settings, t.name)]


def speed_tables(settings: Settings) -> list[str]:
    return [t.name for t in schemas.SPEED_TABLES if lake.exists(settings, t.name)]


def optimize_tables(spark: SparkSession, settings: Settings, names: list[str]) -> list[dict]:
    """Compact small files of each table (the caller holds the tables' writer lock)."""
    results = []
    for name in names:
        optimized = spark.sql(f"OPTIMIZE {lake.sql_name(settings, name)}")
        metrics = lake.one_row(optimized, f"OPTIMIZE {name}")["metrics"]
        results.append(
            {
                "table": name,
                "files_added": metrics["numFilesAdded"],
                "files_removed": metrics["numFilesRemoved"],
            }
        )
    return results


def oldest_pins(table_versions: list[str | None]) -> dict[str, int]:
    """The oldest version of each table in reconciliation rows' ``table_versions`` (JSON
    objects of table -> version).

    >>> oldest_pins(['{"gold.x": 7, "silver.y": 3}', None, '{"gold.x": 5, "silver.y": null}'])
    {'gold.x': 5, 'silver.y': 3}
    """
    pins: dict[str, int] = {}
    for doc in table_versions:
        for name, version in (json.loads(doc) if doc else {}).items():
            if version is not None:
                pins[name] = min(version, pins.get(name, version))
    return pins


def pinned_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Per table, the oldest version a reconciliation of the last ORDERLAKE_PIN_DAYS days
    compared: one read of ops.reconciliation for every table a run vacuums."""
    if not lake.exists(settings, RECONCILIATION):
        return {}
    horizon = datetime.now(UTC) - timedelta(days=settings.pin_days)
    rows = (
        lake.read(spark, settings, RECONCILIATION)
        .where(F.col("checked_at") >= F.lit(horizon))
        .select("table_versions")
        .collect()
    )
    return oldest_pins([r[0] for r in rows])


def pinned_since(
    spark: SparkSession, settings: Settings, name: str, version: int
) -> datetime | None:
    """Commit time of version ``version`` of table ``name`` (None: history no longer has it)."""
    history = spark.sql(f"DESCRIBE HISTORY {lake.sql_name(settings, name)}")
    oldest = history.where(F.col("version") == version).select("timestamp").first()
    return oldest[0].replace(tzinfo=UTC) if oldest else None


def vacuum_guard(
    spark: SparkSession, settings: Settings, name: str, retain_hours: float, pins: dict[str, int]
) -> None:
    """Raise OrderlakeError (one sentence) when this VACUUM could delete files still needed
    (``pins``: see ``pinned_versions``)."""
    if retain_hours < settings.vacuum_min_hours:
        raise OrderlakeError(
            f"Refusing to VACUUM {name} with {retain_hours:g} h retention: below the "
            f"{settings.vacuum_min_hours:g} h minimum (ORDERLAKE_VACUUM_MIN_HOURS) that protects "
            "readers of older versions."
        )
    pinned = pinned_since(spark, settings, name, pins[name]) if name in pins else None
    if pinned is not None:
        age_hours = (datetime.now(UTC) - pinned).total_seconds() / 3600
        if retain_hours < age_hours:
            raise OrderlakeError(
                f"Refusing to VACUUM {name} with {retain_hours:g} h retention: a reconciliation "
                f"of the last {settings.pin_days} days pinned a version from {age_hours:.1f} h "
                "ago; keep at least that much."
            )


def guarded_vacuum(
    spark: SparkSession, settings: Settings, names: list[str], hours: float
) -> list[dict]:
    """The guard for every table first (one refusal stops the run before anything is deleted),
    then the VACUUMs side by side: a small table's VACUUM waits on Spark's job scheduling and
    its two commits far more than on the CPU."""
    pins = pinned_versions(spark, settings)
    for name in names:
        vacuum_guard(spark, settings, name, hours, pins)
    with ThreadPoolExecutor(VACUUM_THREADS) as pool:
        return list(pool.map(lambda name: vacuum_table(spark, settings, name, hours), names))


def vacuum_table(spark: SparkSession, settings: Settings, name: str, hours: float) -> dict:
    """VACUUM one table after the guard agreed (the caller holds its writer lock); skipped when
    it could delete nothing (``may_delete``)."""
    done = {"table": name, "retain_hours": hours}
    if not may_delete(lake.table_path(settings, name), time.time() - hours * 3600):
        return {**done, "skipped": "every file is younger than the retention"}
    spark.sql(f"VACUUM {lake.sql_name(settings, name)} RETAIN {hours:g} HOURS").collect()
    return done


def may_delete(table_dir: Path, horizon: float) -> bool:
    """Whether a VACUUM with this horizon (epoch seconds) could delete anything in the table.

    Delta's VACUUM deletes only files modified before the horizon and directories left without
    files; it never touches ``_delta_log``. A table whose every file is younger (any table of a
    lake younger than the retention) is answered by one directory scan instead of the thirty
    Spark jobs of a VACUUM that finds nothing. Hidden files count too: on doubt, VACUUM runs,
    as it does for a table this process cannot see."""
    if not (table_dir / "_delta_log").is_dir():
        return True
    root = str(table_dir)
    for parent, dirs, files in os.walk(root):
        if parent == root:
            dirs[:] = [d for d in dirs if d != "_delta_log"]
        elif not dirs and all(f.startswith(("_", ".")) for f in files):
            return True  # a directory without data files: VACUUM removes it
        for name in files:
            try:
                if os.lstat(os.path.join(parent, name)).st_mtime < horizon:
                    return True
            except FileNotFoundError:  # removed meanwhile: nothing left to delete
                continue
    return False


def optimize(spark: SparkSession, settings: Settings) -> list[dict]:
    """Compact every table: the batch tables under the batch lock, then the speed tables."""
    with locks.exclusive(settings, locks.BATCH, wait=True):
        done = optimize_tables(spark, settings, batch_tables(settings))
    return done + maintain_speed(spark, settings, {"optimize": True})


def vacuum(spark: SparkSession, settings: Settings, retain_hours: float | None = None) -> list:
    """VACUUM every table after the guard agreed; returns what was done per table."""
    hours = settings.vacuum_min_hours if retain_hours is None else retain_hours
    # under the lock: no batch job or replay reads older versions meanwhile
    with locks.exclusive(settings, locks.BATCH, wait=True):
        done = guarded_vacuum(spark, settings, batch_tables(settings), hours)
    return done + maintain_speed(spark, settings, {"vacuum": True, "retain_hours": hours})


# --- the speed tables: done by their one writer ---------------------------------------------------
def perform(spark: SparkSession, settings: Settings, request: dict) -> list[dict]:
    """A maintenance request on the speed tables, by whoever is their writer now."""
    names = speed_tables(settings)
    if request.get("optimize"):
        return optimize_tables(spark, settings, names)
    return guarded_vacuum(spark, settings, names, float(request["retain_hours"]))


def requests_dir(settings: Settings) -> Path:
    return settings.run_dir / "speed-maintenance"


def maintain_speed(spark: SparkSession, settings: Settings, request: dict) -> list[dict]:
    """Maintain the speed tables: here under the speed lock when the speed layer is stopped,
    else through a request its JVM carries out; the outcome either way."""
    try:
        held = locks.acquire(settings, locks.SPEED)
    except OrderlakeError:
        done = _ask_speed_layer(settings, request)
        return [{**entry, "by": "the speed layer"} for entry in done]
    try:
        return [{**entry, "by": "this job"} for entry in perform(spark, settings, request)]
    finally:
        held.release()


def _ask_speed_layer(settings: Settings, request: dict) -> list[dict]:
    directory = requests_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    answer = directory / f"{name}.done.json"
    _write(directory / f"{name}.request.json", request)
    deadline = time.monotonic() + SPEED_REQUEST_TIMEOUT_S
    while not answer.exists():
        if time.monotonic() > deadline or not locks.is_held(settings, locks.SPEED):
            (directory / f"{name}.request.json").unlink(missing_ok=True)
            raise OrderlakeError(
                "The speed layer did not carry out the maintenance of the speed tables within "
                f"{SPEED_REQUEST_TIMEOUT_S / 60:.0f} minutes (or stopped meanwhile); see "
                f"{settings.logs_dir / 'streaming.log'} and run `orderlake maintain` again."
            )
        time.sleep(1)
    outcome = json.loads(answer.read_text())
    answer.unlink()
    if outcome.get("error"):
        raise OrderlakeError(outcome["error"])
    return outcome["done"]


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


class SpeedMaintenance:
    """The speed layer's side: a daemon thread of its driver that carries out maintenance
    requests between micro-batches (``between`` is the lock its micro-batches hold), so the
    speed tables keep one writer."""

    def __init__(self, spark: SparkSession, settings: Settings, between: threading.Lock):
        self.spark, self.settings, self.between = spark, settings, between
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="speed-maintenance", daemon=True)

    def start(self) -> SpeedMaintenance:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(2.0):
            for request in sorted(requests_dir(self.settings).glob("*.request.json")):
                self.carry_out(request)

    def carry_out(self, path: Path) -> None:
        name = path.name.removesuffix(".request.json")
        try:
            request = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # being written: the next look finds it whole
        try:
            with self.between:
                outcome: dict = {"done": perform(self.spark, self.settings, request)}
        except OrderlakeError as exc:
            outcome = {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the requester must hear, the query go on
            outcome = {"error": f"maintenance of the speed tables failed: {exc}"[:500]}
        _write(path.with_name(f"{name}.done.json"), outcome)
        path.unlink(missing_ok=True)


# --- the job: `orderlake maintain`, batch/maintain.py, the delta_maintenance DAG (runner.py) -----
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from orderlake.arguments import non_negative_float

    parser.add_argument("--optimize", action="store_true", help="compact small files only")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM only")
    parser.add_argument("--retain-hours", type=non_negative_float, default=None)


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[dict]:
    both = not (args.optimize or args.vacuum)
    if args.optimize or both:
        yield {"optimize": optimize(spark, settings)}
    if args.vacuum or both:
        yield {"vacuum": vacuum(spark, settings, args.retain_hours)}


def main(argv: list[str] | None = None) -> int:
    """`orderlake maintain ...` as a program of its own (batch/maintain.py)."""
    from orderlake.jobs import runner

    return runner.main(sys.modules[__name__], argv)
