"""The live part of the speed benchmark: offered rates through the running platform, each step's
freshness and verdict, and the search for the highest rate the speed layer keeps up with.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from contextlib import ExitStack

import numpy as np

from bench.common import epoch, jvm_heap, jvm_of, load_average
from bench.speed import PURCHASES
from bench.speed.monitor import (
    LAG_SAMPLE_S,
    Monitor,
    batch_stats,
    heap_stats,
    kafka_arrival_rate,
    kafka_state,
    lag_stats,
    process_stats,
)
from bench.speed.report import one_line
from bench.stack import Platform
from orderlake import contracts, lake
from orderlake.settings import Settings

SUSTAINED_SHARE = 0.95  # generator and Kafka arrival rates / offered
LAG_GROWTH_SHARE = 0.05  # lag slope (records/s) over the second half / offered rate
DRAIN_MAX_S = 600.0  # after a step: wait this long at most for Kafka and the job to catch up
FIND_MAX_STEP = 5_000
FIND_MAX_LIMIT = 100_000
FIND_MIN_RATE = 1_000
FIND_MAX_RESOLUTION = 1_250
FIND_MAX_MIN_DELIVERED = 0.8  # find-max stops when less of the offered rate reaches Kafka
BENCH_DRIVER_MEMORY = "1g"
JOB_WARMUP_RATE = 2_000


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
