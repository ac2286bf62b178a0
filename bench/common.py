"""What every benchmark shares: the machine, load and code a result was measured on,
percentiles, process and JVM sampling, A/B worktrees, and writing a result as JSON + Markdown.

Kept in one module so that every results file says the same things the same way (the machine
is shared with other engineers: its load and the code state travel with each figure).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as py_platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Producer

from orderlake import kafka_admin
from orderlake.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"


# --- where and on what a result was measured ----------------------------------------------------
def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": py_platform.platform(),
        "python": py_platform.python_version(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def format_loads(values: list[float]) -> str:
    """Load averages as '1.00/0.75/0.50' (1, 5, 15 min)."""
    return "/".join(f"{v:.2f}" for v in values)


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def provenance(name: str, started: datetime, load_before: list[float] | None) -> dict:
    """The head every benchmark's results start with: which benchmark, when, the code it ran
    (commit and the tracked files that differed from it), the machine and its load around."""
    return {
        "benchmark": name,
        "timestamp": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": git("rev-parse", "--short", "HEAD") or None,
        "git_modified_files": git("diff", "--name-only", "HEAD").splitlines(),
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def code_state() -> str:
    """A short hash of the uncommitted changes to the code the jobs run (include/, streaming/):
    other engineers change them while benchmarks run; the hash tells two runs' code apart."""
    diff = git("diff", "HEAD", "--", "include", "streaming")
    return hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else "clean"


def base_worktree(revision: str, where: Path) -> Path:
    """A detached worktree of ``revision`` under ``where`` that uses this checkout's resolved
    jars: the base side of an A/B benchmark (remove it with ``git worktree remove``)."""
    tree = where / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(tree), revision],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    for target in sorted(PROJECT_ROOT.glob("jvm/*/target")):
        (tree / target.relative_to(PROJECT_ROOT)).symlink_to(target)
    return tree


def interleaved_sides(
    base: str, script: Path, args: list[str], rounds: int
) -> dict[str, list[dict]]:
    """An A/B benchmark's runs: ``script --one-side ARGS`` once per side per round, base then
    work, one at a time, each in its own process on its side's code (a worktree of ``base``,
    and this checkout); each run's last stdout line is its JSON result."""
    scratch = Path(tempfile.mkdtemp(prefix=f"orderlake-{script.stem}-"))
    sides = {"base": base_worktree(base, scratch), "work": PROJECT_ROOT}
    runs: dict[str, list[dict]] = {"base": [], "work": []}
    try:
        for round_no in range(rounds):
            for side, root in sides.items():
                done = subprocess.run(
                    [sys.executable, str(script.resolve()), "--one-side", *args],
                    env={**os.environ, "PYTHONPATH": f"{root}:{root / 'include'}"},
                    cwd=root,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[side].append(json.loads(done.stdout.splitlines()[-1]))
                print(f"round {round_no} {side}: {runs[side][-1]}", flush=True)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(sides["base"])],
            cwd=PROJECT_ROOT,
            check=False,
        )
    return runs


# --- figures ------------------------------------------------------------------------------------
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


# --- processes and JVMs -------------------------------------------------------------------------
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


def tree_cpu(pid: int, cpu_by_pid: dict[int, float]) -> float:
    """Record the CPU seconds of a process and its descendants; return their largest RSS (MiB).
    Called repeatedly while the process runs: ``cpu_by_pid`` keeps each process's last total,
    so children that exited before the end still count."""
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


# --- results ------------------------------------------------------------------------------------
def write_results(out: Path, stem: str, result: dict, markdown: str) -> tuple[Path, Path]:
    """``out``/``stem``.json and .md, each replaced whole (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    texts = {json_path: json.dumps(result, indent=2, default=str) + "\n", md_path: markdown}
    for path, text in texts.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return json_path, md_path


def kafka_holds(bootstrap: str, expected: dict[str, int]) -> bool:
    """Whether every topic holds at least its expected number of records (from its end offsets)."""
    offsets = kafka_admin.end_offsets(bootstrap)
    return all(sum(offsets.get(t, {}).values()) >= n for t, n in expected.items())


# --- feeding Kafka straight from spool files ------------------------------------------------------
def produce_lines(bootstrap: str, topic: str, paths: list[Path], rewrite=None) -> int:
    """Produce every JSON line of the files (key = user_id) as fast as the client allows."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    key = re.compile(rb'"user_id":(\d+)')
    sent = 0
    for path in paths:
        with path.open("rb") as lines:
            for line in lines:
                line = line.rstrip(b"\n")
                if rewrite is not None:
                    line = rewrite(line)
                    if line is None:
                        continue
                match = key.search(line)
                while True:
                    try:
                        producer.produce(topic, line, match.group(1) if match else b"none")
                        break
                    except BufferError:
                        producer.poll(0.1)
                sent += 1
    if producer.flush(300) != 0:
        raise RuntimeError(f"{topic}: not every record was delivered")
    return sent


def spool_files(spool: Path, name: str) -> list[Path]:
    return sorted(spool.glob(f"host-*/{name}*"), key=lambda p: (p.parent.name, -len(p.suffixes)))
