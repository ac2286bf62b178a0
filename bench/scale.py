"""The whole pipeline at growing volume: how time, memory and disk grow with the events.

    .venv/bin/python -m bench.scale --events 1000000 5000000 [--out DIR]

For each volume, a fresh isolated platform (`orderlake up --only kafka,flume,streaming,spark`)
and, timed from the first line the generator appends:

- generate: the generator writes every action (and its users' profiles) to the hosts' spool
  files, unthrottled: the rate a log shipper could at best read;
- Kafka: the edge agents and the collector have delivered every line to Kafka;
- speed: the speed layer's Kafka lag is 0 (it counts while the lines arrive);
- batch: `orderlake batch all --close-through <last day>` (bronze, silver, gold), started once
  Kafka holds every line;
- reconcile: `orderlake reconcile`: every layer against the one before it, and speed vs batch.

End to end is the first line appended -> gold final and the speed layer caught up, and the
reconciliation's verdict. Every 2 s the RSS of every process of the platform (supervisord's
tree, and the batch commands) is sampled, every 20 s the disk use of each data directory.
Output: ``bench/results/scale.json``, ``scale.md`` and ``scale.png`` (time and peak RSS against
events on log-log axes, with the fitted exponent: 1.0 is linear growth).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

from bench.common import RESULTS_DIR, kafka_holds, load_average, provenance, write_results
from bench.stack import ORDERLAKE, Platform, running_platform
from orderlake import speed_progress
from orderlake.settings import Settings
from orderlake.workload.generator import generate_to_spool

HOPS = ("generate", "kafka", "speed", "batch", "reconcile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument(
        "--from-log",
        type=Path,
        help="write the results of a run stopped early from the per-volume lines it printed "
        "(its output), instead of running; --started gives that run's start (ISO, UTC)",
    )
    p.add_argument("--started", type=datetime.fromisoformat, help="with --from-log")
    p.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the volumes of the results already in --out that this run does not measure "
        "(each volume keeps the date and commit it was measured at)",
    )
    return p.parse_args(argv)


# --- what the platform holds --------------------------------------------------------------------
def data_dirs(settings: Settings) -> dict[str, Path]:
    lake = settings.lake_dir
    return {
        "spool": settings.spool_dir,
        "flume channels": settings.flume_dir,
        "kafka": settings.kafka_dir,
        "bronze": lake / "bronze",
        "silver": lake / "silver",
        "gold": lake / "gold",
        "speed": lake / "speed",
        "checkpoints": lake / "_checkpoints",
        "other lake": lake,
    }


def disk_bytes(path: Path, skip: tuple[Path, ...] = ()) -> int:
    """Allocated bytes under ``path`` (as du counts them), leaving out ``skip``."""
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if Path(root, d) not in skip]
        for name in files:
            with contextlib.suppress(OSError):  # rotated or compacted away meanwhile
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def disk_use(settings: Settings) -> dict[str, int]:
    dirs = data_dirs(settings)
    named = tuple(p for n, p in dirs.items() if n != "other lake")
    return {n: disk_bytes(p, named if n == "other lake" else ()) for n, p in dirs.items()}


class Sampler(threading.Thread):
    """Peak RSS of the platform's process tree (and this process's children), peak disk use."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings = settings
        self.peak_rss = 0
        self.peak_by_process: dict[str, int] = {}
        self.peak_disk: dict[str, int] = {}
        self.halt = threading.Event()

    def roots(self) -> list[psutil.Process]:
        pid = int((self.settings.run_dir / "supervisord.pid").read_text())
        return [psutil.Process(pid), psutil.Process()]

    def sample_rss(self) -> None:
        total, by_name, seen = 0, {}, {}
        for root in self.roots():
            for proc in [root, *root.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    name = proc.name()
                    parent = proc.ppid()
                except psutil.Error:
                    continue
                seen[proc.pid] = rss
                # a JVM starts a program by vfork + exec: until the exec the child shares the
                # JVM's memory (its RSS is the JVM's, to the byte) and must not count twice
                if seen.get(parent) == rss:
                    continue
                total += rss
                by_name[name] = by_name.get(name, 0) + rss
        self.peak_rss = max(self.peak_rss, total)
        for name, rss in by_name.items():
            self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), rss)

    def run(self) -> None:
        last_disk = 0.0
        while not self.halt.is_set():
            self.sample_rss()
            if time.monotonic() - last_disk > 20:
                for name, used in disk_use(self.settings).items():
                    self.peak_disk[name] = max(self.peak_disk.get(name, 0), used)
                last_disk = time.monotonic()
            self.halt.wait(2.0)


# --- one volume ---------------------------------------------------------------------------------
def wait(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(1.0)


def command(platform: Platform, *args: str) -> tuple[float, str, int]:
    started = time.monotonic()
    done = subprocess.run(
        [*ORDERLAKE, *args], env=platform.env, capture_output=True, text=True, timeout=6 * 3600
    )
    if done.returncode not in (0, 3):  # reconcile exits 3 when it finds gaps: still a result
        raise RuntimeError(f"orderlake {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.monotonic() - started, done.stdout, done.returncode


def one_volume(events: int, seed: int) -> dict:
    with running_platform(only="kafka,flume,streaming,spark") as platform:
        settings = platform.settings
        sampler = Sampler(settings)
        sampler.start()
        t0 = time.monotonic()
        manifest, _ = generate_to_spool(
            settings.spool_dir, events=events, rate=0, hosts=settings.host_names, seed=seed
        )
        at = {"generate": time.monotonic() - t0}
        expected = manifest["topics"]
        wait(
            lambda: kafka_holds(settings.bootstrap, expected), "Kafka holding every line", 4 * 3600
        )
        at["kafka"] = time.monotonic() - t0
        # the speed layer catches up while the batch runs: watched beside it
        watcher = threading.Thread(
            target=lambda: (
                wait(
                    lambda: speed_progress.total_lag(settings) == 0,
                    "the speed layer caught up",
                    4 * 3600,
                ),
                at.__setitem__("speed", time.monotonic() - t0),
            ),
            daemon=True,
        )
        watcher.start()
        # every generated day final: gold as a day's last batch run leaves it
        last_day = max(manifest["purchases_by_day_age_gender"])
        batch_s, _, _ = command(platform, "batch", "all", "--close-through", last_day)
        at["batch"] = time.monotonic() - t0
        watcher.join()
        if "speed" not in at:
            raise RuntimeError("the speed layer did not catch up")
        reconcile_s, out, code = command(platform, "reconcile")
        at["reconcile"] = time.monotonic() - t0
        sampler.halt.set()
        sampler.join()
        verdict = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        return {
            "events": events,
            "profiles": manifest["profiles"],
            "seconds_from_first_line": {k: round(v, 1) for k, v in at.items()},
            "end_to_end_s": round(max(at["batch"], at["speed"]), 1),
            "batch_s": round(batch_s, 1),
            "reconcile_s": round(reconcile_s, 1),
            "rates": {
                "generate_lines_per_s": round(events / at["generate"]),
                "kafka_lines_per_s": round(events / at["kafka"]),
                "end_to_end_events_per_s": round(events / max(at["batch"], at["speed"])),
            },
            "reconcile_exact": code == 0 and not verdict.get("failed"),
            "reconcile_failed": verdict.get("failed", []),
            "peak_rss_gib": round(sampler.peak_rss / 2**30, 2),
            "peak_rss_by_process_mib": {
                n: round(b / 2**20) for n, b in sorted(sampler.peak_by_process.items())
            },
            "peak_disk_mib": {n: round(b / 2**20) for n, b in sampler.peak_disk.items()},
        }


# --- growth -------------------------------------------------------------------------------------
def exponent(xs: list[float], ys: list[float]) -> float | None:
    """b in y = a * x**b, fitted on log-log: 1.0 is linear growth."""
    if len(xs) < 2 or min(ys) <= 0:
        return None
    return round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 2)


def growth(runs: list[dict]) -> dict:
    xs = [r["events"] for r in runs]
    return {
        "end_to_end_s": exponent(xs, [r["end_to_end_s"] for r in runs]),
        "kafka_s": exponent(xs, [r["seconds_from_first_line"]["kafka"] for r in runs]),
        "batch_s": exponent(xs, [r["batch_s"] for r in runs]),
        "peak_rss_gib": exponent(xs, [r["peak_rss_gib"] for r in runs]),
    }


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = doc["runs"]
    xs = [r["events"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, ys in (
        ("end to end", [r["end_to_end_s"] for r in runs]),
        ("to Kafka", [r["seconds_from_first_line"]["kafka"] for r in runs]),
        ("batch all", [r["batch_s"] for r in runs]),
    ):
        b = exponent(xs, ys)
        left.plot(xs, ys, "o-", label=f"{label} (exponent {b})" if b else label)
    left.set(xscale="log", yscale="log", xlabel="events", ylabel="seconds", title="time")
    left.legend()
    rss = [r["peak_rss_gib"] for r in runs]
    b = exponent(xs, rss)
    right.plot(xs, rss, "o-", label=f"whole platform (exponent {b})" if b else "whole platform")
    right.set(xscale="log", xlabel="events", ylabel="GiB", title="peak RSS")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def markdown(doc: dict) -> str:
    lines = [
        f"Whole pipeline at growing volume (bench/scale.py), {doc['timestamp']}, "
        f"{doc['machine']['cpu_count']} cores. Seconds from the first line appended.",
        "",
        "| events | generate | in Kafka | gold final | speed caught up | end to end | events/s "
        "| reconciled | peak RSS GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in doc["runs"]:
        at = r["seconds_from_first_line"]
        lines.append(
            f"| {r['events']:,} | {at['generate']} | {at['kafka']} | {at['batch']} | "
            f"{at['speed']} | {r['end_to_end_s']} | {r['rates']['end_to_end_events_per_s']:,} | "
            f"{'exact' if r['reconcile_exact'] else r['reconcile_failed']} | {r['peak_rss_gib']} |"
        )
    when = {r["events"]: r.get("measured") for r in doc["runs"]}
    if len({json.dumps(m, sort_keys=True) for m in when.values()}) > 1:
        lines += ["", "Measured in separate runs of this benchmark (same command, same machine):"]
        lines += [
            f"- {events:,} events: {m['timestamp']}, commit {m['git_commit']}"
            for events, m in when.items()
            if m
        ]
    if doc.get("error"):
        lines += ["", f"The run stopped early: {doc['error'].splitlines()[0]}"]
    lines += ["", f"Fitted exponents (1.0 = linear): {doc['growth']}", ""]
    for r in doc["runs"]:
        lines.append(f"Peak disk MiB at {r['events']:,} events: {r['peak_disk_mib']}")
    return "\n".join(lines) + "\n"


def stamped(runs: list[dict], doc: dict) -> list[dict]:
    """``runs`` with the date and commit of ``doc`` (the run that measured them), where unset."""
    measured = {"timestamp": doc["timestamp"], "git_commit": doc["git_commit"]}
    return [{"measured": measured, **r} for r in runs]


def kept_runs(out: Path, measuring: list[int]) -> list[dict]:
    """The volumes of the results in ``out`` that this run does not measure again."""
    path = out / "scale.json"
    if not path.exists():
        return []
    before = json.loads(path.read_text())
    return [r for r in stamped(before["runs"], before) if r["events"] not in measuring]


def logged_runs(log: Path) -> list[dict]:
    """The per-volume records a run printed, one JSON object per line among its other output."""
    runs = []
    for line in log.read_text().splitlines():
        if line.startswith('{"events":'):
            runs.append(json.loads(line))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = datetime.now(UTC), load_average()
    runs: list[dict] = []
    volumes, error = args.events, None
    if args.from_log:
        runs, volumes = logged_runs(args.from_log), []
        started, load_before = args.started or started, None
        error = "stopped before its remaining volumes; written from its output (--from-log)"
    # in the order given: the largest volume first finds a failure at scale an hour sooner
    for i, events in enumerate(volumes):
        try:
            runs.append(one_volume(events, args.seed + i))
        except Exception as exc:  # noqa: BLE001 - the volumes measured so far are still results
            error = f"at {events:,} events: {type(exc).__name__}: {exc}"
            print(f"failed at {error}", flush=True)
            break
        print(json.dumps(runs[-1]), flush=True)
    head = provenance("scale", started, load_before)
    runs = stamped(runs, head)
    if args.keep_others:
        runs += kept_runs(args.out, [r["events"] for r in runs])
    runs.sort(key=lambda r: r["events"])
    doc = {**head, "runs": runs, "growth": growth(runs), "error": error}
    text = markdown(doc)
    write_results(args.out, "scale", doc, text)
    if len(runs) > 1:
        plot(doc, args.out / "scale.png")
    print(text)
    return 1 if error else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
