"""`python -m bench.speed` (`make bench-speed`): the speed benchmark's command line and run.

An isolated platform (kafka, flume, streaming) is started, the rate steps run (runner), then
the peer (peer); the result is written as bench/results/speed.json and .md (report), also when
a step fails (what was measured so far) or the run is interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import speed as speed_package
from bench.common import RESULTS_DIR, code_state, git, load_average, provenance
from bench.speed import report
from bench.speed.peer import run_peer
from bench.speed.runner import (
    BENCH_DRIVER_MEMORY,
    DRAIN_MAX_S,
    FIND_MAX_STEP,
    JOB_WARMUP_RATE,
    LAG_GROWTH_SHARE,
    SUSTAINED_SHARE,
    Bench,
    max_kept_up,
    max_sustained,
    run_rates,
    warm_up_job,
)
from bench.stack import running_platform


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench.speed", description=(speed_package.__doc__ or "").splitlines()[0]
    )
    p.add_argument(
        "--rates",
        type=lambda s: [int(r) for r in s.split(",")],
        # 10,000/s is where the freshness aim is set (p95 <= 5 s)
        default=[5_000, 10_000, 20_000],
        help="offered rates in lines/s, comma separated (default 5000,10000,20000)",
    )
    p.add_argument("--seconds", type=float, default=60, help="measured seconds per rate")
    p.add_argument("--warmup", type=float, default=10, help="unmeasured seconds before each step")
    p.add_argument(
        "--find-max",
        action="store_true",
        help=f"then step up from the highest sustained rate by +{FIND_MAX_STEP}/s until not "
        "(or, when none was, halve the lowest rate until one is)",
    )
    p.add_argument(
        "--job-warmup",
        type=float,
        default=30,
        help=f"seconds of {JOB_WARMUP_RATE} lines/s before the first step (unmeasured): the "
        "streaming JVM's first micro-batches compile code and are several times slower",
    )
    p.add_argument("--skip-peer", action="store_true", help="skip the plain-consumer comparison")
    p.add_argument(
        "--drain-max",
        type=float,
        default=DRAIN_MAX_S,
        help="after a step, wait this long at most for the job to catch up (s)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--keep-home", action="store_true", help="keep the temp ORDERLAKE_HOME")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the platform is stopped in both cases.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = datetime.now(UTC)
    load_before = load_average()
    code_at_start = code_state()
    steps: list[dict] = []
    job_warmup: dict = {}
    peer = None
    error = None
    with running_platform(keep_home=args.keep_home, only="kafka,flume,streaming") as platform:
        print(f"platform up (ORDERLAKE_HOME={platform.settings.home})", flush=True)
        bench = Bench(platform, args)
        components = sorted(bench.watch_platform())
        bench.monitor.start()
        try:
            job_warmup = warm_up_job(bench)
            run_rates(bench, steps)
            if not args.skip_peer:
                peer = run_peer(bench)
                peer["code_state_at_start"] = code_at_start
        except Exception as exc:  # noqa: BLE001 - keep what was measured so far
            error = f"{type(exc).__name__}: {exc}"
            print(f"benchmark failed: {error}", file=sys.stderr)
            traceback.print_exc()
            platform.keep_home = True  # for its logs
        finally:
            bench.monitor.stop()
            bench.stop_spark()
    result = {
        **provenance("speed", started, load_before),
        "git_dirty": bool(git("status", "--porcelain")),
        "code_state_at_start": code_at_start,
        "settings": {
            "rates": args.rates,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "find_max": args.find_max,
            "job_warmup": job_warmup,
            "hosts": platform.settings.hosts,
            "components_running": components,
            "speed_driver_memory": platform.settings.speed_driver_memory,
            "bench_driver_memory": BENCH_DRIVER_MEMORY,
            "max_offsets_per_trigger": platform.settings.speed_max_offsets_per_trigger,
            "actions_partitions": platform.settings.actions_partitions,
            "lag_growth_share": LAG_GROWTH_SHARE,
            "sustained_share": SUSTAINED_SHARE,
        },
        "steps": steps,
        "max_kept_up_lines_per_s": max_kept_up(steps),
        "max_sustained_lines_per_s": max_sustained(steps),
        "peer": peer,
        "streaming_jvm_heap": [
            [round(h["t"], 1), h["heap_used_mib"], h["old_used_mib"], h["gc_s"], h["full_gcs"]]
            for h in bench.monitor.heap
        ],
        "monitor_errors": bench.monitor.errors[:20],
        "error": error,
    }
    json_path, md_path = report.write(result, args.out)
    print()
    print(report.markdown(result))
    print(f"results: {json_path}, {md_path}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
