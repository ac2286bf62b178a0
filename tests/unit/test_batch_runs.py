"""Where the next batch runs start from, kept beside the lake between runs (jobs/batch.Runs)."""

from __future__ import annotations

from datetime import date

import pytest

from orderlake import lake
from orderlake.jobs import batch
from orderlake.schemas import BATCH_RUNS_TABLE
from orderlake.settings import Settings

NOV_10, NOV_11 = date(2015, 11, 10), date(2015, 11, 11)


def run(layer: str, cursor_to: int, dates=(), closed: date | None = None) -> dict:
    return {
        "layer": layer,
        "cursor_to": cursor_to,
        "affected_dates": list(dates),
        "closed_through": closed,
    }


def commit(settings: Settings, version: int) -> None:
    """A commit file of ops.batch_runs' Delta log: all that `lake.latest_version` reads."""
    log = lake.table_path(settings, BATCH_RUNS_TABLE.name) / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("{}")


class TableRead(Exception):
    pass


class NoSpark:
    """Stands where a session would: any use of it means the table itself was to be read."""

    def __getattr__(self, name: str):
        raise TableRead(name)


def test_gold_follows_every_silver_run_since_its_own_and_then_none():
    runs = batch.Runs()
    runs.record(run("silver", 10, [NOV_10]))
    runs.record(run("silver", 20, [NOV_11, NOV_10]))
    assert runs.silver_since_gold == [(10, [NOV_10]), (20, [NOV_10, NOV_11])]
    assert runs.newest["silver"] == {"cursor_to": 20, "closed_through": None}
    runs.record(run("gold", 20, [NOV_10, NOV_11], closed=NOV_10))
    assert runs.silver_since_gold == []
    assert runs.newest["gold"] == {"cursor_to": 20, "closed_through": NOV_10}
    runs.record(run("silver", 30, [NOV_11]))
    assert runs.silver_since_gold == [(30, [NOV_11])]


def test_a_run_behind_the_newest_does_not_move_its_layers_cursor():
    runs = batch.Runs()
    runs.record(run("gold", 20, closed=NOV_11))
    runs.record(run("gold", 15, closed=NOV_10))
    assert runs.newest["gold"] == {"cursor_to": 20, "closed_through": NOV_11}
    runs.record(run("gold", 20, closed=NOV_10))  # the same cursor, later: it is the newest
    assert runs.newest["gold"]["closed_through"] == NOV_10


def test_the_file_stands_for_the_table_until_its_next_commit(tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs = batch.Runs()
    runs.record(run("silver", 10, [NOV_10]))
    runs.record(run("gold", 10, [NOV_10], closed=NOV_10))
    runs.record(run("silver", 12, [NOV_11]))
    commit(settings, 0)
    commit(settings, 3)
    path = batch.runs_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(runs.to_json(3))
    assert batch.runs(NoSpark(), settings) == runs
    # another commit (a run elsewhere, a maintenance, `orderlake sql --write`): read the table
    commit(settings, 4)
    with pytest.raises(TableRead):
        batch.runs(NoSpark(), settings)


@pytest.mark.parametrize("text", ["", '{"version": 0, "newest": {"silver": {"cursor_to"', "[]"])
def test_a_missing_or_torn_file_means_read_the_table(tmp_path, text):
    settings = Settings(home=tmp_path / "home")
    commit(settings, 0)
    with pytest.raises(TableRead):
        batch.runs(NoSpark(), settings)
    path = batch.runs_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    with pytest.raises(TableRead):
        batch.runs(NoSpark(), settings)
