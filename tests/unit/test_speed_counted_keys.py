"""The speed layer's counted keys in driver memory: what they hold, cover and drop."""

from __future__ import annotations

from datetime import UTC, datetime

from orderlake.jobs.speed.state import CountedKeys

MINUTE = CountedKeys.MINUTE
START = datetime(2015, 11, 11, 10, 0, tzinfo=UTC)
START_US = int(START.timestamp()) * 1_000_000


def counted_table(spark, keys):
    """A speed.purchases-shaped (event_id, event_time) table of (event_id, minute, second)."""
    rows = [
        (event_id, datetime.fromtimestamp((START_US + m * MINUTE) / 1e6 + s, UTC))
        for event_id, m, s in keys
    ]
    return spark.createDataFrame(rows, "event_id string, event_time timestamp")


def key(event_id: str, minute: int, second: int = 0) -> tuple[str, int]:
    return (event_id, START_US + minute * MINUTE + second * 1_000_000)


def test_keys_under_the_limit_are_all_loaded_and_cover_every_time(spark):
    keys = CountedKeys(counted_table(spark, [("a", 0, 5), ("b", 3, 0)]), limit=10)
    assert key("a", 0, 5) in keys and key("b", 3) in keys
    assert key("a", 0, 6) not in keys  # same event_id, another time: another purchase
    assert keys.since is None and keys.covers(0)


def test_past_the_limit_only_the_newest_minutes_load_and_older_times_are_not_covered(spark):
    table = counted_table(spark, [(f"e{m}", m, 30) for m in range(10)])
    keys = CountedKeys(table, limit=4)
    assert keys.since is not None and keys.since % MINUTE == 0  # a whole minute
    assert 1 <= keys.rows <= 4
    assert key("e9", 9, 30) in keys and key("e0", 0, 30) not in keys
    assert not keys.covers(START_US) and keys.covers(START_US + 9 * MINUTE)
    # whatever is held is complete from `since` on
    held = {k for k in (key(f"e{m}", m, 30) for m in range(10)) if k in keys}
    assert held == {key(f"e{m}", m, 30) for m in range(10) if START_US + m * MINUTE >= keys.since}


def test_adding_past_the_limit_drops_the_oldest_minutes_down_to_half(spark):
    keys = CountedKeys(counted_table(spark, []), limit=6)
    keys.add([key("a", 0), key("b", 1), key("c", 2), key("d", 2, 30)])
    assert keys.since is None and keys.rows == 4
    keys.add([key("e", 3), key("f", 4), key("g", 4, 1)])  # 7 > 6: down to at most 3
    assert keys.rows == 3 and keys.since == START_US + 3 * MINUTE
    assert key("a", 0) not in keys and key("d", 2, 30) not in keys
    assert key("e", 3) in keys and key("g", 4, 1) in keys
    assert not keys.covers(START_US + 2 * MINUTE) and keys.covers(START_US + 3 * MINUTE)


def test_the_newest_minute_stays_even_when_it_alone_passes_the_limit(spark):
    keys = CountedKeys(counted_table(spark, []), limit=2)
    keys.add([key("old", 0), *(key(f"n{i}", 5, i) for i in range(4))])
    assert key("old", 0) not in keys and all(key(f"n{i}", 5, i) in keys for i in range(4))
    assert keys.since == START_US + 5 * MINUTE
