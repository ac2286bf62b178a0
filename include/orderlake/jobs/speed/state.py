"""What the speed layer keeps in driver memory between micro-batches: the keys of the purchases
it counted (CountedKeys) and the latest profile per user (StoredUsers).

Both exist so that a micro-batch does not read its own Delta tables: a read makes Delta list
the table's files and, after each write, reconstruct the new version's state. The speed layer
is the only writer of the tables they mirror, so neither can go stale while the query runs;
both are loaded from the tables when the query starts.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from orderlake import lake


class CountedKeys:
    """(event_id, event_time) of the purchases in speed.purchases, in driver memory by minute: a
    micro-batch de-duplicates against them instead of reading the Delta table, which makes Delta
    reconstruct the new version's state and skip files (three Spark jobs per micro-batch;
    bench/results/speed-ab-counted-keys-no-txn-10k.md).

    Complete for event times at or after ``since`` (None: for all): loaded from the table when
    the query starts, extended by each micro-batch's counted keys once they are committed, and,
    past ``limit`` keys, trimmed to the newest minutes holding at most half of it. The speed
    layer is the only writer of speed.purchases, and nothing changes a counted row's key, so the
    keys cannot go stale. A micro-batch with purchases older than ``since`` reads the table.
    About 230 bytes a key (tracemalloc, Flume-style event ids): the default limit of 500,000
    holds ~120 MB in the driver's Python process, outside the JVM's heap.
    """

    MINUTE = 60_000_000  # microseconds

    def __init__(self, table: DataFrame, limit: int):
        self.limit = limit
        self.since: int | None = None  # epoch microseconds
        self.rows = 0
        self._minutes: dict[int, set[tuple[str, int]]] = {}
        keys = table.select("event_id", F.unix_micros("event_time"))
        rows = keys.count()  # Delta answers this from file statistics
        if rows > limit:
            share = min(1.0, limit / 2 / rows)
            newest = keys.select(F.percentile_approx(keys.columns[1], 1 - share))
            cutoff = lake.one_row(newest, "the counted keys' newest share")[0]
            keys = keys.where(F.col(keys.columns[1]) >= cutoff - cutoff % self.MINUTE)
            self.since = cutoff - cutoff % self.MINUTE
        self.add(lake.collected(keys))

    def covers(self, earliest_us: int) -> bool:
        return self.since is None or earliest_us >= self.since

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple):  # (event_id, event_time in epoch microseconds)
            return False
        return key in self._minutes.get(key[1] - key[1] % self.MINUTE, ())

    def add(self, keys: list[tuple[str, int]]) -> None:
        """Take in committed keys; past the limit, drop the oldest minutes."""
        for key in keys:
            self._minutes.setdefault(key[1] - key[1] % self.MINUTE, set()).add(key)
        self.rows += len(keys)
        if self.rows <= self.limit:
            return
        for minute in sorted(self._minutes)[:-1]:
            if self.rows <= self.limit // 2:
                break
            self.rows -= len(self._minutes.pop(minute))
        oldest = min(self._minutes)
        self.since = oldest if self.since is None else max(self.since, oldest)


class StoredUsers:
    """The latest profile per user (the view speed.users), kept in memory twice: as a
    DataFrame on the executors, which new profiles are compared against (a replay brings
    hundreds of thousands), and as {user_id: (age bracket, gender)} in the driver, which each
    micro-batch's purchases take their bucket from. Neither reads the Delta table, which costs a
    listing of its files every micro-batch and, after each profile write, a reconstruction of
    the new version's state (bench/results/speed-profiles-ab.md).

    Loaded when the query starts and updated after each write to speed.user_profiles; the
    speed layer is its only writer.
    """

    def __init__(self, table: DataFrame):
        self.rows = lake.detached(table)
        self.buckets: dict[int, tuple[str, str]] = {}
        self._take_buckets(self.rows)

    def take(self, stored: DataFrame) -> None:
        """Take in profiles just stored (detached): each replaces its user's row."""
        kept = self.rows.join(stored.select("user_id"), "user_id", "left_anti")
        self.rows = lake.detached(kept.unionByName(stored))
        self._take_buckets(stored)

    def _take_buckets(self, profiles: DataFrame) -> None:
        rows = lake.collected(profiles.select("user_id", "age_bracket", "gender_label"))
        self.buckets.update((user, (bracket, gender)) for user, bracket, gender in rows)
