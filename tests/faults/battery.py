"""The fault battery: faults injected into a live platform, every event accounted for.

Each case streams generated orders through the real platform (spool -> Flume -> Kafka -> the
speed layer; Kafka -> bronze -> silver -> gold), injects its fault some number of times, lets
the platform recover by itself, and then checks against an independent count: the lines the
generator and the battery wrote to the spool (every rotated generation), read back in plain
Python, never the platform's own reconciliation. Per (event date, age bracket, gender), every
purchase must be in the speed tables and in gold exactly once, and the quarantines must hold
exactly the malformed lines the battery wrote, each with its reason.

`make test` runs each case once, the malformed lines, the three kills and the rotations on one
stream (tests/faults/test_battery.py); `make soak` runs them apart with the repetition counts
of issue 26 and writes bench/results/soak.md and .json (bench/soak.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from orderlake import contracts, kafka_admin, lake, speed_progress
from orderlake.procs import process_start
from orderlake.stack import edge
from orderlake.workload.spool import SpoolWriter, generations
from tests.fixtures.stack import ORDERLAKE, Platform
from tests.fixtures.workload import expected_gold, latest_profiles

Bucket = tuple[date, str, str]  # (event date, age bracket, gender)
Case = Callable[["Battery", int], "Outcome"]
SETTLE_TIMEOUT_S = 300.0
CLOSE_THROUGH = "2015-11-30"  # every generated day is final once the batch layer runs


def _bucket_counts(rows: list[tuple]) -> Counter:
    return Counter({(d, b, g): n for d, b, g, n in rows})


def lost_and_doubled(expected: Counter, found: Counter) -> tuple[int, int]:
    """(purchases missing, purchases counted more than once) between two bucket counts."""
    keys = set(expected) | set(found)
    lost = sum(max(0, expected[k] - found[k]) for k in keys)
    doubled = sum(max(0, found[k] - expected[k]) for k in keys)
    return lost, doubled


@dataclass
class Outcome:
    """One case's figures: what was sent, lost, counted twice, quarantined, how fast it healed."""

    case: str
    repetitions: int
    faults_injected: int
    events_sent: int
    purchases_expected: int
    speed_lost: int = 0
    speed_doubled: int = 0
    gold_lost: int = 0
    gold_doubled: int = 0
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine_exact: bool = True
    recovery_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        counts = (self.speed_lost, self.speed_doubled, self.gold_lost, self.gold_doubled)
        return not any(counts) and self.quarantine_exact


class Battery:
    """A platform under test and the independent count of what was written to its spool."""

    def __init__(self, platform: Platform, work: Path):
        self.platform = platform
        self.settings = platform.settings
        self.work = work
        self.seed = 1000
        # the exact bytes of every malformed line written, with the reason each layer gives it
        self.bad: Counter = Counter()
        self.bad_reasons: dict[bytes, tuple[str | None, str]] = {}

    # --- writing ----------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 900):
        return self.platform.cli(*args, check=check, timeout=timeout)

    def stream(self, events: int, rate: float, rotate_kb: float = 0) -> subprocess.Popen:
        """A generator process appending ``events`` actions at ``rate`` lines/s (rotating
        every ``rotate_kb`` KiB by rename when given)."""
        self.seed += 1
        manifests = self.work / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        args = ["generate", "--events", str(events), "--rate", str(rate), "--seed", str(self.seed)]
        args += ["--manifest", str(manifests / f"seed-{self.seed}.json")]
        args += ["--rotate-mb", f"{rotate_kb / 1024:.6f}" if rotate_kb else "0"]
        return subprocess.Popen(
            [*ORDERLAKE, *args],
            env=self.platform.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def finish(writer: subprocess.Popen, timeout: float = 600) -> None:
        assert writer.wait(timeout=timeout) == 0, writer.stderr.read() if writer.stderr else ""

    def write_bad(self, lines: list[tuple[bytes, str, str | None, str]]) -> None:
        """Append malformed lines: (line, file, speed layer's reason or None when the edge
        refuses it, batch layer's reason)."""
        with SpoolWriter(self.settings.spool_dir, self.settings.host_names) as spool:
            for i, (line, file, speed_reason, batch_reason) in enumerate(lines):
                host = self.settings.host_names[i % len(self.settings.host_names)]
                spool.write(host, file, line)
                self.bad[line] += 1
                self.bad_reasons[line] = (speed_reason, batch_reason)

    # --- the independent count ----------------------------------------------------------------
    def spool_records(self) -> tuple[list[dict], list[dict]]:
        """(profiles, actions) the generator wrote: every line of every generation that is not
        one of the battery's malformed lines."""
        found: dict[str, list[dict]] = {contracts.PROFILES_FILE: [], contracts.ACTIONS_FILE: []}
        for host in self.settings.host_names:
            for name, records in found.items():
                for path in generations(self.settings.spool_dir / host, name):
                    for line in path.read_bytes().split(b"\n"):
                        if line and line not in self.bad:
                            records.append(json.loads(line))
        return found[contracts.PROFILES_FILE], found[contracts.ACTIONS_FILE]

    def expected(self) -> Counter:
        profiles, actions = self.spool_records()
        return expected_gold(profiles, actions)

    def users_known(self) -> int:
        return len(latest_profiles(self.spool_records()[0]))

    # --- what the lake holds, read without Spark ------------------------------------------------
    def _table(self, name: str):
        path = lake.table_path(self.settings, name)
        return DeltaTable(path).to_pyarrow_table() if (path / "_delta_log").is_dir() else None

    def speed_counts(self) -> Counter:
        purchases = self._table("speed.purchases")
        if purchases is None:
            return Counter()
        rows = duckdb.sql(
            "SELECT event_date, age_bracket, gender, COUNT(*) FROM purchases GROUP BY ALL"
        ).fetchall()
        return _bucket_counts(rows)

    def gold_counts(self) -> Counter:
        gold = self._table("gold.orders_by_age_gender_daily")
        if gold is None:
            return Counter()
        return _bucket_counts(
            duckdb.sql("SELECT event_date, age_bracket, gender, orders FROM gold").fetchall()
        )

    def quarantine(self, name: str) -> Counter:
        """(battery line, reason) -> rows of the quarantine table holding that line (an edge
        refusal holds the line's SHA-256 in its envelope)."""
        table = self._table(name)
        if table is None:
            return Counter()
        digests = {hashlib.sha256(line).hexdigest(): line for line in self.bad}
        found: Counter = Counter()
        for value, reason in zip(
            table["value"].to_pylist(), table["reason"].to_pylist(), strict=True
        ):
            raw = bytes(value) if value is not None else b""
            line = raw if raw in self.bad else digests.get(_envelope_digest(raw) or "")
            if line is not None:
                found[(line, reason)] += 1
        return found

    def quarantine_expected(self) -> tuple[Counter, Counter]:
        """(line, reason) -> times written, for the speed and the batch quarantine."""
        speed, batch = Counter(), Counter()
        for line, n in self.bad.items():
            speed_reason, batch_reason = self.bad_reasons[line]
            if speed_reason:
                speed[(line, speed_reason)] += n
            batch[(line, batch_reason)] += n
        return speed, batch

    # --- settling and judging -------------------------------------------------------------------
    def wait_speed_exact(self, since: float, timeout: float = SETTLE_TIMEOUT_S) -> float | None:
        """Seconds from ``since`` until the speed tables hold exactly the expected purchases
        (None if they never do within ``timeout``)."""
        expected = self.expected()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.speed_counts() == expected:
                return round(time.monotonic() - since, 1)
            time.sleep(1)
        return None

    def wait_kafka(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until Kafka holds at least every line written (Flume delivers at least once)."""
        profiles, actions = self.spool_records()
        wanted = len(actions) + len(profiles) + sum(self.bad.values())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = kafka_admin.end_offsets(self.settings.bootstrap)
            if sum(sum(p.values()) for p in offsets.values()) >= wanted:
                return
            time.sleep(1)

    def wait_speed_caught_up(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until the speed layer has read everything Kafka holds (quarantined records too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if speed_progress.total_lag(self.settings) == 0:
                return
            time.sleep(1)

    def judge(self, outcome: Outcome, since: float) -> Outcome:
        """Let the platform settle, then count: the speed layer (waiting for it to be exact,
        which is the recovery time), then gold after a batch run."""
        self.wait_kafka()
        recovered = self.wait_speed_exact(since)
        self.wait_speed_caught_up()
        if recovered is not None:
            outcome.recovery_s.append(recovered)
        expected = self.expected()
        outcome.purchases_expected = sum(expected.values())
        outcome.speed_lost, outcome.speed_doubled = lost_and_doubled(expected, self.speed_counts())
        self.cli("batch", "all", "--close-through", CLOSE_THROUGH)
        outcome.gold_lost, outcome.gold_doubled = lost_and_doubled(expected, self.gold_counts())
        want_speed, want_batch = self.quarantine_expected()
        got_speed = self.quarantine("speed.quarantine")
        got_batch = self.quarantine("quarantine.records")
        outcome.quarantined = {
            "speed": _by_reason(got_speed),
            "batch": _by_reason(got_batch),
        }
        # every line written is quarantined, with its reason, at least as often as written;
        # more often only when Flume delivered it again (at least once), never another reason
        for layer, want, got in (
            ("speed", want_speed, got_speed),
            ("batch", want_batch, got_batch),
        ):
            missing = want - got
            wrong = {k for k in got if k not in want}
            again = sum((got - want).values())
            if missing or wrong:
                outcome.quarantine_exact = False
                outcome.notes.append(
                    f"{layer} quarantine: {sum(missing.values())} lines missing "
                    f"({_by_reason(missing)}), {len(wrong)} with another reason "
                    f"({_by_reason(Counter(dict.fromkeys(wrong, 1)))})"
                )
            if again:
                outcome.notes.append(f"{layer} quarantine: {again} lines delivered again by Flume")
        return outcome

    # --- faults ------------------------------------------------------------------------------
    def kill(self, component: str) -> None:
        """kill -9 of a supervised component's process; waits for supervisord's restart."""
        old = self.platform.pid(component)
        os.kill(old, signal.SIGKILL)
        self.platform.wait_restarted(component, old, timeout=180)

    def edge_jvm(self, host: str, timeout: float = 120.0) -> int:
        """The edge agent's running JVM; after a kill, the one its watchdog started again."""
        deadline = time.monotonic() + timeout
        while True:
            pid = edge.read_health(self.settings, host).get("pid")
            if pid and process_start(pid) is not None:
                return pid
            assert time.monotonic() < deadline, f"no edge JVM running on {host} in {timeout} s"
            time.sleep(0.5)

    def kill_between_commit_and_offsets(self, timeout: float = 60.0) -> bool:
        """kill -9 of the speed layer right after a micro-batch committed its speed tables and
        before Spark committed the micro-batch in the checkpoint; False if no such moment came
        within ``timeout`` (micro-batches without purchases commit no table)."""
        log = lake.table_path(self.settings, "speed.purchases") / "_delta_log"
        commits = lake.checkpoint_path(self.settings, "speed") / "commits"
        offsets = lake.checkpoint_path(self.settings, "speed") / "offsets"
        seen = _versions(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = _versions(log)
            if now - seen:
                planned, done = (
                    max(_versions(offsets), default=-1),
                    max(_versions(commits), default=-1),
                )
                if planned > done:
                    self.kill("streaming")
                    return True
                seen = now
            time.sleep(0.002)
        return False


def _by_reason(counts: Counter) -> dict[str, int]:
    by: Counter = Counter()
    for (_, reason), n in counts.items():
        by[reason] += n
    return dict(sorted(by.items()))


def _versions(directory: Path) -> set[int]:
    try:
        return {int(e.name.split(".")[0]) for e in os.scandir(directory) if e.name[0].isdigit()}
    except FileNotFoundError:
        return set()


def _envelope_digest(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc.get("sha256") if isinstance(doc, dict) else None


# --- malformed lines of every kind ----------------------------------------------------------------
def _action(marker: str, **changes: object) -> dict:
    doc: dict = {
        "event_id": marker, "user_id": 1_000_001, "item_id": 1, "cat_id": 1, "seller_id": 1,
        "brand_id": None, "action_type": 2, "event_time": "2015-11-11T10:00:00.000Z",
    }  # fmt: skip
    doc.update(changes)
    return doc


def malformed_lines(marker: str, max_line_bytes: int) -> list[tuple[bytes, str, str | None, str]]:
    """One line of each malformed kind: (line, file, the speed layer's reason (None: the edge
    refuses it, so only the batch layer quarantines it, from tmall.rejects), the batch
    layer's reason)."""
    a, p = contracts.ACTIONS_FILE, contracts.PROFILES_FILE

    def js(doc: object) -> bytes:
        return json.dumps(doc).encode()

    return [
        (js(_action(marker))[:-9], a, "not_json", "not_json"),  # truncated JSON
        (js(_action(marker, user_id="7")), a, "mistyped_field", "mistyped_field"),
        (js(_action(marker, action_type=9)), a, "unknown_action_type", "unknown_action_type"),
        (
            js(_action(marker, event_time="2099-01-01T00:00:00Z")),
            a,
            "absurd_event_time",
            "absurd_event_time",
        ),  # fmt: skip
        (
            js(_action(marker, event_time="1999-12-31T23:59:59Z")),
            a,
            "absurd_event_time",
            "absurd_event_time",
        ),  # fmt: skip
        (js(_action(marker, seller_id=-5)), a, "invalid_id", "invalid_id"),
        (
            js(_action(marker, event_time="11/11/2015 10:00")),
            a,
            "bad_event_time",
            "bad_event_time",
        ),  # fmt: skip
        (f'["{marker}", 1, 2]'.encode(), a, "not_object", "not_object"),
        (
            js({k: v for k, v in _action(marker).items() if k != "item_id"}),
            a,
            "missing_field",
            "missing_field",
        ),  # fmt: skip
        (js(_action(marker, event_id="")), a, "invalid_event_id", "invalid_event_id"),
        (marker.encode() + b" \x00\x01\x02\x7f binary", a, "not_json", "not_json"),
        (marker.encode() + b" caf\xe9 \xff\xfe", a, None, "edge_invalid_utf8"),
        (marker.encode() + b"x" * (max_line_bytes + 10), a, None, "edge_oversize"),
        (b"", a, "empty_record", "empty_record"),
        (  # a field named twice: which user ordered is ambiguous, so the edge refuses it
            js(_action(marker))[:-1] + b', "user_id": 1000002}',
            a,
            None,
            "edge_duplicate_key",
        ),  # fmt: skip
        (js({"note": marker, "age_range": 3, "gender": 1}), p, None, "edge_missing_key"),
        (
            js(
                {
                    "user_id": 2_000_001,
                    "age_range": 12,
                    "gender": 1,
                    "note": marker,
                    "updated_at": "2015-11-01T00:00:00Z",
                }
            ),
            p,
            "unknown_age_range",
            "unknown_age_range",
        ),  # fmt: skip
    ]


# --- the cases -----------------------------------------------------------------------------------
def _stream_with_faults(
    b: Battery,
    name: str,
    times: int,
    gap_s: float,
    rate: float,
    fault: Callable[[int], str],
    rotate_kb: float = 0,
) -> Outcome:
    """A live stream long enough for ``times`` faults ``gap_s`` apart; ``fault(i)`` injects
    the i-th and says what it did."""
    events = int(max(6_000, times * gap_s * rate))
    writer = b.stream(events, rate, rotate_kb)
    time.sleep(min(3.0, gap_s))
    since = time.monotonic()
    notes = []
    for i in range(times):
        notes.append(fault(i))
        if i + 1 < times:
            time.sleep(gap_s)
    b.finish(writer)
    return b.judge(Outcome(name, times, times, events, 0, notes=sorted(set(notes))), since)


# one fault each, the i-th of a stream; what it did, for the outcome's notes
def kill_streaming(b: Battery, i: int) -> str:
    """kill -9 of the streaming driver; the first right after a micro-batch committed its
    tables and before Spark committed the micro-batch's offsets, when such a moment comes."""
    if i == 0 and b.kill_between_commit_and_offsets():
        return "streaming driver killed between a table commit and its offset commit"
    b.kill("streaming")
    return "streaming driver killed mid-stream"


def kill_collector(b: Battery, i: int) -> str:
    b.kill("flume-collector")
    return "collector killed mid-stream"


def kill_edge(b: Battery, i: int) -> str:
    hosts = b.settings.host_names
    b.kill(f"flume-edge-{hosts[i % len(hosts)]}")
    return "edge agent killed mid-stream"


def streaming_kills(b: Battery, times: int) -> Outcome:
    return _stream_with_faults(b, "kill -9 of the streaming driver", times, 40, 1_000,
                               lambda i: kill_streaming(b, i))  # fmt: skip


def collector_kills(b: Battery, times: int) -> Outcome:
    return _stream_with_faults(b, "kill -9 of the Flume collector", times, 12, 1_500,
                               lambda i: kill_collector(b, i))  # fmt: skip


def edge_kills(b: Battery, times: int) -> Outcome:
    return _stream_with_faults(b, "kill -9 of an edge agent", times, 10, 1_500,
                               lambda i: kill_edge(b, i))  # fmt: skip


def _rotated(b: Battery) -> int:
    """Rotations by rename of actions.log so far, over all hosts."""
    return sum(len(generations(b.settings.spool_dir / h, contracts.ACTIONS_FILE)) - 1
               for h in b.settings.host_names)  # fmt: skip


def rotations(b: Battery, times: int) -> Outcome:
    """At least ``times`` rotations by rename while streaming, some while an edge's JVM is
    stopped (SIGSTOP, for longer than a rotation takes) and some while it is killed."""
    # a 16 KiB file holds about 90 generated lines: 120 lines per asked rotation, over all
    # hosts, leaves a margin; 300 lines/s spreads the rotations over the faults
    events = max(2_000, times * 120)
    before = _rotated(b)
    writer = b.stream(events, rate=300, rotate_kb=16)
    since = time.monotonic()
    notes, faults, i = [], 0, 0
    while writer.poll() is None:
        time.sleep(1.5)
        # each host in turn gets both faults: stopped, then killed
        host = b.settings.host_names[(i // 2) % len(b.settings.host_names)]
        if i % 2 == 0:
            jvm = b.edge_jvm(host)
            try:
                os.kill(jvm, signal.SIGSTOP)
                time.sleep(2.0)
                os.kill(jvm, signal.SIGCONT)
            except ProcessLookupError:  # the watchdog restarted it just now: the next fault
                continue
            notes.append("rotated while an edge JVM was stopped (SIGSTOP)")
        else:
            b.kill(f"flume-edge-{host}")
            notes.append("rotated while an edge agent was killed")
        faults += 1
        i += 1
    b.finish(writer)
    done = _rotated(b) - before
    assert done >= times, f"{done} rotations by rename, {times} asked"
    outcome = Outcome("rotation by rename", times, faults, events, 0, notes=sorted(set(notes)))
    outcome.notes.append(f"{done} rotations of actions.log by rename")
    return b.judge(outcome, since)


def concurrent_writers(b: Battery, times: int) -> Outcome:
    """A batch run, a maintenance run and a replay started at the same moment: they wait for
    each other (one Delta writer at a time), none reports a conflict, the tables stay exact."""
    writer = b.stream(3_000, rate=0)
    b.finish(writer)
    b.wait_kafka()
    since = time.monotonic()
    notes = []
    for _ in range(times):
        jobs = [
            b.platform.cli_background("batch", "all", "--close-through", CLOSE_THROUGH),
            b.platform.cli_background("maintain"),
            b.platform.cli_background(
                "replay", "--topic", contracts.TOPIC_ACTIONS, "--from", "0", "--to", "200"
            ),
        ]
        for job in jobs:
            out, err = job.communicate(timeout=1800)
            assert job.returncode == 0, err
            assert "Concurrent" not in err and "Traceback" not in err, err
        notes.append("batch all + maintain + replay at once: all succeeded")
    return b.judge(Outcome("concurrent batch, maintenance, replay", times, times, 3_000, 0,
                           notes=sorted(set(notes))), since)  # fmt: skip


def vacuum_guard_refusals(b: Battery, times: int) -> Outcome:
    """Each refusal of the VACUUM guard: a retention below the minimum, and one younger than a
    version a recent reconciliation pinned; each one sentence, exit code 1, nothing deleted."""
    short = b.cli("maintain", "--vacuum", "--retain-hours", "1", check=False)
    assert short.returncode == 1 and "below the 168 h minimum" in short.stderr, short.stderr
    b.cli("reconcile", check=False)  # pins the versions it compared
    env = {**b.platform.env, "ORDERLAKE_VACUUM_MIN_HOURS": "0"}
    pinned = subprocess.run(
        [*ORDERLAKE, "maintain", "--vacuum", "--retain-hours", "0"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert pinned.returncode == 1 and "a reconciliation of the last" in pinned.stderr, pinned
    for done in (short, pinned):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    outcome = Outcome("VACUUM guard refusals", 1, 2, 0, 0)
    outcome.notes = ["retention below the minimum: refused", "pinned by reconciliation: refused"]
    return b.judge(outcome, time.monotonic())


def late_purchases_for_a_final_day(b: Battery, times: int) -> Outcome:
    """Purchases for a day gold already marked final arrive late: counted by both layers, the
    day restated in gold with the reason recorded, never dropped."""
    day = "2015-11-11"
    if not b.spool_records()[0]:  # users with profiles to buy for
        b.finish(b.stream(2_000, rate=0))
        b.judge(Outcome("(users for the late purchases)", 0, 0, 2_000, 0), time.monotonic())
    profiles, _ = b.spool_records()
    users = sorted(latest_profiles(profiles))[:50]
    since = time.monotonic()
    with SpoolWriter(b.settings.spool_dir, b.settings.host_names) as spool:
        for i in range(times * 20):
            late = _action(f"late-{b.seed}-{i}", user_id=users[i % len(users)],
                           event_time=f"{day}T23:{i % 60:02d}:00.000Z")  # fmt: skip
            spool.write(b.settings.host_names[i % 2], contracts.ACTIONS_FILE, json.dumps(late))
    b.seed += 1
    outcome = b.judge(Outcome("late purchases for a final day", times, times, times * 20, 0),
                      since)  # fmt: skip
    gold = b._table("gold.orders_by_age_gender_daily")
    reasons = duckdb.sql(
        f"SELECT DISTINCT restated_reason FROM gold WHERE event_date = DATE '{day}'"
    ).fetchall()
    restated = [r[0] for r in reasons if r[0]]
    assert gold is not None and restated, f"{day} was not marked restated"
    outcome.notes.append(f"gold {day}: {restated[0]}")
    b.cli("reconcile", check=False)  # the reconciliation names the restatement too
    checks = b._table("ops.reconciliation")
    shown = duckdb.sql(
        "SELECT COUNT(*) FROM checks WHERE \"check\" = 'speed_vs_batch' "
        f"AND event_date = DATE '{day}' AND detail LIKE '%restated%'"
    ).fetchall()[0][0]
    assert checks is not None and shown, f"the reconciliation does not show {day} restated"
    return outcome


def _write_malformed(b: Battery, times: int) -> list[tuple[bytes, str, str | None, str]]:
    """Malformed lines of every kind, ``times`` of each (the oversize kind every 100th time),
    appended to the spool; returns them."""
    lines = []
    for rep in range(times):
        for line in malformed_lines(f"bad-{b.seed}-{rep}", b.settings.max_line_bytes):
            if rep % 100 == 0 or b"x" * 1000 not in line[0]:  # oversize lines now and then
                lines.append(line)
    b.seed += 1
    b.write_bad(lines)
    return lines


def _kinds(lines: list[tuple[bytes, str, str | None, str]]) -> str:
    return f"{len(lines)} malformed lines of {len({(s, q) for _, _, s, q in lines})} kinds"


def malformed(b: Battery, times: int) -> Outcome:
    """Malformed lines of every kind through Flume into the quarantines, each with its reason
    (lines the edge refuses reach only the batch layer's, through tmall.rejects)."""
    since = time.monotonic()
    lines = _write_malformed(b, times)
    outcome = Outcome("malformed lines", times, len(lines), len(lines), 0)
    outcome.notes.append(_kinds(lines))
    return b.judge(outcome, since)


def faults_on_one_stream(b: Battery, times: int) -> Outcome:
    """`make test`'s stream: malformed lines of every kind, then the three component kills in
    turn while every host's actions.log rotates by rename: one settling and one batch run
    for all of them, where `make soak` judges each apart (and also stops edges during
    rotations, which tests/integration/test_ingest.py covers at the Kafka level)."""
    lines = _write_malformed(b, times)
    before = _rotated(b)
    kills = (kill_streaming, kill_collector, kill_edge)
    # 1 MiB files: each host's share of the stream (about 3 MiB) rotates a few times, while
    # the kills happen
    outcome = _stream_with_faults(b, "malformed lines, kills and rotations on one stream",
                                  times * 3, 12, 1_000, lambda i: kills[i % 3](b, i // 3),
                                  rotate_kb=1024)  # fmt: skip
    rotated = _rotated(b) - before
    assert rotated >= len(b.settings.host_names), f"{rotated} rotations by rename"
    outcome.repetitions = times
    outcome.faults_injected += len(lines) + rotated
    outcome.notes += [_kinds(lines), f"{rotated} rotations of actions.log by rename"]
    return outcome


CASES: dict[str, Case] = {
    "malformed": malformed,
    "streaming_kills": streaming_kills,
    "collector_kills": collector_kills,
    "edge_kills": edge_kills,
    "rotations": rotations,
    "concurrent_writers": concurrent_writers,
    "vacuum_guard": vacuum_guard_refusals,
    "late_final_day": late_purchases_for_a_final_day,
}
# `make test` runs these once: the malformed lines, the kills and the rotations on one stream
# (`make soak` keeps them apart, each repeated, so a loss points at its fault)
TEST_CASES: dict[str, Case] = {
    "faults_on_one_stream": faults_on_one_stream,
    **{name: CASES[name] for name in ("concurrent_writers", "vacuum_guard", "late_final_day")},
}
# the repetitions issue 26 asks of `make soak`
SOAK = {
    "malformed": 625,  # 10,000 lines of 17 kinds
    "streaming_kills": 5,
    "collector_kills": 5,
    "edge_kills": 10,
    "rotations": 100,
    "concurrent_writers": 3,
    "vacuum_guard": 1,
    "late_final_day": 3,
}
