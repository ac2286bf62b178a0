"""The warm Spark against the cold path: batch steps and queries as whole processes, interleaved.

    .venv/bin/python -m bench.warm_spark --base REV [--events 1000000] [--rounds 3]

``--base`` is a revision from before the warm server, where every batch step and query starts
a Spark JVM of its own ("cold"); this checkout's jobs attach to the `spark` component ("warm").
One isolated platform (`orderlake up --only kafka,spark`) holds one lake of ``--events``
generated actions (loaded by the warm side); then, in turn cold, warm, cold, warm, ...:

- one new day through bronze, silver and gold: a copy of 2015-11-10's actions under new event
  ids and the round's own new date is produced to Kafka, then `orderlake batch all`;
- `orderlake validate` (every suite) and `orderlake reconcile`;
- `orderlake sql "SELECT COUNT(*) FROM silver.user_actions"`, next to the same count through
  DuckDB over the table's current files (the dashboard's read path), as a process of its own.

Every figure is the wall time of the whole command, started as a user starts it. The cold side
runs the base revision's code from a git worktree (sharing this checkout's .venv and jars).
After the rounds, each warm command runs once more under cProfile: the client waits on the
server for every query, so a function's cumulative time is what that step costs end to end
(the profile table: where the warm seconds go).
Output: ``bench/results/warm-spark.json`` and ``warm-spark.md`` (also printed).
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    base_worktree,
    git,
    load_average,
    machine_info,
    median,
    produce_lines,
    spool_files,
    write_results,
)
from bench.stack import Platform, running_platform
from orderlake import contracts
from orderlake.settings import PROJECT_ROOT
from orderlake.workload.generator import generate_to_spool

SOURCE_DAY = "2015-11-10"
COUNT_SQL = "SELECT COUNT(*) FROM silver.user_actions"
DUCKDB_COUNT = """
import sys
import duckdb
from deltalake import DeltaTable
files = [u.removeprefix("file://") for u in DeltaTable(sys.argv[1]).file_uris()]
print(duckdb.sql(f"SELECT COUNT(*) FROM read_parquet({files!r})").fetchall()[0][0])
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="a revision from before the warm Spark server")
    p.add_argument("--events", type=int, default=1_000_000, help="generated user actions")
    p.add_argument("--rounds", type=int, default=3, help="cold/warm pairs of each measurement")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return p.parse_args(argv)


def timed(
    platform: Platform,
    side: Path,
    *args: str,
    ok: tuple[int, ...] = (0,),
    profile: Path | None = None,
) -> float:
    """Wall seconds of `orderlake ARGS` run from ``side``'s code, as its own process (under
    cProfile, writing ``profile``, when given)."""
    env = {**platform.env, "PYTHONPATH": str(side / "include")}
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *profiler, "-m", "orderlake.cli", *args],
        env=env,
        cwd=side,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.monotonic() - started
    if done.returncode not in ok:
        raise RuntimeError(f"orderlake {' '.join(args)} ({side}) failed:\n{done.stderr[-2000:]}")
    return round(wall, 2)


def new_day(day: str):
    def rewrite(line: bytes) -> bytes | None:
        if f'"event_time":"{SOURCE_DAY}'.encode() not in line:
            return None
        return line.replace(SOURCE_DAY.encode(), day.encode()).replace(
            b'"event_id":"', f'"event_id":"{day}-'.encode()
        )

    return rewrite


# the entry points every command passes through: their time is the whole command's
ENTRY_POINTS = {"main", "run_command", "execute", "_dispatch", "<module>"}


def top_functions(profile: Path, most: int = 8) -> list[dict]:
    """orderlake's own functions by cumulative seconds, the command's entry points left out."""
    rows = []
    measured = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    for (file, _, name), (_, calls, _, cumulative, _) in measured.items():
        if "/include/orderlake/" not in file or name in ENTRY_POINTS:
            continue
        where = file.split("/include/", 1)[1].removesuffix(".py").replace("/", ".")
        rows.append({"function": f"{where}.{name}", "calls": calls, "s": round(cumulative, 2)})
    return sorted(rows, key=lambda r: -r["s"])[:most]


def duckdb_count(platform: Platform) -> float:
    table = platform.settings.lake_dir / "silver" / "user_actions"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", DUCKDB_COUNT, str(table)], check=True, capture_output=True
    )
    return round(time.monotonic() - started, 2)


def run(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="orderlake-warm-spark-"))
    cold = base_worktree(args.base, scratch)
    warm = PROJECT_ROOT
    figures: dict[str, dict[str, list[float]]] = {}
    profiles: dict[str, dict] = {}

    def record(name: str, side: str, seconds: float) -> None:
        figures.setdefault(name, {"cold": [], "warm": []})[side].append(seconds)
        print(f"{name:>22} {side}: {seconds:.2f} s", flush=True)

    load_before = load_average()
    try:
        with running_platform(only="kafka,spark") as platform:
            spool = scratch / "spool"
            generate_to_spool(spool, events=args.events, rate=0, hosts=["host-1", "host-2"], seed=5)
            bootstrap = platform.settings.bootstrap
            for topic, name in (
                (contracts.TOPIC_PROFILES, contracts.PROFILES_FILE),
                (contracts.TOPIC_ACTIONS, contracts.ACTIONS_FILE),
            ):
                produce_lines(bootstrap, topic, spool_files(spool, name))
            loaded = timed(platform, warm, "batch", "all", "--close-through", SOURCE_DAY)
            print(f"lake of {args.events:,} events loaded in {loaded:.0f} s", flush=True)
            day = date(2015, 11, 12)
            for _ in range(args.rounds):
                for side, tree in (("cold", cold), ("warm", warm)):
                    produce_lines(
                        bootstrap,
                        contracts.TOPIC_ACTIONS,
                        spool_files(spool, contracts.ACTIONS_FILE),
                        rewrite=new_day(day.isoformat()),
                    )
                    day += timedelta(days=1)
                    for name, command, ok in COMMANDS:
                        record(name, side, timed(platform, tree, *command, ok=ok))
                figures.setdefault("sql count", {}).setdefault("duckdb", []).append(
                    duckdb_count(platform)
                )
            produce_lines(
                bootstrap,
                contracts.TOPIC_ACTIONS,
                spool_files(spool, contracts.ACTIONS_FILE),
                rewrite=new_day(day.isoformat()),
            )
            for name, command, ok in COMMANDS:
                out = scratch / f"{name.replace(' ', '-')}.prof"
                wall = timed(platform, warm, *command, ok=ok, profile=out)
                profiles[name] = {"wall_s": wall, "functions": top_functions(out)}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(cold)], cwd=PROJECT_ROOT)
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "base": git("rev-parse", "--short", args.base),
        "events": args.events,
        "rounds": args.rounds,
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_average(),
        "figures": figures,
        "medians": {
            name: {side: median(values) for side, values in sides.items()}
            for name, sides in figures.items()
        },
        "profiles": profiles,
    }


AIMS = {"one new day": 15.0, "validate": 15.0, "reconcile": 10.0, "sql count": 2.0}
# (name, `orderlake` arguments, exit codes that count as done: a reconciliation may find gaps)
COMMANDS = [
    ("one new day", ("batch", "all"), (0,)),
    ("validate", ("validate",), (0,)),
    ("reconcile", ("reconcile",), (0, 3)),
    ("sql count", ("sql", COUNT_SQL), (0,)),
]


def render(doc: dict) -> str:
    lines = [
        f"Warm Spark (this checkout, {doc['commit']}) against the cold path ({doc['base']}: a "
        f"Spark JVM per command), {doc['events']:,}-event lake, {doc['rounds']} interleaved "
        f"rounds; {doc['measured_at']}, {doc['machine']['cpu_count']} cores, load average "
        f"{doc['load_before']} before, {doc['load_after']} after. Whole-command wall seconds, "
        "medians.",
        "",
        "| command | cold s | warm s | cold / warm | aim | DuckDB s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, med in doc["medians"].items():
        ratio = med["cold"] / med["warm"] if med.get("warm") else None
        duck = med.get("duckdb")
        lines.append(
            f"| {name} | {med['cold']:.2f} | {med['warm']:.2f} | "
            f"{ratio:.1f} | <= {AIMS[name]:g} | {'' if duck is None else f'{duck:.2f}'} |"
        )
    lines += [
        "",
        "One new day: a copy of 2015-11-10's actions under a new date and new event ids "
        "(a different date each run), then `orderlake batch all` (bronze, silver, gold). The "
        "DuckDB column counts the same rows over the table's current Parquet files (listed by "
        "delta-rs) in a fresh Python process.",
    ]
    if doc.get("profiles"):
        lines += [
            "",
            "Where the warm seconds go: one more run of each warm command under cProfile; "
            "orderlake's functions by cumulative seconds (nested calls are inside their callers).",
            "",
            "| command (wall s) | function | calls | cumulative s |",
            "|---|---|---:|---:|",
        ]
        for name, prof in doc["profiles"].items():
            for i, row in enumerate(prof["functions"]):
                head = f"{name} ({prof['wall_s']:.1f})" if i == 0 else ""
                lines.append(f"| {head} | `{row['function']}` | {row['calls']} | {row['s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    text = render(doc)
    write_results(args.out, "warm-spark", doc, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
