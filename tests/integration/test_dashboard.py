"""`orderlake report` and the dashboard over a small real lake (Delta tables written by Spark):
the PNGs are valid images, and the numbers the page shows in headless Chromium equal what
`orderlake sql` answers from gold.orders_by_age_gender."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from orderlake import lake, schemas
from orderlake.settings import Settings
from orderlake.stack import dashboard as stack_dashboard
from tests.fixtures.browser import render_page
from tests.fixtures.stack import ORDERLAKE, isolated_env, settings_from

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# final days: the batch layer is the truth (speed rows of these days must not count)
FINAL = {
    date(2015, 11, 9): {("25-29", "female"): 5, ("30-34", "male"): 3, ("unknown", "unknown"): 1},
    date(2015, 11, 10): {("18-24", "female"): 4, (">=50", "male"): 2, ("<18", "female"): 1},
}
OPEN_DAY = date(2015, 11, 11)
# gold has a partial, not yet final count of the open day: the view takes the speed layer's
GOLD_OPEN = {("25-29", "female"): 99}
SPEED = {
    OPEN_DAY: {
        ("25-29", "female"): 4,
        ("35-39", "male"): 2,
        ("unknown", "unknown"): 1,
        ("40-49", "female"): 3,
    },
    date(2015, 11, 10): {("18-24", "female"): 7},
}
NOW = datetime(2015, 11, 12, 1, 0, 0)


def gold_rows(day: date, counts: dict, final: bool) -> list[tuple]:
    total = sum(counts.values())
    return [(day, b, g, n, n / total, final, NOW, None, None) for (b, g), n in counts.items()]


def purchase_rows(day: date, counts: dict, batch_id: int, prefix: str) -> list[tuple]:
    rows, seq = [], 0
    for (bracket, gender), n in counts.items():
        for _ in range(n):
            at = datetime.combine(day, datetime.min.time()) + timedelta(minutes=7 * seq)
            window = at.replace(second=0)
            rows.append(
                (f"{prefix}-{seq}", seq, at, day, window, bracket, gender, True, 0, seq, at,
                 batch_id, NOW)
            )  # fmt: skip
            seq += 1
    return rows


def write(spark, settings, name: str, rows: list[tuple]) -> None:
    lake.ensure_table(spark, settings, name)
    df = spark.createDataFrame(rows, schemas.TABLES[name].schema)
    lake.append(df, settings, name)


def expected(dimension: int) -> dict[str, dict[str, int]]:
    """label -> {final, provisional} orders, in plain Python from the literals above."""
    out: dict[str, Counter] = {"final": Counter(), "provisional": Counter()}
    for counts in FINAL.values():
        for key, n in counts.items():
            out["final"][key[dimension]] += n
    for key, n in SPEED[OPEN_DAY].items():
        out["provisional"][key[dimension]] += n
    return {status: dict(c) for status, c in out.items()}


@pytest.fixture(scope="module")
def built(spark, spark_server, tmp_path_factory):
    """A lake with gold (two final days, one open day) and speed.purchases (the open day and
    a final day), and the environment of CLI processes using it (and the warm Spark)."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    env = isolated_env(home, spark_server)
    settings = settings_from(env)
    gold = "gold.orders_by_age_gender_daily"
    rows = [r for day, counts in FINAL.items() for r in gold_rows(day, counts, True)]
    write(spark, settings, gold, rows + gold_rows(OPEN_DAY, GOLD_OPEN, False))
    for batch_id, (day, counts) in enumerate(SPEED.items()):  # two commits
        write(spark, settings, "speed.purchases", purchase_rows(day, counts, batch_id, f"b{day}"))
    return env, settings


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*ORDERLAKE, *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, f"orderlake {args} exited {done.returncode}: {done.stderr}"
    return done


# --- (a) orderlake report ---------------------------------------------------------------------
def test_report_writes_both_figures_as_png(built):
    env, settings = built
    paths = [Path(p) for p in cli(env, "report").stdout.split()]
    assert [p.name for p in paths] == [
        "orders_by_age_bracket_2015-11-09_2015-11-11.png",
        "orders_by_gender_2015-11-09_2015-11-11.png",
    ]
    for path in paths:
        assert path.parent == settings.reports_dir
        with Image.open(path) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 300


def test_report_of_a_date_range_names_it(built):
    env, _ = built
    out = cli(env, "report", "--from", "2015-11-10", "--to", "2015-11-10").stdout.split()
    assert [Path(p).name for p in out][0] == "orders_by_age_bracket_2015-11-10_2015-11-10.png"


def test_report_without_a_gold_table_is_one_sentence_and_exit_1(tmp_path):
    done = cli(isolated_env(tmp_path / "empty"), "report", check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no gold table yet" in done.stderr and "orderlake batch all" in done.stderr


def test_report_of_a_range_without_orders_and_a_bad_date_are_one_sentence(built):
    env, _ = built
    empty = cli(env, "report", "--from", "2016-01-01", check=False)
    assert empty.returncode == 1 and "has no orders from 2016-01-01" in empty.stderr
    bad = cli(env, "report", "--to", "2015-13-01", check=False)
    assert bad.returncode == 2 and "--to '2015-13-01' is not a date" in bad.stderr
    assert "Traceback" not in empty.stderr + bad.stderr


# --- (b) the dashboard --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(built):
    """The dashboard started as `orderlake up` would start it: the component's own program
    (command and environment) and readiness check, without supervisord."""
    _, settings = built
    part = stack_dashboard.component(settings)
    assert part.ports == {"the dashboard": (settings.dashboard_port, "ORDERLAKE_DASHBOARD_PORT")}
    (program,) = part.programs()
    proc = subprocess.Popen(
        program.command,
        cwd=program.directory,
        env=program.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        part.ready()
        assert proc.poll() is None, f"the dashboard exited: {proc.stdout.read()}"
        base = part.address()["url"].rstrip("/")
        assert base == f"http://127.0.0.1:{settings.dashboard_port}"
        yield base, proc
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "the dashboard did not stop cleanly on SIGTERM"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.read())


def sql_json(env: dict, statement: str) -> list[dict]:
    out = cli(env, "sql", statement, "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def spark_says(built) -> dict[str, dict[str, dict[str, int]]]:
    """figure -> label -> {status: orders} of gold.orders_by_age_gender, answered by Spark in a
    fresh `orderlake sql` process on the warm Spark."""
    env, _ = built
    per = "status, SUM(orders) AS orders FROM gold.orders_by_age_gender GROUP BY"
    rows = sql_json(
        env,
        f"SELECT 'age' AS figure, age_bracket AS label, {per} age_bracket, status "
        f"UNION ALL SELECT 'gender' AS figure, gender AS label, {per} gender, status",
    )
    out: dict[str, dict[str, dict[str, int]]] = {"age": {}, "gender": {}}
    for r in rows:
        out[r["figure"]].setdefault(r["label"], {})[r["status"]] = r["orders"]
    return out


def test_api_figures_equal_spark_sql_over_the_serving_view(spark_says, dashboard):
    base, _ = dashboard
    answer = get_json(base + "/api/figures")
    assert answer["ok"], answer
    assert answer["range"]["all"] == {"from": "2015-11-09", "to": "2015-11-11", "days": 3}
    assert answer["range"]["provisional"]["from"] == OPEN_DAY.isoformat()
    for name, dimension in (("age", 0), ("gender", 1)):
        fig = answer[name]
        for status in ("final", "provisional"):
            served = dict(zip(fig["labels"], fig["orders"][status], strict=True))
            assert {k: v for k, v in served.items() if v} == {
                label: by[status] for label, by in spark_says[name].items() if status in by
            }
            assert {k: v for k, v in served.items() if v} == expected(dimension)[status]
    # a date filter
    one_day = get_json(base + "/api/figures?from=2015-11-10&to=2015-11-10")
    assert one_day["age"]["totals"]["all"] == sum(FINAL[date(2015, 11, 10)].values())
    with pytest.raises(urllib.error.HTTPError) as bad:
        get_json(base + "/api/figures?from=yesterday")
    assert bad.value.code == 400


def test_checks_say_no_data_yet_then_show_the_latest_runs_live(spark, built, dashboard):
    env, settings = built
    base, _ = dashboard
    before = get_json(base + "/api/checks")
    assert before["reconciliation"] == {
        "ok": False,
        "message": "no data yet",
        "reason": "ops.reconciliation is not in the lake yet.",
    }
    assert before["validation"]["message"] == "no data yet"
    assert before["reconciliation_url"] == (
        f"http://127.0.0.1:{settings.airflow_port}/dags/reconcile_layers"
    )
    write_checks(spark, settings)
    after = get_json(base + "/api/checks")
    rec = after["reconciliation"]
    assert rec["ok"] and rec["run_id"] == "r2" and rec["status"] == "failed"
    by_check = {c["check"]: c for c in rec["checks"]}
    assert by_check["kafka_vs_bronze"]["status"] == "ok"
    assert (by_check["speed_vs_batch"]["ok"], by_check["speed_vs_batch"]["failed"]) == (1, 1)
    assert by_check["speed_vs_batch"]["difference"] == 3
    val = after["validation"]
    assert val["ok"] and not val["success"]
    suite = val["suites"][0]
    assert (suite["expectations"], suite["failed"]) == (2, 1)
    assert suite["data_docs_url"] == "/data-docs/validations/gold.html"
    with urllib.request.urlopen(base + suite["data_docs_url"], timeout=10) as page:
        assert b"gold suite page" in page.read()
    with pytest.raises(urllib.error.HTTPError) as outside:
        urllib.request.urlopen(base + "/data-docs/..%2F..%2Flake%2Fgold", timeout=10)
    assert outside.value.code == 404


def reconciliation_row(run, at, check, scope, expected, actual, status) -> tuple:
    day = date.fromisoformat(scope) if check == "speed_vs_batch" else None
    return (run, at, check, scope, day, expected, actual, expected - actual, 0, status, None, None)


def dq_row(expectation: str, column: str, success: bool, unexpected: int, page: Path) -> tuple:
    at = NOW + timedelta(hours=1)
    gold = "gold.orders_by_age_gender_daily"
    return (
        "v1",
        at,
        "gold",
        gold,
        3,
        expectation,
        column,
        success,
        20,
        unexpected,
        "{}",
        str(page),
    )


def write_checks(spark, settings: Settings) -> None:
    """Two reconciliation runs (the later one has a failed scope) and one validation run with a
    failed expectation, plus its Data Docs pages."""
    t1, t2 = NOW, NOW + timedelta(hours=1)
    partition = "tmall.user_actions/0"
    rec = [
        reconciliation_row("r1", t1, "kafka_vs_bronze", partition, 5, 4, "failed"),
        reconciliation_row("r2", t2, "kafka_vs_bronze", partition, 5, 5, "ok"),
        reconciliation_row("r2", t2, "speed_vs_batch", "2015-11-09", 9, 9, "ok"),
        reconciliation_row("r2", t2, "speed_vs_batch", "2015-11-10", 7, 4, "failed"),
    ]
    write(spark, settings, "ops.reconciliation", rec)
    docs = settings.reports_dir / "data_docs"
    (docs / "validations").mkdir(parents=True)
    (docs / "index.html").write_text("<html><body>data docs index</body></html>")
    page = docs / "validations" / "gold.html"
    page.write_text("<html><body>gold suite page</body></html>")
    dq = [
        dq_row("expect_column_values_to_not_be_null", "orders", True, 0, page),
        dq_row("expect_column_values_to_be_between", "share", False, 2, page),
    ]
    write(spark, settings, "ops.dq_results", dq)


def test_the_page_in_chromium_shows_what_spark_sql_answers(built, spark_says, dashboard):
    _, settings = built
    base, _ = dashboard
    page = render_page(base + "/")
    assert page.body.get("data-state") == "ready", page.body
    for name in ("age", "gender"):
        total = sum(sum(by.values()) for by in spark_says[name].values())
        labels = {label for (fig, label, _) in page.cells if fig == name}
        assert labels >= set(spark_says[name]), f"{name}: the page lacks labels of the view"
        for label in labels:
            by = spark_says[name].get(label, {})
            shown = {f: page.cells[(name, label, f)] for f in ("final", "provisional", "orders")}
            assert {f: int(v.replace(",", "")) for f, v in shown.items()} == {
                "final": by.get("final", 0),
                "provisional": by.get("provisional", 0),
                "orders": sum(by.values()),
            }, f"{name} {label}"
            share = float(page.cells[(name, label, "share")].rstrip("%"))
            assert share == pytest.approx(100 * sum(by.values()) / total, abs=0.051)
    assert f"http://127.0.0.1:{settings.airflow_port}/dags/reconcile_layers" in page.links
    assert f"http://127.0.0.1:{settings.airflow_port}/dags/validate_quality" in page.links
    assert "/data-docs/index.html" in page.links
    # the platform is not running in this home: every component shows down, none breaks the page
    assert "NOT RUNNING" in page.texts


def test_figures_follow_new_speed_commits(spark, built, dashboard):
    env, settings = built
    base, _ = dashboard
    before = get_json(base + "/api/figures")["age"]["totals"]["provisional"]
    extra = {("18-24", "male"): 5}
    write(spark, settings, "speed.purchases", purchase_rows(OPEN_DAY, extra, 9, "late"))
    assert get_json(base + "/api/figures")["age"]["totals"]["provisional"] == before + 5
