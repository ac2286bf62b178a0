"""`orderlake sql`: which statements read, which write, and what it refuses (pure: no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderlake import locks, query
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM speed.purchases VERSION AS OF 3",
        "select age_bracket, sum(orders) from gold.orders_by_age_gender group by 1",
        "WITH d AS (SELECT 1 AS x) SELECT * FROM d",
        "SELECT 'DELETE FROM silver.users' AS looks_like_a_write",
        "-- DROP TABLE x\nSELECT 1",
        "DESCRIBE HISTORY gold.orders_by_age_gender_daily",
        "DESCRIBE DETAIL speed.purchases",
        "SHOW TABLES IN gold",
        "EXPLAIN SELECT * FROM silver.users",
        "SELECT * FROM gold.orders_by_age_gender_daily TIMESTAMP AS OF '2026-12-01'",
    ],
)
def test_reads(statement, settings):
    assert not query.classify(statement, settings).writes


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM silver.users WHERE user_id = 1",
        "UPDATE gold.orders_by_age_gender_daily SET orders = 0",
        "MERGE INTO silver.users t USING silver.users s ON t.user_id = s.user_id "
        "WHEN MATCHED THEN DELETE",
        "INSERT INTO ops.replays SELECT * FROM ops.replays",
        "WITH d AS (SELECT 1 AS x) INSERT INTO ops.t SELECT * FROM d",
        "CREATE TABLE ops.copy AS SELECT * FROM silver.users",
        "DROP TABLE gold.orders_by_age_gender_daily",
        "ALTER TABLE silver.users SET TBLPROPERTIES ('a' = 'b')",
        "RESTORE TABLE gold.orders_by_age_gender_daily TO VERSION AS OF 1",
        "TRUNCATE TABLE quarantine.records",
        "OPTIMIZE gold.orders_by_age_gender_daily",
        "VACUUM silver.user_actions RETAIN 0 HOURS",
    ],
)
def test_writes(statement, settings):
    assert query.classify(statement, settings).writes


def test_names_of_the_speed_tables_are_found_by_name_and_by_path(settings):
    assert query.classify("DELETE FROM speed.purchases", settings).touches_speed
    path = settings.lake_dir / "speed" / "purchases"
    assert query.classify(f"DELETE FROM delta.`{path}`", settings).touches_speed
    assert not query.classify(
        "DELETE FROM silver.users WHERE x = 'speed.x'", settings
    ).touches_speed
    assert not query.classify("SELECT 'speed.purchases'", settings).touches_speed


def test_several_statements_at_once_are_refused(settings):
    with pytest.raises(UsageError, match="one SQL statement at a time"):
        query.classify("SELECT 1; DROP TABLE silver.users", settings)


def test_a_write_needs_the_flag_and_maintenance_goes_through_maintain(settings):
    delete = query.classify("DELETE FROM silver.users", settings)
    with pytest.raises(UsageError, match="add --write"):
        query.check_allowed(delete, settings, write=False)
    query.check_allowed(delete, settings, write=True)
    vacuum = query.classify("VACUUM speed.purchases RETAIN 0 HOURS", settings)
    with pytest.raises(UsageError, match="`orderlake maintain`"):
        query.check_allowed(vacuum, settings, write=True)


def test_the_speed_tables_are_refused_while_the_speed_layer_runs(settings):
    delete = query.classify("DELETE FROM speed.purchases WHERE user_id = 1", settings)
    query.check_allowed(delete, settings, write=True)  # not running: the engineer's call
    held = locks.acquire(settings, locks.SPEED)
    try:
        with pytest.raises(OrderlakeError, match="only writer of speed"):
            query.check_allowed(delete, settings, write=True)
        other = query.classify("DELETE FROM silver.users WHERE user_id = 1", settings)
        query.check_allowed(other, settings, write=True)
    finally:
        held.release()
