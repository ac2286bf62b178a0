"""Speed-layer A/B: this checkout against another git revision, on one backlog, interleaved.

    .venv/bin/python -m bench.speed_ab --base HEAD --events 400000 --rounds 2

On this shared 2-core machine the load of other tenants moves the speed layer's figures by 30%
and more between runs, more than most changes do: two benchmark runs an hour apart cannot tell
a change's effect. This harness puts both sides under the same load instead:

1. the base revision is checked out in a temporary git worktree (sharing this checkout's .venv
   and Maven-resolved jars);
2. an isolated platform with Kafka only (`orderlake up --only kafka`) receives one generated
   backlog (profiles first, then actions, as bench.batch produces it);
3. `streaming/speed_layer.py --once` of each side processes the whole backlog into a fresh lake,
   in turn: base, work, base, work, ... (``--rounds`` pairs);
4. per run: wall time, records/s without the Spark start, micro-batch p50 and the median of each
   step; per side: the medians over its runs, and work/base ratios. Both sides' lakes must hold
   the same purchases per (minute, age bracket, gender), or the run fails.

Output: ``bench/results/speed-ab.json`` and ``speed-ab.md`` (also printed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    base_worktree,
    code_state,
    git,
    load_average,
    machine_info,
    median,
    produce_lines,
    spool_files,
    write_results,
)
from bench.speed.monitor import STEP_NAMES
from bench.speed.peer import speed_counts, speed_layer_once
from bench.stack import Platform, running_platform
from orderlake import contracts
from orderlake.settings import PROJECT_ROOT
from orderlake.spark import get_spark
from orderlake.workload.generator import generate_to_spool

FIGURES = ("wall_s", "processing_s", "processing_records_per_s", "batch_duration_ms_p50")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare against (B = work)")
    p.add_argument("--events", type=int, default=400_000, help="generated user actions")
    p.add_argument("--rounds", type=int, default=2, help="base/work pairs")
    p.add_argument(
        "--max-offsets",
        type=int,
        help="records per micro-batch (ORDERLAKE_SPEED_MAX_OFFSETS_PER_TRIGGER; default: the"
        " setting's): 10000 gives batches of the size a live stream of 5-10k events/s brings",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return p.parse_args(argv)


def produce_backlog(platform: Platform, events: int, spool: Path) -> dict:
    manifest, _ = generate_to_spool(
        spool, events=events, rate=0, hosts=["host-1", "host-2"], seed=11
    )
    bootstrap = platform.settings.bootstrap
    profiles = produce_lines(
        bootstrap, contracts.TOPIC_PROFILES, spool_files(spool, contracts.PROFILES_FILE)
    )
    actions = produce_lines(
        bootstrap, contracts.TOPIC_ACTIONS, spool_files(spool, contracts.ACTIONS_FILE)
    )
    return {"profiles": profiles, "actions": actions, "purchases": manifest["action_types"]["2"]}


def summarize(runs: list[dict]) -> dict:
    return {
        **{f: median([r[f] for r in runs]) for f in FIGURES},
        "steps_ms_median": {
            name: median([r["steps_ms_median"][name] for r in runs if r["steps_ms_median"][name]])
            for name in STEP_NAMES
        },
    }


def run(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="orderlake-speed-ab-"))
    base = base_worktree(args.base, scratch)
    sides = {"base": base, "work": PROJECT_ROOT}
    runs: dict[str, list[dict]] = {"base": [], "work": []}
    load_before = load_average()
    try:
        with running_platform(only="kafka") as platform:
            if args.max_offsets:
                platform.env["ORDERLAKE_SPEED_MAX_OFFSETS_PER_TRIGGER"] = str(args.max_offsets)
            backlog = produce_backlog(platform, args.events, scratch / "spool")
            print(f"backlog: {backlog}", flush=True)
            spark = get_spark(platform.settings, "orderlake-speed-ab")
            reference = None
            for round_no in range(args.rounds):
                for side, root in sides.items():
                    home = scratch / f"{side}-{round_no}"
                    result = speed_layer_once(platform, home, root)
                    lake_of_run = platform.settings.model_copy(update={"home": home})
                    counts, _ = speed_counts(spark, lake_of_run)
                    reference = reference if reference is not None else counts
                    if counts != reference:
                        raise RuntimeError(f"{side} round {round_no}: buckets differ from base")
                    result["purchases_counted"] = sum(counts.values())
                    runs[side].append(result)
                    print(
                        f"round {round_no} {side}: {result['processing_records_per_s']:,.0f}"
                        f" records/s, batch p50 {result['batch_duration_ms_p50']:,.0f} ms,"
                        f" steps {result['steps_ms_median']}",
                        flush=True,
                    )
                    shutil.rmtree(home, ignore_errors=True)
            spark.stop()
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base)], cwd=PROJECT_ROOT, check=False
        )
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {side: summarize(side_runs) for side, side_runs in runs.items()}
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "base": {"revision": args.base, "commit": git("rev-parse", args.base)},
        "work": {"commit": git("rev-parse", "HEAD"), "uncommitted": code_state()},
        "events": args.events,
        "max_offsets_per_trigger": args.max_offsets,
        "backlog": backlog,
        "runs": runs,
        "summary": summary,
        "work_over_base": {
            f: round(summary["work"][f] / summary["base"][f], 3)
            for f in FIGURES
            if summary["base"][f]
        },
    }


def markdown(doc: dict) -> str:
    s, ratio = doc["summary"], doc["work_over_base"]
    sized = doc.get("max_offsets_per_trigger")
    lines = [
        f"Speed-layer A/B, `speed_layer.py --once` over one backlog of"
        f" {sum(doc['backlog'][t] for t in ('profiles', 'actions')):,} records"
        f" ({doc['backlog']['purchases']:,} purchases)"
        f"{f', micro-batches of {sized:,} records' if sized else ''};"
        f" {doc['at']};"
        f" base {doc['base']['revision']} = {doc['base']['commit'][:7]},"
        f" work = {doc['work']['commit'][:7]} (uncommitted include/streaming:"
        f" {doc['work']['uncommitted']}); {len(doc['runs']['base'])} interleaved runs per side;"
        f" load average {doc['load_average_before']} before, {doc['load_average_after']} after.",
        "",
        "| figure (median of runs) | base | work | work / base |",
        "|---|---:|---:|---:|",
    ]
    for f in FIGURES:
        lines.append(f"| {f} | {s['base'][f]:,.1f} | {s['work'][f]:,.1f} | {ratio.get(f, '-')} |")
    lines += ["", "| step, median ms | base | work |", "|---|---:|---:|"]
    for name in STEP_NAMES:
        b, w = s["base"]["steps_ms_median"][name], s["work"]["steps_ms_median"][name]
        lines.append(
            f"| {name} | {'-' if b is None else f'{b:,.0f}'} |"
            f" {'-' if w is None else f'{w:,.0f}'} |"
        )
    lines += ["", "Both sides' lakes hold identical purchases per (minute, age bracket, gender)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    text = markdown(doc)
    write_results(args.out, "speed-ab", doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
