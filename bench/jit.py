"""The warm Spark's JIT: test-sized batch work at two ORDERLAKE_SPARK_JIT_SCALING values.

    .venv/bin/python -m bench.jit [--scalings 1 4] [--rounds 1]

Each run starts a fresh warm Spark and Kafka (`orderlake up --only kafka,spark` in a home of
its own), produces 300 profiles, then three times: 5,000 new actions on a new day, `orderlake
batch all`, `orderlake validate`, `orderlake reconcile` (the commands the tests and the DAGs
run, at the tests' sizes). The scalings take turns, one run at a time. Figures: the wall time of
the work (after `up`), the CPU of the whole machine meanwhile, and the warm Spark's CPU by
thread kind, read from /proc (the JIT compilers' threads are "C1/C2 CompilerThread").
Output: ``bench/results/jit.json`` and ``jit.md`` (also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.common import RESULTS_DIR, load_average, median, provenance, write_results
from tests.fixtures.stack import produce, start_platform

STEPS = (["batch", "all", "--close-through", "2015-11-30"], ["validate"], ["reconcile"])
KINDS = ("C2 Compiler", "C1 Compiler", "Executor task", "executor", "GC Thread", "Sweeper")


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - t.iowait


def threads_cpu(pid: int) -> Counter:
    """CPU seconds of a process's threads by kind (thread name, numbering dropped)."""
    found: Counter = Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        kind = next((k for k in KINDS if k.lower() in name.lower()), "other")
        found[kind] += (int(fields[11]) + int(fields[12])) / tick
    return found


def actions(run: str, day: int, n: int = 5000) -> list[dict]:
    return [
        {"event_id": f"{run}-{day}-{k}", "user_id": 1000 + k % 300, "item_id": 1, "cat_id": 1,
         "seller_id": 1, "brand_id": None, "action_type": k % 4,
         "event_time": f"2015-11-{10 + day:02d}T10:{k % 60:02d}:00.000Z"}
        for k in range(n)
    ]  # fmt: skip


def one_run(scaling: str, scratch: Path, run: str) -> dict:
    home = scratch / run / "home"
    platform = start_platform(
        home, only="kafka,spark", settings={"ORDERLAKE_SPARK_JIT_SCALING": scaling}
    )
    try:
        pid = platform.pid("spark")  # spark-submit execs the server's JVM
        before, busy, started = threads_cpu(pid), machine_busy(), time.monotonic()
        profiles = [
            {"user_id": 1000 + u, "age_range": u % 8, "gender": u % 2,
             "updated_at": "2015-11-01T00:00:00.000Z"}
            for u in range(300)
        ]  # fmt: skip
        produce(platform.settings.bootstrap, "tmall.user_profiles", profiles)
        steps: dict[str, list[float]] = {" ".join(s[:2]): [] for s in STEPS}
        for day in range(3):
            produce(platform.settings.bootstrap, "tmall.user_actions", actions(run, day))
            for step in STEPS:
                t = time.monotonic()
                platform.cli(*step, timeout=900)
                steps[" ".join(step[:2])].append(round(time.monotonic() - t, 1))
        after = threads_cpu(pid)
        return {
            "scaling": scaling,
            "work_s": round(time.monotonic() - started, 1),
            "machine_cpu_s": round(machine_busy() - busy, 1),
            "server_cpu_s": round(sum(after.values()) - sum(before.values()), 1),
            "server_cpu_by_thread": {k: round(after[k] - before[k], 1) for k in sorted(after)},
            "steps_s": steps,
        }
    finally:
        platform.cli("down", check=False, timeout=300)


def markdown(result: dict) -> str:
    runs, scalings = result["runs"], result["scalings"]
    p = result["provenance"]
    lines = [
        f"The warm Spark's JIT at ORDERLAKE_SPARK_JIT_SCALING {' and '.join(scalings)}, "
        f"{result['rounds']} interleaved round(s); {p['timestamp']}, "
        f"{p['machine'].get('cpu_count')} cores, load average {p['load_average_before']} before, "
        f"{p['load_average_after']} after. Medians over the rounds.",
        "",
        "Per run: a fresh `orderlake up --only kafka,spark`, 300 profiles, then 3 x (5,000 new "
        "actions on a new day, `batch all`, `validate`, `reconcile`).",
        "",
        "| scaling | work s | machine CPU-s | warm Spark CPU-s | of which C2 | C1 | executor tasks "
        "| first batch all s | later batch all s | validate s | reconcile s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scalings:
        mine = [r for r in runs if r["scaling"] == s]

        def med(get, mine=mine):
            return median([get(r) for r in mine])

        threads = [r["server_cpu_by_thread"] for r in mine]
        lines.append(
            f"| {s} | {med(lambda r: r['work_s'])} | {med(lambda r: r['machine_cpu_s'])} "
            f"| {med(lambda r: r['server_cpu_s'])} "
            f"| {median([t.get('C2 Compiler', 0) for t in threads]):.1f} "
            f"| {median([t.get('C1 Compiler', 0) for t in threads]):.1f} "
            f"| {median([t.get('Executor task', 0) + t.get('executor', 0) for t in threads]):.1f} "
            f"| {med(lambda r: r['steps_s']['batch all'][0])} "
            f"| {med(lambda r: median(r['steps_s']['batch all'][1:]))} "
            f"| {med(lambda r: median(r['steps_s']['validate']))} "
            f"| {med(lambda r: median(r['steps_s']['reconcile']))} |"
        )
    if result.get("tiers"):  # added by hand from one interleaved pair of test-tier runs
        lines += [
            "",
            "Test tiers, one pair each, run one after the other on the same checkout (only the "
            "setting's default differed): `pytest TIER`'s wall time and the whole machine's CPU. "
            "One pair is within the spread of whole tiers from run to run: a later whole suite "
            "at 4 ran these tiers no faster than a whole suite at 1 the same day.",
            "",
            "| tier | scaling | pytest wall s | machine CPU-s |",
            "|---|---:|---:|---:|",
        ]
        for t in result["tiers"]:
            lines.append(f"| {t['tier']} | {t['scaling']} | {t['wall_s']} | {t['machine_cpu_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scalings", nargs=2, default=["1", "4"])
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    started, load_before = datetime.now(UTC), load_average()
    scratch = Path(tempfile.mkdtemp(prefix="orderlake-jit-"))
    runs = []
    try:
        for round_no in range(args.rounds):
            for scaling in args.scalings:
                runs.append(one_run(scaling, scratch, f"r{round_no}-s{scaling}"))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "provenance": provenance("jit", started, load_before),
        "scalings": args.scalings,
        "rounds": args.rounds,
        "runs": runs,
    }
    text = markdown(result)
    write_results(RESULTS_DIR, "jit", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
