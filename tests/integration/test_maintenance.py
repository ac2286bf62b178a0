"""Guarded VACUUM on a real Delta table: files compaction replaced are deleted once past the
retention, and a table whose every file is younger is left without a Spark job."""

from __future__ import annotations

import contextlib

import pytest

from orderlake import lake
from orderlake.jobs import maintenance
from orderlake.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TABLE = "silver.users"


def data_files(settings: Settings) -> set[str]:
    path = lake.table_path(settings, TABLE)
    return {p.name for p in path.rglob("*.parquet") if "_delta_log" not in p.parts}


def operations(spark, settings: Settings) -> list[str]:
    history = spark.sql(f"DESCRIBE HISTORY {lake.sql_name(settings, TABLE)}")
    return [r["operation"] for r in history.orderBy("version").collect()]


@contextlib.contextmanager
def delta_retention_check_off(spark):
    """Delta refuses a retention under 168 h unless told; the guard (vacuum_min_hours) is the
    test's own check here."""
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        spark.conf.unset(key)


def test_vacuum_deletes_the_files_compaction_replaced_and_skips_a_table_of_young_files(
    spark, tmp_path
):
    settings = Settings(home=tmp_path / "home", vacuum_min_hours=0)
    path = str(lake.table_path(settings, TABLE))
    for user in range(3):  # three small files
        row = spark.createDataFrame([(user, "25-29")], "user_id INT, age_bracket STRING")
        row.coalesce(1).write.format("delta").mode("append").save(path)
    replaced = data_files(settings)
    spark.sql(f"OPTIMIZE {lake.sql_name(settings, TABLE)}").collect()
    compacted = data_files(settings) - replaced
    assert len(replaced) == 3 and len(compacted) == 1

    # every file is an hour old at most: a 1-hour retention cannot delete any, no VACUUM runs
    young = maintenance.guarded_vacuum(spark, settings, [TABLE], 1.0)
    assert young == [
        {"table": TABLE, "retain_hours": 1.0, "skipped": "every file is younger than the retention"}
    ]
    assert data_files(settings) == replaced | compacted
    assert "VACUUM END" not in operations(spark, settings)

    # no retention: the three replaced files go, the table reads the same
    with delta_retention_check_off(spark):
        done = maintenance.guarded_vacuum(spark, settings, [TABLE], 0.0)
    assert done == [{"table": TABLE, "retain_hours": 0.0}]
    assert data_files(settings) == compacted
    assert "VACUUM END" in operations(spark, settings)
    rows = spark.read.format("delta").load(path).orderBy("user_id").collect()
    assert [r["user_id"] for r in rows] == [0, 1, 2]
