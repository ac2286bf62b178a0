"""Speed-layer A/B of micro-batches that store new profiles: this checkout against a revision.

    .venv/bin/python -m bench.speed_profiles_ab --base HEAD --rounds 2

In the live benchmark a micro-batch stores new profiles now and then (a new user's first
profile), and such a micro-batch took twice the usual time: too rare there to compare two
revisions. Here each side's SpeedLayer processes the same fixed micro-batches, no Kafka and
no query around them: 20,000 profiles first, then 12 micro-batches of 10,000 actions (10%
purchases), every other one with 200 new users' profiles and 200 known users' profiles sent
again with a newer updated_at (as each run of the live generator sends its users' profiles).
Sides run in turn in their own process (base, work, base, work, ...); per side, the medians of
the micro-batch and its steps with and without profiles (the first two are warm-up).

Output: ``bench/results/speed-profiles-ab.json`` and ``.md`` (also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

STEPS = ("plan", "parse", "users", "bucket", "purchases")
FIRST_USERS, NEW_USERS, RESENT, ACTIONS, BATCHES, WARM_UP = 20_000, 200, 200, 10_000, 14, 2


def one_side() -> list[dict]:
    """Runs in the side's own process (its include/ first on PYTHONPATH)."""
    os.environ["ORDERLAKE_HOME"] = tempfile.mkdtemp(prefix="orderlake-profiles-ab-")
    import time

    from orderlake import contracts, schemas
    from orderlake.jobs.speed import app, source, step
    from orderlake.settings import Settings
    from orderlake.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings, "profiles-ab", conf=app.SESSION_CONF)
    now = datetime.now(UTC).replace(tzinfo=None)

    def records(batch: int, users_before: int, new_users: int):
        rows = []
        resent = RESENT if users_before and new_users else 0
        for k in range(new_users + resent):
            # new users first, then known ones (spread over them) again, a day later each batch
            uid = users_before + k + 1 if k < new_users else 1 + (k * 97) % users_before
            value = {"user_id": uid, "age_range": 1 + uid % 8, "gender": uid % 2}
            value["updated_at"] = f"2026-11-{1 + batch:02d}T00:00:00.000Z"
            rows.append((contracts.TOPIC_PROFILES, 0, batch * 100_000 + k, now, None, _json(value)))
        for i in range(ACTIONS):
            value = {
                "event_id": f"host-1:{batch}:{i}",
                "user_id": 1 + (batch * 7919 + i) % (users_before + new_users),
                "item_id": 1,
                "cat_id": 1,
                "seller_id": 1,
                "brand_id": None,
                "action_type": contracts.ACTION_PURCHASE if i % 10 == 0 else 0,
                "event_time": f"2026-11-30T10:{batch:02d}:{i % 60:02d}.000Z",
            }
            rows.append(
                (contracts.TOPIC_ACTIONS, i % 3, batch * 100_000 + i, now, None, _json(value))
            )
        raw = spark.createDataFrame(rows, schemas.KAFKA_RECORD).repartition(4)
        topic = raw["topic"]
        parsed = source.parse(
            raw.where(topic == contracts.TOPIC_ACTIONS),
            raw.where(topic == contracts.TOPIC_PROFILES),
        )
        return parsed.localCheckpoint()

    layer = step.SpeedLayer(spark, settings, "profiles-ab")
    users, out = 0, []
    for batch in range(BATCHES):
        new = FIRST_USERS if batch == 0 else (NEW_USERS if batch % 2 else 0)
        batch_records = records(batch, users, new)
        users += new
        started = time.perf_counter()
        layer.process_batch(batch_records, batch)
        took = round((time.perf_counter() - started) * 1000)
        out.append({"batch": batch, "new_users": new, "ms": took, **layer.batch_stats[batch]})
    spark.stop()
    return out


def _json(value: dict) -> bytes:
    return json.dumps(value).encode()


def summarize(batches: list[dict]) -> dict:
    kinds = {"with profiles": NEW_USERS, "without": 0}
    summary = {}
    for kind, new in kinds.items():
        rows = [b for b in batches[WARM_UP:] if b["new_users"] == new]
        summary[kind] = {
            "batch_ms": statistics.median(b["ms"] for b in rows),
            **{s: statistics.median(b["steps_ms"].get(s, 0) for b in rows) for s in STEPS},
        }
    return summary


def run(args: argparse.Namespace) -> dict:
    from bench.common import code_state, git, interleaved_sides, load_average, machine_info

    load_before = load_average()
    runs = {
        side: [summarize(r) for r in side_runs]
        for side, side_runs in interleaved_sides(args.base, Path(__file__), [], args.rounds).items()
    }
    figures = ("batch_ms", *STEPS)
    summary = {
        side: {
            kind: {f: statistics.median(r[kind][f] for r in side_runs) for f in figures}
            for kind in ("with profiles", "without")
        }
        for side, side_runs in runs.items()
    }
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "base": {"revision": args.base, "commit": git("rev-parse", args.base)},
        "work": {"commit": git("rev-parse", "HEAD"), "uncommitted": code_state()},
        "runs": runs,
        "summary": summary,
    }


def markdown(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        f"Speed-layer A/B of micro-batches storing new profiles (SpeedLayer.process_batch on fixed"
        f" records: {FIRST_USERS:,} users stored, then micro-batches of {ACTIONS:,} actions,"
        f" every other one with {NEW_USERS} new users' profiles and {RESENT} known users'"
        f" sent again, newer); {doc['at']};"
        f" base {doc['base']['revision']} = {doc['base']['commit'][:7]},"
        f" work = {doc['work']['commit'][:7]} (uncommitted include/streaming:"
        f" {doc['work']['uncommitted']}); {len(doc['runs']['base'])} interleaved runs per side;"
        f" load average {doc['load_average_before']} before, {doc['load_average_after']} after.",
        "",
        "| median ms | base, with profiles | work, with profiles | base, without | work, without |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in ("batch_ms", *STEPS):
        cells = [s[side][kind][f] for kind in ("with profiles", "without") for side in s]
        lines.append(f"| {f} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from orderlake.settings import PROJECT_ROOT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare against (B = work)")
    p.add_argument("--rounds", type=int, default=2, help="base/work pairs")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    p.add_argument("--one-side", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_side:
        print(json.dumps(one_side(), default=str))
        return 0
    from bench.common import write_results

    doc = run(args)
    text = markdown(doc)
    write_results(args.out, "speed-profiles-ab", doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
