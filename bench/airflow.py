"""Orchestration benchmark: a bronze asset update -> gold updated, and Airflow's scheduling gaps.

On an isolated platform (`orderlake up --only kafka,spark,airflow`: the real API server,
scheduler, DAG processor and triggerer, LocalExecutor, SQLite, and the warm Spark the tasks
attach to), each round produces ``--events`` generated
actions to Kafka, triggers `ingest_bronze` through the REST API and follows the chain the
assets start: `build_silver_gold` (build_silver -> build_gold) and `validate_quality`. From the
task instances' own start and end times it reports:

- bronze asset update -> gold updated: end of load_bronze -> end of build_gold;
- asset -> run: end of load_bronze -> start of build_silver (the scheduler noticing the asset
  event, creating the run and queueing the task), and end of build_gold -> start of run_suites;
- task -> task: end of build_silver -> start of build_gold (a dependency inside one run);
- each task's duration (a task process attaching to the warm Spark server).

Output: ``bench/results/airflow.json`` and ``bench/results/airflow.md`` (also printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    load_average,
    produce_lines,
    provenance,
    spool_files,
    write_results,
)
from bench.stack import running_platform
from orderlake import contracts
from orderlake.stack import airflow
from orderlake.workload.generator import generate_to_spool


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def task_instances(settings, dag_id: str, run_id: str) -> dict[str, dict]:
    found = airflow.api(settings, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    return {ti["task_id"]: ti for ti in found["task_instances"]}


def task_times(settings, dag_id: str, run_id: str) -> dict[str, tuple[float, float]]:
    return {
        task_id: (at(ti["start_date"]), at(ti["end_date"]))
        for task_id, ti in task_instances(settings, dag_id, run_id).items()
        if ti["start_date"] and ti["end_date"]
    }


def next_run(settings, dag_id: str, after: float, timeout: float = 1200) -> str:
    """The id of the first run of ``dag_id`` queued after ``after``, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in airflow.dag_runs(settings, dag_id):
            queued = run.get("queued_at") or run.get("start_date")
            if queued and at(queued) >= after and run["state"] in airflow.FINISHED:
                if run["state"] != "success":
                    raise RuntimeError(f"{dag_id} run {run['dag_run_id']} {run['state']}")
                return run["dag_run_id"]
        time.sleep(2)
    raise RuntimeError(f"no finished {dag_id} run after {after} within {timeout} s")


def last_load(settings, after: float) -> tuple[float, float]:
    """(start, end) of the last successful load_bronze that ended after ``after``.

    Unpausing ingest_bronze starts its latest cron interval too, and the 5-minute schedule may
    fire during a round: whichever run loaded the round's records updated the bronze asset.
    """
    loads = []
    for run in airflow.dag_runs(settings, "ingest_bronze"):
        if run["state"] not in airflow.FINISHED:
            continue
        load = task_instances(settings, "ingest_bronze", run["dag_run_id"]).get("load_bronze")
        if load and load["state"] == "success" and at(load["end_date"]) >= after:
            loads.append((at(load["start_date"]), at(load["end_date"])))
    if not loads:
        raise RuntimeError("no ingest_bronze run loaded the round's records")
    return max(loads, key=lambda load: load[1])


def one_round(platform, spool: Path, events: int, number: int) -> dict:
    settings = platform.settings
    # a host of its own per round: event ids (<host>:<file>:<seq>) never repeat across rounds
    generate_to_spool(spool, events=events, rate=0, hosts=[f"host-{number}"], seed=number)
    produce_lines(
        settings.bootstrap, contracts.TOPIC_PROFILES, spool_files(spool, contracts.PROFILES_FILE)
    )
    produce_lines(
        settings.bootstrap, contracts.TOPIC_ACTIONS, spool_files(spool, contracts.ACTIONS_FILE)
    )
    for path in spool.glob("**/*.log*"):
        path.unlink()
    produced = time.time()
    airflow.wait_run(settings, "ingest_bronze", airflow.trigger(settings, "ingest_bronze"))
    ingest = last_load(settings, after=produced)
    silver_gold = task_times(
        settings, "build_silver_gold", next_run(settings, "build_silver_gold", ingest[1] - 1)
    )
    gold_end = silver_gold["build_gold"][1]
    validate = task_times(
        settings, "validate_quality", next_run(settings, "validate_quality", gold_end - 1)
    )["run_suites"]
    return {
        "bronze_asset_to_gold_s": round(gold_end - ingest[1], 1),
        "bronze_asset_to_task_start_s": round(silver_gold["build_silver"][0] - ingest[1], 1),
        "gold_asset_to_task_start_s": round(validate[0] - gold_end, 1),
        "task_to_task_gap_s": round(
            silver_gold["build_gold"][0] - silver_gold["build_silver"][1], 1
        ),
        "durations_s": {
            "load_bronze": round(ingest[1] - ingest[0], 1),
            "build_silver": round(
                silver_gold["build_silver"][1] - silver_gold["build_silver"][0], 1
            ),
            "build_gold": round(gold_end - silver_gold["build_gold"][0], 1),
            "run_suites": round(validate[1] - validate[0], 1),
        },
    }


def render(doc: dict) -> str:
    rounds = doc["rounds"]

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 1)

    lines = [
        f"Orchestration on the embedded Airflow (LocalExecutor, SQLite), {doc['events']:,} "
        f"generated actions per round, {len(rounds)} rounds; {doc['timestamp']}, commit "
        f"{doc['git_commit']}, {doc['machine']['cpu_count']} cores, load average "
        f"{doc['load_average_before']} before, {doc['load_average_after']} after.",
        "",
        "| round | bronze asset -> gold updated s | asset -> first task start s "
        "| task -> next task s | gold asset -> validation start s | load_bronze s "
        "| build_silver s | build_gold s | run_suites s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds, 1):
        d = r["durations_s"]
        lines.append(
            f"| {i} | {r['bronze_asset_to_gold_s']} | {r['bronze_asset_to_task_start_s']} "
            f"| {r['task_to_task_gap_s']} | {r['gold_asset_to_task_start_s']} "
            f"| {d['load_bronze']} | {d['build_silver']} | {d['build_gold']} | {d['run_suites']} |"
        )
    lines += [
        "",
        f"Medians: bronze asset -> gold {median('bronze_asset_to_gold_s')} s, asset -> task "
        f"start {median('bronze_asset_to_task_start_s')} s, task -> task "
        f"{median('task_to_task_gap_s')} s. Every task is a process of its own that attaches to "
        "the warm Spark server (`orderlake.jobs.runner`). Gold asset -> validation start "
        "includes waiting for the `lake_writer` pool: "
        "the round's manual ingest_bronze run, queued while silver and gold held the slot, takes "
        "it first and finds nothing new.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started, load_before = datetime.now(UTC), load_average()
    doc: dict = {"events": args.events, "rounds": []}
    spool = Path(tempfile.mkdtemp(prefix="orderlake-bench-airflow-"))
    with running_platform(only="kafka,spark,airflow") as platform:
        for i in range(args.rounds):
            doc["rounds"].append(one_round(platform, spool, args.events, number=i + 1))
            print(json.dumps(doc["rounds"][-1]), flush=True)
    doc = {**provenance("airflow", started, load_before), **doc}
    text = render(doc)
    write_results(RESULTS_DIR, "airflow", doc, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
