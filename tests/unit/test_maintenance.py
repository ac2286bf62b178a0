"""Maintenance's pure parts: the versions recent reconciliations pinned, and whether a VACUUM
could delete anything."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orderlake.jobs.maintenance import may_delete, oldest_pins


def test_the_oldest_version_each_reconciliation_compared_is_the_pin():
    docs = ['{"gold.x": 7, "silver.y": 3}', None, '{"gold.x": 5, "silver.y": null}', "{}"]
    assert oldest_pins(docs) == {"gold.x": 5, "silver.y": 3}
    assert oldest_pins([]) == {}


def _file(path: Path, age_hours: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    then = time.time() - age_hours * 3600
    os.utime(path, (then, then))


def test_vacuum_may_delete_only_files_older_than_the_horizon_or_empty_directories(tmp_path):
    horizon = time.time() - 168 * 3600
    table = tmp_path / "silver" / "user_actions"
    _file(table / "event_date=2015-11-11" / "part-0.parquet", 1)
    _file(table / "_delta_log" / "00000000000000000000.json", 1000)  # the log is never deleted
    assert not may_delete(table, horizon)
    _file(table / "event_date=2015-11-12" / "part-1.parquet", 169)
    assert may_delete(table, horizon)


def test_vacuum_may_delete_a_directory_left_without_data_files(tmp_path):
    horizon = time.time() - 168 * 3600
    table = tmp_path / "gold" / "daily"
    _file(table / "_delta_log" / "00000000000000000000.json", 1)
    _file(table / "part-0.parquet", 1)
    assert not may_delete(table, horizon)
    (table / "event_date=2015-11-11").mkdir()
    assert may_delete(table, horizon)


def test_on_doubt_vacuum_runs(tmp_path):
    """An old hidden file, or a table this process does not see: VACUUM runs."""
    horizon = time.time() - 168 * 3600
    table = tmp_path / "bronze" / "kafka_records"
    _file(table / "_delta_log" / "00000000000000000000.json", 1)
    _file(table / "part-0.parquet", 1)
    assert not may_delete(table, horizon)
    _file(table / ".part-0.parquet.crc", 200)
    assert may_delete(table, horizon)
    assert may_delete(tmp_path / "gold" / "not_here", horizon)
