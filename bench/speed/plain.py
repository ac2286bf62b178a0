"""The plain peer of the speed layer, run as a process of its own: one Python thread with
confluent-kafka reads the same backlog (profiles first, then actions), parses each JSON value
and counts purchases per (minute, age bracket, gender), de-duplicated by event_id.

    python -m bench.speed.plain BOOTSTRAP ENDS_JSON OUT_JSON

It imports only what it needs, so its time from process start is what such a consumer costs;
bench.speed.peer starts it and times it exactly as it times streaming/speed_layer.py --once.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from orderlake import contracts


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
        # inside the process, without its start (interpreter, imports, connecting)
        "consume_s": round(seconds, 2),
        "consume_cpu_s": round(time.process_time() - cpu, 2),
        "counts": counts,
    }


def main(argv: list[str] | None = None) -> int:
    """Count the backlog up to ``ENDS_JSON`` ({topic: {partition: end offset}}) and write the
    result (counts as [minute, bracket, gender, n] rows) to ``OUT_JSON``."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3:
        print("usage: python -m bench.speed.plain BOOTSTRAP ENDS_JSON OUT_JSON", file=sys.stderr)
        return 2
    bootstrap, ends_json, out = args
    ends = {t: {int(p): e for p, e in parts.items()} for t, parts in json.loads(ends_json).items()}
    result = plain_consumer(bootstrap, ends)
    result["counts"] = [[*key, n] for key, n in sorted(result["counts"].items())]
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process, from its start
    result["cpu_s_self"] = round(usage.ru_utime + usage.ru_stime, 2)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
