"""Spool -> Flume edge agents -> Flume collector -> Kafka, with real processes.

Every test writes its own events (its own seed, so its own users and event ids) into the shared
platform's spool and then reads Kafka from the beginning until its events are there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from orderlake import contracts, procs
from orderlake.stack import flume
from orderlake.workload.spool import SpoolWriter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def expected_event_ids(manifest: dict) -> set[str]:
    ids = set()
    for host, info in manifest["hosts"].items():
        if info["actions"]:
            ids.update(
                f"{host}:{contracts.ACTIONS_FILE}:{seq}"
                for seq in range(info["first_seq"], info["last_seq"] + 1)
            )
    return ids


def generate(platform, tmp_path: Path, events: int, seed: int, *extra: str) -> dict:
    manifest_path = tmp_path / f"manifest-{seed}.json"
    platform.cli(
        "generate",
        "--events",
        str(events),
        "--seed",
        str(seed),
        "--manifest",
        str(manifest_path),
        *extra,
    )
    return json.loads(manifest_path.read_text())


def action_ids(records: list) -> Counter:
    """event_id -> how many copies arrived in tmall.user_actions."""
    seen: Counter = Counter()
    for msg in records:
        if msg.topic() == contracts.TOPIC_ACTIONS:
            seen[json.loads(msg.value())["event_id"]] += 1
    return seen


def wait_for_ids(tail, wanted: set[str], timeout: float = 240) -> Counter:
    tail.poll_until(lambda recs: wanted <= set(action_ids(recs)), timeout=timeout)
    return action_ids(tail.records)


def report_duplicates(name: str, wanted: set[str], seen: Counter) -> int:
    """At-least-once delivery may duplicate; count and show it, never hide it."""
    dups = sum(seen[i] - 1 for i in wanted if seen[i] > 1)
    print(
        f"[{name}] {len(wanted)} events expected, {len(wanted & set(seen))} arrived, "
        f"{dups} duplicate copies"
    )
    return dups


def action_line(event_id: str) -> str:
    return json.dumps(
        {"event_id": event_id, "user_id": 7, "item_id": 1, "cat_id": 1, "seller_id": 1,
         "brand_id": None, "action_type": 0, "event_time": "2015-11-11T00:00:00.000Z"}
    )  # fmt: skip


def edge_status(platform, host: str) -> dict:
    return platform.status()[f"flume-edge-{host}"]["health"]


def write_actions(settings, host: str, event_ids: list[str]) -> None:
    with SpoolWriter(settings.spool_dir, settings.host_names) as spool:
        for event_id in event_ids:
            spool.write(host, contracts.ACTIONS_FILE, action_line(event_id))


@pytest.mark.parametrize(
    ("damage", "restarts"),
    [
        ("truncated", 1),  # TAILDIR itself survives this one (it reads everything again)
        ("wrong_fields", 1),  # TAILDIR's source fails at every start, the JVM looks fine
        ("lost_inode", 0),  # a file gone since: TAILDIR skips the entry
    ],
)
def test_a_damaged_position_file_never_stops_an_edge_silently(
    platform, kafka_tail, damage, restarts
):
    from orderlake.stack import edge
    from orderlake.stack.supervisor import Supervisor

    settings, host = platform.settings, "host-2"
    name = f"flume-edge-{host}"
    supervisor = Supervisor(settings)
    path = edge.position_file(settings, host)
    # the agent has read something: its position file has entries to damage
    write_actions(settings, host, [f"before-{damage}-{time.time_ns()}"])
    deadline = time.monotonic() + 60
    while not recorded_positions(path) and time.monotonic() < deadline:
        time.sleep(0.5)
    before = edge_status(platform, host).get("restarts") or 0
    supervisor.stop(name)
    entries = json.loads(path.read_text())
    assert entries, "the agent recorded no position"
    text = {
        "truncated": json.dumps(entries)[: len(json.dumps(entries)) // 2],
        "wrong_fields": json.dumps([{"inode": e["inode"], "position": e["pos"]} for e in entries]),
        "lost_inode": json.dumps([{**e, "inode": 999_999_999} for e in entries]),
    }[damage]
    path.write_text(text)
    marker = f"positions-{damage}-{time.time_ns()}"
    wanted = {f"{marker}:{i}" for i in range(200)}
    write_actions(settings, host, sorted(wanted))
    supervisor.start(name)

    tail = kafka_tail([contracts.TOPIC_ACTIONS])
    seen = wait_for_ids(tail, wanted, timeout=120)
    assert not wanted - set(seen), f"{len(wanted - set(seen))} lines never arrived ({damage})"
    health = edge_status(platform, host)
    assert (health["restarts"] or 0) - before == restarts, health
    if restarts:
        assert "position file" in health["last_reason"], health
        assert list(path.parent.glob("taildir-position.json.corrupt-*")), "kept for a look"
    assert edge.parse_positions(path.read_text())[1] == []  # loadable again


def recorded_positions(path: Path) -> list:
    """The agent's TAILDIR entries; none before it first writes the file."""
    try:
        return json.loads(path.read_text() or "[]")
    except FileNotFoundError:
        return []


def running_agent(settings, host: str, timeout: float = 60) -> dict:
    """The edge's health once its recorded JVM is alive (a restart may be under way)."""
    from orderlake.stack import edge

    deadline = time.monotonic() + timeout
    while True:
        health = edge.read_health(settings, host)
        if health.get("pid") and procs.process_start(health["pid"]) is not None:
            return health
        assert time.monotonic() < deadline, f"no live agent JVM on {host}: {health}"
        time.sleep(0.5)


def freeze_between_position_writes(settings, host: str) -> tuple[int, int]:
    """SIGSTOP the agent's running JVM at a moment its position file is whole; returns (that
    JVM's pid, the watchdog's restart count when it was frozen).

    TAILDIR rewrites the file in place every second; a stop that lands mid-write leaves it
    torn, and the watchdog then (rightly) restarts the agent for the torn file instead: the case
    the damaged-position tests cover. Here the freeze alone must be the cause. The watchdog may
    also have replaced the JVM just before the stop: then the new one is frozen."""
    from orderlake.stack import edge

    path = edge.position_file(settings, host)
    for _ in range(20):
        jvm = running_agent(settings, host)["pid"]
        try:
            os.kill(jvm, signal.SIGSTOP)
        except ProcessLookupError:  # replaced just now: freeze the new one
            continue
        health = edge.read_health(settings, host)
        if (
            health.get("pid") == jvm
            and path.exists()
            and not edge.parse_positions(path.read_text())[1]
        ):
            return jvm, health.get("restarts") or 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(jvm, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError(f"{path} was never whole between two of the agent's writes")


def test_a_frozen_source_is_restarted_with_its_reason(platform, kafka_tail):
    """Files grow, positions do not: a stopped (SIGSTOP) agent JVM is restarted by its
    watchdog, which says why in `status`, and nothing written meanwhile is lost."""
    from orderlake.stack import edge

    settings, host = platform.settings, "host-1"
    jvm, before = freeze_between_position_writes(settings, host)
    marker = f"frozen-{time.time_ns()}"
    wanted = {f"{marker}:{i}" for i in range(300)}
    write_actions(settings, host, sorted(wanted))
    tail = kafka_tail([contracts.TOPIC_ACTIONS])
    seen = wait_for_ids(tail, wanted, timeout=180)
    assert not wanted - set(seen)
    after = edge_status(platform, host)
    assert after["restarts"] == before + 1 and "read nothing" in after["last_reason"], after
    assert edge.read_health(settings, host)["pid"] != jvm


def test_50k_events_arrive_with_topic_and_key(platform, kafka_tail, tmp_path):
    manifest = generate(platform, tmp_path, 50_000, 101, "--hosts", "2")
    wanted = expected_event_ids(manifest)
    assert len(wanted) == 50_000

    tail = kafka_tail([contracts.TOPIC_ACTIONS, contracts.TOPIC_PROFILES])
    seen = wait_for_ids(tail, wanted)
    missing = wanted - set(seen)
    assert not missing, f"{len(missing)} events never reached Kafka, e.g. {sorted(missing)[:5]}"
    report_duplicates("50k", wanted, seen)

    # topic and key: every action of this run is keyed by its user_id
    mine = [
        m
        for m in tail.records
        if m.topic() == contracts.TOPIC_ACTIONS and json.loads(m.value())["event_id"] in wanted
    ]
    assert all(m.key().decode() == str(json.loads(m.value())["user_id"]) for m in mine)
    # actions spread over the topic's 3 partitions by key
    assert {m.partition() for m in mine} == {0, 1, 2}

    users = {json.loads(m.value())["user_id"] for m in mine}
    profiles = {}
    tail.poll_until(
        lambda recs: (
            users
            <= {
                json.loads(m.value())["user_id"]
                for m in recs
                if m.topic() == contracts.TOPIC_PROFILES
            }
        ),
        timeout=60,
    )
    for m in tail.records:
        if m.topic() == contracts.TOPIC_PROFILES:
            value = json.loads(m.value())
            assert m.key().decode() == str(value["user_id"])
            profiles[value["user_id"]] = value
    assert users <= set(profiles), "every user of the run has its profile in Kafka"


@pytest.mark.parametrize("fault", ["SIGSTOP", "SIGKILL"])
def test_rotations_while_an_edge_is_stopped_lose_nothing(platform, kafka_tail, fault):
    """Lines an edge agent has not read when its file is rotated, several times over, are read
    later from the rotated generations: with the edge paused and with the edge killed (it
    restarts from its position file). A renamed file is read on from its position, never again
    from its start: paused, not one line twice; killed, at most the lines read since its last
    saved position (the first 500, written before the kill)."""
    from orderlake.stack import edge

    settings, victim = platform.settings, "flume-edge-host-1"
    marker = f"rotate-{fault}-{time.time_ns()}"
    wanted = [f"{marker}:{i}" for i in range(3_000)]
    wrapper, pid = platform.pid(victim), edge.read_health(settings, "host-1")["pid"]  # the JVM
    with SpoolWriter(settings.spool_dir, settings.host_names) as spool:
        for event_id in wanted[:500]:  # the edge is reading this file ...
            spool.write("host-1", contracts.ACTIONS_FILE, action_line(event_id))
        spool.flush()
        os.kill(pid, getattr(signal, fault))  # ... when it stops
        try:
            for chunk in range(1, 6):  # five rotations while it is stopped
                spool.rotate("host-1", contracts.ACTIONS_FILE)
                for event_id in wanted[chunk * 500 : (chunk + 1) * 500]:
                    spool.write("host-1", contracts.ACTIONS_FILE, action_line(event_id))
                spool.flush()
        finally:
            if fault == "SIGSTOP":
                os.kill(pid, signal.SIGCONT)
    if fault == "SIGKILL":
        platform.wait_restarted(victim, wrapper)

    tail = kafka_tail([contracts.TOPIC_ACTIONS])
    seen = wait_for_ids(tail, set(wanted))
    missing = set(wanted) - set(seen)
    assert not missing, f"{len(missing)} lines written across rotations never reached Kafka"
    twice = report_duplicates(f"rotations during {fault}", set(wanted), seen)
    assert twice <= (0 if fault == "SIGSTOP" else 500), f"{twice} lines sent again"


def test_lines_kafka_would_refuse_do_not_wedge_the_pipeline(platform, kafka_tail):
    settings = platform.settings
    marker = f"guard-{time.time_ns()}"
    good = [action_line(f"{marker}:{i}") for i in range(5)]
    huge = json.dumps({"event_id": f"{marker}:huge", "user_id": 7, "pad": "x" * 2_000_000})
    not_utf8 = b'{"event_id": "' + marker.encode() + b':latin1", "note": "caf\xe9"}'
    # under the size limit but refused: its whole value in base64 would not fit in a record
    near_limit = marker.encode() + b"\xff" * (settings.max_line_bytes - 100)
    with SpoolWriter(settings.spool_dir, settings.host_names) as spool:
        spool.write("host-2", contracts.ACTIONS_FILE, good[0])
        spool.write("host-2", contracts.ACTIONS_FILE, huge)
        spool.write("host-2", contracts.ACTIONS_FILE, good[1])
        spool.write("host-2", contracts.ACTIONS_FILE, not_utf8)
        spool.write("host-2", contracts.ACTIONS_FILE, good[2])
        # a profile without user_id has no message key: the compacted topic would refuse it
        spool.write("host-2", contracts.PROFILES_FILE, json.dumps({"note": marker, "gender": 1}))
        spool.write("host-2", contracts.ACTIONS_FILE, good[3])
        spool.write("host-2", contracts.ACTIONS_FILE, near_limit)
        spool.write("host-2", contracts.ACTIONS_FILE, good[4])

    wanted = {f"{marker}:{i}" for i in range(5)}
    tail = kafka_tail([contracts.TOPIC_ACTIONS, contracts.TOPIC_REJECTS])

    def mine_rejected(records):
        envelopes = [json.loads(m.value()) for m in records if m.topic() == contracts.TOPIC_REJECTS]
        return [e for e in envelopes if marker.encode() in base64.b64decode(e["head_base64"])]

    tail.poll_until(lambda recs: wanted <= set(action_ids(recs)) and len(mine_rejected(recs)) == 4)
    assert wanted <= set(action_ids(tail.records)), "events after the bad lines still arrive"
    rejected = {(r["reason"], r["bytes"]): r for r in mine_rejected(tail.records)}
    assert set(rejected) == {
        ("oversize", len(huge.encode())),
        ("invalid_utf8", len(not_utf8)),
        ("missing_key", len(json.dumps({"note": marker, "gender": 1}))),
        ("invalid_utf8", len(near_limit)),
    }
    oversize = rejected["oversize", len(huge.encode())]
    assert oversize["topic"] == contracts.TOPIC_ACTIONS and oversize["truncated"]
    assert oversize["file"].endswith("host-2/actions.log")
    assert oversize["sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    short = rejected["invalid_utf8", len(not_utf8)]
    assert base64.b64decode(short["head_base64"]) == not_utf8 and not short["truncated"]
    assert rejected["missing_key", len(json.dumps({"note": marker, "gender": 1}))]["topic"] == (
        contracts.TOPIC_PROFILES
    )
    long = rejected["invalid_utf8", len(near_limit)]
    assert long["sha256"] == hashlib.sha256(near_limit).hexdigest() and long["truncated"]
    # counted and visible: the rejects topic's offsets appear in `orderlake status --json`
    offsets = platform.status()["kafka"]["end_offsets"][contracts.TOPIC_REJECTS]
    assert sum(offsets.values()) >= 4


def test_idle_sinks_poll_their_channels_twice_a_second(platform):
    """Every edge agent's sink runs under ShortBackoffSinkProcessor: on an empty channel it
    polls again after at most 500 ms. Flume's SinkRunner alone sleeps 1, 2, 3, 4, then 5 s
    between empty polls (at most 4 in 6 s, right after activity), and each sleep is latency a
    line waits for when it arrives. (The collector has no sink: its Kafka channels send as the
    source puts.)"""
    settings = platform.settings
    sinks = {agent: "SINK.avro" for agent in settings.host_names}

    def snapshot() -> dict[str, dict]:
        return {agent: flume.metrics(settings, agent) or {} for agent in sinks}

    def idle(metrics: dict[str, dict]) -> bool:
        return all(m and int(m["CHANNEL.ch"]["ChannelSize"]) == 0 for m in metrics.values())

    deadline = time.monotonic() + 120
    while not idle(snapshot()):  # other tests' lines still on their way
        assert time.monotonic() < deadline, "the Flume channels did not drain in 120 s"
        time.sleep(1)
    before = snapshot()
    time.sleep(6)
    after = snapshot()
    assert idle(after)
    polls = {
        agent: int(after[agent][sink]["BatchEmptyCount"])
        - int(before[agent][sink]["BatchEmptyCount"])
        for agent, sink in sinks.items()
    }
    # about 12 each at 500 ms; 6 leaves room for a busy machine
    assert all(n >= 6 for n in polls.values()), f"empty polls in 6 s per agent: {polls}"
