"""What the speed benchmark watches while a step runs, and the statistics of a step drawn from it.

A monitor thread copies the speed layer's progress file (which keeps only its last micro-batches)
and samples Kafka lag, process CPU and RSS, and the streaming JVM's heap; the functions below
turn a step's share of those samples into its figures.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from bench.common import epoch, jvm_heap, median, pct, slope
from bench.speed import TOPICS
from orderlake import contracts, kafka_admin, speed_progress
from orderlake.settings import Settings

LAG_SAMPLE_S = 2.0
HEAP_SAMPLE_S = 10.0


def kafka_state(settings: Settings) -> tuple[dict[str, int], int | None]:
    """({topic: end offset total}, lag total): what `orderlake status` shows as
    kafka_lag_total (end offsets minus the offsets the job reported as processed)."""
    ends = kafka_admin.end_offsets(settings.bootstrap, TOPICS)
    totals = {topic: sum(parts.values()) for topic, parts in ends.items()}
    progress = speed_progress.read(settings)
    if progress is None:
        return totals, None
    processed = progress.get("processed_offsets", {})
    lag = sum(
        end - int(processed.get(topic, {}).get(str(p), 0))
        for topic, parts in ends.items()
        for p, end in parts.items()
    )
    return totals, lag


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
        self.progress = ProgressCopy(speed_progress.path(settings))
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
