"""The main job (`make run`): from nothing to the paper's figures, live and then confirmed.

    orderlake up (Kafka, Flume, the speed layer, Airflow, the dashboard)
    -> the real Tianchi samples and ~200,000 generated actions into the spool dirs of 2 hosts
    -> Flume delivers every line to Kafka -> the speed layer catches up
    -> Airflow: ingest_bronze, then (by asset) build_silver_gold and validate_quality,
       then reconcile_layers
    -> orders by age bracket and by gender from the speed layer and from gold, side by side,
       the reconciliation and data-quality results, the report figures, the URLs and login.

The stack keeps running until `make down`. Size: ORDERLAKE_RUN_EVENTS (default 200,000). The
printed figures are also written to ORDERLAKE_HOME/reports/main-job.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from orderlake import contracts, kafka_admin, serving, speed_progress
from orderlake.cli import format_status
from orderlake.entry import log_trace
from orderlake.errors import OrderlakeError
from orderlake.schemas import BATCH_RUNS_TABLE, BRONZE_TABLE, GOLD_DAILY_TABLE
from orderlake.settings import Settings
from orderlake.stack import airflow, dashboard, platform
from orderlake.workload.generator import generate_to_spool
from orderlake.workload.tianchi import SAMPLE_USER_INFO, SAMPLE_USER_LOG, replay_tianchi_to_spool


class Progress:
    """Prints each step with the time since the job started; one updating line while waiting."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self.last_line = 0.0

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def waiting(self, message: str) -> None:
        now = time.monotonic()
        line = f"[{now - self.started:6.1f}s]   ... {message}"
        if self.tty:
            print(f"\r{line[:118]:<118}", end="", flush=True)
        elif now - self.last_line >= 10:  # logs and CI: a full line every few seconds
            print(line, flush=True)
            self.last_line = now

    def done_waiting(self) -> None:
        if self.tty:
            print()


def wait_until(
    check: Callable[[], tuple[bool, str]],
    progress: Progress,
    timeout: float,
    failure: str,
) -> None:
    """Poll ``check`` (done?, what it is waiting for) until done; fail with ``failure``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = check()
        progress.waiting(status)
        if done:
            progress.done_waiting()
            return
        if time.monotonic() > deadline:
            progress.done_waiting()
            raise OrderlakeError(f"{failure} (after {timeout:.0f} s: {status})")
        time.sleep(2)


# --- the steps ----------------------------------------------------------------------------------
def feed(settings: Settings, events: int, seed: int, progress: Progress) -> dict[str, int]:
    """The real Tianchi samples (profiles first), then generated events; lines per topic."""
    progress.step("replaying the real Tianchi samples (profiles first, then the log)")
    replay = replay_tianchi_to_spool(
        settings.spool_dir,
        user_info=SAMPLE_USER_INFO,
        user_log=SAMPLE_USER_LOG,
        rate=0,
        hosts=settings.host_names,
    )
    progress.step(
        f"  {replay['profiles']:,} profiles, {replay['actions']:,} actions "
        f"({replay['purchases_without_profile']} purchases by users without a profile: "
        "counted under unknown)"
    )
    progress.step(f"generating {events:,} Tianchi-shaped actions over {settings.hosts} hosts")
    manifest, path = generate_to_spool(
        settings.spool_dir, events=events, rate=0, hosts=settings.host_names, seed=seed
    )
    progress.step(f"  {manifest['profiles']:,} profiles; manifest {path}")
    return {
        contracts.TOPIC_ACTIONS: replay["actions"] + manifest["events"],
        contracts.TOPIC_PROFILES: replay["profiles"] + manifest["profiles"],
    }


def wait_for_kafka(settings: Settings, expected: dict[str, int], progress: Progress) -> None:
    def check() -> tuple[bool, str]:
        offsets = kafka_admin.end_offsets(settings.bootstrap)
        totals = {t: sum(offsets.get(t, {}).values()) for t in expected}
        text = ", ".join(f"{t} {totals[t]:,}/{n:,}" for t, n in expected.items())
        return all(totals[t] >= n for t, n in expected.items()), f"Kafka holds {text}"

    wait_until(
        check,
        progress,
        900,
        f"Flume did not deliver every line to Kafka; see {settings.logs_dir}/flume-*.log",
    )


def wait_for_speed_layer(settings: Settings, progress: Progress) -> None:
    def check() -> tuple[bool, str]:
        report = speed_progress.read(settings) or {}
        lag = speed_progress.lag(settings, report.get("processed_offsets", {}))
        total = sum(sum(p.values()) for p in lag.values())
        batches = report.get("batches") or [{}]
        return total == 0, (
            f"speed layer: Kafka lag {total:,} records, "
            f"last micro-batch {batches[-1].get('input_rows', 0):,} rows"
        )

    wait_until(
        check,
        progress,
        1800,
        f"The speed layer did not catch up; see {settings.logs_dir / 'streaming.log'}",
    )


def run_dag(settings: Settings, dag_id: str, progress: Progress) -> dict:
    """Trigger a DAG and wait for its run; a failed run raises naming its tasks and logs."""
    run_id = airflow.trigger(settings, dag_id)
    result = airflow.wait_run(settings, dag_id, run_id, waiting=progress.waiting)
    progress.done_waiting()
    if result["state"] != "success":
        raise OrderlakeError(airflow.failure(settings, dag_id, result))
    states = ", ".join(f"{t} {i['state']}" for t, i in result["tasks"].items())
    progress.step(f"  {dag_id}: success ({states})")
    return result


def wait_for_gold(settings: Settings, reader: serving.LakeReader, progress: Progress) -> None:
    """Until silver and gold (build_silver_gold, started by the bronze asset) have taken in
    every bronze load, and validate_quality (started by the gold asset) has run after that."""

    def lake_state() -> tuple[int, int, int]:
        bronze = reader.records(
            f"SELECT MAX(load_id) AS n FROM {BRONZE_TABLE.name}", tables=[BRONZE_TABLE.name]
        )[0]["n"]
        cursors = {
            r["layer"]: r["cursor"]
            for r in reader.records(
                f"SELECT layer, MAX(cursor_to) AS cursor FROM {BATCH_RUNS_TABLE.name} "
                "GROUP BY layer",
                tables=[BATCH_RUNS_TABLE.name],
            )
        }
        return bronze or 0, cursors.get("silver", 0), cursors.get("gold", 0)

    def check_dag(dag_id: str, since: datetime) -> dict | None:
        """The DAG's newest run started after ``since`` (None yet); raise if it failed."""
        runs = [r for r in airflow.dag_runs(settings, dag_id) if _started(r) >= since]
        if runs and runs[0]["state"] == "failed":
            result = {"tasks": airflow.task_states(settings, dag_id, runs[0]["dag_run_id"])}
            raise OrderlakeError(airflow.failure(settings, dag_id, result))
        return runs[0] if runs else None

    since = datetime.now(UTC) - timedelta(minutes=5)

    def gold_done() -> tuple[bool, str]:
        bronze, silver, gold = lake_state()
        run = check_dag("build_silver_gold", since)
        state = run["state"] if run else "not started"
        done = bronze > 0 and silver == bronze and gold == silver
        return (
            done,
            f"build_silver_gold {state}: bronze load {bronze}, silver {silver}, gold {gold}",
        )

    wait_until(gold_done, progress, 1800, "Silver and gold were not built")
    progress.step("  build_silver_gold: success (started by the bronze asset)")
    gold_finished = reader.records(
        f"SELECT MAX(finished_at) AS t FROM {BATCH_RUNS_TABLE.name} WHERE layer = 'gold'",
        tables=[BATCH_RUNS_TABLE.name],
    )[0]["t"].replace(tzinfo=UTC)

    def validated() -> tuple[bool, str]:
        run = check_dag("validate_quality", gold_finished)
        state = run["state"] if run else "not started"
        return state == "success", f"validate_quality {state}"

    wait_until(validated, progress, 1200, "validate_quality did not run after gold")
    progress.step("  validate_quality: success (started by the gold asset)")


def _started(run: dict) -> datetime:
    """When an Airflow run started (or was queued, while it waits), as an aware datetime."""
    stamp = run.get("start_date") or run.get("queued_at") or run.get("run_after")
    if stamp is None:
        raise OrderlakeError(
            f"Airflow's API returned run {run.get('dag_run_id')} with none of start_date, "
            "queued_at and run_after; orderlake needs the Airflow 3 REST API (/api/v2)."
        )
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# --- what the job prints ------------------------------------------------------------------------
def layer_figures(reader: serving.LakeReader) -> dict:
    """Orders per age bracket and per gender, over every day, from each layer on its own."""
    speed = "speed.purchases"
    gold = GOLD_DAILY_TABLE.name
    out: dict = {}
    for dimension, (column, labels) in {
        "age_bracket": ("age_bracket", contracts.AGE_BRACKETS),
        "gender": ("gender", contracts.GENDERS),
    }.items():
        counts = {
            "speed": reader.records(
                f"SELECT {column} AS label, COUNT(*) AS orders FROM {speed} GROUP BY 1",
                tables=[speed],
            ),
            "gold": reader.records(
                f"SELECT {column} AS label, SUM(orders) AS orders FROM {gold} GROUP BY 1",
                tables=[gold],
            ),
        }
        rows = []
        totals = {layer: sum(int(r["orders"]) for r in found) for layer, found in counts.items()}
        for label in labels:
            row: dict[str, str | int | float] = {"label": label}
            for layer, found in counts.items():
                n = next((int(r["orders"]) for r in found if r["label"] == label), 0)
                row[layer] = n
                row[f"{layer}_share"] = n / totals[layer] if totals[layer] else 0.0
            rows.append(row)
        out[dimension] = {"rows": rows, "totals": totals}
    return out


def figures_table(title: str, figure: dict) -> str:
    lines = [
        title,
        f"  {'':<10} {'speed layer':>20} {'batch layer (gold)':>22} {'difference':>11}",
    ]
    for r in figure["rows"]:
        lines.append(
            f"  {r['label']:<10} {r['speed']:>11,} {r['speed_share']:>7.2%} "
            f"{r['gold']:>13,} {r['gold_share']:>7.2%} {r['gold'] - r['speed']:>11,}"
        )
    t = figure["totals"]
    lines.append(f"  {'total':<10} {t['speed']:>11,} {'':>7} {t['gold']:>13,}")
    return "\n".join(lines)


def checks_text(reader: serving.LakeReader, settings: Settings) -> tuple[str, dict]:
    rec = serving.latest_reconciliation(reader)
    dq = serving.latest_validation(reader)
    lines = [f"Reconciliation ({rec['checked_at']}): {rec['status']}"]
    for c in rec["checks"]:
        lines.append(
            f"  {c['check']:<17} {c['status']:<9} {c['scopes']} scopes: {c['ok']} ok, "
            f"{c['explained']} explained, {c['failed']} failed"
        )
    lines.append(f"Data quality ({dq['validated_at']}): {'passed' if dq['success'] else 'FAILED'}")
    for s in dq["suites"]:
        lines.append(f"  {s['suite']:<33} {s['expectations']} expectations, {s['failed']} failed")
    docs = settings.reports_dir / "data_docs" / "index.html"
    lines.append(f"  Data Docs: {docs}")
    return "\n".join(lines), {"reconciliation": rec, "validation": dq}


def results(settings: Settings, progress: Progress) -> dict:
    from orderlake import report

    with serving.LakeReader(settings) as reader:
        figures = layer_figures(reader)
        checks, summary = checks_text(reader, settings)
    paths = report.write_report(settings)
    login = airflow.address(settings)
    print()
    print(
        figures_table("Orders by customer age bracket (the paper's Fig. 5)", figures["age_bracket"])
    )
    print()
    print(figures_table("Orders by gender (the paper's Fig. 6)", figures["gender"]))
    print()
    print(checks)
    print()
    print("Figures: " + ", ".join(str(p) for p in paths))
    print(f"Dashboard: {dashboard.url(settings)}")
    print(f"Airflow:   {login['url']}  (user {login['user']}, password {login['password']})")
    doc = {"figures": figures, **summary, "reports": [str(p) for p in paths]}
    out = settings.reports_dir / "main-job.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"Summary:   {out}")
    return doc


# --- the job ------------------------------------------------------------------------------------
def run(settings: Settings, events: int, seed: int = 7) -> int:
    progress = Progress()
    if platform.is_up(settings):
        progress.step(
            f"orderlake is already running under ORDERLAKE_HOME={settings.home}; this is its "
            "current state (`make down` stops it, then `make run` starts afresh)."
        )
        print(format_status(platform.status(settings)))
        return 0

    progress.step(f"starting the platform under ORDERLAKE_HOME={settings.home}")
    platform.up(settings, progress=lambda msg: progress.step(f"  {msg}"))
    expected = feed(settings, events, seed, progress)

    progress.step("waiting for Flume to deliver every line to Kafka")
    wait_for_kafka(settings, expected, progress)
    progress.step("waiting for the speed layer to count everything Kafka holds")
    wait_for_speed_layer(settings, progress)

    progress.step("batch layer through Airflow: ingest_bronze, then by asset silver/gold/quality")
    run_dag(settings, "ingest_bronze", progress)
    with serving.LakeReader(settings) as reader:
        wait_for_gold(settings, reader, progress)
    progress.step("reconciling speed vs batch (reconcile_layers)")
    run_dag(settings, "reconcile_layers", progress)

    results(settings, progress)
    print()
    print(
        "The platform keeps running: `.venv/bin/orderlake status` shows it, `make down` stops it."
    )
    return 0


def main() -> int:
    text = os.environ.get("ORDERLAKE_RUN_EVENTS", "200000")
    if not text.isdigit() or int(text) == 0:
        print(
            f"orderlake run: error: ORDERLAKE_RUN_EVENTS must be a positive whole number, got "
            f"{text!r}.",
            file=sys.stderr,
        )
        return 2
    settings = None
    try:
        settings = Settings.from_env()
        return run(settings, int(text))
    except OrderlakeError as exc:
        print(f"\norderlake run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: one sentence here, the trace in a log
        where = log_trace(settings, "run")
        print(
            f"\norderlake run: error: unexpected {type(exc).__name__}: {exc}; the full trace is "
            f"in {where}.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
