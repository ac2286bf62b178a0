"""The speed layer's idle poll (ORDERLAKE_SPEED_IDLE_POLL_MS): what an idle platform costs and
how late a lone purchase is counted, at two settings, interleaved on this machine.

    .venv/bin/python -m bench.speed_idle --polls 10,250 --rounds 2

Per round and setting (the order alternates), a fresh platform with Kafka and the speed layer
only (`orderlake up --only kafka,streaming` with the setting in its environment):
1. after a settling time, the CPU seconds of the speed layer (its process tree) and of the
   broker over a quiet window, as a share of one core;
2. a trickle: one purchase at a time produced straight to Kafka, 0.5-1.5 s apart, each timed
   from its delivery to the `counted_at` of the micro-batch that counted it.

Output: ``bench/results/speed-idle-poll.json`` and ``.md`` (also printed).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from bench.common import (
    RESULTS_DIR,
    load_average,
    median,
    pct,
    provenance,
    tree_cpu,
    write_results,
)
from bench.stack import Platform, running_platform
from orderlake import contracts, lake
from orderlake.schemas import SPEED_PURCHASES_TABLE
from tests.fixtures.stack import produce


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--polls", default="10,250", help="settings in ms, comma separated")
    p.add_argument("--rounds", type=int, default=2, help="runs of each setting, interleaved")
    p.add_argument("--settle", type=float, default=45, help="seconds after up before measuring")
    p.add_argument("--quiet", type=float, default=60, help="seconds of the idle CPU window")
    p.add_argument("--purchases", type=int, default=30, help="lone purchases per run")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the process and its descendants (the speed layer's JVM is a child
    of its Python process)."""
    by_pid: dict[int, float] = {}
    tree_cpu(pid, by_pid)
    return sum(by_pid.values())


def counted_at(platform: Platform, event_ids: list[str]) -> dict[str, float]:
    """{event_id: counted_at epoch s} of those already in speed.purchases (read without Spark)."""
    path = lake.table_path(platform.settings, SPEED_PURCHASES_TABLE.name)
    try:
        purchases = DeltaTable(str(path)).to_pyarrow_table(  # noqa: F841 - read by duckdb
            columns=["event_id", "counted_at"]
        )
    except TableNotFoundError:
        return {}
    wanted = ", ".join(f"'{e}'" for e in event_ids)
    rows = duckdb.sql(
        f"SELECT event_id, epoch(counted_at) FROM purchases WHERE event_id IN ({wanted})"
    ).fetchall()
    return dict(rows)


def one_run(poll_ms: int, args: argparse.Namespace, run: int) -> dict:
    with running_platform(
        hosts=1,
        only="kafka,streaming",
        settings={"ORDERLAKE_SPEED_IDLE_POLL_MS": str(poll_ms)},
    ) as platform:
        bootstrap = platform.settings.bootstrap
        user = 7_000_000 + run
        produce(
            bootstrap,
            contracts.TOPIC_PROFILES,
            [{"user_id": user, "age_range": 3, "gender": 1, "updated_at": "2015-11-01T00:00:00Z"}],
        )
        time.sleep(args.settle)
        pids = platform.pids()
        before = {name: cpu_seconds(pids[name]) for name in ("streaming", "kafka")}
        time.sleep(args.quiet)
        idle = {
            name: round(100 * (cpu_seconds(pids[name]) - before[name]) / args.quiet, 1)
            for name in before
        }
        delivered: dict[str, float] = {}
        for i in range(args.purchases):
            event_id = f"idle-{poll_ms}-{run}-{i}"
            action = {
                "event_id": event_id, "user_id": user, "item_id": 1, "cat_id": 1,
                "seller_id": 1, "brand_id": None, "action_type": contracts.ACTION_PURCHASE,
                "event_time": "2015-11-11T09:00:30.000Z",
            }  # fmt: skip
            produce(bootstrap, contracts.TOPIC_ACTIONS, [action])
            delivered[event_id] = time.time()
            time.sleep(random.uniform(0.5, 1.5))  # noqa: S311 - spacing, not security
        deadline = time.monotonic() + 120
        while len(found := counted_at(platform, list(delivered))) < len(delivered):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(found)} of {len(delivered)} purchases counted")
            time.sleep(1)
        lateness = [found[e] - t for e, t in delivered.items()]
        return {
            "poll_ms": poll_ms,
            "idle_cpu_pct_of_core": {**idle, "both": round(sum(idle.values()), 1)},
            "counted_after_s": {
                "p50": round(median(lateness), 3),
                "p95": round(pct(lateness, 95), 3),
                "max": round(max(lateness), 3),
            },
        }


def markdown(result: dict) -> str:
    lines = [
        "# Speed layer: idle poll",
        "",
        f"Measured {result['timestamp']} at {result['git_commit']}; "
        f"{result['machine'].get('cpu_count')} cores; runs interleaved. Idle CPU: share of one "
        "core over a quiet window; counted after: a lone purchase's Kafka delivery -> counted_at.",
        "",
        "| poll ms | run | idle CPU speed layer % | idle CPU broker % | both % | counted after "
        "p50 s | p95 s | max s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, run in enumerate(result["runs"]):
        cpu, late = run["idle_cpu_pct_of_core"], run["counted_after_s"]
        lines.append(
            f"| {run['poll_ms']} | {i + 1} | {cpu['streaming']} | {cpu['kafka']} | {cpu['both']} "
            f"| {late['p50']} | {late['p95']} | {late['max']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = datetime.now(UTC), load_average()
    polls = [int(p) for p in args.polls.split(",")]
    runs = []
    for round_no in range(args.rounds):
        order = polls if round_no % 2 == 0 else list(reversed(polls))
        for poll_ms in order:
            runs.append(one_run(poll_ms, args, len(runs)))
            print(json.dumps(runs[-1]), flush=True)
    result = {**provenance("speed_idle", started, load_before), "runs": runs}
    text = markdown(result)
    write_results(args.out, "speed-idle-poll", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
