"""The main job (`make run`) as a newcomer runs it, in a fresh ORDERLAKE_HOME on free ports:
the whole platform comes up (Kafka, Flume, the speed layer, Airflow, the dashboard), the real
samples and a generated stream flow through, and the printed figures of both layers equal an
independent computation over every line written to the spool dirs. The running stack is then
checked as users meet it: the Airflow API without a token, the streaming supervisor DAG, the
dashboard in Chromium, and a second `make run`."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from orderlake import contracts
from orderlake.private import is_private
from orderlake.stack import airflow, streaming
from orderlake.stack.supervisor import Supervisor
from tests.fixtures.browser import render_page
from tests.fixtures.stack import MAIN_JOB
from tests.fixtures.workload import expected_gold, spool_lines

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]


def expected_figures(platform) -> dict[str, Counter]:
    """Orders per age bracket and per gender over every action line in the spool dirs (the real
    samples and the generated stream), computed in plain Python."""
    spool = platform.settings.spool_dir
    gold = expected_gold(
        spool_lines(spool, contracts.PROFILES_FILE), spool_lines(spool, contracts.ACTIONS_FILE)
    )
    by_age, by_gender = Counter(), Counter()
    for (_, bracket, gender), n in gold.items():
        by_age[bracket] += n
        by_gender[gender] += n
    return {"age_bracket": by_age, "gender": by_gender}


def test_the_main_job_prints_both_layers_figures_equal_to_an_independent_count(main_job):
    platform, done = main_job
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    summary = json.loads((platform.settings.reports_dir / "main-job.json").read_text())
    for dimension, expected in expected_figures(platform).items():
        rows = summary["figures"][dimension]["rows"]
        assert {r["label"]: r["speed"] for r in rows if r["speed"]} == dict(expected)
        assert {r["label"]: r["gold"] for r in rows if r["gold"]} == dict(expected)
        for label, n in expected.items():  # the printed table shows the same numbers
            assert re.search(rf"^  {re.escape(label)}\s+{n:,}\s", done.stdout, re.M), label
    assert summary["reconciliation"]["status"] == "ok"
    assert summary["validation"]["success"] is True
    assert all(path.endswith(".png") for path in summary["reports"])
    for line in ("Dashboard: http://127.0.0.1:", "Airflow:   http://127.0.0.1:", "password"):
        assert line in done.stdout
    # the samples' purchases by users without a profile are counted under unknown, and said
    assert "purchases by users without a profile" in done.stdout
    # the user's terminal shows the job's own lines only: no librdkafka connection chatter
    # while the broker starts, no Python traceback
    assert "rdkafka" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_second_make_run_says_the_platform_is_running(main_job):
    platform, _ = main_job
    again = subprocess.run(MAIN_JOB, env=platform.env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert "already running" in again.stdout and "Traceback" not in again.stderr


def test_the_airflow_api_needs_a_token(main_job):
    settings = main_job[0].settings
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{airflow.url(settings)}/api/v2/dags", timeout=30)
    assert refused.value.code == 401
    dags = airflow.api(settings, "GET", "/dags")["dags"]
    assert len(dags) == 7
    assert airflow.api(settings, "GET", "/importErrors")["total_entries"] == 0


def test_status_shows_every_component_and_the_airflow_login(main_job):
    state = main_job[0].status()
    for name in ("kafka", "flume-collector", "streaming", "airflow", "dashboard"):
        assert state[name]["state"] == "RUNNING", (name, state[name])
    assert state["airflow"]["user"] == "admin" and state["airflow"]["password"]
    assert state["dashboard"]["url"].startswith("http://127.0.0.1:")
    assert state["streaming"]["kafka_lag_total"] == 0


def test_the_streaming_supervisor_dag_restarts_a_stopped_speed_layer(main_job):
    """The DAG also runs every 2 minutes: the run that restarts the stopped speed layer is ours,
    or a scheduled one that came at the same moment; either way a run of this DAG does it."""
    platform = main_job[0]
    settings = platform.settings
    dag = "streaming_supervisor"
    finished = {
        r["dag_run_id"] for r in airflow.dag_runs(settings, dag) if r["state"] in airflow.FINISHED
    }
    log = settings.logs_dir / f"{streaming.NAME}.log"
    tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")
    Supervisor(settings).stop(streaming.NAME)
    # the SIGTERM reaches its JVM too (the whole process group): a clean stop, no py4j trace
    assert log.read_text(errors="replace").count("Traceback (most recent call last)") == tracebacks
    run_id = airflow.trigger(settings, dag)
    result = airflow.wait_run(settings, dag, run_id, timeout=600)
    assert result["state"] == "success", result
    assert platform.status()["streaming"]["state"] in ("STARTING", "RUNNING")
    since_stop = [r["dag_run_id"] for r in airflow.dag_runs(settings, dag)]
    logs = [
        Path(airflow.wait_run(settings, dag, run, timeout=600)["tasks"]["check_speed_layer"]["log"])
        for run in since_stop
        if run not in finished
    ]
    assert any("restarted the streaming job" in log.read_text() for log in logs if log.exists())


def test_the_dashboard_in_chromium_shows_what_sql_answers_over_the_serving_view(main_job):
    platform = main_job[0]
    out = platform.cli(
        "sql",
        "SELECT age_bracket, SUM(orders) AS orders FROM gold.orders_by_age_gender GROUP BY 1",
        "--format",
        "json",
    ).stdout
    sql = {r["age_bracket"]: r["orders"] for r in map(json.loads, out.splitlines())}
    page = render_page(platform.status()["dashboard"]["url"])
    assert page.body.get("data-state") == "ready", page.body
    shown = {
        label: int(text.replace(",", ""))
        for (figure, label, field), text in page.cells.items()
        if figure == "age" and field == "orders"
    }
    assert {k: v for k, v in shown.items() if v} == sql


def test_no_file_under_orderlake_home_shows_a_secret_to_other_users(main_job):
    """Airflow's Fernet key, JWT secret, API secret key and the admin's password give whoever
    reads them the platform: every file holding one must be readable by its owner only."""
    platform, _ = main_job
    home = platform.settings.home
    secrets = json.loads((home / "airflow" / "orderlake-secrets.json").read_text())
    needles = [value.encode() for value in secrets.values()]
    holding = []
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            if any(n in data for n in needles):
                holding.append(path)
    assert any(p.name == "supervisord.conf" for p in holding), holding  # the test sees them
    exposed = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in holding if not is_private(p)]
    assert not exposed, exposed
