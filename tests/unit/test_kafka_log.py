"""What bronze holds of Kafka's log, from the last load's file, without Spark."""

from __future__ import annotations

import json

from orderlake import kafka_log, lake
from orderlake.schemas import BRONZE_TABLE
from orderlake.settings import Settings


def commit(settings: Settings, version: int) -> None:
    """A commit file of bronze's Delta log: all that `lake.latest_version` reads."""
    log = lake.table_path(settings, BRONZE_TABLE.name) / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("{}")


def test_the_last_loads_positions_stand_for_bronze_until_its_next_commit(tmp_path):
    settings = Settings(home=tmp_path / "home")
    positions = {("tmall.user_actions", 0): 120, ("tmall.user_profiles", 0): 7}
    commit(settings, 0)
    commit(settings, 1)
    kafka_log.save_positions(settings, positions, load_id=127)
    assert kafka_log.current_positions(settings) == (positions, 127)
    # any later commit (a replay, a restore, a delete) and bronze must be read again
    commit(settings, 2)
    assert kafka_log.current_positions(settings) is None


def test_a_missing_torn_or_older_positions_file_means_read_bronze(tmp_path):
    settings = Settings(home=tmp_path / "home")
    commit(settings, 0)
    assert kafka_log.current_positions(settings) is None
    path = kafka_log.positions_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 0, "next_offsets": [["tmall.user_actions", 0, 1')
    assert kafka_log.current_positions(settings) is None
    # written before the file carried the load id
    path.write_text(json.dumps({"version": 0, "next_offsets": [["tmall.user_actions", 0, 1]]}))
    assert kafka_log.current_positions(settings) is None
