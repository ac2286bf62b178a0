"""The speed layer against a real Kafka broker, Spark and Delta (records produced straight to
Kafka; Flume is tested elsewhere), and on an injected source without a broker. Each test runs
the query until it has read what is there."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from orderlake import contracts, lake, schemas, speed_progress
from orderlake.jobs.speed import app, source
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
    query = app.start(spark, settings, available_now=True)
    query.awaitTermination()
    assert query.exception() is None
    return query


def progress_batches(settings: Settings, last_batch_id: int, timeout: float = 30) -> list[dict]:
    """The progress file's micro-batches, once the listener (which writes it asynchronously)
    has written the one with ``last_batch_id``."""
    deadline = time.monotonic() + timeout
    while True:
        batches = json.loads(speed_progress.path(settings).read_text())["batches"]
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


KAFKA_TS = datetime(2015, 11, 11, 9, 1)


def record(topic: str, offset: int, value: dict | str) -> tuple:
    text = value if isinstance(value, str) else json.dumps(value)
    return (topic, 0, offset, KAFKA_TS, None, text.encode())


def purchase(event_id: str, user_id: int) -> dict:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": 1,
        "cat_id": 1,
        "seller_id": 1,
        "brand_id": None,
        "action_type": contracts.ACTION_PURCHASE,
        "event_time": "2015-11-11T09:00:30.000Z",
    }


def test_start_runs_the_speed_layer_on_an_injected_source(spark, tmp_path: Path):
    """start() takes its source as an argument: a few Kafka-shaped records in Parquet files
    run through the same query, micro-batch step and tables, with no broker."""
    settings = Settings(home=tmp_path / "home")
    profiles_dir, actions_dir = tmp_path / "profiles", tmp_path / "actions"
    profile = {"user_id": 1, "age_range": 3, "gender": 0, "updated_at": "2015-11-01T00:00:00Z"}
    spark.createDataFrame(
        [record(contracts.TOPIC_PROFILES, 0, profile)], schemas.KAFKA_RECORD
    ).write.parquet(str(profiles_dir))
    actions = [
        record(contracts.TOPIC_ACTIONS, 0, purchase("e-1", 1)),
        record(contracts.TOPIC_ACTIONS, 1, purchase("e-1", 1)),  # a duplicate: counted once
        record(contracts.TOPIC_ACTIONS, 2, purchase("e-2", 2)),  # no profile: unknown
        record(contracts.TOPIC_ACTIONS, 3, "not json"),
    ]
    spark.createDataFrame(actions, schemas.KAFKA_RECORD).write.parquet(str(actions_dir))

    def files(session):
        def read(directory: Path):
            return session.readStream.schema(schemas.KAFKA_RECORD).parquet(str(directory))

        return source.parse(read(actions_dir), read(profiles_dir))

    query = app.start(spark, settings, available_now=True, source=files)
    query.awaitTermination()
    assert query.exception() is None

    purchases = lake.read(spark, settings, schemas.SPEED_PURCHASES_TABLE.name)
    counted = {
        r["event_id"]: (r["age_bracket"], r["gender"], r["profile_found"])
        for r in purchases.collect()
    }
    assert purchases.count() == 2
    assert counted == {
        "e-1": ("25-29", "female", True),
        "e-2": (contracts.UNKNOWN, contracts.UNKNOWN, False),
    }
    quarantined = lake.read(spark, settings, schemas.SPEED_QUARANTINE.name)
    assert [
        r["offset"] for r in quarantined.where(F.col("value_text") == "not json").collect()
    ] == [3]
    # the listener writes the progress file asynchronously: wait for the query's end in it
    deadline = time.monotonic() + 30
    report = {}
    while report.get("state") != "terminated" and time.monotonic() < deadline:
        time.sleep(0.2)
        report = json.loads(speed_progress.path(settings).read_text())
    assert report["state"] == "terminated"
    assert report["profiles_preloaded"] == {"skipped": "the source is not Kafka"}
    assert report["processed_offsets"] == {}  # no Kafka offsets to report
    assert sum(b["purchases_counted"] for b in report["batches"]) == 2
