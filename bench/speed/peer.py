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
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, TopicPartition

from bench.common import code_state, median, tree_cpu
from bench.speed import PURCHASES, TOPICS
from bench.speed.monitor import STEP_NAMES, ProgressCopy
from bench.stack import Platform
from orderlake import contracts, lake
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import kafka

if TYPE_CHECKING:
    from bench.speed.runner import Bench

ONCE_MAX_S = 1800.0  # the --once run over the backlog


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
            rss_max = max(rss_max, tree_cpu(proc.pid, cpu_by_pid))
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
