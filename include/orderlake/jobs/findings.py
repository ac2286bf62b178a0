"""Reconciliation's arithmetic on plain numbers: a compared scope's expected, actual and
explained counts -> its status (ok, explained, failed) and the phrase naming what differs.

Kept apart from the checks that read the lake (orderlake.jobs.reconcile), so the decisions
are tested on literal numbers (tests/unit/test_reconcile.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date


@dataclass
class Finding:
    """One compared scope: what was expected, what was found, how much of the gap is explained."""

    check: str
    scope: str
    expected: int
    actual: int
    explained: int = 0
    detail: dict = field(default_factory=dict)
    event_date: date | None = None

    @property
    def difference(self) -> int:
        return self.expected - self.actual

    @property
    def status(self) -> str:
        if self.detail.get("skipped"):
            return "skipped"
        if self.difference == 0 and not self.detail.get("unexplained"):
            return "ok"
        if self.difference == self.explained and not self.detail.get("unexplained"):
            return "explained"
        return "failed"

    def summary(self) -> str:
        """One phrase naming what differs, for the failure sentence."""
        reasons = self.detail.get("unexplained") or {}
        named = ", ".join(f"{k} {_short(v)}" for k, v in reasons.items())
        return f"{self.check} {self.scope} ({named or f'difference {self.difference}'})"


def _short(value: object) -> str:
    if isinstance(value, list):
        shown = ", ".join(map(str, value[:5]))
        return f"[{shown}{', ...' if len(value) > 5 else ''}]"
    return str(value)


# --- pure helpers -------------------------------------------------------------------------------
def offset_ranges(offsets: list[int]) -> list[str]:
    """Sorted offsets -> compact ranges: [3, 4, 5, 9] -> ['3..5', '9']."""
    ranges: list[str] = []
    start = prev = None
    for o in sorted(offsets):
        if prev is not None and o == prev + 1:
            prev = o
            continue
        if start is not None:
            ranges.append(f"{start}" if start == prev else f"{start}..{prev}")
        start = prev = o
    if start is not None:
        ranges.append(f"{start}" if start == prev else f"{start}..{prev}")
    return ranges


def partition_finding(
    topic: str,
    partition: int,
    held: tuple[int, int],
    bronze: tuple[int, int, int, int] | None,
    gaps: list[tuple[int, int]],
) -> Finding:
    """Kafka's held (low, high) vs bronze (rows, distinct offsets, min, max) and its internal gaps
    [(first missing, last missing)] -> the kafka_vs_bronze finding of one partition."""
    low, high = held
    if bronze is None:
        rows = distinct = 0
        base, loaded_through = low, low
        missing: list[tuple[int, int]] = []
    else:
        rows, distinct, first, last = bronze
        base, loaded_through = min(first, low), last + 1
        # bronze started at Kafka's earliest offset; anything it lacks before `first` is a gap
        missing = ([(low, first - 1)] if first > low else []) + gaps
    pending = max(high - loaded_through, 0)
    unexplained: dict[str, object] = {}
    if missing:
        unexplained["missing_offsets"] = [f"{a}" if a == b else f"{a}..{b}" for a, b in missing]
    if rows > distinct:
        unexplained["duplicate_rows"] = rows - distinct
    return Finding(
        "kafka_vs_bronze",
        f"{topic}/{partition}",
        expected=max(high - base, 0),
        actual=rows,
        explained=pending,
        detail={
            "kafka_offsets": [low, high],
            "bronze_rows": rows,
            "pending_next_load": pending,
            "unexplained": unexplained,
        },
    )


@dataclass(frozen=True)
class Bucket:
    event_date: date
    age_bracket: str
    gender: str

    @property
    def scope(self) -> str:
        return f"{self.event_date.isoformat()}/{self.age_bracket}/{self.gender}"


def bucket_findings(
    gold: dict[Bucket, int], speed: dict[Bucket, int], causes: dict[Bucket, dict[str, int]]
) -> list[Finding]:
    """Per bucket and per day total: gold orders vs speed counts, with the causes that explain
    the difference. ``causes[b]`` counts, for bucket b: moved_in / moved_out (late_profile_*,
    profile_changed_*), in_flight, speed_duplicate, and the unexplained missing_in_speed /
    extra_in_speed."""
    findings = []
    days: dict[date, list[Bucket]] = defaultdict(list)
    for b in sorted(set(gold) | set(speed), key=lambda b: (b.event_date, b.scope)):
        days[b.event_date].append(b)
    for day, buckets in days.items():
        totals = {"expected": 0, "actual": 0, "explained": 0}
        day_causes: dict[str, int] = defaultdict(int)
        day_unexplained: dict[str, int] = defaultdict(int)
        for b in buckets:
            c = causes.get(b, {})
            explained = (
                c.get("late_profile_in", 0)
                - c.get("late_profile_out", 0)
                + c.get("profile_changed_in", 0)
                - c.get("profile_changed_out", 0)
                + c.get("in_flight", 0)
                - c.get("speed_duplicate", 0)
            )
            unexplained = {k: c[k] for k in ("missing_in_speed", "extra_in_speed") if c.get(k)}
            if c.get("missing_event_ids"):
                unexplained["missing_in_speed"] = c["missing_event_ids"]
            if c.get("extra_event_ids"):
                unexplained["extra_in_speed"] = c["extra_event_ids"]
            f = Finding(
                "speed_vs_batch",
                b.scope,
                expected=gold.get(b, 0),
                actual=speed.get(b, 0),
                explained=explained,
                detail={
                    "causes": {k: v for k, v in c.items() if isinstance(v, int) and v},
                    "unexplained": unexplained,
                },
                event_date=b.event_date,
            )
            findings.append(f)
            for key in ("expected", "actual", "explained"):
                totals[key] += getattr(f, key)
            for k, v in f.detail["causes"].items():
                day_causes[k] += v
            for k in ("missing_in_speed", "extra_in_speed"):
                if c.get(k):
                    day_unexplained[k] += c[k]
        # the day's purchase totals: only late/duplicate/in-flight causes may separate them
        day_explained = day_causes.get("in_flight", 0) - day_causes.get("speed_duplicate", 0)
        findings.append(
            Finding(
                "speed_vs_batch",
                f"{day.isoformat()}/all/all",
                expected=totals["expected"],
                actual=totals["actual"],
                explained=day_explained,
                detail={"causes": dict(day_causes), "unexplained": dict(day_unexplained)},
                event_date=day,
            )
        )
    return findings


def speed_vs_batch_causes(rows: list) -> dict[Bucket, dict]:
    """transforms.reconcile.differences_by_bucket's rows -> the causes bucket_findings takes:
    a purchase in another bucket counts in where the batch layer has it and out where the speed
    layer does; a missing, in-flight or duplicate purchase counts in the bucket of the layer
    that has it, with sample event ids for what no cause explains."""
    causes: dict[Bucket, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        kind = r["kind"]
        batch_bucket = Bucket(r["b_date"], r["b_age"], r["b_gender"])
        speed_bucket = Bucket(r["s_date"], r["s_age"], r["s_gender"])
        if kind in ("late_profile", "profile_changed"):
            causes[batch_bucket][f"{kind}_in"] += r["n"]
            causes[speed_bucket][f"{kind}_out"] += r["n"]
        elif kind == "in_flight":
            causes[batch_bucket]["in_flight"] += r["n"]
        elif kind == "speed_duplicate":
            causes[speed_bucket]["speed_duplicate"] += r["n"]
        elif kind == "missing":
            c = causes[batch_bucket]
            c["missing_in_speed"] += r["n"]
            c.setdefault("missing_event_ids", []).extend(r["event_ids"])
        else:
            c = causes[speed_bucket]
            c["extra_in_speed"] += r["n"]
            c.setdefault("extra_event_ids", []).extend(r["event_ids"])
    return {b: dict(c) for b, c in causes.items()}
