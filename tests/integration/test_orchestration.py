"""The Airflow DAGs run for real with dag.test() against the real broker, Spark and Delta (a
temporary AIRFLOW_HOME): ingest -> silver/gold -> validate -> reconcile all green on a generated
stream; then a replay with bad parameters, a valid replay, maintenance, a validation that must
fail and a reconciliation that must name the bronze row deleted on purpose."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from datetime import date

import pytest

from orderlake import contracts, lake
from orderlake.settings import PROJECT_ROOT
from orderlake.stack import kafka
from tests.fixtures.airflow import dag_test
from tests.fixtures.workload import expected_gold, generated_workload, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

D11 = date(2015, 11, 11)  # the generated stream's last day: still open, so not reconciled


@pytest.fixture(scope="module")
def stream(kafka_only, tmp_path_factory):
    """A generated stream in Kafka, read once by the real speed-layer entry point."""
    tmp = tmp_path_factory.mktemp("dags")
    profiles, actions = generated_workload(tmp, events=20_000, seed=41)
    send(kafka_only.settings.bootstrap, profiles, actions)
    subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "streaming" / "speed_layer.py"), "--once"],
        env=kafka_only.env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return kafka_only, profiles, actions


def run(platform, dag_id: str, conf: dict | None = None) -> dict:
    result, output = dag_test(platform.settings, platform.env, dag_id, conf)
    result["output"] = output
    return result


def table(spark, platform, name):
    return spark.read.format("delta").load(str(lake.table_path(platform.settings, name)))


def checksum(spark, platform, name: str) -> str:
    rows = table(spark, platform, name).drop("computed_at").collect()
    return hashlib.sha256(repr(sorted(map(tuple, rows))).encode()).hexdigest()


def latest_reconciliation(spark, platform) -> list:
    rows = table(spark, platform, "ops.reconciliation")
    last = rows.orderBy(rows.checked_at.desc()).first()["run_id"]
    return rows.where(rows.run_id == last).collect()


def test_ingest_silver_gold_validate_reconcile_all_green(spark, stream):
    platform, profiles, actions = stream
    for dag_id in ("ingest_bronze", "build_silver_gold", "validate_quality", "reconcile_layers"):
        result = run(platform, dag_id)
        assert result["state"] == "success", f"{dag_id}: {result['output'][-4000:]}"
        assert set(result["tasks"].values()) == {"success"}, (dag_id, result["tasks"])

    bronze = table(spark, platform, "bronze.kafka_records")
    ends = kafka.end_offsets(platform.settings.bootstrap)
    assert bronze.count() == sum(sum(p.values()) for p in ends.values())
    gold = table(spark, platform, "gold.orders_by_age_gender_daily").collect()
    got = Counter({(r["event_date"], r["age_bracket"], r["gender"]): r["orders"] for r in gold})
    assert got == expected_gold(profiles, actions)

    checks = latest_reconciliation(spark, platform)
    assert {r["status"] for r in checks} <= {"ok", "explained"}
    compared = [r for r in checks if r["check"] == "speed_vs_batch" and r["scope"].endswith("all")]
    assert len(compared) >= 100, "every closed day compared"
    closed = sum(n for (day, _, _), n in expected_gold(profiles, actions).items() if day < D11)
    assert sum(r["expected"] for r in compared) == sum(r["actual"] for r in compared) == closed
    partitions = {r["scope"] for r in checks if r["check"] == "kafka_vs_bronze"}
    assert f"{contracts.TOPIC_ACTIONS}/2" in partitions
    dq = table(spark, platform, "ops.dq_results")
    assert dq.count() > 0 and dq.where("NOT success").count() == 0


def test_a_replay_with_bad_parameters_fails_before_any_work(spark, stream):
    platform = stream[0]
    before = table(spark, platform, "ops.replays").count()
    result = run(platform, "replay", {"topic": contracts.TOPIC_ACTIONS, "from": "soon", "to": "5"})
    assert result["state"] == "failed"
    assert result["tasks"] == {"check_params": "failed", "run_replay": "upstream_failed"}
    assert "--from must be offsets" in result["output"]
    assert table(spark, platform, "ops.replays").count() == before


def test_a_valid_replay_leaves_the_tables_identical(spark, stream):
    platform = stream[0]
    names = ("silver.user_actions", "gold.orders_by_age_gender_daily", "bronze.kafka_records")
    before = {name: checksum(spark, platform, name) for name in names}
    conf = {"topic": contracts.TOPIC_ACTIONS, "from": "0", "to": "1500"}
    result = run(platform, "replay", conf)
    assert result["state"] == "success", result["output"][-4000:]
    after = {name: checksum(spark, platform, name) for name in names}
    assert after == before
    replays = table(spark, platform, "ops.replays").collect()
    assert replays[-1]["records"] == 4500 and replays[-1]["bronze_rows_added"] == 0


def test_delta_maintenance_compacts_and_vacuums_with_the_guard(stream):
    result = run(stream[0], "delta_maintenance")
    assert result["state"] == "success", result["output"][-4000:]
    assert result["tasks"] == {"optimize": "success", "vacuum": "success"}


def test_bad_rows_in_silver_fail_the_validation_task(spark, stream):
    platform = stream[0]
    path = str(lake.table_path(platform.settings, "silver.user_actions"))
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]
    good = table(spark, platform, "silver.user_actions").limit(2)
    bad = good.withColumn("action_type", good.action_type + 7)  # and duplicate event_ids
    bad.write.format("delta").mode("append").save(path)
    try:
        result = run(platform, "validate_quality")
        assert result["state"] == "failed"
        assert result["tasks"] == {"run_suites": "failed"}
        assert "silver_user_actions" in result["output"]
    finally:
        spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {version}")


def test_a_deleted_bronze_row_fails_reconciliation_naming_partition_and_offset(spark, stream):
    platform = stream[0]
    path = str(lake.table_path(platform.settings, "bronze.kafka_records"))
    spark.sql(
        f"DELETE FROM delta.`{path}` WHERE topic = '{contracts.TOPIC_ACTIONS}' "
        "AND partition = 1 AND offset = 42"
    )
    result = run(platform, "reconcile_layers")
    assert result["state"] == "failed"
    assert result["tasks"] == {"reconcile": "failed"}
    failed = [r for r in latest_reconciliation(spark, platform) if r["status"] == "failed"]
    assert [(r["check"], r["scope"]) for r in failed] == [
        ("kafka_vs_bronze", f"{contracts.TOPIC_ACTIONS}/1")
    ]
    detail = json.loads(failed[0]["detail"])
    assert detail["unexplained"] == {"missing_offsets": ["42"]}
    assert f"{contracts.TOPIC_ACTIONS}/1 (missing_offsets [42])" in result["output"]
