"""`orderlake validate` against a small real lake (Delta tables in a temporary ORDERLAKE_HOME):
a clean lake passes, bad silver rows fail with one sentence, and both runs land in
ops.dq_results with the table versions they checked and a Data Docs site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from delta.tables import DeltaTable

from orderlake import contracts, lake, quality, schemas
from orderlake.errors import CheckFailed
from orderlake.settings import Settings
from orderlake.transforms import gold
from tests.fixtures.stack import isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

T0 = datetime(2015, 11, 10, 9, 0, tzinfo=UTC)
EXPECTATIONS = {  # expectations per suite
    "bronze_kafka_records": 4,
    "silver_user_actions": 9,
    "silver_users": 5,
    "gold_orders_by_age_gender_daily": 4,
    "quarantine_rate": 1,
}


def version(spark, settings, name) -> int:
    path = str(lake.table_path(settings, name))
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def build_lake(spark, settings: Settings) -> None:
    """200 bronze records (40 profiles, 160 actions), their silver rows, one quarantined
    record (rate 0.005), and gold computed by the real transform."""
    for spec in schemas.BATCH_TABLES:
        if spec is not schemas.DQ_RESULTS_TABLE:  # validate creates its own table
            lake.ensure_table(spark, settings, spec)
    bronze, actions, users = [], [], []
    for user_id in range(1, 41):
        coords = {"topic": contracts.TOPIC_PROFILES, "partition": 0, "offset": user_id - 1}
        bronze.append({**coords, "kafka_timestamp": T0, "value": "{}"})
        age, gender = user_id % 9, user_id % 3
        users.append(
            {
                **coords,
                "user_id": user_id,
                "age_range": age,
                "gender": gender,
                "age_bracket": contracts.age_bracket(age),
                "gender_label": contracts.gender_label(gender),
                "updated_at": T0,
            }
        )
    for i in range(160):
        coords = {"topic": contracts.TOPIC_ACTIONS, "partition": i % 3, "offset": i // 3}
        when = T0 + timedelta(hours=i)
        bronze.append({**coords, "kafka_timestamp": when, "value": "{}"})
        if i == 0:
            continue  # this record is the quarantined one
        actions.append(
            {
                **coords,
                "event_id": f"host-1:actions.log:{i}",
                "user_id": i % 40 + 1,
                "item_id": 100 + i,
                "cat_id": 7,
                "seller_id": 9,
                "brand_id": None if i % 5 == 0 else 3,
                "action_type": i % 4,
                "event_time": when,
                "event_date": when.date(),
                "kafka_timestamp": when,
            }
        )
    for row in bronze:
        row |= {"kafka_date": row["kafka_timestamp"].date(), "load_id": 200, "ingested_at": T0}
    quarantined = {"topic": contracts.TOPIC_ACTIONS, "partition": 0, "offset": 0}
    quarantined |= {"value_text": "{", "reason": "invalid_json", "layer": "silver"}
    write = {
        schemas.BRONZE_TABLE: bronze,
        schemas.SILVER_ACTIONS_TABLE: [{**a, "load_id": 200} for a in actions],
        schemas.SILVER_USERS: users,
        schemas.QUARANTINE_TABLE: [{**quarantined, "quarantined_at": T0}],
    }
    for spec, rows in write.items():
        lake.append(rows_frame(spark, spec.schema, rows), settings, spec.name)
    silver = lake.read(spark, settings, schemas.SILVER_ACTIONS_TABLE.name)
    daily = gold.daily_orders(
        silver, lake.read(spark, settings, "silver.users"), date(2015, 11, 15)
    )
    lake.overwrite(daily, settings, schemas.GOLD_DAILY_TABLE.name)


def rows_frame(spark, schema, rows):
    return spark.createDataFrame(
        [tuple(r.get(f) for f in schema.fieldNames()) for r in rows], schema
    )


def validate_cli(settings: Settings, spark_server, cwd, *args: str) -> subprocess.CompletedProcess:
    env = isolated_env(settings.home, spark_server)
    # from another directory: expectations/ must be found without the checkout on sys.path
    return subprocess.run(
        [sys.executable, "-m", "orderlake.cli", "validate", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_validate_records_passing_and_failing_runs(spark, spark_server, tmp_path):
    settings = Settings(home=tmp_path / "home")
    build_lake(spark, settings)

    done = validate_cli(settings, spark_server, tmp_path)
    assert done.returncode == 0, done.stderr
    summaries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["suite"] for s in summaries] == list(EXPECTATIONS)
    assert all(s["success"] for s in summaries)
    assert "Traceback" not in done.stderr and "Calculating Metrics" not in done.stderr
    index = settings.reports_dir / "data_docs" / "index.html"
    assert index.is_file()

    results = lake.read(spark, settings, "ops.dq_results").collect()
    assert {r["run_id"] for r in results} == {summaries[0]["run_id"]}
    assert {s: sum(r["suite"] == s for r in results) for s in EXPECTATIONS} == EXPECTATIONS
    assert all(r["success"] for r in results)
    for r in results:
        assert r["table_version"] == version(spark, settings, r["table_name"])
        assert os.path.isfile(r["data_docs"])
    rate = next(r for r in results if r["suite"] == "quarantine_rate")
    assert json.loads(rate["observed"])["partial_unexpected_list"] == []
    assert json.loads(rate["observed"])["table_versions"] == {
        "quarantine.records": version(spark, settings, "quarantine.records"),
        "bronze.kafka_records": version(spark, settings, "bronze.kafka_records"),
    }

    # a duplicate event_id and an unknown action type reach silver
    silver = lake.read(spark, settings, "silver.user_actions")
    first = silver.orderBy("event_id").first().asDict()
    bad = [first, {**first, "event_id": "host-2:actions.log:1", "action_type": 7}]
    lake.append(rows_frame(spark, schemas.SILVER_ACTIONS, bad), settings, "silver.user_actions")

    # a passing suite in the same run is recorded but not named in the error
    rerun = ["silver_user_actions", "gold_orders_by_age_gender_daily"]
    done = validate_cli(
        settings, spark_server, tmp_path, *(arg for suite in rerun for arg in ("--suite", suite))
    )
    assert done.returncode == CheckFailed.exit_code  # 3: orchestration fails it without retrying
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "silver_user_actions" in lines[0] and str(index) in lines[0]
    assert "expect_column_values_to_be_unique(event_id)" in lines[0]
    assert "expect_column_values_to_be_in_set(action_type)" in lines[0]
    for suite in set(EXPECTATIONS) - {"silver_user_actions"}:
        assert suite not in lines[0]
    failed_run = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(s["suite"], s["success"]) for s in failed_run] == [(rerun[0], False), (rerun[1], True)]

    results = lake.read(spark, settings, "ops.dq_results").where(
        f"run_id = '{failed_run[0]['run_id']}'"
    )
    failed = {(r["expectation"], r["column"]) for r in results.where("NOT success").collect()}
    assert failed == {
        ("expect_column_values_to_be_unique", "event_id"),
        ("expect_column_values_to_be_in_set", "action_type"),
    }
    assert results.count() == sum(EXPECTATIONS[suite] for suite in rerun)
    silver_version = version(spark, settings, "silver.user_actions")
    versions = {
        r["table_version"] for r in results.where("suite = 'silver_user_actions'").collect()
    }
    assert versions == {silver_version}


def test_a_missing_table_fails_its_suite_with_a_reason(spark, tmp_path):
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(CheckFailed, match=r"silver_users \(table silver.users does not exist"):
        list(quality.validate(spark, settings, ["silver_users"]))
    (row,) = lake.read(spark, settings, "ops.dq_results").collect()
    assert (row["suite"], row["expectation"], row["success"]) == (
        "silver_users",
        "table_exists",
        False,
    )
    assert "orderlake batch all" in json.loads(row["observed"])["error"]
    assert (settings.reports_dir / "data_docs" / "index.html").is_file()
