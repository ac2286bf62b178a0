"""Synthetic workload: seed -> spool lines + manifest; marginals, determinism, ordering, counts."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orderlake import contracts
from orderlake.errors import UsageError
from orderlake.workload import generator
from orderlake.workload.generator import (
    FIRST_USER_ID,
    event_time_iso,
    generate,
    generate_to_spool,
    user_profile,
)
from orderlake.workload.spool import SpoolWriter

HOSTS = ["host-1", "host-2", "host-3"]
N = 200_000
EVENT_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")

# Tolerances. Each figure below is a share estimated from n independent draws, so its standard
# error is sqrt(p(1 - p) / n); we allow K = 4 standard errors (a correct generator fails one figure
# with probability ~6e-5, and the seed is fixed, so the test is deterministic anyway), while a wrong
# mix (e.g. a missing Double 11 purchase rate, unweighted purchases) misses by 10+ errors.
# Purchases by age and gender have a second source of spread: they are drawn from a finite pool of
# U users whose own age/gender shares deviate from the reference; a purchase share p of a group
# with user share q moves by (p / q) times the pool's error, sqrt(q(1 - q) / U).
K = 4


def shares(counts: dict[Any, int]) -> dict[Any, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def read_lines(spool: Path, host: str, name: str) -> list[dict[str, Any]]:
    path = spool / host / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def host_files(spool: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(spool)): p.read_bytes()
        for host in spool.iterdir()
        if host.is_dir() and host.name.startswith("host-")
        for p in sorted(host.iterdir())
        if p.name != ".lock"
    }


class Run:
    """One generated spool, read back."""

    def __init__(self, spool: Path, manifest: dict[str, Any]) -> None:
        self.spool = spool
        self.manifest = manifest
        self.actions = {h: read_lines(spool, h, contracts.ACTIONS_FILE) for h in HOSTS}
        self.profiles = {h: read_lines(spool, h, contracts.PROFILES_FILE) for h in HOSTS}
        self.all_actions = [a for h in HOSTS for a in self.actions[h]]
        self.profile_of = {
            p["user_id"]: (p["age_range"], p["gender"]) for h in HOSTS for p in self.profiles[h]
        }
        self.purchases = [
            a for a in self.all_actions if a["action_type"] == contracts.ACTION_PURCHASE
        ]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Run:
    spool = tmp_path_factory.mktemp("spool")
    manifest, _ = generate_to_spool(spool, events=N, rate=0, hosts=HOSTS, seed=20151111)
    return Run(spool, manifest)


# --- marginals ---------------------------------------------------------------------------------
def test_action_mix_matches_the_full_log(big: Run) -> None:
    got = Counter(a["action_type"] for a in big.all_actions)
    assert len(big.all_actions) == N
    for action_type, p in shares(contracts.ACTIONS_BY_TYPE).items():
        assert abs(got[action_type] / N - p) <= K * standard_error(p, N), action_type


@pytest.mark.parametrize(
    ("field", "purchases_ref", "users_ref"),
    [
        ("age_range", contracts.PURCHASES_BY_AGE_CODE, contracts.USERS_BY_AGE_CODE),
        ("gender", contracts.PURCHASES_BY_GENDER_CODE, contracts.USERS_BY_GENDER_CODE),
    ],
)
def test_purchases_by_profile_match_the_full_log(
    big: Run, field: str, purchases_ref: dict[Any, int], users_ref: dict[Any, int]
) -> None:
    index = 0 if field == "age_range" else 1
    got = Counter(big.profile_of[a["user_id"]][index] for a in big.purchases)
    n, users = len(big.purchases), big.manifest["users"]
    user_shares = shares(users_ref)
    for code, p in shares(purchases_ref).items():
        q = user_shares[code]
        pool_error = (p / q) * standard_error(q, users)
        tolerance = K * math.hypot(standard_error(p, n), pool_error)
        assert abs(got[code] / n - p) <= tolerance, (field, code, got[code] / n, p)


def test_user_pool_matches_the_full_user_table(big: Run) -> None:
    users = big.manifest["users"]
    assert users == round(N * contracts.FULL_USERS / contracts.FULL_LOG_ROWS)
    pool = [user_profile(FIRST_USER_ID + i) for i in range(users)]
    for index, reference in ((0, contracts.USERS_BY_AGE_CODE), (1, contracts.USERS_BY_GENDER_CODE)):
        got = Counter(profile[index] for profile in pool)
        for code, p in shares(reference).items():
            assert abs(got[code] / users - p) <= K * standard_error(p, users), (index, code)
    # The profile lines written are exactly those of the pool.
    assert big.profile_of == {FIRST_USER_ID + i: pool[i] for i in range(users)}


def test_double11_peak(big: Run) -> None:
    by_day = Counter(a["event_time"][:10] for a in big.all_actions)
    # The row count per day is set, not drawn: Double 11 gets round(N * share), the 184 other days
    # share the rest evenly (+-1 row).
    assert len(by_day) == 185
    assert by_day["2015-11-11"] == round(N * contracts.DOUBLE11_ROWS / contracts.FULL_LOG_ROWS)
    other = [count for day, count in by_day.items() if day != "2015-11-11"]
    assert max(other) - min(other) <= 1
    assert min(by_day) == "2015-05-11"

    n = len(big.purchases)
    on_double11 = sum(a["event_time"].startswith("2015-11-11") for a in big.purchases)
    p = contracts.DOUBLE11_PURCHASES / contracts.ACTIONS_BY_TYPE[contracts.ACTION_PURCHASE]
    assert abs(on_double11 / n - p) <= K * standard_error(p, n)


# --- the line contract -------------------------------------------------------------------------
def test_lines_follow_the_contract(big: Run) -> None:
    action_keys = ["event_id", "user_id", "item_id", "cat_id", "seller_id", "brand_id"]
    action_keys += ["action_type", "event_time"]
    for host in HOSTS:
        raw = (big.spool / host / contracts.ACTIONS_FILE).read_text().splitlines()
        for line, action in zip(raw[:2000], big.actions[host], strict=False):
            assert line == json.dumps(action, separators=(",", ":"))
            assert list(action) == action_keys
        times = [a["event_time"] for a in big.actions[host]]
        assert times == sorted(times)  # event-time order within each file
        for action in big.actions[host]:
            assert HOSTS[action["user_id"] % len(HOSTS)] == host
            assert action["event_id"].startswith(f"{host}:actions.log:")
        for profile in big.profiles[host]:
            assert list(profile) == ["user_id", "age_range", "gender", "updated_at"]
            assert HOSTS[profile["user_id"] % len(HOSTS)] == host
    for a in big.all_actions:
        assert 1 <= a["item_id"] <= 1_113_166
        assert 1 <= a["cat_id"] <= 1_671
        assert 1 <= a["seller_id"] <= 4_995
        assert a["brand_id"] is None or 1 <= a["brand_id"] <= 8_477
        assert a["action_type"] in (0, 1, 2, 3)
        assert EVENT_TIME_RE.fullmatch(a["event_time"])
        assert a["user_id"] >= FIRST_USER_ID
    null_brand = sum(a["brand_id"] is None for a in big.all_actions) / N
    # Null brands are a property of ~0.17% of items; items are uniform, so rows follow.
    assert abs(null_brand - generator.NULL_BRAND_SHARE) <= K * standard_error(0.0017, N)


def test_profile_is_written_before_the_users_first_action(tmp_path: Path) -> None:
    class RecordingWriter(SpoolWriter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.log: list[tuple[str, str, dict[str, Any]]] = []

        def write(self, host: str, file_name: str, line: str | bytes) -> None:
            self.log.append((host, file_name, json.loads(line)))
            super().write(host, file_name, line)

    with RecordingWriter(tmp_path, HOSTS) as writer:
        generate(writer, events=20_000, seed=3)
    profiled: dict[int, str] = {}
    for _host, file_name, obj in writer.log:
        if file_name == contracts.PROFILES_FILE:
            profiled[obj["user_id"]] = obj["updated_at"]
        else:
            assert obj["user_id"] in profiled, obj
            assert profiled[obj["user_id"]] <= obj["event_time"]
    # ... and on disk, where Flume reads it: each host's profiles cover that host's actions.
    for host in HOSTS:
        users = {p["user_id"] for p in read_lines(tmp_path, host, contracts.PROFILES_FILE)}
        assert {a["user_id"] for a in read_lines(tmp_path, host, contracts.ACTIONS_FILE)} <= users


# --- manifest ----------------------------------------------------------------------------------
def test_manifest_equals_a_recount_of_the_files(big: Run) -> None:
    m = big.manifest
    assert m["events"] == N and m["seed"] == 20151111 and m["live"] is False
    assert m["profiles"] == sum(len(p) for p in big.profiles.values())
    assert m["topics"] == {contracts.TOPIC_ACTIONS: N, contracts.TOPIC_PROFILES: m["profiles"]}
    for host in HOSTS:
        seqs = [int(a["event_id"].rsplit(":", 1)[1]) for a in big.actions[host]]
        assert m["hosts"][host] == {
            "actions": len(big.actions[host]),
            "profiles": len(big.profiles[host]),
            "first_seq": seqs[0],
            "last_seq": seqs[-1],
        }
        assert seqs == list(range(1, len(seqs) + 1))
    types = Counter(a["action_type"] for a in big.all_actions)
    assert m["action_types"] == {str(t): types[t] for t in range(4)}

    overall: dict[str, dict[str, int]] = {
        b: dict.fromkeys(contracts.GENDERS, 0) for b in contracts.AGE_BRACKETS
    }
    per_day: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(Counter))
    for a in big.purchases:
        age, gender = big.profile_of[a["user_id"]]
        bracket, label = contracts.age_bracket(age), contracts.gender_label(gender)
        overall[bracket][label] += 1
        per_day[a["event_time"][:10]][bracket][label] += 1
    assert m["purchases_by_age_gender"] == overall
    assert json.loads(json.dumps(m["purchases_by_day_age_gender"])) == json.loads(
        json.dumps(per_day)
    )
    times = sorted(a["event_time"] for a in big.all_actions)
    assert (m["first_event_time"], m["last_event_time"]) == (times[0], times[-1])
    assert m["spool_dir"] == str(big.spool)


def test_manifest_file_is_written(tmp_path: Path) -> None:
    manifest, path = generate_to_spool(tmp_path, events=100, rate=0, hosts=HOSTS, seed=5)
    assert path.parent == tmp_path / "manifests"
    assert re.fullmatch(r"generate-seed5-\d{8}T\d{6}\.json", path.name)
    assert json.loads(path.read_text()) == manifest
    _, again = generate_to_spool(tmp_path, events=100, rate=0, hosts=HOSTS, seed=5)
    assert again != path and path.exists()  # a second run never overwrites the first manifest
    chosen = tmp_path / "elsewhere" / "m.json"
    _, explicit = generate_to_spool(
        tmp_path, events=10, rate=0, hosts=HOSTS, seed=5, manifest_path=chosen
    )
    assert explicit == chosen and json.loads(chosen.read_text())["events"] == 10


# --- determinism and repeated runs -------------------------------------------------------------
def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        generate_to_spool(tmp_path / name, events=20_000, rate=0, hosts=HOSTS, seed=seed)
    a, b, c = (host_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a["host-1/actions.log"] != c["host-1/actions.log"]


def test_profiles_depend_on_the_user_only(tmp_path: Path) -> None:
    def profiles(seed: int) -> dict[int, tuple[Any, Any]]:
        spool = tmp_path / str(seed)
        generate_to_spool(spool, events=5_000, rate=0, hosts=HOSTS, seed=seed)
        lines = [p for h in HOSTS for p in read_lines(spool, h, contracts.PROFILES_FILE)]
        return {p["user_id"]: (p["age_range"], p["gender"]) for p in lines}

    one, two = profiles(1), profiles(2)
    common = one.keys() & two.keys()
    assert len(common) > 40
    assert all(one[u] == two[u] for u in common)


def test_repeated_runs_continue_sequence_numbers(tmp_path: Path) -> None:
    first, _ = generate_to_spool(tmp_path, events=5_000, rate=0, hosts=HOSTS, seed=1)
    second, _ = generate_to_spool(tmp_path, events=5_000, rate=0, hosts=HOSTS, seed=1)
    for host in HOSTS:
        assert second["hosts"][host]["first_seq"] == first["hosts"][host]["last_seq"] + 1
    ids = [a["event_id"] for h in HOSTS for a in read_lines(tmp_path, h, contracts.ACTIONS_FILE)]
    assert len(ids) == 10_000 == len(set(ids))


def test_rotation_during_generation_loses_nothing(tmp_path: Path) -> None:
    manifest, _ = generate_to_spool(
        tmp_path, events=5_000, rate=0, hosts=HOSTS, seed=9, rotate_bytes=50_000
    )
    total = 0
    for host in HOSTS:
        files = list((tmp_path / host).glob("actions.log*"))
        assert len(files) > 1
        total += sum(len(p.read_text().splitlines()) for p in files)
    assert total == manifest["events"]


# --- live mode, edge cases ---------------------------------------------------------------------
def test_live_mode_stamps_the_wall_clock(tmp_path: Path) -> None:
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    manifest, _ = generate_to_spool(tmp_path, events=3_000, rate=0, hosts=HOSTS, seed=4, live=True)
    after = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    actions = [a for h in HOSTS for a in read_lines(tmp_path, h, contracts.ACTIONS_FILE)]
    assert len(actions) == 3_000 and manifest["live"] is True
    assert all(before <= a["event_time"] <= after for a in actions)
    assert all(EVENT_TIME_RE.fullmatch(a["event_time"]) for a in actions)
    assert set(manifest["purchases_by_day_age_gender"]) <= {before[:10], after[:10]}


def test_zero_events(tmp_path: Path) -> None:
    manifest, _ = generate_to_spool(tmp_path, events=0, rate=0, hosts=HOSTS, seed=1)
    assert manifest["profiles"] == 0 and manifest["first_event_time"] is None
    assert manifest["hosts"]["host-1"] == {
        "actions": 0,
        "profiles": 0,
        "first_seq": None,
        "last_seq": None,
    }
    assert all(v == 0 for g in manifest["purchases_by_age_gender"].values() for v in g.values())
    assert manifest["users"] == generator.MIN_USERS


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="events"):
        generate_to_spool(tmp_path, events=-1, rate=0, hosts=HOSTS, seed=1)
    with pytest.raises(UsageError, match="seed"):
        generate_to_spool(tmp_path, events=1, rate=0, hosts=HOSTS, seed=-1)


def test_day_is_emitted_in_bounded_sorted_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # What keeps memory flat at full scale (10.6 M rows on Double 11): a day comes in chunks.
    monkeypatch.setattr(generator, "_CHUNK", 1_000)
    chunks = list(generator._day_times(np.random.default_rng(0), 50_000))
    assert len(chunks) >= 50
    assert all(len(c) <= 1_000 for c in chunks)
    times = np.concatenate(chunks)
    assert len(times) == 50_000
    assert (np.diff(times) >= 0).all() and times[0] >= 0 and times[-1] < 86_400_000


def test_event_time_format() -> None:
    assert event_time_iso(date(2015, 11, 11), 36_000_123) == "2015-11-11T10:00:00.123Z"
    assert event_time_iso(date(2015, 5, 11), 86_399_999) == "2015-05-11T23:59:59.999Z"
