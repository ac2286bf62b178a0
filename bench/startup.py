"""`orderlake up` of the whole embedded platform: this checkout against a base revision,
interleaved.

    .venv/bin/python -m bench.startup --base REV [--rounds 3]

Each round starts the platform from the base revision's code (a git worktree sharing this
checkout's .venv and jars), then from this checkout's, each in a fresh isolated
ORDERLAKE_HOME on free ports (Airflow's metadata database is created as on a first `make run`),
timing `orderlake up` from process start to its exit (every component ready), then
`orderlake down`. Output: ``bench/results/startup.json`` and ``startup.md`` (also printed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    base_worktree,
    git,
    load_average,
    median,
    provenance,
    write_results,
)
from orderlake.settings import PROJECT_ROOT
from tests.fixtures.stack import isolated_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the revision to compare with")
    p.add_argument("--rounds", type=int, default=3, help="base/this pairs")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return p.parse_args(argv)


def time_up(tree: Path, scratch: Path) -> float:
    """Wall seconds of `orderlake up` from ``tree``'s code in a fresh home; always `down`."""
    home = Path(tempfile.mkdtemp(dir=scratch)) / "home"
    env = {**isolated_env(home), "PYTHONPATH": str(tree / "include")}
    command = [sys.executable, "-m", "orderlake.cli"]
    started = time.monotonic()
    try:
        done = subprocess.run([*command, "up"], env=env, cwd=tree, capture_output=True,
                              text=True, timeout=1800)  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"orderlake up ({tree}) failed:\n{done.stderr[-2000:]}")
        return round(wall, 1)
    finally:
        subprocess.run([*command, "down"], env=env, cwd=tree, capture_output=True, timeout=600)
        shutil.rmtree(home.parent, ignore_errors=True)


def run(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="orderlake-startup-"))
    base = base_worktree(args.base, scratch)
    started, load_before = datetime.now(UTC), load_average()
    doc: dict = {"base": git("rev-parse", "--short", args.base), "rounds": []}
    try:
        for _ in range(args.rounds):
            pair = {"base": time_up(base, scratch), "this": time_up(PROJECT_ROOT, scratch)}
            doc["rounds"].append(pair)
            print(pair, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=PROJECT_ROOT)
        shutil.rmtree(scratch, ignore_errors=True)
    doc["median_s"] = {side: median([r[side] for r in doc["rounds"]]) for side in ("base", "this")}
    return {**provenance("startup", started, load_before), **doc}


def render(doc: dict) -> str:
    med = doc["median_s"]
    rows = "\n".join(f"| {i} | {r['base']:.1f} | {r['this']:.1f} |"
                     for i, r in enumerate(doc["rounds"], 1))  # fmt: skip
    return (
        f"`orderlake up`, every component of the embedded platform, fresh home each time; "
        f"this checkout ({doc['git_commit']}) against {doc['base']}, interleaved; "
        f"{doc['timestamp']}, load average {doc['load_average_before']} before.\n\n"
        f"| round | base s | this s |\n|---:|---:|---:|\n{rows}\n"
        f"| median | {med['base']:.1f} | {med['this']:.1f} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    text = render(doc)
    write_results(args.out, "startup", doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
