"""Seed -> synthetic Tianchi lines in <spool>/<host>/actions.log and profiles.log, plus a manifest.

Lines follow the DESIGN.md section 3 contract and reproduce the published marginals of the full
Tianchi log (contracts.py): the action mix, purchases by age bracket and by gender, users by age and
gender, and the Double 11 peak (about 19.3% of rows and 37.2% of purchases on 2015-11-11). The
other 184 days (2015-05-11..2015-11-10) share the remaining rows evenly; each day is emitted in
event-time order, a chunk of minutes at a time, so memory stays small up to the full 55 M rows.

One module because the marginals, the day-by-day schedule and the writer share their tables and
must change together (a new marginal changes every day's draw).

Determinism: the same seed written into the same starting spool state gives byte-identical files
(``live=True`` stamps the wall clock instead and is not reproducible). A user's profile depends on
the user id only, never on the seed, so one user looks the same in every run.

Example::

    manifest, path = generate_to_spool(Path("spool"), events=200_000, rate=0,
                                       hosts=["host-1", "host-2"], seed=42)
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np

from orderlake import contracts
from orderlake.errors import UsageError
from orderlake.workload.spool import SpoolWriter

# Generated user ids start above the real Tianchi ids (1..424,170), so a real replay into the same
# topics never collides with a synthetic user.
FIRST_USER_ID = 1_000_001
MIN_USERS = 50
# Id ranges of the full Tianchi log.
N_ITEMS, N_CATS, N_SELLERS, N_BRANDS = 1_113_166, 1_671, 4_995, 8_477
NULL_BRAND_SHARE = 0.0017  # share of the full log's rows with an empty brand_id

FIRST_DAY = date(contracts.TIANCHI_YEAR, 5, 11)
REGULAR_DAYS = 184  # 2015-05-11 .. 2015-11-10
DOUBLE11 = date(contracts.TIANCHI_YEAR, 11, 11)
DOUBLE11_ROW_SHARE = contracts.DOUBLE11_ROWS / contracts.FULL_LOG_ROWS

_MS_PER_DAY = 86_400_000
_MINUTES = 1440
# Events drawn per vectorised step; bounds memory at any scale (the full Double 11 has 10.6 M rows).
_CHUNK = 65_536
_LIVE_CHUNK = 4_096

_ENCODE = json.JSONEncoder(
    separators=(",", ":")
).encode  # == json.dumps(..., separators=(",", ":"))


# --- reference distributions -------------------------------------------------------------------
def _shares(counts: dict[Any, int]) -> dict[Any, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


_USER_AGE = _shares(contracts.USERS_BY_AGE_CODE)
_USER_GENDER = _shares(contracts.USERS_BY_GENDER_CODE)
_PURCH_AGE = _shares(contracts.PURCHASES_BY_AGE_CODE)
_PURCH_GENDER = _shares(contracts.PURCHASES_BY_GENDER_CODE)
_AGE_CODES = list(_USER_AGE)
_GENDER_CODES = list(_USER_GENDER)
_AGE_CDF = list(accumulate(_USER_AGE.values()))
_GENDER_CDF = list(accumulate(_USER_GENDER.values()))

_PURCHASE_RATE_ALL = contracts.ACTIONS_BY_TYPE[contracts.ACTION_PURCHASE] / contracts.FULL_LOG_ROWS
_PURCHASE_RATE_DOUBLE11 = contracts.DOUBLE11_PURCHASES / contracts.DOUBLE11_ROWS
# The other days get the remainder, so the overall purchase share still equals the reference.
_PURCHASE_RATE_OTHER = (
    contracts.ACTIONS_BY_TYPE[contracts.ACTION_PURCHASE] - contracts.DOUBLE11_PURCHASES
) / (contracts.FULL_LOG_ROWS - contracts.DOUBLE11_ROWS)

# R2 low-discrepancy sequence (Roberts 2018): consecutive user ids spread evenly over the unit
# square, so any pool of ids has age and gender shares close to the reference, drawn independently.
_PLASTIC = 1.324717957244746
_R2 = (1 / _PLASTIC, 1 / _PLASTIC**2)


def user_profile(user_id: int) -> tuple[int | None, int | None]:
    """Return the (age_range, gender) codes of a generated user; a pure function of the id.

    >>> user_profile(1_000_001) == user_profile(1_000_001)
    True
    """
    u_age = (0.5 + user_id * _R2[0]) % 1.0
    u_gender = (0.5 + user_id * _R2[1]) % 1.0
    age = _AGE_CODES[min(bisect_right(_AGE_CDF, u_age), len(_AGE_CODES) - 1)]
    gender = _GENDER_CODES[min(bisect_right(_GENDER_CDF, u_gender), len(_GENDER_CODES) - 1)]
    return age, gender


def _type_cdf(purchase_rate: float) -> np.ndarray:
    """Cumulative action-type probabilities (0, 1, 2, 3) for a given purchase share.

    Clicks, carts and favourites keep their reference proportions among the non-purchases.
    """
    others = {t: n for t, n in contracts.ACTIONS_BY_TYPE.items() if t != contracts.ACTION_PURCHASE}
    rest = sum(others.values())
    probs = [
        purchase_rate if t == contracts.ACTION_PURCHASE else (1 - purchase_rate) * others[t] / rest
        for t in range(4)
    ]
    return np.cumsum(probs)[:-1]


# --- time formatting (shared with the Tianchi replay) --------------------------------------------
def event_time_iso(day: date, ms_of_day: int) -> str:
    """Format a day and a millisecond of that day as the contract's UTC event time.

    >>> event_time_iso(date(2015, 11, 11), 36_000_123)
    '2015-11-11T10:00:00.123Z'
    """
    return _fmt_ms(f"{day.isoformat()}T", ms_of_day)


def _fmt_ms(prefix: str, ms: int) -> str:
    hours, rem = divmod(ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    seconds, millis = divmod(rem, 1000)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def utc_now_iso() -> str:
    """The wall clock as a contract timestamp (UTC, milliseconds, 'Z')."""
    ms = time.time_ns() // 1_000_000
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


# --- item attributes ----------------------------------------------------------------------------
def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 finaliser: a fixed pseudo-random function of each value (wraps mod 2**64)."""
    z = values.astype(np.uint64) + np.uint64(salt * 0x9E3779B97F4A7C15 % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _item_attributes(items: np.ndarray) -> tuple[list[int], list[int], list[int | None]]:
    """Category, seller and brand of each item: fixed per item, as in the real catalogue."""
    cats = (_mix(items, 1) % np.uint64(N_CATS) + np.uint64(1)).tolist()
    sellers = (_mix(items, 2) % np.uint64(N_SELLERS) + np.uint64(1)).tolist()
    brand_arr = (_mix(items, 3) % np.uint64(N_BRANDS) + np.uint64(1)).astype(np.int64)
    no_brand = _mix(items, 4) % np.uint64(1_000_000) < np.uint64(round(NULL_BRAND_SHARE * 1e6))
    brands = [None if b < 0 else b for b in np.where(no_brand, -1, brand_arr).tolist()]
    return cats, sellers, brands


# --- the user pool ------------------------------------------------------------------------------
class _UserPool:
    """Users FIRST_USER_ID .. FIRST_USER_ID + size - 1 with their profiles and purchase weights."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.profiles = [user_profile(FIRST_USER_ID + i) for i in range(size)]
        bracket_index = {b: i for i, b in enumerate(contracts.AGE_BRACKETS)}
        gender_index = {g: i for i, g in enumerate(contracts.GENDERS)}
        self.cell = [
            (bracket_index[contracts.age_bracket(a)], gender_index[contracts.gender_label(g)])
            for a, g in self.profiles
        ]
        # Purchases pick users in proportion to how much more (or less) their age and gender buy
        # than their share of users; with age and gender independent in the pool, purchases by age
        # and by gender then follow PURCHASES_BY_AGE_CODE and PURCHASES_BY_GENDER_CODE.
        weights = [
            (_PURCH_AGE[a] / _USER_AGE[a]) * (_PURCH_GENDER[g] / _USER_GENDER[g])
            for a, g in self.profiles
        ]
        self.cum_weights = np.cumsum(weights)

    def draw(self, rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
        """Pool indices for a chunk of actions: purchases weighted, all other actions uniform."""
        idx = rng.integers(0, self.size, len(types))
        purchases = types == contracts.ACTION_PURCHASE
        n = int(purchases.sum())
        if n:
            picks = np.searchsorted(
                self.cum_weights, rng.random(n) * self.cum_weights[-1], side="right"
            )
            idx[purchases] = np.minimum(picks, self.size - 1)
        return idx


# --- the calendar -------------------------------------------------------------------------------
def _day_plan(events: int) -> list[tuple[date, int]]:
    """Rows per day: Double 11 gets its reference share; the 184 other days split the rest."""
    double11 = round(events * DOUBLE11_ROW_SHARE)
    rest = events - double11
    plan = [
        (FIRST_DAY + timedelta(days=i), (i + 1) * rest // REGULAR_DAYS - i * rest // REGULAR_DAYS)
        for i in range(REGULAR_DAYS)
    ]
    plan.append((DOUBLE11, double11))
    return plan


def _day_times(rng: np.random.Generator, n: int) -> Iterator[np.ndarray]:
    """Sorted ms-of-day values for ``n`` events, in chunks of at most ~_CHUNK events.

    Multinomial counts per minute, then uniform sorted offsets within each chunk of minutes: the
    same distribution as sorting n uniform times, without holding a whole day in memory.
    """
    counts = rng.multinomial(n, np.full(_MINUTES, 1 / _MINUTES))
    cum = np.cumsum(counts)
    start = 0
    while start < _MINUTES:
        before = int(cum[start - 1]) if start else 0
        end = max(start + 1, int(np.searchsorted(cum, before + _CHUNK, side="right")))
        chunk_counts = counts[start:end]
        total = int(cum[end - 1]) - before
        if total:
            minute_starts = np.repeat(np.arange(start, end, dtype=np.int64) * 60_000, chunk_counts)
            yield np.sort(minute_starts + rng.integers(0, 60_000, total))
        start = end


# --- the run ------------------------------------------------------------------------------------
class _Run:
    """Writes lines for one generator run and counts what it wrote."""

    def __init__(self, writer: SpoolWriter, pool: _UserPool, live: bool) -> None:
        self.writer = writer
        self.pool = pool
        self.live = live
        self.hosts = list(writer.hosts)
        self.seen: set[int] = set()
        self.host_actions = dict.fromkeys(self.hosts, 0)
        self.host_profiles = dict.fromkeys(self.hosts, 0)
        self.first_seq: dict[str, int | None] = dict.fromkeys(self.hosts)
        self.last_seq: dict[str, int | None] = dict.fromkeys(self.hosts)
        self.action_types = [0, 0, 0, 0]
        self.purchases = [[0] * len(contracts.GENDERS) for _ in contracts.AGE_BRACKETS]
        self.purchases_by_day: dict[str, list[list[int]]] = {}
        self.first_event_time: str | None = None
        self.last_event_time: str | None = None

    def emit(
        self,
        rng: np.random.Generator,
        type_cdf: np.ndarray,
        n: int,
        times: list[str] | None,
    ) -> None:
        """Draw and write ``n`` actions; ``times`` are their event times (None = wall clock)."""
        types = np.searchsorted(type_cdf, rng.random(n), side="right")
        user_idx = self.pool.draw(rng, types)
        items = rng.integers(1, N_ITEMS + 1, n)
        cats, sellers, brands = _item_attributes(items)
        counts = np.bincount(types, minlength=4).tolist()
        self.action_types = [a + b for a, b in zip(self.action_types, counts, strict=True)]

        # Hot loop (runs once per event): local names avoid attribute lookups.
        writer, hosts, seen = self.writer, self.hosts, self.seen
        write, next_seq, wait_turn = writer.write, writer.next_seq, writer.wait_turn
        n_hosts, profiles, cells = len(hosts), self.pool.profiles, self.pool.cell
        actions_file, profiles_file = contracts.ACTIONS_FILE, contracts.PROFILES_FILE
        live = self.live
        event_time = ""
        for i, (ui, item, t) in enumerate(
            zip(user_idx.tolist(), items.tolist(), types.tolist(), strict=True)
        ):
            uid = FIRST_USER_ID + ui
            host = hosts[uid % n_hosts]
            if not live:
                event_time = times[i]  # type: ignore[index]
            if uid not in seen:
                # The profile goes out before the user's first action of this run; in calendar
                # mode it is valid from that action's time.
                seen.add(uid)
                if live:
                    wait_turn()
                    event_time = utc_now_iso()
                age, gender = profiles[ui]
                profile = {"user_id": uid, "age_range": age, "gender": gender}
                profile["updated_at"] = event_time
                write(host, profiles_file, _ENCODE(profile))
                self.host_profiles[host] += 1
            if live:
                wait_turn()
                event_time = utc_now_iso()
            seq = next_seq(host, actions_file)
            action = {
                "event_id": f"{host}:{actions_file}:{seq}",
                "user_id": uid,
                "item_id": item,
                "cat_id": cats[i],
                "seller_id": sellers[i],
                "brand_id": brands[i],
                "action_type": t,
                "event_time": event_time,
            }
            write(host, actions_file, _ENCODE(action))
            self.host_actions[host] += 1
            if self.first_seq[host] is None:
                self.first_seq[host] = seq
            self.last_seq[host] = seq
            if t == contracts.ACTION_PURCHASE:
                self._count_purchase(cells[ui], event_time[:10])
            if self.first_event_time is None:
                self.first_event_time = event_time
        if n:
            self.last_event_time = event_time

    def _count_purchase(self, cell: tuple[int, int], day: str) -> None:
        bi, gi = cell
        self.purchases[bi][gi] += 1
        if day not in self.purchases_by_day:
            self.purchases_by_day[day] = [
                [0] * len(contracts.GENDERS) for _ in contracts.AGE_BRACKETS
            ]
        self.purchases_by_day[day][bi][gi] += 1


def generate(writer: SpoolWriter, *, events: int, seed: int, live: bool = False) -> dict[str, Any]:
    """Write ``events`` synthetic actions (plus their users' profiles) through ``writer``.

    Returns the run's manifest (JSON-serialisable): counts per host, topic, action type, and
    purchases by age bracket and gender, overall and per day. ``live=True`` stamps each line with
    the wall clock at write time (for latency benchmarks) instead of the 2015 calendar.
    """
    if events < 0:
        raise UsageError(f"The number of events must be >= 0, got {events}.")
    if seed < 0:
        raise UsageError(f"The seed must be a non-negative integer, got {seed}.")
    started = datetime.now(UTC)
    rng = np.random.default_rng(seed)
    users = max(MIN_USERS, round(events * contracts.FULL_USERS / contracts.FULL_LOG_ROWS))
    run = _Run(writer, _UserPool(users), live)

    if live:
        cdf = _type_cdf(_PURCHASE_RATE_ALL)
        for start in range(0, events, _LIVE_CHUNK):
            run.emit(rng, cdf, min(_LIVE_CHUNK, events - start), None)
    else:
        for day, n_day in _day_plan(events):
            if not n_day:
                continue
            cdf = _type_cdf(_PURCHASE_RATE_DOUBLE11 if day == DOUBLE11 else _PURCHASE_RATE_OTHER)
            prefix = f"{day.isoformat()}T"
            for ms in _day_times(rng, n_day):
                run.emit(rng, cdf, len(ms), [_fmt_ms(prefix, m) for m in ms.tolist()])
    writer.flush()
    finished = datetime.now(UTC)

    profiles = sum(run.host_profiles.values())
    return {
        "run_id": f"generate-seed{seed}-{started.strftime('%Y%m%dT%H%M%S')}",
        "seed": seed,
        "events": events,
        "profiles": profiles,
        "users": users,
        "live": live,
        "rate": writer.rate,
        "spool_dir": str(writer.spool_dir),
        "started_at": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "finished_at": finished.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "hosts": {
            h: {
                "actions": run.host_actions[h],
                "profiles": run.host_profiles[h],
                "first_seq": run.first_seq[h],
                "last_seq": run.last_seq[h],
            }
            for h in run.hosts
        },
        "topics": {contracts.TOPIC_ACTIONS: events, contracts.TOPIC_PROFILES: profiles},
        "action_types": {str(t): n for t, n in enumerate(run.action_types)},
        "purchases_by_age_gender": _by_age_gender(run.purchases, keep_zeros=True),
        "purchases_by_day_age_gender": {
            day: _by_age_gender(cells, keep_zeros=False)
            for day, cells in sorted(run.purchases_by_day.items())
        },
        "first_event_time": run.first_event_time,
        "last_event_time": run.last_event_time,
    }


def _by_age_gender(cells: list[list[int]], *, keep_zeros: bool) -> dict[str, dict[str, int]]:
    out = {
        bracket: {
            gender: cells[bi][gi]
            for gi, gender in enumerate(contracts.GENDERS)
            if keep_zeros or cells[bi][gi]
        }
        for bi, bracket in enumerate(contracts.AGE_BRACKETS)
    }
    return out if keep_zeros else {b: g for b, g in out.items() if g}


def generate_to_spool(
    spool_dir: Path,
    *,
    events: int,
    rate: float,
    hosts: list[str],
    seed: int,
    manifest_path: Path | None = None,
    rotate_bytes: int | None = None,
    live: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Run ``generate`` into ``spool_dir`` and save its manifest as JSON; return both.

    The manifest goes to ``manifest_path`` or ``<spool_dir>/manifests/generate-seed<S>-<UTC
    stamp>.json`` (never overwriting an earlier one).
    """
    spool_dir = Path(spool_dir)
    with SpoolWriter(spool_dir, hosts, rate=rate, rotate_bytes=rotate_bytes) as writer:
        manifest = generate(writer, events=events, seed=seed, live=live)
    text = json.dumps(manifest, indent=2) + "\n"
    if manifest_path is not None:
        path = Path(manifest_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return manifest, path
    directory = spool_dir / "manifests"
    directory.mkdir(parents=True, exist_ok=True)
    stem = manifest["run_id"]
    for attempt in range(1, 1000):
        path = directory / (f"{stem}.json" if attempt == 1 else f"{stem}-{attempt}.json")
        try:
            with path.open("x", encoding="utf-8") as out:
                out.write(text)
        except FileExistsError:
            continue
        return manifest, path
    raise RuntimeError(f"Too many manifests named {stem}*.json in {directory}.")  # pragma: no cover


__all__ = [
    "FIRST_USER_ID",
    "event_time_iso",
    "generate",
    "generate_to_spool",
    "user_profile",
    "utc_now_iso",
]
