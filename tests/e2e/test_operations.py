"""A data engineer's operations on the running platform, through the real Airflow scheduler
(the platform the main job left running): a replay with bad parameters, a valid replay,
maintenance, a validation that must fail, a task that fails once and succeeds on its retry,
and a reconciliation that must name the bronze row deleted on purpose. Runs after
test_main_job.py, on the lake it built."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from orderlake import contracts, kafka_admin, lake, locks
from orderlake.stack import airflow
from orderlake.stack.supervisor import Supervisor
from tests.fixtures.stack import produce

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def platform(main_job):
    platform, done = main_job
    assert done.returncode == 0, "the main job failed: see test_main_job.py"
    return platform


def run_dag(platform, dag_id: str, conf: dict | None = None) -> dict:
    """Trigger a run through the API and wait for it; adds the failed tasks' log text."""
    settings = platform.settings
    result = airflow.wait_run(settings, dag_id, airflow.trigger(settings, dag_id, conf), 1200)
    result["logs"] = "\n".join(
        Path(info["log"]).read_text()
        for info in result["tasks"].values()
        if info["state"] == "failed" and Path(info["log"]).exists()
    )
    return result


def states(result: dict) -> dict[str, str]:
    return {task: info["state"] for task, info in result["tasks"].items()}


def table(spark, platform, name):
    return spark.read.format("delta").load(str(lake.table_path(platform.settings, name)))


def checksum(spark, platform, name: str) -> str:
    rows = table(spark, platform, name).drop("computed_at").collect()
    return hashlib.sha256(repr(sorted(map(tuple, rows))).encode()).hexdigest()


def latest_reconciliation(spark, platform) -> list:
    rows = table(spark, platform, "ops.reconciliation")
    last = rows.orderBy(rows.checked_at.desc()).first()["run_id"]
    return rows.where(rows.run_id == last).collect()


def test_a_replay_with_bad_parameters_fails_before_any_work(spark, platform):
    before = table(spark, platform, "ops.replays").count()
    result = run_dag(
        platform, "replay", {"topic": contracts.TOPIC_ACTIONS, "from": "soon", "to": "5"}
    )
    assert result["state"] == "failed"
    assert states(result) == {"check_params": "failed", "run_replay": "upstream_failed"}
    assert "--from must be offsets" in result["logs"]
    assert table(spark, platform, "ops.replays").count() == before


def test_a_valid_replay_leaves_the_tables_identical(spark, platform):
    names = ("silver.user_actions", "gold.orders_by_age_gender_daily", "bronze.kafka_records")
    before = {name: checksum(spark, platform, name) for name in names}
    result = run_dag(
        platform, "replay", {"topic": contracts.TOPIC_ACTIONS, "from": "0", "to": "1500"}
    )
    assert result["state"] == "success", result
    assert {name: checksum(spark, platform, name) for name in names} == before
    last = table(spark, platform, "ops.replays").orderBy("started_at").collect()[-1]
    assert last["records"] == 4500 and last["bronze_rows_added"] == 0


def test_delta_maintenance_compacts_and_vacuums_with_the_guard(platform):
    result = run_dag(platform, "delta_maintenance")
    assert result["state"] == "success", result
    assert states(result) == {"optimize": "success", "vacuum": "success"}
    # the speed tables too, by their one writer: the running speed layer did the work
    for task in ("optimize", "vacuum"):
        log = Path(result["tasks"][task]["log"]).read_text()
        assert "silver.user_actions" in log, log[-2000:]
        assert "speed.purchases" in log and "the speed layer" in log, log[-2000:]


def test_bad_rows_in_silver_fail_the_validation_task(spark, platform):
    path = str(lake.table_path(platform.settings, "silver.user_actions"))
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]
    good = table(spark, platform, "silver.user_actions").limit(2)
    bad = good.withColumn("action_type", good.action_type + 7)  # and duplicate event_ids
    bad.write.format("delta").mode("append").save(path)
    try:
        result = run_dag(platform, "validate_quality")
        assert result["state"] == "failed"
        assert states(result) == {"run_suites": "failed"}
        assert "silver_user_actions" in result["logs"]
    finally:
        spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {version}")


def wait_for(probe, timeout: float):
    """``probe()``'s first truthy answer within ``timeout`` seconds, else its last answer."""
    deadline = time.monotonic() + timeout
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(2)
    return found


def _runs_of(settings, dag_id: str, earlier: set[str], state: str) -> list[str]:
    """Runs of ``dag_id`` started after ``earlier`` whose load_bronze task is in ``state``."""
    return [
        run["dag_run_id"]
        for run in airflow.dag_runs(settings, dag_id)
        if run["dag_run_id"] not in earlier
        and airflow.task_states(settings, dag_id, run["dag_run_id"])
        .get("load_bronze", {})
        .get("state")
        == state
    ]


def test_a_task_that_fails_once_succeeds_on_its_retry_with_exact_tables(spark, platform):
    """The warm Spark is down when a bronze load starts: the first attempt fails in one sentence
    naming the component; the server is started again, Airflow's retry (15 s later, while the
    server may still be starting: it waits for it) succeeds, and bronze then holds every Kafka
    record exactly once."""
    settings = platform.settings
    dag = "ingest_bronze"
    earlier = {run["dag_run_id"] for run in airflow.dag_runs(settings, dag)}
    supervisor = Supervisor(settings)
    supervisor.stop("spark")
    try:
        marker = f"retry-{time.time_ns()}"
        produce(settings.bootstrap, contracts.TOPIC_ACTIONS, [f"{marker}-{i}" for i in range(500)])
        mine = airflow.trigger(settings, dag)
        # the first load to see the new records fails (ours, or a scheduled run just before it)
        retrying = wait_for(lambda: _runs_of(settings, dag, earlier, "up_for_retry"), 300)
        assert retrying, "no bronze load went up for retry while the Spark server was down"
    finally:
        supervisor.start("spark", wait=False)
    assert airflow.wait_run(settings, dag, mine, 600)["state"] == "success"
    for run_id in retrying:
        result = airflow.wait_run(settings, dag, run_id, 600)
        assert result["state"] == "success", result
        task = result["tasks"]["load_bronze"]
        assert task["try_number"] == 2, task
        first = Path(task["log"]).with_name("attempt=1.log").read_text()
        assert "The Spark server (component `spark`) does not answer" in first, first[-2000:]
    bronze = table(spark, platform, "bronze.kafka_records")
    held = {
        (r["topic"], r["partition"]): (r["rows"], r["offsets"])
        for r in bronze.groupBy("topic", "partition")
        .agg(F.count("*").alias("rows"), F.countDistinct("offset").alias("offsets"))
        .collect()
    }
    for (topic, part), (earliest, end) in kafka_admin.watermarks(settings.bootstrap).items():
        assert held.get((topic, part), (0, 0)) == (end - earliest, end - earliest), (topic, part)
    assert bronze.where(bronze.value.cast("string").startswith(marker)).count() == 500


def test_a_deleted_bronze_row_fails_reconciliation_naming_partition_and_offset(spark, platform):
    path = str(lake.table_path(platform.settings, "bronze.kafka_records"))
    # under the lake's writer lock, as `orderlake sql --write` deletes: a scheduled bronze
    # load may be appending right now
    with locks.exclusive(platform.settings, locks.BATCH, wait=True):
        spark.sql(
            f"DELETE FROM delta.`{path}` WHERE topic = '{contracts.TOPIC_ACTIONS}' "
            "AND partition = 1 AND offset = 42"
        )
    result = run_dag(platform, "reconcile_layers")
    assert result["state"] == "failed"
    assert states(result) == {"reconcile": "failed"}
    failed = [r for r in latest_reconciliation(spark, platform) if r["status"] == "failed"]
    assert [(r["check"], r["scope"]) for r in failed] == [
        ("kafka_vs_bronze", f"{contracts.TOPIC_ACTIONS}/1")
    ]
    assert json.loads(failed[0]["detail"])["unexplained"] == {"missing_offsets": ["42"]}
    assert f"{contracts.TOPIC_ACTIONS}/1 (missing_offsets [42])" in result["logs"]
