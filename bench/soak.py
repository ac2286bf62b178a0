"""The fault battery at the repetition counts of issue 26: every fault many times, every event
accounted for.

    .venv/bin/python -m bench.soak [--cases streaming_kills,edge_kills] [--scale 1.0]

On an isolated platform (Kafka, the Flume collector and two edge agents, the warm Spark, the
speed layer), each case of tests/faults/battery.py runs with its soak count (``SOAK``, times
``--scale``), in the order of ``CASES``, one lake for all. Per case: events sent, faults
injected, purchases lost and counted twice (speed tables and gold, per event date x age
bracket x gender, against the lines in the spool), quarantined lines by reason, and recovery
time (fault to the speed tables exact again).

Output: ``bench/results/soak.json`` and ``soak.md`` (also printed). A benchmark, not a test:
about 25 minutes at the full counts on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS_DIR, git, load_average, machine_info, median, write_results
from bench.stack import running_platform
from tests.faults.battery import CASES, SOAK, Battery
from tests.fixtures.stack import Platform


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, default: all")
    p.add_argument("--scale", type=float, default=1.0, help="times the soak counts (>= 1 run)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Every case in turn; the results files are rewritten after each, so a case that raises
    (recorded with its error, not exact) or a stopped run still leaves what was measured."""
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    doc: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": machine_info(),
        "load_before": load_average(),
        "scale": args.scale,
        "cases": [],
    }
    started = time.monotonic()
    with running_platform(only="kafka,flume,spark,streaming") as bench_platform:
        platform = Platform(bench_platform.env, bench_platform.settings)
        battery = Battery(platform, Path(tempfile.mkdtemp(prefix="orderlake-soak-")))
        for name in names:
            times = max(1, round(SOAK[name] * args.scale))
            print(f"soak: {name} x{times} ...", flush=True)
            case_started = time.monotonic()
            try:
                outcome = CASES[name](battery, times)
                row = {**asdict(outcome), "exact": outcome.exact}
            except Exception as exc:  # noqa: BLE001 - one failed case must not lose the others
                row = failed_case(name, times, exc)
            row["seconds"] = round(time.monotonic() - case_started)
            doc["cases"].append(row)
            print(json.dumps(row, default=str), flush=True)
            doc["load_after"] = load_average()
            doc["minutes"] = round((time.monotonic() - started) / 60, 1)
            write_results(args.out, "soak", doc, render(doc) + "\n")
    return doc


def failed_case(name: str, times: int, exc: Exception) -> dict:
    """A case that raised: no figures to trust, so it is reported as not exact, with the error."""
    return {
        "case": name, "repetitions": times, "faults_injected": 0, "events_sent": 0,
        "purchases_expected": 0, "speed_lost": 0, "speed_doubled": 0, "gold_lost": 0,
        "gold_doubled": 0, "quarantined": {}, "quarantine_exact": False, "recovery_s": [],
        "notes": [f"raised {type(exc).__name__}: {exc}"], "exact": False,
    }  # fmt: skip


def render(doc: dict) -> str:
    lines = [
        f"Fault battery at soak counts x{doc['scale']:g}, one lake, {doc['measured_at']}, "
        f"commit {doc['commit']}, {doc['machine']['cpu_count']} cores, load average "
        f"{doc['load_before']} before, {doc['load_after']} after, {doc['minutes']} min.",
        "",
        "| case | faults | events sent | purchases | lost (speed / gold) | counted twice "
        "(speed / gold) | quarantined by reason (added) | recovery s (median, max) | exact |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    seen: Counter[str] = Counter()  # the lake's quarantine before the case
    for c in doc["cases"]:
        batch = Counter(c["quarantined"].get("batch", {}))
        added = batch - seen if batch else Counter()
        seen = batch or seen
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(added.items())) or "-"
        rec = c["recovery_s"]
        recovery = f"{median(rec):.0f}, {max(rec):.0f}" if rec else "-"
        lines.append(
            f"| {c['case']} | {c['faults_injected']} | {c['events_sent']:,} "
            f"| {c['purchases_expected']:,} | {c['speed_lost']} / {c['gold_lost']} "
            f"| {c['speed_doubled']} / {c['gold_doubled']} | {reasons} | {recovery} "
            f"| {'yes' if c['exact'] else 'NO'} |"
        )
    lines += ["", "Notes:"]
    lines += [f"- {c['case']}: {'; '.join(c['notes'])}" for c in doc["cases"] if c["notes"]]
    lines += [
        "",
        "Purchases are cumulative (one lake). Lost and counted twice compare, per event date x "
        "age bracket x gender, the speed tables and gold with the lines the generator and the "
        "battery wrote to the spool. Quarantined (added): the rows the case added to "
        "quarantine.records by reason (speed.quarantine holds the same but those the edge "
        "refuses); malformed lines have no event id, so a line Flume delivers again (at least "
        "once) is quarantined again, which the check allows and the notes count. Recovery: from "
        "the first fault to the speed tables exact again.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    print(render(doc))
    return 0 if all(c["exact"] for c in doc["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
