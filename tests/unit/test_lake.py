"""The lake's table DDL: a declared table in one CREATE TABLE."""

from __future__ import annotations

from pathlib import Path

from orderlake import lake, schemas


def test_a_table_is_created_with_its_partitioning_and_properties_in_one_statement():
    spec = schemas.SPEED_PURCHASES_TABLE
    statement = lake.create_statement(spec, Path("/lake/speed/purchases"))
    assert statement.startswith("CREATE TABLE IF NOT EXISTS delta.`/lake/speed/purchases` (")
    assert "`event_id` string" in statement and "NOT NULL" not in statement
    assert statement.endswith("TBLPROPERTIES ('delta.checkpointInterval' = '100')")
    silver = lake.create_statement(schemas.TABLES["silver.user_actions"], Path("/l"))
    assert "PARTITIONED BY (`event_date`)" in silver and "TBLPROPERTIES" not in silver
