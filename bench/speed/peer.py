"""The speed benchmark's peer: over the same backlog from offset 0, a plain Python consumer and
`streaming/speed_layer.py --once` into a fresh lake, timed, and their counts compared bucket by
bucket (and with the live job's lake).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import code_state, median, tree_cpu
from bench.speed import PURCHASES, TOPICS
from bench.speed.monitor import STEP_NAMES, ProgressCopy
from bench.stack import Platform
from orderlake import kafka_admin, lake
from orderlake.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from bench.speed.runner import Bench

ONCE_MAX_S = 1800.0  # the --once run over the backlog


CPU_SAMPLE_S = 0.5  # both peers' process trees are sampled this often


def run_timed(
    name: str,
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    while_running: Callable[[], None] | None = None,
) -> dict:
    """Run ``cmd`` as a process group of its own and time it from its start to its exit: wall
    seconds, and the CPU seconds and largest RSS of its process tree, sampled every
    CPU_SAMPLE_S (each process's last total counts: what a process uses in its last fraction
    of a second is missed, a small share of a JVM's minutes). Raises with the log's tail if it
    fails."""
    cpu_by_pid: dict[int, float] = {}
    rss_max = 0.0
    with log_path.open("w") as log, ExitStack() as cleanup:
        started = time.time()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its JVM and workers: one group, stopped together
        )
        cleanup.callback(_stop_group, proc)
        while proc.poll() is None:
            if time.time() - started > ONCE_MAX_S:
                raise TimeoutError(f"{name} still running after {ONCE_MAX_S:.0f} s")
            if while_running is not None:
                while_running()
            rss_max = max(rss_max, tree_cpu(proc.pid, cpu_by_pid))
            time.sleep(CPU_SAMPLE_S)
        ended = time.time()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail}")
    return {
        "started": started,
        "wall_s": round(ended - started, 2),
        "cpu_s": round(sum(cpu_by_pid.values()), 1),
        "rss_mib_max": round(rss_max, 1),
    }


def per_million(seconds: float, records: int) -> float | None:
    """Seconds per million records."""
    return round(seconds * 1e6 / records, 2) if records else None


def plain_consumer_process(bootstrap: str, ends: dict, scratch: Path) -> dict:
    """bench.speed.plain as a process of its own over the backlog up to ``ends``, timed from
    its start like speed_layer_once; ``counts`` as a Counter again."""
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "plain.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT)]),
    }
    run = run_timed(
        "the plain consumer (bench.speed.plain)",
        [sys.executable, "-m", "bench.speed.plain", bootstrap, json.dumps(ends), str(out)],
        env=env,
        cwd=PROJECT_ROOT,
        log_path=scratch / "plain.log",
    )
    result = json.loads(out.read_text())
    result["counts"] = Counter({tuple(row[:3]): row[3] for row in result["counts"]})
    records = result["records"]
    return {
        **result,
        "wall_s": run["wall_s"],
        "records_per_s": round(records / run["wall_s"], 1),
        "consume_records_per_s": round(records / result["consume_s"], 1),
        # one process without children: its own rusage is exact, where sampling would miss
        # up to CPU_SAMPLE_S of a run that lasts a few seconds on a small backlog
        "cpu_s": result["cpu_s_self"],
        "cpu_s_sampled": run["cpu_s"],
        "cpu_s_per_million_records": per_million(result["cpu_s_self"], records),
        "rss_mib_max": run["rss_mib_max"],
    }


def speed_layer_once(platform: Platform, home: Path, root: Path = PROJECT_ROOT) -> dict:
    """streaming/speed_layer.py --once into a fresh ORDERLAKE_HOME (no checkpoint, empty lake),
    same broker: the whole backlog from offset 0. Timed from process start, and from its first
    micro-batch's trigger to its last commit (without the Spark session start).

    ``root``: the checkout whose speed layer runs (bench.speed_ab passes another revision's)."""
    env = {
        **platform.env,
        "ORDERLAKE_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(root / "include"), str(root)]),
    }
    home.mkdir(parents=True)
    progress = ProgressCopy(home / "run" / "speed-progress.json")
    run = run_timed(
        "speed_layer.py --once",
        [sys.executable, str(root / "streaming" / "speed_layer.py"), "--once"],
        env=env,
        cwd=root,
        log_path=home / "speed-once.log",
        while_running=progress.poll,
    )
    progress.poll()
    started = run["started"]
    settings = platform.settings.model_copy(update={"home": home})
    batches = checkpoint_batches(lake.checkpoint_path(settings, "speed"))
    first, last = batches[0]["started"], batches[-1]["committed"]
    records = batches[-1]["end_offset_total"]  # from offset 0
    reported = sorted(progress.batches.values(), key=lambda b: b["batch_id"])
    return {
        "records": records,
        "batches": len(batches),
        "first_batch_id": batches[0]["batch_id"],  # > 0 if Spark purged old checkpoint files
        "wall_s": run["wall_s"],
        "records_per_s": round(records / run["wall_s"], 1),
        "startup_s": round(first - started, 2),
        "processing_s": round(last - first, 2),
        "processing_records_per_s": round(records / (last - first), 1),
        "batch_duration_ms_p50": median([1000 * (b["committed"] - b["started"]) for b in batches]),
        "input_rows_p50": median([b["rows"] for b in batches]),
        "batches_in_progress_file": len(reported),
        "steps_ms_median": {
            name: median([b["steps_ms"][name] for b in reported if name in b.get("steps_ms", {})])
            for name in STEP_NAMES
        },
        "cpu_s": run["cpu_s"],
        "cpu_s_per_million_records": per_million(run["cpu_s"], records),
        "rss_mib_max": run["rss_mib_max"],
    }


def checkpoint_batches(checkpoint: Path) -> list[dict]:
    """The micro-batches of a query from its Spark checkpoint: trigger time (offsets/N
    batchTimestampMs), commit time (mtime of commits/N), end offsets (total of both topics) and
    rows (offset difference). The progress file cannot serve here: a --once run exits before
    its last progress events reach the Python listener."""
    batches = []
    previous = 0
    offsets = sorted(
        (f for f in (checkpoint / "offsets").iterdir() if f.name.isdigit()),
        key=lambda f: int(f.name),
    )
    for path in offsets:
        commit = checkpoint / "commits" / path.name
        if not commit.exists():
            continue
        lines = path.read_text().splitlines()
        ends = [json.loads(line) for line in lines[2:]]  # one line per source
        total = sum(int(o) for end in ends for parts in end.values() for o in parts.values())
        batches.append(
            {
                "batch_id": int(path.name),
                "started": json.loads(lines[1])["batchTimestampMs"] / 1000,
                "committed": commit.stat().st_mtime,
                "end_offset_total": total,
                "rows": total - previous,
            }
        )
        previous = total
    if not batches:
        raise RuntimeError(f"no committed micro-batch in {checkpoint}")
    return batches


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM (the job stops its query), then SIGKILL, to the group this benchmark started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def speed_counts(spark, settings: Settings) -> tuple[Counter, int]:
    """{(minute 'YYYY-MM-DDTHH:MM', age bracket, gender): orders} from a lake's speed.purchases
    (the grouping of the view speed.orders_by_age_gender_1m), and how many purchases were
    counted without a profile (profile_found false)."""
    from pyspark.sql import functions as F

    table = spark.read.format("delta").load(str(lake.table_path(settings, PURCHASES)))
    minute = F.date_format("window_start", "yyyy-MM-dd'T'HH:mm").alias("minute")
    rows = table.groupBy(minute, "age_bracket", "gender", "profile_found").count().collect()
    counts: Counter = Counter()
    for r in rows:
        counts[(r.minute, r.age_bracket, r.gender)] += r["count"]
    return counts, sum(r["count"] for r in rows if not r.profile_found)


def compare_counts(plain: Counter, speed: Counter, without_profile: tuple[int, int]) -> dict:
    """Totals must match; buckets may differ where the job counted a purchase under unknown
    because its user's profile came in a later micro-batch (the plain consumer read every
    profile first). ``without_profile``: (plain, speed) purchases counted without a profile."""
    keys = set(plain) | set(speed)
    differing = {k: d for k in keys if (d := speed.get(k, 0) - plain.get(k, 0))}
    return {
        "plain_total": sum(plain.values()),
        "speed_total": sum(speed.values()),
        "totals_match": sum(plain.values()) == sum(speed.values()),
        "buckets": len(keys),
        "buckets_differing": len(differing),
        "abs_difference_sum": sum(abs(d) for d in differing.values()),
        "plain_without_profile": without_profile[0],
        "speed_without_profile": without_profile[1],
        "examples": [[*k, d] for k, d in sorted(differing.items())[:10]],
    }


def _compare(plain: dict, plain_counts: Counter, speed: tuple[Counter, int]) -> dict:
    return compare_counts(plain_counts, speed[0], (plain["purchases_without_profile"], speed[1]))


def run_peer(bench: Bench) -> dict:
    """Stop the supervised job, then time the plain consumer and speed_layer.py --once over the
    same backlog and compare their counts (and the live job's total)."""
    settings = bench.settings
    bench.platform.supervisorctl("stop", "streaming")
    code = code_state()
    ends = kafka_admin.end_offsets(settings.bootstrap, TOPICS)
    print(f"peer: backlog {sum(sum(p.values()) for p in ends.values()):,} records", flush=True)
    home = settings.home.parent / "once-home"
    plain = plain_consumer_process(settings.bootstrap, ends, settings.home.parent / "plain")
    print(f"  plain consumer: {plain['records_per_s']:,.0f} records/s", flush=True)
    once = speed_layer_once(bench.platform, home)
    print(f"  speed layer --once: {once['records_per_s']:,.0f} records/s", flush=True)
    once_settings = settings.model_copy(update={"home": home})
    plain_counts = plain.pop("counts")
    result = {
        "code_state": code,  # may differ from the live job's if include/ changed meanwhile
        "end_offsets": {t: sum(p.values()) for t, p in ends.items()},
        "end_offsets_unchanged": kafka_admin.end_offsets(settings.bootstrap, TOPICS) == ends,
        "plain_consumer": plain,
        "speed_layer_once": once,
        # the same records on both sides (both topics from offset 0), each timed from its
        # process start: the headline ratio, with each side's CPU per million records
        "same_records": plain["records"] == once["records"],
        "ratio_speed_over_plain": round(once["records_per_s"] / plain["records_per_s"], 3),
        "cpu_per_million_ratio_speed_over_plain": _ratio(
            once["cpu_s_per_million_records"], plain["cpu_s_per_million_records"]
        ),
        # and both without their start-up: the speed layer from its first trigger to its last
        # commit, the plain consumer from its first poll to its last record
        "ratio_speed_processing_over_plain": round(
            once["processing_records_per_s"] / plain["consume_records_per_s"], 3
        ),
        "counts_vs_once_lake": _compare(
            plain, plain_counts, speed_counts(bench.spark, once_settings)
        ),
        "counts_vs_live_lake": _compare(plain, plain_counts, speed_counts(bench.spark, settings)),
    }
    shutil.rmtree(home, ignore_errors=True)  # a second lake and Spark temp files
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None
