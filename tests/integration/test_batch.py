"""The batch layer against a real broker, Spark and Delta, driven through the CLI as a user would:
`orderlake batch ...`, `orderlake replay ...`, `orderlake sql ...` in fresh processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from orderlake import contracts, kafka_admin, lake, locks
from orderlake.jobs import batch
from tests.fixtures.stack import ORDERLAKE, produce
from tests.fixtures.workload import expected_gold, generated_workload, latest_profiles, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def loaded(kafka_only, tmp_path_factory):
    """A generated stream in Kafka and one full batch run over it."""
    tmp = tmp_path_factory.mktemp("batch")
    profiles, actions = generated_workload(tmp, events=30_000, seed=31)
    send(kafka_only.settings.bootstrap, profiles, actions)
    done = kafka_only.cli("batch", "all", "--close-through", "2015-11-11", timeout=900)
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return kafka_only, profiles, actions, summaries


def read(spark, settings, name):
    return spark.read.format("delta").load(str(lake.table_path(settings, name)))


def test_bronze_holds_every_kafka_record_exactly_once(spark, loaded):
    platform = loaded[0]
    settings = platform.settings
    bronze = read(spark, settings, "bronze.kafka_records")
    per_partition = {
        (r["topic"], r["partition"]): r["count"]
        for r in bronze.groupBy("topic", "partition").count().collect()
    }
    expected = {
        (topic, partition): end
        for topic, parts in kafka_admin.end_offsets(settings.bootstrap).items()
        for partition, end in parts.items()
        if end
    }
    assert per_partition == expected
    assert bronze.count() == bronze.select("topic", "partition", "offset").distinct().count()


def test_gold_equals_an_independent_computation_over_the_generated_events(spark, loaded):
    platform, profiles, actions, summaries = loaded
    rows = read(spark, platform.settings, "gold.orders_by_age_gender_daily").collect()
    got = Counter({(r["event_date"], r["age_bracket"], r["gender"]): r["orders"] for r in rows})
    assert got == expected_gold(profiles, actions)
    day_shares = defaultdict(float)
    for r in rows:
        day_shares[r["event_date"]] += r["share"]
    assert all(abs(total - 1.0) < 1e-9 for total in day_shares.values())
    assert all(r["final"] for r in rows), "--close-through 2015-11-11 closed every day"
    layers = [s["layer"] for s in summaries]
    assert layers == ["bronze", "silver", "gold"]


def test_silver_has_one_row_per_event_and_counts_add_up(spark, loaded):
    platform, profiles, actions, summaries = loaded
    silver = read(spark, platform.settings, "silver.user_actions")
    assert silver.count() == len({a["event_id"] for a in actions})
    assert silver.count() == silver.select("event_id").distinct().count()
    run = next(s for s in summaries if s["layer"] == "silver")
    assert run["rows_in"] == len(actions) + len(profiles)
    assert run["rows_out"] + run["duplicates_removed"] == len(actions)  # all generated are valid
    assert run["quarantined"] == 0
    users = read(spark, platform.settings, "silver.users")
    assert users.count() == len({p["user_id"] for p in profiles})
    # one data file per event date from the one silver run: a write groups its rows by the
    # table's partition column instead of leaving a file per task and date
    path = lake.table_path(platform.settings, "silver.user_actions")
    files = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["numFiles"]
    assert files == silver.select("event_date").distinct().count()


def test_sql_from_a_fresh_process_sees_every_table(loaded):
    platform = loaded[0]
    listed = platform.cli("tables", "--format", "json").stdout.splitlines()
    names = {json.loads(line)["table"] for line in listed}
    for name in (
        "bronze.kafka_records",
        "silver.user_actions",
        "silver.users",
        "quarantine.records",
        "gold.orders_by_age_gender_daily",
        "ops.batch_runs",
        "gold.orders_by_age_gender",
    ):
        assert name in names
    out = platform.cli(
        "sql",
        "SELECT status, SUM(orders) AS o FROM gold.orders_by_age_gender GROUP BY status",
        "--format",
        "json",
    ).stdout
    statuses = {json.loads(line)["status"]: json.loads(line)["o"] for line in out.splitlines()}
    assert statuses["final"] == sum(expected_gold(loaded[1], loaded[2]).values())
    # time travel: version 0 of a table is its empty creation
    zero = platform.cli(
        "sql",
        "SELECT COUNT(*) AS n FROM gold.orders_by_age_gender_daily VERSION AS OF 0",
        "--format",
        "csv",
    ).stdout.splitlines()
    assert zero == ["n", "0"]


def test_bad_sql_is_one_readable_line(loaded):
    done = loaded[0].cli("sql", "SELECT nope FROM silver.users", check=False)
    assert done.returncode == 1
    assert "UNRESOLVED_COLUMN" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def checksum(spark, settings, name: str) -> str:
    rows = read(spark, settings, name).drop("computed_at").collect()
    return hashlib.sha256(repr(sorted(map(tuple, rows))).encode()).hexdigest()


def test_a_replay_restores_deleted_rows(spark, loaded):
    platform = loaded[0]
    settings = platform.settings
    before = checksum(spark, settings, "silver.user_actions")
    path = str(lake.table_path(settings, "bronze.kafka_records"))
    spark.sql(
        f"DELETE FROM delta.`{path}` WHERE topic = 'tmall.user_actions' AND partition = 1 "
        "AND offset BETWEEN 10 AND 19"
    )
    done = platform.cli(
        "replay", "--topic", contracts.TOPIC_ACTIONS, "--from", "1:0", "--to", "1:50", timeout=900
    )
    assert json.loads(done.stdout.splitlines()[-1])["bronze_rows_added"] == 10
    assert checksum(spark, settings, "silver.user_actions") == before


def test_a_replay_past_retention_fails_with_a_clear_message(loaded):
    platform = loaded[0]
    bootstrap = platform.settings.bootstrap
    produce(bootstrap, contracts.TOPIC_REJECTS, [{"reason": "oversize", "n": i} for i in range(5)])
    # what retention does: the log start moves past offset 3
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(contracts.TOPIC_REJECTS, 0, 3)])
    for future in futures.values():
        future.result(timeout=30)
    done = platform.cli(
        "replay", "--topic", contracts.TOPIC_REJECTS, "--from", "0", "--to", "5", check=False
    )
    assert done.returncode == 1
    assert "no longer holds offsets 0..2 of tmall.rejects partition 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_bronze_load_killed_mid_write_then_rerun_has_no_duplicate_and_no_gap(
    spark, loaded, tmp_path
):
    platform = loaded[0]
    settings = platform.settings
    _, backlog = generated_workload(tmp_path, events=150_000, seed=32)
    produce(settings.bootstrap, contracts.TOPIC_ACTIONS, backlog)
    table_dir = lake.table_path(settings, "bronze.kafka_records")
    log_dir = table_dir / "_delta_log"
    commits_before = set(log_dir.glob("*.json"))
    files_before = set(table_dir.rglob("*.parquet"))
    job = subprocess.Popen(
        [*ORDERLAKE, "batch", "bronze"],
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    killed_mid_write = False
    while time.monotonic() < deadline and job.poll() is None:
        written = set(table_dir.rglob("*.parquet")) - files_before
        if written and set(log_dir.glob("*.json")) == commits_before:
            os.killpg(job.pid, signal.SIGKILL)  # the CLI and its Spark JVM
            killed_mid_write = True
            break
        time.sleep(0.05)
    job.wait(timeout=60)
    assert killed_mid_write, "the load finished before it could be killed mid-write"
    # its work goes on in the warm Spark until the next session started on this host
    # interrupts what dead clients left running; from then on it writes nothing
    platform.cli("sql", "SELECT 1")
    settled = set(log_dir.glob("*.json"))
    assert len(settled - commits_before) <= 1, "at most the killed load's own, whole, commit"
    time.sleep(5)
    assert set(log_dir.glob("*.json")) == settled, "the killed load's work was interrupted"

    platform.cli("batch", "bronze", timeout=900)
    bronze = read(spark, settings, "bronze.kafka_records").where(
        f"topic = '{contracts.TOPIC_ACTIONS}'"
    )
    counts = {r["partition"]: r["count"] for r in bronze.groupBy("partition").count().collect()}
    ends = kafka_admin.end_offsets(settings.bootstrap)[contracts.TOPIC_ACTIONS]
    assert counts == {p: end for p, end in ends.items()}, "no gap"
    assert bronze.count() == bronze.select("partition", "offset").distinct().count(), "no dup"


def test_a_bronze_load_with_nothing_new_skips_spark_yet_misses_no_record(spark, loaded):
    platform = loaded[0]
    settings = platform.settings

    def load() -> dict:
        return json.loads(platform.cli("batch", "bronze", timeout=900).stdout.splitlines()[-1])

    load()  # whatever earlier tests left unloaded
    assert load() == {"layer": "bronze", "records": 0, "spark": False}
    # a new record in Kafka: the shortcut must not hide it
    produce(settings.bootstrap, contracts.TOPIC_ACTIONS, [{"user_id": 1, "event_id": "new-1"}])
    new = load()
    assert new["records"] == 1 and "spark" not in new
    # another writer changed bronze (here: the newest record of a partition deleted), so the
    # positions the last load left no longer describe the table: the load reads bronze again
    # and loads the record again (under a new load id, or Delta would skip the append)
    newest = (
        read(spark, settings, "bronze.kafka_records")
        .where(f"topic = '{contracts.TOPIC_ACTIONS}'")
        .orderBy("offset", ascending=False)
        .first()
    )
    path = lake.table_path(settings, "bronze.kafka_records")
    spark.sql(
        f"DELETE FROM delta.`{path}` WHERE topic = '{contracts.TOPIC_ACTIONS}' "
        f"AND partition = {newest['partition']} AND offset = {newest['offset']}"
    )
    again = load()
    assert again["records"] == 1 and "spark" not in again
    assert load()["spark"] is False


def test_sql_reads_unless_told_to_write_and_then_takes_the_writer_lock(loaded):
    platform = loaded[0]
    settings = platform.settings
    statement = "ALTER TABLE ops.batch_runs SET TBLPROPERTIES ('orderlake.checked' = 'yes')"
    before = lake.latest_version(settings, "ops.batch_runs")
    refused = platform.cli("sql", statement, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "writes to the lake" in refused.stderr and "--write" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert lake.latest_version(settings, "ops.batch_runs") == before
    held = locks.acquire(settings, locks.BATCH)  # a batch job is running
    try:
        busy = platform.cli("sql", statement, "--write", check=False)
    finally:
        held.release()
    assert busy.returncode == 1 and "holds the batch lock" in busy.stderr
    assert lake.latest_version(settings, "ops.batch_runs") == before
    platform.cli("sql", statement, "--write")
    assert lake.latest_version(settings, "ops.batch_runs") == before + 1


def test_every_declared_table_is_created_in_one_commit_as_its_spec_says(spark, tmp_path):
    """Schema (every column nullable, as a DataFrame write creates it), partitioning and table
    properties, all in version 0 of a fresh lake."""
    from orderlake import schemas
    from orderlake.settings import Settings

    settings = Settings(home=tmp_path / "home")
    lake.ensure_tables(spark, settings, list(schemas.TABLES))
    for spec in schemas.TABLES.values():
        assert lake.latest_version(settings, spec.name) == 0, spec.name
        detail = spark.sql(f"DESCRIBE DETAIL {lake.sql_name(settings, spec.name)}").first()
        assert detail["partitionColumns"] == list(spec.partition_by), spec.name
        assert detail["properties"] == dict(spec.properties), spec.name
        schema = lake.read(spark, settings, spec.name).schema
        assert schema.simpleString() == spec.schema.simpleString(), spec.name
        assert all(field.nullable for field in schema.fields), spec.name


def test_a_profile_that_moves_a_user_rebuilds_the_gold_days_of_their_purchases(spark, loaded):
    """A later profile that moves a user to another age bracket moves all their purchases in
    gold, also on days with no new action. Gold changes by exactly that move: earlier tests in
    the module leave records of their own, so they are loaded first and gold is compared before
    and after. Last in the module: it changes gold."""
    platform, profiles, actions, _ = loaded
    settings = platform.settings
    purchases = Counter(
        a["user_id"] for a in actions if a["action_type"] == contracts.ACTION_PURCHASE
    )
    buyer = max(purchases, key=lambda user: (purchases[user], user))  # buys on several days
    old = latest_profiles(profiles)[buyer]
    moved = {
        **old,
        "age_range": 2 if old["age_range"] != 2 else 7,
        "updated_at": "2015-11-12T00:00:00.000Z",
    }

    def gold() -> Counter:
        rows = read(spark, settings, "gold.orders_by_age_gender_daily").collect()
        return Counter(
            {(r["event_date"], r["age_bracket"], r["gender"]): r["orders"] for r in rows}
        )

    platform.cli("batch", "all", "--close-through", "2015-11-11", timeout=900)  # earlier tests'
    per_day = Counter(
        r["event_date"]
        for r in read(spark, settings, "silver.user_actions")
        .where(f"user_id = {buyer} AND action_type = {contracts.ACTION_PURCHASE}")
        .collect()
    )
    assert len(per_day) > 1
    before = gold()
    produce(settings.bootstrap, contracts.TOPIC_PROFILES, [moved])
    done = platform.cli("batch", "all", "--close-through", "2015-11-11", timeout=900)
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    silver = next(s for s in summaries if s["layer"] == "silver")
    assert {str(d) for d in per_day} <= set(silver["affected_dates"])
    gender = contracts.gender_label(old["gender"])
    expected = Counter(before)
    for day, n in per_day.items():
        expected[(day, contracts.age_bracket(old["age_range"]), gender)] -= n
        expected[(day, contracts.age_bracket(moved["age_range"]), gender)] += n
    assert +gold() == +expected  # unary +: no row for a bucket with 0 orders


def test_the_runs_left_beside_the_lake_are_what_ops_batch_runs_says(spark, loaded):
    """Every run of this module (batch all, replays, a property change of ops.batch_runs in
    between) kept the file the next run starts from: it describes the table's current version
    and holds what a read of the table finds."""
    settings = loaded[0].settings
    version, saved = batch.Runs.from_json(batch.runs_path(settings).read_text())
    assert version == lake.latest_version(settings, "ops.batch_runs")
    in_table = batch.runs_in_table(spark, settings)
    assert saved.newest == in_table.newest
    assert sorted(saved.silver_since_gold) == sorted(in_table.silver_since_gold)
    assert {"silver", "gold"} <= set(saved.newest)
