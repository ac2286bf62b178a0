"""Speed-layer benchmark: offered event rates -> freshness, micro-batch costs, lag, max rate, peer.

Input: offered rates (``--rates 5000,20000``, lines/s), the measured length of each step
(``--seconds``), an unmeasured warm-up (``--warmup``), optionally ``--find-max`` and
``--skip-peer``. Output: ``bench/results/speed.json`` (machine, settings, per-rate results,
find-max, peer comparison) and ``bench/results/speed.md`` (Markdown tables, also printed).

It runs on an isolated platform (own temp ORDERLAKE_HOME, free ports) started with
`orderlake up --only kafka,flume,streaming` and stopped with `orderlake down` at the end, also on
failure or Ctrl-C:

    orderlake generate --live --rate R  ->  2 Flume edge agents  ->  collector  ->  Kafka
    ->  streaming/speed_layer.py (supervised, always on)  ->  speed.purchases (Delta)

1. Freshness. Each line's live ``event_time`` is its append time. A purchase is visible when the
   micro-batch that counted it (speed.purchases.batch_id) committed: ``committed_at`` of that
   batch in the job's progress file, which keeps only the last 120 batches, so a monitor thread
   copies it every second (merged by batch_id) and samples Kafka lag (end offsets minus the
   offsets the job processed, both topics: `kafka_lag_total` of `orderlake status`) every 2 s.
   After each step the benchmark waits until every line reached Kafka and the lag is 0, then
   reads the step's purchases (event ids from the generator manifest) from speed.purchases with
   one local Spark session (1g driver) started after the platform.
2. ``--find-max``: +5,000/s from the highest rate the job kept up with until it does not. It
   kept up when its lag did not grow over the second half of the measured window (slope of the
   lag right after each commit > 5% of the offered rate = growing) and it caught up after the
   step; sustained = kept up, and the generator and Kafka received >= 95% of the offered rate.
3. Peer. The supervised job is stopped; then over the same backlog (both topics from offset 0 to
   their end offsets) a plain Python consumer (confluent-kafka, json.loads, dicts) counts
   purchases per (minute, age bracket, gender), and streaming/speed_layer.py --once processes it
   from scratch into a fresh ORDERLAKE_HOME. Records/s of both, their ratio, and the two sets
   of counts compared bucket by bucket.

The machine is shared (CI, other engineers' platforms): core count, load averages and the CPU
used by processes that are not ours are recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Consumer, KafkaError, TopicPartition

from bench.ingest import git, load_average, machine_info
from bench.stack import Platform, running_platform
from orderlake import contracts, lake
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import kafka, streaming

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
TOPICS = (contracts.TOPIC_ACTIONS, contracts.TOPIC_PROFILES)
PURCHASES = "speed.purchases"
SUSTAINED_SHARE = 0.95  # generator and Kafka arrival rates / offered
LAG_GROWTH_SHARE = 0.05  # lag slope (records/s) over the second half / offered rate
LAG_SAMPLE_S = 2.0
HEAP_SAMPLE_S = 10.0
DRAIN_MAX_S = 600.0  # after a step: wait this long at most for Kafka and the job to catch up
ONCE_MAX_S = 1800.0  # the --once run over the backlog
FIND_MAX_STEP = 5_000
FIND_MAX_LIMIT = 100_000
FIND_MIN_RATE = 1_000
FIND_MAX_RESOLUTION = 1_250
FIND_MAX_MIN_DELIVERED = 0.8  # find-max stops when less of the offered rate reaches Kafka
BENCH_DRIVER_MEMORY = "1g"
JOB_WARMUP_RATE = 2_000


# --- command line -------------------------------------------------------------------------------
def code_state() -> str:
    """A short hash of the uncommitted changes to the code the jobs run (include/, streaming/):
    other engineers change them while benchmarks run; the hash tells two runs' code apart."""
    import hashlib

    diff = git("diff", "HEAD", "--", "include", "streaming")
    return hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else "clean"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.speed", description=__doc__.splitlines()[0])
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


# --- small helpers ------------------------------------------------------------------------------
def epoch(iso: str) -> float:
    """'2026-11-25T15:50:00.123Z' or '...+00:00' -> seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def median(values) -> float | None:
    return pct(values, 50)


def slope(t, y) -> float | None:
    """Least-squares slope of y over t (per second); None with fewer than 3 points."""
    if len(t) < 3:
        return None
    return round(float(np.polyfit(np.asarray(t) - t[0], np.asarray(y, dtype=float), 1)[0]), 1)


def kafka_state(settings: Settings) -> tuple[dict[str, int], int | None]:
    """({topic: end offset total}, lag total): what `orderlake status` shows as
    kafka_lag_total (end offsets minus the offsets the job reported as processed)."""
    ends = kafka.end_offsets(settings.bootstrap, TOPICS)
    totals = {topic: sum(parts.values()) for topic, parts in ends.items()}
    progress = streaming.read_progress(settings)
    if progress is None:
        return totals, None
    processed = progress.get("processed_offsets", {})
    lag = sum(
        end - int(processed.get(topic, {}).get(str(p), 0))
        for topic, parts in ends.items()
        for p, end in parts.items()
    )
    return totals, lag


def jvm_of(pid: int) -> psutil.Process | None:
    """The java child of a PySpark driver process (the JVM that does the work)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return None
    return next((c for c in children if c.name() == "java"), None)


def jvm_heap(proc: psutil.Process) -> dict | None:
    """Heap and GC totals of a running JVM, from `jstat -gc` (next to its java executable)."""
    try:
        jstat = str(Path(proc.exe()).with_name("jstat"))
        out = subprocess.run(
            [jstat, "-gc", str(proc.pid)], capture_output=True, text=True, timeout=20
        ).stdout.split("\n")
        gc = {k: float(v) for k, v in zip(out[0].split(), out[1].split(), strict=False) if v != "-"}
    except (psutil.Error, OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
    used_kib = sum(gc.get(k, 0.0) for k in ("S0U", "S1U", "EU", "OU"))
    return {
        "t": time.time(),
        "heap_used_mib": round(used_kib / 1024, 1),
        "old_used_mib": round(gc.get("OU", 0.0) / 1024, 1),
        "gc_s": gc.get("GCT", 0.0),
        "young_gcs": int(gc.get("YGC", 0)),
        "full_gcs": int(gc.get("FGC", 0)),
    }


# --- the progress file and Kafka lag, copied while the benchmark runs --------------------------
class ProgressCopy:
    """A growing copy of a speed-progress.json: every micro-batch ever reported, by batch_id,
    plus the processed-offset total right after each batch (when seen)."""

    def __init__(self, path: Path):
        self.path = path
        self.batches: dict[int, dict] = {}
        self.processed_after: dict[int, int] = {}  # batch_id -> processed offsets, both topics

    def poll(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        for entry in doc.get("batches", []):
            known = self.batches.get(entry["batch_id"])
            if known is None or "committed_at" not in known:
                self.batches[entry["batch_id"]] = entry
        if doc.get("batches"):
            last = doc["batches"][-1]["batch_id"]
            processed = doc.get("processed_offsets", {})
            total = sum(int(o) for parts in processed.values() for o in parts.values())
            self.processed_after.setdefault(last, total)

    def committed(self) -> dict[int, float]:
        """{batch_id: committed_at as epoch seconds}."""
        return {b: epoch(e["committed_at"]) for b, e in self.batches.items() if "committed_at" in e}


class Monitor(threading.Thread):
    """Every second: copy the progress file. Every 2 s: Kafka end offsets and lag, CPU% (of one
    core) and RSS of the watched processes, whole-machine CPU. Every 10 s: the streaming JVM's
    heap (jstat)."""

    def __init__(self, settings: Settings):
        super().__init__(name="monitor", daemon=True)
        self.settings = settings
        self.progress = ProgressCopy(streaming.progress_path(settings))
        self.samples: list[dict] = []
        self.heap: list[dict] = []
        self.errors: list[str] = []
        self.procs: dict[str, psutil.Process] = {}
        self._done = threading.Event()
        self._lock = threading.Lock()

    def watch(self, name: str, proc: psutil.Process | int | None) -> None:
        if proc is None:
            return
        proc = psutil.Process(proc) if isinstance(proc, int) else proc
        proc.cpu_percent(None)  # the first call only starts the measurement
        with self._lock:
            self.procs[name] = proc

    def run(self) -> None:
        psutil.cpu_percent(None)
        next_lag = next_heap = 0.0
        while not self._done.wait(1.0):
            now = time.time()
            try:
                self.progress.poll()
                if now >= next_lag:
                    next_lag = now + LAG_SAMPLE_S
                    self.samples.append(self._sample())
                if now >= next_heap and "streaming-jvm" in self.procs:
                    next_heap = now + HEAP_SAMPLE_S
                    heap = jvm_heap(self.procs["streaming-jvm"])
                    if heap:
                        self.heap.append(heap)
            except Exception as exc:  # noqa: BLE001 - a missed sample is no reason to stop
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._done.set()
        self.join()

    def _sample(self) -> dict:
        t = time.time()
        ends, lag = kafka_state(self.settings)
        with self._lock:
            watched = dict(self.procs)
        procs = {}
        for name, proc in watched.items():
            try:
                with proc.oneshot():
                    procs[name] = (proc.cpu_percent(None), proc.memory_info().rss / 2**20)
            except psutil.Error:  # exited (the generator)
                continue
        busy = psutil.cpu_percent(None) * (os.cpu_count() or 1)
        return {"t": t, "ends": ends, "lag": lag, "procs": procs, "cpu_busy": busy}


# --- one live step ------------------------------------------------------------------------------
class Bench:
    """The running platform, its monitor and (started on first use) the benchmark's Spark
    session that reads the Delta tables."""

    def __init__(self, platform: Platform, args: argparse.Namespace):
        self.platform = platform
        self.args = args
        self.settings = platform.settings
        self.monitor = Monitor(self.settings)
        self._spark = None

    @property
    def spark(self):
        if self._spark is None:
            from orderlake.spark import get_spark

            self._spark = get_spark(
                self.settings,
                "orderlake-bench-speed",
                register=False,
                conf={"spark.driver.memory": BENCH_DRIVER_MEMORY},
            )
        return self._spark

    def stop_spark(self) -> None:
        if self._spark is not None:
            self._spark.stop()

    def watch_platform(self) -> dict[str, int]:
        pids = self.platform.pids()
        for name, pid in pids.items():
            self.monitor.watch(name, pid)
        if "streaming" in pids:
            self.monitor.watch("streaming-jvm", jvm_of(pids["streaming"]))
        return pids


def warm_up_job(bench: Bench) -> dict:
    """Feed the job a little traffic and wait until it caught up (not measured)."""
    seconds = bench.args.job_warmup
    if seconds <= 0:
        return {}
    print(f"warming the job up: {JOB_WARMUP_RATE} lines/s for {seconds:g} s ...", flush=True)
    started = time.time()
    events = int(JOB_WARMUP_RATE * seconds)
    bench.platform.cli(
        *("generate", "--live", "--rate", str(JOB_WARMUP_RATE), "--events", str(events)),
        *("--seed", "0", "--rotate-mb", "0"),
        timeout=3 * seconds + 120,
    )
    caught_up, drain_s = wait_caught_up(bench.settings, events, DRAIN_MAX_S)
    return {
        "rate": JOB_WARMUP_RATE,
        "events": events,
        "caught_up": caught_up,
        "drain_s": drain_s,
        "seconds": round(time.time() - started, 1),
    }


def run_step(bench: Bench, rate: int, seed: int) -> dict:
    """Offer ``rate`` lines/s for warm-up + seconds, wait for the job to catch up, then read the
    step's purchases from speed.purchases."""
    args, settings = bench.args, bench.settings
    caught_up_before, _ = wait_caught_up(bench.settings, None, args.drain_max)
    pids = bench.watch_platform()
    events = int(rate * (args.warmup + args.seconds))
    actions_before = kafka_state(settings)[0].get(contracts.TOPIC_ACTIONS, 0)
    heap_before = _heap(bench)
    manifest_path = settings.home / "bench" / f"generate-{seed}-{rate}.json"
    with ExitStack() as cleanup:
        gen = bench.platform.popen(
            *("generate", "--live", "--rate", str(rate), "--events", str(events)),
            *("--seed", str(seed), "--rotate-mb", "0", "--manifest", str(manifest_path)),
            stdout=subprocess.DEVNULL,
        )
        cleanup.callback(_kill, gen)
        bench.monitor.watch("generator", gen.pid)
        if gen.wait(timeout=3 * (args.warmup + args.seconds) + 120) != 0:
            raise RuntimeError(f"orderlake generate exited {gen.returncode}")
    manifest = json.loads(manifest_path.read_text())
    caught_up, drain_s = wait_caught_up(settings, actions_before + events, args.drain_max)
    heap_after = _heap(bench)
    bench.monitor.progress.poll()
    rows = step_purchases(bench.spark, settings, manifest)
    result = summarize_step(bench, rate, manifest, rows, (heap_before, heap_after))
    restarted = sorted(n for n, pid in pids.items() if bench.platform.pids().get(n) != pid)
    result.update(
        caught_up_before=caught_up_before,
        caught_up_after=caught_up,
        drain_after_generator_s=drain_s,
        restarted_components=restarted,
        load_average_after_step=load_average(),
    )
    result.update(verdict(result))
    return result


def _heap(bench: Bench) -> dict | None:
    jvm = bench.monitor.procs.get("streaming-jvm")
    return jvm_heap(jvm) if jvm else None


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_caught_up(settings: Settings, actions_total: int | None, timeout: float):
    """Wait until tmall.user_actions holds ``actions_total`` records (all lines went through
    Flume) and the job's lag is 0. Returns (caught up, seconds waited)."""
    started = time.time()
    while True:
        ends, lag = kafka_state(settings)
        arrived = actions_total is None or ends.get(contracts.TOPIC_ACTIONS, 0) >= actions_total
        if arrived and lag == 0:
            return True, round(time.time() - started, 1)
        if time.time() - started > timeout:
            return False, round(time.time() - started, 1)
        time.sleep(1.0)


def step_purchases(spark, settings: Settings, manifest: dict) -> dict[str, np.ndarray]:
    """The step's rows of speed.purchases (event ids host:actions.log:first_seq..last_seq of
    the manifest): event id, batch_id, event time and Kafka time stamp in epoch ms."""
    from pyspark.sql import functions as F

    parts = F.split("event_id", ":")
    wanted = None
    for host, info in manifest["hosts"].items():
        if info["first_seq"] is None:
            continue
        one = (parts[0] == host) & parts[2].cast("long").between(
            info["first_seq"], info["last_seq"]
        )
        wanted = one if wanted is None else wanted | one
    table = spark.read.format("delta").load(str(lake.table_path(settings, PURCHASES)))
    rows = (
        table.where(wanted)
        .select(
            "event_id",
            "batch_id",
            F.unix_millis("event_time").alias("event_ms"),
            F.unix_millis("kafka_timestamp").alias("kafka_ms"),
            "profile_found",
        )
        .collect()
    )
    return {
        "event_id": np.array([r.event_id for r in rows], dtype=object),
        "batch_id": np.array([r.batch_id for r in rows], dtype=np.int64),
        "event_s": np.array([r.event_ms for r in rows], dtype=float) / 1000,
        "kafka_s": np.array([r.kafka_ms or np.nan for r in rows], dtype=float) / 1000,
        "profile_found": np.array([r.profile_found for r in rows], dtype=bool),
    }


# --- a step's numbers ---------------------------------------------------------------------------
def summarize_step(
    bench: Bench, rate: int, manifest: dict, rows: dict, heaps: tuple[dict | None, dict | None]
) -> dict:
    args = bench.args
    gen_start, gen_end = epoch(manifest["started_at"]), epoch(manifest["finished_at"])
    start, end = gen_start + args.warmup, gen_end  # the measured window
    progress = bench.monitor.progress
    batches = [
        b
        for b in progress.batches.values()
        if "committed_at" in b and start <= epoch(b["timestamp"]) <= end
    ]
    samples = [s for s in bench.monitor.samples if start <= s["t"] <= end + LAG_SAMPLE_S]
    expected = int(manifest["action_types"].get(str(contracts.ACTION_PURCHASE), 0))
    return {
        "offered_lines_per_s": rate,
        "generator_actions_per_s": round(manifest["events"] / max(gen_end - gen_start, 1e-9), 1),
        "kafka_actions_per_s": kafka_arrival_rate(samples),
        "events": manifest["events"],
        "purchases_written": expected,
        "purchases_counted": int(len(set(rows["event_id"]))),
        "purchases_double_counted": int(len(rows["event_id"]) - len(set(rows["event_id"]))),
        # every user's profile is written before its first action, yet a capped micro-batch
        # (maxOffsetsPerTrigger, shared pro rata by all partitions) may not reach it yet
        "purchases_without_profile": int((~rows["profile_found"]).sum()),
        "freshness": freshness(rows, progress.committed(), start, end),
        "batches": batch_stats(batches),
        "lag": lag_stats(samples, progress, start, end),
        "processes": process_stats(samples),
        "streaming_jvm": heap_stats(bench.monitor.heap, heaps, gen_start, end),
        "measured_window_s": round(end - start, 1),
    }


def freshness(rows: dict, committed: dict[int, float], start: float, end: float) -> dict:
    """Append (event_time) -> visible (committed_at of the counting batch), in seconds, for the
    purchases appended in the measured window; split at the Kafka time stamp."""
    measured = (rows["event_s"] >= start) & (rows["event_s"] <= end + 1)
    commit = np.array([committed.get(int(b), np.nan) for b in rows["batch_id"]])
    known = measured & ~np.isnan(commit)
    total = commit[known] - rows["event_s"][known]
    ingest = rows["kafka_s"][known] - rows["event_s"][known]
    speed = commit[known] - rows["kafka_s"][known]
    ingest, speed = ingest[~np.isnan(ingest)], speed[~np.isnan(speed)]
    stats = {f"p{q}_s": _r3(np.percentile(total, q)) for q in (50, 95, 99)} if len(total) else {}
    stats.update(
        max_s=_r3(total.max()) if len(total) else None,
        mean_s=_r3(total.mean()) if len(total) else None,
        ingest_p50_s=_r3(np.percentile(ingest, 50)) if len(ingest) else None,
        ingest_p95_s=_r3(np.percentile(ingest, 95)) if len(ingest) else None,
        speed_p50_s=_r3(np.percentile(speed, 50)) if len(speed) else None,
        speed_p95_s=_r3(np.percentile(speed, 95)) if len(speed) else None,
        purchases_measured=int(known.sum()),
        purchases_without_batch_commit_time=int((measured & np.isnan(commit)).sum()),
    )
    return stats


def _r3(x) -> float:
    return round(float(x), 3)


STEP_NAMES = ("plan", "parse", "quarantine", "users", "restate", "bucket", "purchases")
SPARK_PHASES = ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets")


def batch_stats(batches: list[dict]) -> dict:
    """Micro-batches that started in the measured window: durations, rows, medians of the
    job's own step timings (steps_ms) and of Spark's phases (duration_ms)."""
    durations = [b["batch_duration_ms"] for b in batches]
    steps = {
        name: median([b["steps_ms"][name] for b in batches if name in b.get("steps_ms", {})])
        for name in STEP_NAMES
    }
    phases = {
        name: median([b["duration_ms"][name] for b in batches if name in b.get("duration_ms", {})])
        for name in SPARK_PHASES
    }
    return {
        "count": len(batches),
        "duration_ms_p50": median(durations),
        "duration_ms_p95": pct(durations, 95),
        "duration_ms_max": max(durations, default=None),
        "input_rows_p50": median([b["input_rows"] for b in batches]),
        "input_rows_max": max((b["input_rows"] for b in batches), default=None),
        "purchases_counted_p50": median([b.get("purchases_counted", 0) for b in batches]),
        "steps_ms_median": steps,
        "steps_present_in": {n: sum(n in b.get("steps_ms", {}) for b in batches) for n in steps},
        "spark_duration_ms_median": phases,
        "oldest_record_age_at_commit_s_p50": median(
            [b["kafka_ts_min_age_s"] for b in batches if b.get("kafka_ts_min_age_s") is not None]
        ),
    }


def lag_stats(samples: list[dict], progress: ProgressCopy, start: float, end: float) -> dict:
    """Kafka lag over the measured window. The 2 s samples saw-tooth with the micro-batches (the
    processed offsets jump at each commit), so growth is judged on the lag right after each
    commit (the saw-tooth's low points): end offsets then (interpolated) minus the offsets that
    batch processed; over the second half, or the whole window when batches are so long that
    the second half holds fewer than 3 commits."""
    t = np.array([s["t"] for s in samples if s["lag"] is not None])
    lag = np.array([s["lag"] for s in samples if s["lag"] is not None], dtype=float)
    ends = np.array([sum(s["ends"].values()) for s in samples if s["lag"] is not None])
    mid = (start + end) / 2
    points = after_commit_lags(progress, t, ends, start, end)
    late = [p for p in points if p[0] >= mid]
    second = t >= mid
    if len(late) >= 3:
        basis, growth = "after-commit lag, second half", slope(*zip(*late, strict=True))
    elif len(points) >= 3:
        basis, growth = "after-commit lag, whole window", slope(*zip(*points, strict=True))
    else:
        basis, growth = "2 s samples, second half", slope(t[second], lag[second])
    return {
        "at_end": int(lag[-1]) if len(lag) else None,
        "max": int(lag.max()) if len(lag) else None,
        "mean": round(float(lag.mean()), 1) if len(lag) else None,
        "growth_per_s": growth,
        "growth_basis": basis,
        "slope_second_half_per_s": slope(t[second], lag[second]),
        "after_commit": [[round(a, 1), round(b)] for a, b in points],
        "samples": [[round(float(a), 1), int(b)] for a, b in zip(t, lag, strict=True)],
    }


def after_commit_lags(
    progress: ProgressCopy, t: np.ndarray, ends: np.ndarray, start: float, end: float
) -> list[tuple[float, float]]:
    """(commit time, lag right after it) for the batches committed in [start, end]."""
    points = []
    for batch_id, processed in progress.processed_after.items():
        entry = progress.batches.get(batch_id, {})
        if "committed_at" in entry and len(t) > 1 and start <= epoch(entry["committed_at"]) <= end:
            at = epoch(entry["committed_at"])
            points.append((at, float(np.interp(at, t, ends)) - processed))
    return sorted(points)


def kafka_arrival_rate(samples: list[dict]) -> float | None:
    t = [s["t"] for s in samples]
    return slope(t, [s["ends"].get(contracts.TOPIC_ACTIONS, 0) for s in samples])


def process_stats(samples: list[dict]) -> dict:
    """CPU % of one core (mean / max of the 2 s samples) and max RSS per watched process; the
    whole machine's CPU and the part used by processes that are not ours."""
    names = sorted({name for s in samples for name in s["procs"]})
    stats: dict[str, dict] = {}
    for name in names:
        cpu = [s["procs"][name][0] for s in samples if name in s["procs"]]
        rss = [s["procs"][name][1] for s in samples if name in s["procs"]]
        stats[name] = {
            "cpu_percent_mean": round(float(np.mean(cpu)), 1),
            "cpu_percent_max": round(float(np.max(cpu)), 1),
            "rss_mib_max": round(float(np.max(rss)), 1),
        }
    if samples:
        busy = float(np.mean([s["cpu_busy"] for s in samples]))
        ours = float(np.mean([sum(c for c, _ in s["procs"].values()) for s in samples]))
        stats["machine"] = {
            "cpu_busy_percent_mean": round(busy, 1),
            "not_ours_cpu_percent_mean": round(max(0.0, busy - ours), 1),
        }
    return stats


def heap_stats(heap: list[dict], around: tuple, start: float, end: float) -> dict:
    """The streaming JVM's heap (jstat every 10 s) and GC time spent during the step."""
    before, after = around
    used = [h["heap_used_mib"] for h in heap if start <= h["t"] <= end]
    old = [h["old_used_mib"] for h in heap if start <= h["t"] <= end]
    out: dict = {
        "heap_used_mib_max": max(used, default=None),
        "old_used_mib_max": max(old, default=None),
    }
    if before and after:
        out.update(
            gc_s=round(after["gc_s"] - before["gc_s"], 2),
            young_gcs=after["young_gcs"] - before["young_gcs"],
            full_gcs=after["full_gcs"] - before["full_gcs"],
        )
    return out


def verdict(r: dict) -> dict:
    """kept_up: the job's lag did not grow (and it caught up after the step); sustained: kept
    up with the offered rate itself, i.e. the generator and the ingest path delivered >= 95% of
    it (on a busy machine the Python generator falls short; the job was then tested at what
    reached Kafka)."""
    offered = r["offered_lines_per_s"]
    growth = r["lag"]["growth_per_s"] or 0.0
    kept_up = growth <= LAG_GROWTH_SHARE * offered and r["caught_up_after"]
    delivered = min(r["generator_actions_per_s"], r["kafka_actions_per_s"] or 0.0)
    limited_by = None
    if not kept_up:
        limited_by = "speed layer"
    elif r["generator_actions_per_s"] < SUSTAINED_SHARE * offered:
        limited_by = "generator"
    elif (r["kafka_actions_per_s"] or 0.0) < SUSTAINED_SHARE * offered:
        limited_by = "ingest"
    return {
        "kept_up": bool(kept_up),
        "delivered_share": round(delivered / offered, 3),
        "sustained": limited_by is None,
        "limited_by": limited_by,
    }


# --- the rate steps -----------------------------------------------------------------------------
def run_rates(bench: Bench, steps: list[dict]) -> None:
    """The fixed steps, then (--find-max) +5,000/s from the highest sustained rate until one is
    not sustained. Each result is appended to ``steps`` as soon as it is known."""
    args = bench.args

    def step(rate: int) -> dict:
        print(f"offering {rate} lines/s for {args.warmup:g} + {args.seconds:g} s ...", flush=True)
        result = run_step(bench, rate, seed=len(steps) + 1)
        steps.append(result)
        print("  " + one_line(result), flush=True)
        return result

    for rate in args.rates:
        step(rate)
    if args.find_max:
        find_max(steps, step)


def find_max(steps: list[dict], step) -> None:
    """+5,000/s from the highest rate the job kept up with, until its lag grows (or the
    generator and Flume cannot deliver 80% of the rate: nothing higher can be offered); when it
    kept up with none, halve the lowest rate offered (down to 1,000/s) until it does. Then
    bisect between the highest rate kept up with and the lowest not, to 1,250/s."""
    done = {s["offered_lines_per_s"]: s for s in steps}
    if max_kept_up(steps) is None:
        rate = min(done, default=FIND_MAX_STEP) // 2
        while rate >= FIND_MIN_RATE and not step(rate)["kept_up"]:
            rate //= 2
    else:
        rate = max_kept_up(steps) + FIND_MAX_STEP
        while rate <= FIND_MAX_LIMIT:
            result = done.get(rate) or step(rate)
            if not result["kept_up"] or result["delivered_share"] < FIND_MAX_MIN_DELIVERED:
                break
            rate += FIND_MAX_STEP
    while (bracket := kept_up_bracket(steps)) and bracket[1] - bracket[0] > FIND_MAX_RESOLUTION:
        step((bracket[0] + bracket[1]) // 2)


def kept_up_bracket(steps: list[dict]) -> tuple[int, int] | None:
    """(highest rate kept up with, lowest rate above it not kept up with), if both exist."""
    low = max_kept_up(steps)
    above = [s["offered_lines_per_s"] for s in steps if not s["kept_up"]]
    above = [r for r in above if low is not None and r > low]
    return (low, min(above)) if above else None


def max_kept_up(steps: list[dict]) -> int | None:
    return max((s["offered_lines_per_s"] for s in steps if s["kept_up"]), default=None)


def max_sustained(steps: list[dict]) -> int | None:
    return max((s["offered_lines_per_s"] for s in steps if s["sustained"]), default=None)


def one_line(r: dict) -> str:
    f, b, lag = r["freshness"], r["batches"], r["lag"]
    text = (
        f"freshness p50/p95/max {f.get('p50_s')}/{f.get('p95_s')}/{f.get('max_s')} s over "
        f"{f['purchases_measured']} purchases; batch p50 {b['duration_ms_p50']} ms, "
        f"{b['input_rows_p50']} rows; lag at end {lag['at_end']}, growth "
        f"{lag['growth_per_s']}/s; kept up {'yes' if r['kept_up'] else 'NO'}, sustained "
        f"{'yes' if r['sustained'] else 'no, limited by the ' + str(r['limited_by'])}"
    )
    if r["restarted_components"]:
        text += f"; RESTARTED: {', '.join(r['restarted_components'])}"
    return text


# --- the peer: a plain Python consumer over the same backlog ------------------------------------
def _values(bootstrap: str, topic: str, ends: dict[int, int]):
    """Yield lists of message values of ``topic`` from offset 0 up to ``ends`` (exclusive)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"orderlake-bench-peer-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    remaining = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, 0) for p in sorted(remaining)])
    try:
        while remaining:
            values = []
            for msg in consumer.consume(10_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"{topic}: {err}")
                    continue
                if msg.offset() < ends[msg.partition()]:
                    values.append(msg.value())
                if msg.offset() >= ends[msg.partition()] - 1:
                    remaining.discard(msg.partition())
            yield values
    finally:
        consumer.close()


def plain_consumer(bootstrap: str, ends: dict[str, dict[int, int]]) -> dict:
    """Profiles into a dict, then actions: parse each JSON value, count purchases (deduplicated
    by event_id) per (1-minute window, age bracket, gender)."""
    started, cpu = time.perf_counter(), time.process_time()
    profiles: dict[int, tuple[str, str, str]] = {}  # user_id -> (updated_at, bracket, gender)
    n_profiles = n_actions = bad = duplicates = without_profile = 0
    for values in _values(bootstrap, contracts.TOPIC_PROFILES, ends[contracts.TOPIC_PROFILES]):
        for value in values:
            n_profiles += 1
            try:
                p = json.loads(value)
            except ValueError:
                bad += 1
                continue
            known = profiles.get(p["user_id"])
            if known is None or p["updated_at"] >= known[0]:
                bracket = contracts.age_bracket(p.get("age_range"))
                profiles[p["user_id"]] = (
                    p["updated_at"],
                    bracket,
                    contracts.gender_label(p.get("gender")),
                )
    missing = ("", contracts.UNKNOWN, contracts.UNKNOWN)
    seen: set[str] = set()
    counts: Counter = Counter()
    for values in _values(bootstrap, contracts.TOPIC_ACTIONS, ends[contracts.TOPIC_ACTIONS]):
        for value in values:
            n_actions += 1
            try:
                a = json.loads(value)
            except ValueError:
                bad += 1
                continue
            if a.get("action_type") != contracts.ACTION_PURCHASE:
                continue
            if a["event_id"] in seen:
                duplicates += 1
                continue
            seen.add(a["event_id"])
            found, bracket, gender = profiles.get(a["user_id"], missing)
            without_profile += not found
            counts[(a["event_time"][:16], bracket, gender)] += 1
    seconds = time.perf_counter() - started
    records = n_profiles + n_actions
    return {
        "records": records,
        "profiles": n_profiles,
        "actions": n_actions,
        "unparsable": bad,
        "duplicate_purchases_skipped": duplicates,
        "purchases_without_profile": without_profile,
        "wall_s": round(seconds, 2),
        "records_per_s": round(records / seconds, 1),
        "cpu_s": round(time.process_time() - cpu, 2),
        "counts": counts,
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
    log_path = home / "speed-once.log"
    cpu_by_pid: dict[int, float] = {}
    rss_max = 0.0
    with log_path.open("w") as log, ExitStack() as cleanup:
        started = time.time()
        proc = subprocess.Popen(
            [sys.executable, str(root / "streaming" / "speed_layer.py"), "--once"],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its JVM and workers: one group, stopped together
        )
        cleanup.callback(_stop_group, proc)
        while proc.poll() is None:
            if time.time() - started > ONCE_MAX_S:
                raise TimeoutError(f"speed_layer.py --once still running after {ONCE_MAX_S:.0f} s")
            progress.poll()
            rss_max = max(rss_max, _tree_cpu(proc.pid, cpu_by_pid))
            time.sleep(1.0)
        ended = time.time()
    progress.poll()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"speed_layer.py --once exited {proc.returncode}:\n{tail}")
    settings = platform.settings.model_copy(update={"home": home})
    batches = checkpoint_batches(lake.checkpoint_path(settings, "speed"))
    first, last = batches[0]["started"], batches[-1]["committed"]
    records = batches[-1]["end_offset_total"]  # from offset 0
    reported = sorted(progress.batches.values(), key=lambda b: b["batch_id"])
    return {
        "records": records,
        "batches": len(batches),
        "first_batch_id": batches[0]["batch_id"],  # > 0 if Spark purged old checkpoint files
        "wall_s": round(ended - started, 2),
        "records_per_s": round(records / (ended - started), 1),
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
        "cpu_s_approx": round(sum(cpu_by_pid.values()), 1),
        "jvm_rss_mib_max": round(rss_max, 1),
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


def _tree_cpu(pid: int, cpu_by_pid: dict[int, float]) -> float:
    """Record the CPU seconds of a process and its descendants; return their largest RSS (MiB)."""
    rss = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu_by_pid[proc.pid] = times.user + times.system
                rss = max(rss, proc.memory_info().rss / 2**20)
    except psutil.Error:
        pass
    return rss


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
    ends = kafka.end_offsets(settings.bootstrap, TOPICS)
    print(f"peer: backlog {sum(sum(p.values()) for p in ends.values()):,} records", flush=True)
    plain = plain_consumer(settings.bootstrap, ends)
    print(f"  plain consumer: {plain['records_per_s']:,.0f} records/s", flush=True)
    home = settings.home.parent / "once-home"
    once = speed_layer_once(bench.platform, home)
    print(f"  speed layer --once: {once['records_per_s']:,.0f} records/s", flush=True)
    once_settings = settings.model_copy(update={"home": home})
    plain_counts = plain.pop("counts")
    result = {
        "code_state": code,  # may differ from the live job's if include/ changed meanwhile
        "end_offsets": {t: sum(p.values()) for t, p in ends.items()},
        "end_offsets_unchanged": kafka.end_offsets(settings.bootstrap, TOPICS) == ends,
        "plain_consumer": plain,
        "speed_layer_once": once,
        "ratio_speed_over_plain": round(once["records_per_s"] / plain["records_per_s"], 3),
        "ratio_speed_processing_over_plain": round(
            once["processing_records_per_s"] / plain["records_per_s"], 3
        ),
        "counts_vs_once_lake": _compare(
            plain, plain_counts, speed_counts(bench.spark, once_settings)
        ),
        "counts_vs_live_lake": _compare(plain, plain_counts, speed_counts(bench.spark, settings)),
    }
    shutil.rmtree(home, ignore_errors=True)  # a second lake and Spark temp files
    return result


# --- the report ---------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    dirty = result["git_modified_files"]
    lines = [
        f"Speed layer, append -> counted in speed.purchases (Flume -> Kafka -> Structured "
        f"Streaming -> Delta); {result['timestamp']}, commit {result['git_commit']}"
        f"{' + uncommitted changes' if dirty else ''}, {m['cpu_count']} cores, "
        f"{m['ram_total_gib']} GiB RAM, load average (1/5/15 min) "
        f"{_loads(result['load_average_before'])} before, {_loads(result['load_average_after'])} "
        f"after; {s['seconds']:g} s measured per rate after {s['warmup']:g} s warm-up (and "
        f"{s['job_warmup'].get('events', 0):,} unmeasured events before the first step); streaming "
        f"driver heap {s['speed_driver_memory']}, "
        f"maxOffsetsPerTrigger {s['max_offsets_per_trigger']:,}.",
    ]
    if dirty:
        lines.append(f"Working tree differed from the commit in: {', '.join(dirty)}.")
    if result["error"]:
        lines.append(f"The run stopped early: {result['error']}")
    steps = result["steps"]
    if steps:
        lines += ["", "Freshness and lag:", "", *_freshness_table(steps), "", *_lag_traces(steps)]
        lines += ["", "Where a micro-batch's time goes (medians, ms):", "", *_steps_table(steps)]
        lines += ["", "Resources (CPU % of one core, mean / max; RSS max):", "", *_resources(steps)]
    if s["find_max"]:
        lines += ["", find_max_line(result)]
    if result.get("peer"):
        lines += ["", "Peer, the same backlog from offset 0:", "", *_peer_table(result["peer"])]
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def find_max_line(result: dict) -> str:
    steps = result["steps"]
    kept = [x for x in steps if x["kept_up"]]
    best = max(kept, key=lambda x: x["offered_lines_per_s"], default=None)
    failed = sorted((x for x in steps if not x["kept_up"]), key=lambda x: x["offered_lines_per_s"])
    text = "Find-max: "
    if best:
        text += (
            f"the highest rate the job kept up with: {best['offered_lines_per_s']:,} lines/s "
            f"offered ({_num(best['kafka_actions_per_s'])} actions/s reached Kafka; "
            f"{'sustained' if best['sustained'] else 'limited by the ' + best['limited_by']})"
        )
    else:
        text += "the job kept up with none of the rates offered"
    above = [
        x for x in failed if best is None or x["offered_lines_per_s"] > best["offered_lines_per_s"]
    ]
    if above:
        text += f"; its lag grew at {above[0]['offered_lines_per_s']:,} lines/s"
    sustained = result["max_sustained_lines_per_s"]
    text += f". Highest sustained (>= 95% delivered): {f'{sustained:,}' if sustained else 'none'}."
    return text


NOTES = (
    "Freshness = committed_at of the micro-batch that counted a purchase - its event_time (the "
    "append time), for the purchases appended after each step's warm-up; ingest = Kafka time "
    "stamp - event_time, speed = committed_at - Kafka time stamp. Lag = Kafka end offsets - "
    "offsets the job processed (both topics), sampled every 2 s; 'after commit' = the lag right "
    "after each commit (the low points of the saw-tooth), whose slope over the second half of "
    "the step decides 'kept up' (<= 5% of the offered rate; over the whole window when the "
    "second half holds < 3 commits; (*) = on the 2 s samples when even that is too few), with "
    "catching up within the drain time after the step. Sustained = kept up and the generator "
    "and Kafka received >= 95% of the offered rate (the Python generator shares the 2 cores and "
    "falls short on a busy machine). Machine CPU is in % of one core (200% = both cores); 'not "
    "ours' = used by other tenants' processes."
)


def _freshness_table(steps: list[dict]) -> list[str]:
    head = [
        "offered lines/s",
        "generator actions/s",
        "into Kafka/s",
        "purchases measured",
        "counted without profile",
        "p50 s",
        "p95 s",
        "max s",
        "ingest p50 s",
        "speed p50 s",
        "batch p50 / p95 ms",
        "rows/batch p50",
        "lag at end",
        "lag max",
        "lag growth /s",
        "kept up / sustained",
    ]
    lines = _head(head)
    for r in steps:
        f, b, lag = r["freshness"], r["batches"], r["lag"]
        cells = [
            f"{r['offered_lines_per_s']:,}",
            f"{r['generator_actions_per_s']:,.0f}",
            _num(r["kafka_actions_per_s"]),
            f"{f['purchases_measured']:,} of {r['purchases_written']:,}",
            f"{r['purchases_without_profile']:,}",
            _sec(f.get("p50_s")),
            _sec(f.get("p95_s")),
            _sec(f.get("max_s")),
            _sec(f.get("ingest_p50_s")),
            _sec(f.get("speed_p50_s")),
            f"{_num(b['duration_ms_p50'])} / {_num(b['duration_ms_p95'])}",
            _num(b["input_rows_p50"]),
            _num(lag["at_end"]),
            _num(lag["max"]),
            _num(lag["growth_per_s"]) + ("" if lag["growth_basis"].startswith("after") else " (*)"),
            ("yes" if r["kept_up"] else "**no**")
            + " / "
            + ("yes" if r["sustained"] else f"no ({r['limited_by']})"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _lag_traces(steps: list[dict]) -> list[str]:
    """The lag right after each commit in the measured window, in thousands of records."""
    lines = ["Lag right after each commit in the measured window (thousand records):", ""]
    for r in steps:
        trace = " ".join(f"{lag / 1000:,.0f}" for _, lag in r["lag"]["after_commit"])
        lines.append(f"- {r['offered_lines_per_s']:,} lines/s: {trace or '-'}")
    return lines


def _steps_table(steps: list[dict]) -> list[str]:
    head = ["offered lines/s", "batches", "batch", "addBatch", *STEP_NAMES, "other Spark phases"]
    lines = _head(head)
    for r in steps:
        b = r["batches"]
        phases = b["spark_duration_ms_median"]
        other = sum(v or 0 for k, v in phases.items() if k != "addBatch")
        cells = [
            f"{r['offered_lines_per_s']:,}",
            str(b["count"]),
            _num(b["duration_ms_p50"]),
            _num(phases.get("addBatch")),
            *(_step_cell(b, name) for name in STEP_NAMES),
            _num(other),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _step_cell(batches: dict, name: str) -> str:
    value, present = batches["steps_ms_median"][name], batches["steps_present_in"][name]
    if value is None:
        return "-"
    return _num(value) + ("" if present == batches["count"] else f" ({present} batches)")


def _resources(steps: list[dict]) -> list[str]:
    head = [
        "offered lines/s",
        "machine (not ours)",
        "streaming JVM",
        "heap used max / old max MiB",
        "GC s (young / full)",
        "kafka",
        "collector",
        "edges",
        "generator",
    ]
    lines = _head(head)
    for r in steps:
        p, jvm = r["processes"], r["streaming_jvm"]
        machine = p.get("machine", {})
        cells = [
            f"{r['offered_lines_per_s']:,}",
            f"{machine.get('cpu_busy_percent_mean', 0):.0f}% "
            f"({machine.get('not_ours_cpu_percent_mean', 0):.0f}%)",
            _proc(p.get("streaming-jvm")),
            f"{_num(jvm.get('heap_used_mib_max'))} / {_num(jvm.get('old_used_mib_max'))}",
            f"{jvm.get('gc_s', '-')} ({jvm.get('young_gcs', '-')} / {jvm.get('full_gcs', '-')})",
            _proc(p.get("kafka")),
            _proc(p.get("flume-collector")),
            " + ".join(_proc(v) for k, v in sorted(p.items()) if k.startswith("flume-edge")),
            _proc(p.get("generator")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _peer_table(peer: dict) -> list[str]:
    plain, once = peer["plain_consumer"], peer["speed_layer_once"]
    lines = _head(
        ["", "records", "wall s", "records/s", "without start-up s", "records/s", "CPU s"]
    )
    lines.append(
        f"| plain consumer (1 Python thread) | {plain['records']:,} | {plain['wall_s']:.1f} | "
        f"{plain['records_per_s']:,.0f} | - | - | {plain['cpu_s']:.1f} |"
    )
    lines.append(
        f"| speed_layer.py --once | {once['records']:,} | {once['wall_s']:.1f} | "
        f"{once['records_per_s']:,.0f} | {once['processing_s']:.1f} | "
        f"{once['processing_records_per_s']:,.0f} | ~{once['cpu_s_approx']:.0f} |"
    )
    c, live = peer["counts_vs_once_lake"], peer["counts_vs_live_lake"]
    lines += [
        "",
        f"Ratio speed layer / plain consumer: {peer['ratio_speed_over_plain']:.3f} from process "
        f"start, {peer['ratio_speed_processing_over_plain']:.3f} without the Spark start-up "
        f"({once['startup_s']:.1f} s; {once['batches']} micro-batches of "
        f"{_num(once['input_rows_p50'])} rows p50, {_num(once['batch_duration_ms_p50'])} ms p50).",
        f"Counts: plain {c['plain_total']:,} purchases vs --once lake {c['speed_total']:,} "
        f"(totals {'match' if c['totals_match'] else '**differ**'}); "
        f"{c['buckets_differing']} of {c['buckets']} (minute, age, gender) buckets differ by "
        f"{c['abs_difference_sum']:,} in total; counted without a profile: plain "
        f"{c['plain_without_profile']:,}, speed {c['speed_without_profile']:,}. "
        f"Live lake: {live['speed_total']:,} "
        f"({'matches' if live['totals_match'] else '**differs**'}), "
        f"{live['buckets_differing']} buckets differ by {live['abs_difference_sum']:,}, "
        f"{live['speed_without_profile']:,} counted without a profile.",
    ]
    if peer["code_state"] != peer.get("code_state_at_start", peer["code_state"]):
        lines.append(
            "Note: include/ or streaming/ changed during the run (other engineers' work): the "
            "--once run used newer code than the live job."
        )
    return lines


def _head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]


def _num(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _sec(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _proc(stats: dict | None) -> str:
    if not stats:
        return "-"
    return (
        f"{stats['cpu_percent_mean']:.0f} / {stats['cpu_percent_max']:.0f}% "
        f"{stats['rss_mib_max']:.0f} MiB"
    )


def _loads(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def write_results(result: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "speed.json", out / "speed.md"
    texts = {json_path: json.dumps(result, indent=2) + "\n", md_path: markdown(result)}
    for path, text in texts.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return json_path, md_path


# --- the run ------------------------------------------------------------------------------------
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
        "benchmark": "speed",
        "timestamp": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": git("rev-parse", "--short", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain")),
        # tracked files that differed from the commit when the benchmark ran
        "git_modified_files": git("diff", "--name-only", "HEAD").splitlines(),
        "code_state_at_start": code_at_start,
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
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
    json_path, md_path = write_results(result, args.out)
    print()
    print(markdown(result))
    print(f"results: {json_path}, {md_path}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
