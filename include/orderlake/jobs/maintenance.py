"""Table maintenance of the batch layer's Delta tables: OPTIMIZE (compaction) and guarded VACUUM.

VACUUM deletes files no longer in a table's current version; a reader still on an older version
would then fail. The guard refuses a VACUUM that could delete files someone may still read:
  - a retention shorter than ORDERLAKE_VACUUM_MIN_HOURS (default 168 h, Delta's own default);
  - while a batch job or a replay runs (it may read older versions it started from);
  - a retention younger than the oldest table version a recent reconciliation compared
    (ops.reconciliation rows of the last ORDERLAKE_PIN_DAYS days pin their versions).
speed.* tables belong to the streaming job (one writer per table) and are never touched here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from orderlake import lake, locks, schemas
from orderlake.errors import OrderlakeError
from orderlake.jobs import batch
from orderlake.settings import Settings

NAME = "maintain"
RECONCILIATION = "ops.reconciliation"


def maintained_tables(settings: Settings) -> list[str]:
    return [t.name for t in schemas.BATCH_TABLES if lake.exists(settings, t.name)]


def optimize(spark: SparkSession, settings: Settings) -> list[dict]:
    """Compact small files of every batch table (under the batch lock: OPTIMIZE is a commit)."""
    results = []
    with locks.exclusive(settings, batch.LOCK):
        for name in maintained_tables(settings):
            metrics = spark.sql(f"OPTIMIZE {lake.sql_name(settings, name)}").first()["metrics"]
            results.append(
                {
                    "table": name,
                    "files_added": metrics["numFilesAdded"],
                    "files_removed": metrics["numFilesRemoved"],
                }
            )
    return results


def pinned_since(spark: SparkSession, settings: Settings, name: str) -> datetime | None:
    """Commit time of the oldest version of `name` a recent reconciliation compared."""
    if not lake.exists(settings, RECONCILIATION):
        return None
    horizon = datetime.now(UTC) - timedelta(days=settings.pin_days)
    rows = (
        lake.read(spark, settings, RECONCILIATION)
        .where(F.col("checked_at") >= F.lit(horizon))
        .select("table_versions")
        .collect()
    )
    versions = [json.loads(r[0]).get(name) for r in rows if r[0]]
    versions = [v for v in versions if v is not None]
    if not versions:
        return None
    history = spark.sql(f"DESCRIBE HISTORY {lake.sql_name(settings, name)}")
    oldest = history.where(F.col("version") == min(versions)).select("timestamp").first()
    return oldest[0].replace(tzinfo=UTC) if oldest else None


def vacuum_guard(spark: SparkSession, settings: Settings, name: str, retain_hours: float) -> None:
    """Raise OrderlakeError (one sentence) when this VACUUM could delete files still needed."""
    if name.startswith("speed."):
        raise OrderlakeError(
            f"{name} belongs to the streaming job (one writer per table); it compacts its own "
            "files, so batch maintenance never vacuums it."
        )
    if retain_hours < settings.vacuum_min_hours:
        raise OrderlakeError(
            f"Refusing to VACUUM {name} with {retain_hours:g} h retention: below the "
            f"{settings.vacuum_min_hours:g} h minimum (ORDERLAKE_VACUUM_MIN_HOURS) that protects "
            "readers of older versions."
        )
    if locks.is_held(settings, batch.LOCK):
        raise OrderlakeError(
            f"Refusing to VACUUM {name}: a batch job or replay is running and may read older "
            "versions; run maintenance when it has finished."
        )
    pinned = pinned_since(spark, settings, name)
    if pinned is not None:
        age_hours = (datetime.now(UTC) - pinned).total_seconds() / 3600
        if retain_hours < age_hours:
            raise OrderlakeError(
                f"Refusing to VACUUM {name} with {retain_hours:g} h retention: a reconciliation "
                f"of the last {settings.pin_days} days pinned a version from {age_hours:.1f} h "
                "ago; keep at least that much."
            )


def vacuum(spark: SparkSession, settings: Settings, retain_hours: float | None = None) -> list:
    """VACUUM every batch table after the guard agreed; returns what was done per table."""
    hours = settings.vacuum_min_hours if retain_hours is None else retain_hours
    done = []
    for name in maintained_tables(settings):
        vacuum_guard(spark, settings, name, hours)
        with locks.exclusive(settings, batch.LOCK):
            spark.sql(f"VACUUM {lake.sql_name(settings, name)} RETAIN {hours:g} HOURS").collect()
        done.append({"table": name, "retain_hours": hours})
    return done


# --- the job: `orderlake maintain`, batch/maintain.py, the delta_maintenance DAG (jobs/runner.py)
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
