"""The speed layer against a real Kafka broker, Spark and Delta (records produced straight to
Kafka; Flume is tested elsewhere). Each test runs the query until it has read what is there."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime

import pytest
from delta.tables import DeltaTable

from orderlake import lake, schemas
from orderlake.jobs import speed
from orderlake.settings import Settings
from orderlake.transforms import parsing
from tests.fixtures.workload import expected_counts, generated_workload, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def kafka(kafka_only):
    return kafka_only


def settings_for(kafka, tmp_path) -> Settings:
    """A lake of the test's own, reading the module's broker."""
    return Settings(home=tmp_path / "home", kafka_port=kafka.settings.kafka_port)


def run_once(spark, settings: Settings):
    query = speed.start(spark, settings, available_now=True)
    query.awaitTermination()
    assert query.exception() is None
    return query


def progress_batches(settings: Settings, last_batch_id: int, timeout: float = 30) -> list[dict]:
    """The progress file's micro-batches, once the listener (which writes it asynchronously)
    has written the one with ``last_batch_id``."""
    deadline = time.monotonic() + timeout
    while True:
        batches = json.loads(speed.progress_path(settings).read_text())["batches"]
        if any(b["batch_id"] == last_batch_id for b in batches) or time.monotonic() > deadline:
            return batches
        time.sleep(0.5)


def table(spark, settings, spec):
    return spark.read.format("delta").load(str(lake.table_path(settings, spec.name)))


def orders_1m(spark, settings):
    """The view speed.orders_by_age_gender_1m of this test's lake."""
    lake.register_tables(spark, settings)
    return spark.table("speed.orders_by_age_gender_1m")


def speed_counts(spark, settings) -> Counter:
    rows = orders_1m(spark, settings).collect()
    return Counter({(r["window_start"], r["age_bracket"], r["gender"]): r["orders"] for r in rows})


def test_generated_stream_counts_equal_the_manifest_exactly(spark, kafka, tmp_path):
    profiles, actions = generated_workload(tmp_path, events=30_000, seed=11)
    send(kafka.settings.bootstrap, profiles, actions)
    settings = settings_for(kafka, tmp_path)
    run_once(spark, settings)

    expected = expected_counts(profiles, actions)
    got = speed_counts(spark, settings)
    assert sum(got.values()) == sum(expected.values()) > 1000
    assert got == expected

    # the manifest's bracket x gender totals, independently: same numbers
    manifest = json.loads(
        sorted((tmp_path / "spool-11" / "manifests").glob("*.json"))[0].read_text()
    )
    by_bucket = Counter()
    for (_, bracket, gender), n in got.items():
        by_bucket[(bracket, gender)] += n
    for bracket, genders in manifest["purchases_by_age_gender"].items():
        for gender, n in genders.items():
            assert by_bucket[(bracket, gender)] == n, (bracket, gender)

    # a second run with nothing new changes nothing
    run_once(spark, settings)
    assert speed_counts(spark, settings) == expected


def test_speed_tables_write_a_log_checkpoint_every_100_commits_not_every_10(spark, tmp_path):
    """Delta's default checkpoint (every 10 commits, inside the commit) added ~2 s to every
    tenth micro-batch. A table created before the property existed gets it at the next start."""
    settings = Settings(home=tmp_path / "home")
    old = lake.table_path(settings, schemas.SPEED_QUARANTINE.name)
    spark.createDataFrame([], schemas.SPEED_QUARANTINE.schema).write.format("delta").save(str(old))
    for spec in schemas.SPEED_TABLES:
        lake.ensure_table(spark, settings, spec)
        table = DeltaTable.forPath(spark, str(lake.table_path(settings, spec.name)))
        assert table.detail().first()["properties"]["delta.checkpointInterval"] == "100"

    for offset in range(12):
        record = spark.createDataFrame(
            [("tmall.user_actions", 0, offset, None, None, b"{")],
            "topic string, partition int, offset long, timestamp timestamp, key binary,"
            " value binary",
        )
        rows = parsing.quarantine_rows(parsing.parse_actions(record), "speed")
        lake.append(rows, settings, schemas.SPEED_QUARANTINE.name)
    log = old / "_delta_log"
    assert lake.latest_version(settings, schemas.SPEED_QUARANTINE.name) >= 13
    assert not list(log.glob("*.checkpoint*.parquet"))
    # started again: nothing to change, no new commit
    version = lake.latest_version(settings, schemas.SPEED_QUARANTINE.name)
    lake.ensure_table(spark, settings, schemas.SPEED_QUARANTINE)
    assert lake.latest_version(settings, schemas.SPEED_QUARANTINE.name) == version


def test_a_lake_with_the_older_speed_users_table_keeps_its_profiles(spark, tmp_path):
    """speed.users was a table before speed.user_profiles; the speed layer turns its rows into
    the first stored versions and moves the old directory aside (the view takes the name)."""
    settings = Settings(home=tmp_path / "home")
    old = lake.table_path(settings, "speed.users")
    when = datetime(2015, 11, 1)
    rows = [(uid, 3, 1, "25-29", "female", when, "tmall.user_profiles", 0, uid) for uid in (1, 2)]
    spark.createDataFrame(rows, schemas.USERS).write.format("delta").save(str(old))
    lake.register_tables(spark, settings)  # as a session started on that lake registers it

    layer = speed.SpeedLayer(spark, settings, "app")

    assert not old.exists()
    assert [p.name.split("-")[0] for p in (settings.lake_dir / "_retired").iterdir()] == [
        "speed.users"
    ]
    assert "speed.users" not in lake.discovered_tables(settings)
    assert sorted(r["user_id"] for r in spark.table("speed.users").collect()) == [1, 2]
    assert table(spark, settings, schemas.SPEED_USER_PROFILES).count() == 2
    assert layer.users.rows.count() == 2
    # a second start finds nothing to move
    speed.SpeedLayer(spark, settings, "app")
    assert table(spark, settings, schemas.SPEED_USER_PROFILES).count() == 2
