"""What the Airflow DAGs run: each task calls one function here; the DAG files only wire them.

A task runs its batch job (orderlake.jobs.runner) in the task's own process, on a session of the
warm Spark server, exactly as `orderlake batch ...` and batch/*.py do by hand: the job's
summaries are the task's return value and lines of its log, its one-sentence error the task's
failure. A failed *check* (validation, reconciliation) fails the task at once, since re-running
it cannot change the data, and so does a bad parameter; any other failure (the Spark server
restarting, Kafka away) is retried.
Importing this module is cheap and does no I/O: DAG files import it at parse time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from orderlake.errors import CheckFailed, UsageError
from orderlake.settings import Settings

log = logging.getLogger(__name__)


# --- shared DAG wiring ----------------------------------------------------------------------------
# A cron DAG first seen (or unpaused) shortly after one of its times runs that past time at
# once (Airflow's default grace is a tenth of the period, at least 5 minutes), so a brand-new
# platform would start with maintenance, validation and reconciliation competing with its first
# loads for the lake's one slot. `cron` schedules wait for their next time instead.
def cron(expression: str) -> CronTriggerTimetable:
    """A UTC cron schedule whose first run is its next time, never one already past."""
    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=timedelta(0))


def default_args() -> dict[str, Any]:
    """Task defaults of every DAG, read when its file is parsed: two retries, each after
    ORDERLAKE_TASK_RETRY_DELAY_S (a failure waits for a restarted component, not a tight loop)."""
    return {
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=Settings.from_env().task_retry_delay_s),
    }


# Delta on a local filesystem is safe for commits from one JVM at a time: every task that
# commits to the lake takes the one slot of this pool (created by `orderlake up`).
LAKE_POOL = "lake_writer"
LAKE_POOL_DESCRIPTION = "one Delta writer at a time on the local lake"
BRONZE = Asset(name="bronze.kafka_records", uri="delta://orderlake/bronze/kafka_records")
GOLD = Asset(
    name="gold.orders_by_age_gender_daily", uri="delta://orderlake/gold/orders_by_age_gender_daily"
)
TOPICS = ("tmall.user_actions", "tmall.user_profiles", "tmall.rejects")
LAYERS = ("bronze", "silver", "gold")


# --- running the batch jobs ----------------------------------------------------------------------
def run_job(name: str, *argv: str) -> list[dict]:
    """Run the batch job ``name`` (as `orderlake NAME ARGV...` would) in this task's process;
    return its summaries. A failed check or a bad parameter -> AirflowFailException (no retry);
    any other failure is raised as it is and retried by Airflow."""
    from orderlake.jobs import batch_job, runner

    job = batch_job(name)
    log.info("running orderlake %s %s", name, " ".join(argv))
    started = time.monotonic()
    try:
        args = runner.parser(job).parse_args(list(argv))
        return runner.execute(job, Settings.from_env(), args)
    except (CheckFailed, UsageError) as exc:
        raise AirflowFailException(str(exc)) from None  # a retry would fail the same way
    finally:
        log.info("orderlake %s ended after %.1f s", name, time.monotonic() - started)


# --- task bodies ----------------------------------------------------------------------------------
def load_bronze() -> dict:
    """Kafka -> bronze; skipped (no asset event, so no silver/gold run) when nothing is new."""
    summary = run_job("batch", "bronze")[0]
    if not summary.get("records"):
        raise AirflowSkipException("no new Kafka records since the last bronze load")
    return summary


def build_silver() -> dict:
    return run_job("batch", "silver")[0]


def build_gold() -> dict:
    return run_job("batch", "gold")[0]


def validate_quality() -> list[dict]:
    """The GX suites; skipped while the lake has no gold yet (a brand-new platform's first
    daily run), since there is nothing to validate and "missing table" is not a finding then."""
    from orderlake import lake
    from orderlake.schemas import GOLD_DAILY_TABLE

    if not lake.exists(Settings.from_env(), GOLD_DAILY_TABLE.name):
        raise AirflowSkipException("the lake has no gold table yet: nothing to validate")
    return run_job("validate")


def reconcile(day: str | None = None) -> dict:
    return run_job("reconcile", *(["--date", day] if day else []))[0]


def optimize() -> dict:
    return run_job("maintain", "--optimize")[0]


def vacuum() -> dict:
    return run_job("maintain", "--vacuum")[0]


def check_replay_params(params: Mapping[str, Any]) -> list[str]:
    """The replay DAG's parameters -> `orderlake replay` arguments; a bad value fails the task
    (no retry) before any work, with the same sentence the CLI gives."""
    from orderlake.errors import OrderlakeError
    from orderlake.jobs.replay import ReplayRequest, parse_layers, validate

    layers = params.get("layers") or list(LAYERS)
    try:
        request = ReplayRequest(
            str(params.get("topic") or ""),
            str(params.get("from") or ""),
            str(params.get("to") or ""),
            parse_layers(",".join(layers)),
        )
        validate(request)
    except OrderlakeError as exc:
        raise AirflowFailException(str(exc)) from None
    return [
        "--topic", request.topic, "--from", request.range_from, "--to", request.range_to,
        "--layers", ",".join(request.layers),
    ]  # fmt: skip


def run_replay(arguments: list[str]) -> dict:
    return run_job("replay", *arguments)[0]


# --- the speed layer's watchdog -------------------------------------------------------------------
LAG_SAMPLES = 10  # kept in ORDERLAKE_HOME/run/speed-lag-history.json
GROWING_CHECKS = 3  # lag larger at each of this many consecutive checks = falling behind
LAG_FLOOR = 10_000  # ... and above this many records (small lags come and go)


@dataclass(frozen=True)
class Verdict:
    action: str  # ok | restart | fail
    reason: str


def assess_speed_layer(
    state: str,
    heartbeat_age_s: float | None,
    lags: list[int],
    stale_after_s: float,
    starting_for_s: float | None = None,
    startup_limit_s: float = Settings.model_fields["speed_startup_limit_s"].default,
) -> Verdict:
    """Pure decision of the streaming supervisor from what `orderlake status` knows.

    ``starting_for_s`` is how long the job has reported itself starting (None once its query
    runs): a starting job beats its heartbeat too, so it is left alone until the start-up
    limit, however stale the previous run's last micro-batch is.

    >>> assess_speed_layer("RUNNING", 2.0, [5, 4], 60).action
    'ok'
    """
    if state == "STARTING":  # supervisord started it moments ago (its startsecs)
        return Verdict("ok", "supervisord is starting it")
    if state != "RUNNING":
        return Verdict("restart", f"the streaming job is {state}")
    if heartbeat_age_s is None or heartbeat_age_s > stale_after_s:
        age = "never" if heartbeat_age_s is None else f"{heartbeat_age_s:.0f} s ago"
        return Verdict("restart", f"the streaming job's last heartbeat was {age}")
    if starting_for_s is not None:
        if starting_for_s > startup_limit_s:
            return Verdict(
                "restart",
                f"the streaming job has been starting for {starting_for_s:.0f} s "
                f"(limit {startup_limit_s:.0f} s)",
            )
        return Verdict("ok", f"starting for {starting_for_s:.0f} s")
    recent = lags[-(GROWING_CHECKS + 1) :]
    growing = len(recent) == GROWING_CHECKS + 1 and all(
        a < b for a, b in zip(recent, recent[1:], strict=False)
    )
    if growing and recent[-1] > LAG_FLOOR:
        shown = " -> ".join(f"{n:,}" for n in recent)
        return Verdict("fail", f"the speed layer's Kafka lag kept growing ({shown} records)")
    return Verdict("ok", f"healthy, Kafka lag {lags[-1] if lags else 0:,} records")


def supervise_streaming(settings: Settings | None = None) -> dict:
    """Check the speed layer's heartbeat and lag; restart it (embedded default) when it is down
    or stale; fail visibly when its lag keeps growing."""
    from orderlake import speed_progress
    from orderlake.stack import streaming
    from orderlake.stack.supervisor import Supervisor

    settings = settings or Settings.from_env()
    sup = Supervisor(settings)
    processes = sup.processes()
    if processes and streaming.NAME not in processes:
        raise AirflowSkipException(
            "the streaming job is not part of this platform (`orderlake up --only` left it "
            "out): nothing to supervise"
        )
    info = processes.get(streaming.NAME, {})
    # embedded: supervisord knows the process; a cluster runs it elsewhere: judge by heartbeat
    state = info.get("statename", "NOT RUNNING") if settings.env == "local" else "RUNNING"
    progress = speed_progress.read(settings)
    age = speed_progress.heartbeat_age(progress) if progress else None
    lags = _record_lag(settings, progress)
    starting = speed_progress.starting_for(progress) if progress else None
    verdict = assess_speed_layer(
        state, age, lags, speed_progress.STALE_AFTER_S, starting, settings.speed_startup_limit_s
    )
    log.info("speed layer: %s (%s)", verdict.action, verdict.reason)
    if verdict.action == "fail":
        raise AirflowFailException(verdict.reason)
    if verdict.action == "restart":
        if settings.env != "local" or not sup.is_running():
            raise AirflowFailException(
                f"{verdict.reason}, and it is not supervised here (ORDERLAKE_ENV="
                f"{settings.env}): restart it with the cluster's own tooling."
            )
        if state == "RUNNING":
            sup.stop(streaming.NAME)
        sup.start(streaming.NAME)
        log.info("restarted the streaming job")
    return {"action": verdict.action, "reason": verdict.reason, "lag_history": lags}


def _record_lag(settings: Settings, progress: dict | None) -> list[int]:
    """Append the current total lag to the history file; return the history (oldest first)."""
    from orderlake import speed_progress

    path = settings.run_dir / "speed-lag-history.json"
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    if progress is not None:
        try:
            per_partition = speed_progress.lag(settings, progress.get("processed_offsets", {}))
            total = sum(sum(p.values()) for p in per_partition.values())
            history = [*history, total][-LAG_SAMPLES:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(history))
        except Exception as exc:  # noqa: BLE001 - Kafka down: the history simply stays as it was
            log.warning("could not read the Kafka lag: %s", exc)
    return history
