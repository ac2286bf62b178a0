"""Rotation A/B: what a stream whose log files rotate by rename costs the ingest path.

    python -m bench.rotation_ab [--base REV] [--rounds 2] [--events 20000] [--rotate-mb 0.25]

Each side (a worktree of ``--base``, and this checkout) starts its own Kafka and Flume agents
(`up --only kafka,flume`, two edge hosts), appends ``--events`` generated actions at ``--rate``
lines/s while every host's actions.log rotates by rename every ``--rotate-mb`` MiB, and counts
the records Kafka then holds against the lines written to the spool: each record beyond them is
a line sent again. Also timed: from the last line written until Kafka holds every line. Sides
run interleaved, ``--rounds`` pairs, one at a time. Results: bench/results/rotation-ab.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

QUIET_S = 10.0  # Kafka's end offsets unchanged this long: the agents sent everything they will
TIMEOUT_S = 600.0


def _spool_lines(spool: Path) -> int:
    """Lines in every generation of every host's actions.log and profiles.log."""
    from bench.common import spool_files
    from orderlake import contracts

    names = (contracts.ACTIONS_FILE, contracts.PROFILES_FILE)
    return sum(p.read_bytes().count(b"\n") for name in names for p in spool_files(spool, name))


def _rotations(spool: Path) -> int:
    """Rotated generations of actions.log over every host."""
    from bench.common import spool_files
    from orderlake import contracts

    name = contracts.ACTIONS_FILE
    return sum(1 for p in spool_files(spool, name) if p.name != name)


def one_side(events: int, rate: float, rotate_mb: float) -> dict:
    """This side's figures: started by the parent with PYTHONPATH set to the side's code."""
    from bench.stack import running_platform
    from orderlake import contracts, kafka_admin

    topics = (contracts.TOPIC_ACTIONS, contracts.TOPIC_PROFILES)
    with running_platform(only="kafka,flume") as platform:
        platform.cli(
            "generate", "--events", str(events), "--rate", str(rate), "--seed", "7",
            "--rotate-mb", str(rotate_mb), timeout=TIMEOUT_S,
        )  # fmt: skip
        written_at = time.monotonic()
        lines = _spool_lines(platform.settings.spool_dir)

        def held() -> int:
            offsets = kafka_admin.end_offsets(platform.settings.bootstrap)
            return sum(sum(offsets.get(t, {}).values()) for t in topics)

        deadline = written_at + TIMEOUT_S
        while (records := held()) < lines:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka holds {records} of {lines} lines after {TIMEOUT_S} s")
            time.sleep(0.2)
        delivered_s = time.monotonic() - written_at
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S:
            time.sleep(1)
            if (now := held()) != records:
                records, quiet_since = now, time.monotonic()
        return {
            "lines": lines,
            "records": records,
            "sent_again": records - lines,
            "rotations": _rotations(platform.settings.spool_dir),
            "delivered_s": round(delivered_s, 1),
        }


def run(args: argparse.Namespace) -> dict:
    from bench.common import git, interleaved_sides, load_average, provenance

    started, load_before = datetime.now(UTC), load_average()
    one = ["--events", str(args.events), "--rate", str(args.rate)]
    runs = interleaved_sides(args.base, Path(__file__), [*one, "--rotate-mb", str(args.rotate_mb)],
                             args.rounds)  # fmt: skip
    return {
        **provenance("rotation-ab", started, load_before),
        "base": {"revision": args.base, "commit": git("rev-parse", args.base)},
        "params": {"events": args.events, "rate": args.rate, "rotate_mb": args.rotate_mb},
        "runs": runs,
        "median": {
            side: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for side, rs in runs.items()
        },
    }


def markdown(doc: dict) -> str:
    p = doc["params"]
    lines = [
        f"Rotation A/B ({doc['timestamp']}): {p['events']:,} generated actions at {p['rate']:,.0f}"
        f" lines/s over 2 edge hosts, actions.log rotated by rename every {p['rotate_mb']} MiB;"
        f" base {doc['base']['revision']} = {doc['base']['commit'][:7]}, work ="
        f" {doc['git_commit']}; {len(doc['runs']['base'])} interleaved runs per side, one at a"
        f" time; load average {doc['load_average_before']} before,"
        f" {doc['load_average_after']} after.",
        "",
        "| side | run | lines written | rotations | records in Kafka | sent again"
        " | last line -> all in Kafka (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side, rs in doc["runs"].items():
        for i, r in enumerate(rs, 1):
            lines.append(
                f"| {side} | {i} | {r['lines']:,} | {r['rotations']} | {r['records']:,}"
                f" | {r['sent_again']:,} | {r['delivered_s']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from orderlake.settings import PROJECT_ROOT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare against (B = work)")
    p.add_argument("--rounds", type=int, default=2, help="base/work pairs")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=2_000.0, help="lines/s appended")
    p.add_argument("--rotate-mb", type=float, default=0.25)
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    p.add_argument("--one-side", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_side:
        print(json.dumps(one_side(args.events, args.rate, args.rotate_mb)))
        return 0
    from bench.common import write_results

    doc = run(args)
    text = markdown(doc)
    write_results(args.out, "rotation-ab", doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
