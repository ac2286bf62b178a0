"""Contract parsing and the speed-layer transforms on literal rows (a local Spark, no Kafka)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from orderlake import contracts, lake, schemas
from orderlake.transforms import parsing
from orderlake.transforms import speed as transforms

KAFKA_TIME = datetime(2015, 11, 11, 12, 0, tzinfo=UTC)
GOOD_ACTION = {
    "event_id": "host-1:actions.log:1",
    "user_id": 7,
    "item_id": 2,
    "cat_id": 3,
    "seller_id": 4,
    "brand_id": 5,
    "action_type": 2,
    "event_time": "2015-11-11T10:00:00.123Z",
}
GOOD_PROFILE = {"user_id": 7, "age_range": 3, "gender": 0, "updated_at": "2015-11-01T00:00:00Z"}


def records(spark, values, topic=contracts.TOPIC_ACTIONS):
    """Kafka-shaped rows: value as bytes (dicts are JSON-encoded), offsets 0..n-1."""
    rows = []
    for offset, value in enumerate(values):
        if isinstance(value, dict | list):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        rows.append((topic, 0, offset, KAFKA_TIME, b"7", value))
    return spark.createDataFrame(rows, schemas.KAFKA_RECORD)


def with_(**changes):
    return {**GOOD_ACTION, **changes}


def without(field):
    return {k: v for k, v in GOOD_ACTION.items() if k != field}


ACTION_CASES = [
    (GOOD_ACTION, None, None),
    (with_(brand_id=None), None, None),
    (without("brand_id"), None, None),
    (with_(user_id=6.0), None, None),  # an integral float, as pandas re-saves Tianchi codes
    ("", "empty_record", None),
    ("   ", "empty_record", None),
    (b'{"event_id": "caf\xe9"}', "not_utf8", None),
    ("{not json", "not_json", None),
    ([1, 2, 3], "not_object", "ARRAY<BIGINT>"),
    ('"just a string"', "not_object", "STRING"),
    ("null", "not_object", "VOID"),
    (without("event_id"), "missing_field", "event_id"),
    (with_(user_id=None), "missing_field", "user_id"),
    (without("event_time"), "missing_field", "event_time"),
    (with_(user_id="7"), "mistyped_field", "user_id"),
    (with_(item_id=1.5), "mistyped_field", "item_id"),
    (with_(action_type="2"), "mistyped_field", "action_type"),
    (with_(event_id=12), "mistyped_field", "event_id"),
    (with_(brand_id="x"), "mistyped_field", "brand_id"),
    (with_(event_time=1447236000), "mistyped_field", "event_time"),
    (with_(seller_id=0), "invalid_id", "seller_id"),
    (with_(cat_id=-3), "invalid_id", "cat_id"),
    (with_(user_id=2**70), "invalid_id", "user_id"),
    (with_(event_id=" "), "invalid_event_id", None),
    (with_(event_id="x" * 300), "invalid_event_id", None),
    (with_(action_type=7), "unknown_action_type", "7"),
    (with_(event_time="yesterday"), "bad_event_time", "event_time=yesterday"),
    (with_(event_time="1970-01-01T00:00:00Z"), "absurd_event_time", None),
    (with_(event_time="2015-11-13T00:00:00Z"), "absurd_event_time", None),  # > kafka time + 1 day
]


@pytest.fixture(scope="module")
def parsed_actions(spark):
    rows = parsing.parse_actions(records(spark, [case[0] for case in ACTION_CASES])).collect()
    return {row["offset"]: row for row in rows}


@pytest.mark.parametrize("index", range(len(ACTION_CASES)))
def test_action_reason(parsed_actions, index):
    value, reason, detail = ACTION_CASES[index]
    row = parsed_actions[index]
    assert row["reason"] == reason, f"{value!r}: {row['detail']}"
    if detail is not None:
        assert row["detail"] == detail
    if reason is None:
        assert row["event_id"] == GOOD_ACTION["event_id"]
        assert row["event_time"] == datetime(2015, 11, 11, 10, 0, 0, 123000)
    else:
        assert row["event_id"] is None and row["user_id"] is None  # nothing half-typed leaks


def test_a_record_without_a_kafka_time_stamp_is_judged_against_the_wall_clock(spark):
    now = datetime.now(UTC)
    times = {
        0: (now + timedelta(hours=12), None),  # within a day of now: plausible
        1: (now + timedelta(days=3), "absurd_event_time"),
        2: (datetime(2015, 11, 11, tzinfo=UTC), None),  # far past, but after 2000
    }
    rows = [
        (
            contracts.TOPIC_ACTIONS,
            0,
            offset,
            None,
            b"7",
            json.dumps(with_(event_time=f"{t:%Y-%m-%dT%H:%M:%S}Z")).encode(),
        )
        for offset, (t, _) in times.items()
    ]
    parsed = parsing.parse_actions(spark.createDataFrame(rows, schemas.KAFKA_RECORD)).collect()
    assert {r["offset"]: r["reason"] for r in parsed} == {o: why for o, (_, why) in times.items()}


def test_a_new_micro_batch_parses_with_the_code_already_compiled(spark):
    """Nothing in the parse may be a per-query literal: Spark inlines literals such as
    current_timestamp()'s into the generated code, so every micro-batch compiled the whole
    parse anew and ran it cold (0.15-0.3 s of a 10,000-record micro-batch)."""
    compilations = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    compilations = compilations.METRIC_COMPILATION_TIME()
    batch = records(spark, [GOOD_ACTION, with_(action_type=9)]).persist()  # not a LocalRelation:
    # Spark would evaluate a projection of literal rows while planning, without generated code
    parsing.parse_actions(batch).collect()
    before = compilations.getCount()
    parsing.parse_actions(batch).collect()  # a later query, as the next micro-batch's is
    assert compilations.getCount() == before
    batch.unpersist()


def test_every_action_reason_code_is_exercised():
    used = {case[1] for case in ACTION_CASES} - {None}
    profile_only = {"unknown_age_range", "unknown_gender"}
    assert used == set(parsing.REASONS) - profile_only


def test_valid_action_keeps_kafka_coordinates_and_raw_text(parsed_actions):
    row = parsed_actions[0]
    assert (row["topic"], row["partition"], row["offset"]) == (contracts.TOPIC_ACTIONS, 0, 0)
    assert row["key"] == "7" and json.loads(row["value_text"]) == GOOD_ACTION
    assert row["brand_id"] == 5 and row["action_type"] == 2


def test_a_parse_outputs_the_columns_it_declares(spark):
    # the speed layer splits its one parsed stream into actions and profiles by these names
    empty = spark.createDataFrame([], schemas.KAFKA_RECORD)
    assert tuple(parsing.parse_actions(empty).columns) == parsing.ACTION_COLUMNS
    assert tuple(parsing.parse_profiles(empty).columns) == parsing.PROFILE_COLUMNS


PROFILE_CASES = [
    (GOOD_PROFILE, None),
    ({**GOOD_PROFILE, "age_range": None, "gender": None}, None),
    ({"user_id": 8, "updated_at": "2015-11-01T00:00:00Z"}, None),  # codes absent = unknown
    ({**GOOD_PROFILE, "age_range": 9}, "unknown_age_range"),
    ({**GOOD_PROFILE, "gender": 3}, "unknown_gender"),
    ({**GOOD_PROFILE, "gender": "male"}, "mistyped_field"),
    ({**GOOD_PROFILE, "user_id": -1}, "invalid_id"),
    ({"age_range": 1, "gender": 1, "updated_at": "2015-11-01T00:00:00Z"}, "missing_field"),
    ({**GOOD_PROFILE, "updated_at": "soon"}, "bad_event_time"),
    ("[]", "not_object"),
]


def test_profile_reasons(spark):
    rows = parsing.parse_profiles(
        records(spark, [c[0] for c in PROFILE_CASES], contracts.TOPIC_PROFILES)
    ).collect()
    got = {r["offset"]: r["reason"] for r in rows}
    assert got == {i: c[1] for i, c in enumerate(PROFILE_CASES)}


def test_quarantine_rows_carry_reason_layer_and_raw_value(spark):
    parsed = parsing.parse_actions(records(spark, [GOOD_ACTION, "{oops", with_(action_type=9)]))
    q = parsing.quarantine_rows(parsed, "speed").orderBy("offset").collect()
    assert [(r["offset"], r["reason"], r["layer"]) for r in q] == [
        (1, "not_json", "speed"),
        (2, "unknown_action_type", "speed"),
    ]
    assert q[0]["value"] == b"{oops" and q[0]["value_text"] == "{oops"
    assert parsing.quarantine_rows(parsed, "speed").schema.fieldNames() == (
        schemas.QUARANTINE.fieldNames()
    )


@pytest.mark.parametrize("code", [None, 0, 1, 2, 3, 4, 5, 6, 7, 8, 42])
def test_spark_bucket_mapping_equals_the_python_one(spark, code):
    df = spark.createDataFrame([(code, code)], "a int, g int")
    row = df.select(
        parsing.age_bracket(F.col("a")).alias("b"), parsing.gender_label(F.col("g")).alias("l")
    ).first()
    assert row["b"] == contracts.age_bracket(code)
    assert row["l"] == contracts.gender_label(code)


def test_latest_profile_wins_by_updated_at_then_offset(spark):
    values = [
        {**GOOD_PROFILE, "age_range": 2, "updated_at": "2015-11-01T00:00:00Z"},
        {**GOOD_PROFILE, "age_range": 4, "updated_at": "2015-11-03T00:00:00Z"},
        {**GOOD_PROFILE, "age_range": 5, "updated_at": "2015-11-02T00:00:00Z"},
        {**GOOD_PROFILE, "user_id": 9, "age_range": 1, "gender": None},
        {**GOOD_PROFILE, "user_id": 9, "age_range": 6, "gender": 1},  # same time, later offset
    ]
    parsed = parsing.parse_profiles(records(spark, values, contracts.TOPIC_PROFILES))
    got = parsing.latest_profiles(parsed).select(
        "user_id", "age_range", "gender", "age_bracket", "gender_label", "offset"
    )
    expected = spark.createDataFrame(
        [(7, 4, 0, "30-34", "female", 1), (9, 6, 1, "40-49", "male", 4)],
        "user_id long, age_range int, gender int, age_bracket string, gender_label string, "
        "offset long",
    )
    assertDataFrameEqual(got, expected)


def purchases_in(spark, values) -> list[transforms.Purchase]:
    """The valid purchases among literal action records, as a micro-batch collects them."""
    parsed = parsing.parse_actions(records(spark, list(values)))
    return transforms.purchases_in(transforms.with_epoch_micros(parsed).toArrow())


def test_only_valid_purchases_are_collected_with_times_in_epoch_microseconds(spark):
    values = [GOOD_ACTION, with_(action_type=0, event_id="click"), with_(user_id="x")]
    got = purchases_in(spark, values)
    event_time = datetime(2015, 11, 11, 10, 0, 0, 123000, tzinfo=UTC)
    assert got == [
        transforms.Purchase(
            GOOD_ACTION["event_id"],
            7,
            int(event_time.timestamp() * 1_000_000),
            0,
            0,
            int(KAFKA_TIME.timestamp() * 1_000_000),
        )
    ]


def test_batch_purchases_keep_one_row_per_event_id_and_time(spark):
    values = [
        GOOD_ACTION,
        with_(action_type=0, event_id="click"),
        GOOD_ACTION,  # a Flume duplicate, later offset
        with_(event_id="other"),
    ]
    # the earliest Kafka record wins whatever order the rows come in
    got = transforms.first_per_key(reversed(purchases_in(spark, values)))
    rows = {p.event_id: p.offset for p in got}
    assert rows == {GOOD_ACTION["event_id"]: 0, "other": 3}


def count_in_micro_batches(batches: list[list[transforms.Purchase]]) -> int:
    """Purchases counted over consecutive micro-batches, as the speed layer's step does."""
    counted: set[tuple[str, int]] = set()
    for batch in batches:
        fresh = transforms.not_counted_before(transforms.first_per_key(batch), counted)
        counted |= {p.key for p in fresh}
    return len(counted)


def test_the_count_does_not_depend_on_where_micro_batches_split(spark):
    """Two records sharing an event_id at different times count as two (the README's rule;
    reconciliation names the second speed_duplicate), in one micro-batch as across two."""
    values = [
        with_(event_id="twice", event_time="2015-11-11T10:00:01Z"),
        with_(event_id="twice", event_time="2015-11-11T10:05:00Z"),
        with_(event_id="twice", event_time="2015-11-11T10:00:01Z"),  # redelivered
        with_(event_id="once"),
    ]
    purchases = purchases_in(spark, values)
    together = count_in_micro_batches([purchases])
    for split in range(1, len(purchases)):
        assert count_in_micro_batches([purchases[:split], purchases[split:]]) == together == 3


def test_a_purchase_is_a_duplicate_only_of_a_counted_one_with_its_event_id_and_time(spark):
    at = "2015-11-11T10:00:01Z"
    batch = purchases_in(
        spark,
        [
            with_(event_id="redelivered", event_time=at),
            with_(event_id="same-id-other-time", event_time=at),
            with_(event_id="new", event_time=at),
        ],
    )
    counted = purchases_in(
        spark,
        [
            with_(event_id="redelivered", event_time=at),
            with_(event_id="same-id-other-time", event_time="2015-11-11T10:00:02Z"),
        ],
    )
    got = transforms.not_counted_before(batch, {p.key for p in counted})
    assert sorted(p.event_id for p in got) == ["new", "same-id-other-time"]


def test_only_first_and_newer_changed_profiles_are_stored(spark):
    def latest(*profiles):
        values = [
            {
                "user_id": u,
                "age_range": a,
                "gender": 1,
                "updated_at": f"2015-11-{day:02d}T00:00:00Z",
            }
            for u, a, day in profiles
        ]
        return parsing.latest_profiles(
            parsing.parse_profiles(records(spark, values, contracts.TOPIC_PROFILES))
        )

    stored = latest((1, 3, 5), (2, 4, 5), (5, 4, 5))
    batch = latest(
        (1, 7, 3),  # older than the stored profile: left out
        (2, 4, 5),  # the stored profile sent again: left out
        (3, 2, 1),  # users seen for the first time
        (4, 2, 1),
        (5, 6, 6),  # newer and changed
    )
    got = transforms.profiles_to_store(batch, stored)
    assert {(r["user_id"], r["age_range"]) for r in got.collect()} == {(3, 2), (4, 2), (5, 6)}
    assert got.columns == batch.columns


def test_the_users_view_shows_each_users_newest_stored_profile(spark):
    """speed.users over speed.user_profiles: newest by updated_at, then Kafka position."""
    rows = [  # user, age_range, updated_at day, partition, offset
        (1, 3, 5, 0, 10),
        (1, 6, 6, 0, 2),  # newer updated_at wins over a later offset
        (2, 4, 5, 0, 7),
        (2, 5, 5, 1, 3),  # same updated_at: the later Kafka position wins
        (3, 2, 1, 0, 1),
    ]
    profiles = spark.createDataFrame(
        [
            (u, a, 1, "x", "female", datetime(2015, 11, day), contracts.TOPIC_PROFILES, p, o)
            for u, a, day, p, o in rows
        ],
        schemas.USERS,
    )
    profiles.createOrReplaceTempView("profile_versions")
    users = spark.sql(transforms.latest_users_sql("profile_versions"))
    assert users.columns == profiles.columns
    newest = {(1, 6), (2, 5), (3, 2)}
    assert {(r["user_id"], r["age_range"]) for r in users.collect()} == newest
    # the dashboard runs the same view SQL in DuckDB
    con = duckdb.connect()
    con.register("profile_versions", profiles.toPandas())
    answer = con.execute(transforms.latest_users_sql("profile_versions")).fetchall()
    assert {(row[0], row[1]) for row in answer} == newest


def buckets_of(spark, profiles) -> dict[int, tuple[str, str]]:
    """{user_id: (age bracket, gender)} of literal profile records, as StoredUsers holds it."""
    users = parsing.latest_profiles(
        parsing.parse_profiles(records(spark, profiles, contracts.TOPIC_PROFILES))
    )
    rows = lake.collected(users.select("user_id", "age_bracket", "gender_label"))
    return {user: (bracket, gender) for user, bracket, gender in rows}


def counted_frame(spark, purchases, buckets, batch_id):
    rows = transforms.assign_buckets(purchases, buckets)
    bucketed = lake.local_frame(spark, rows, transforms.BUCKETED)
    return transforms.counted_rows(bucketed, batch_id)


def test_purchases_without_profile_count_as_unknown(spark):
    purchases = purchases_in(spark, [GOOD_ACTION, with_(event_id="b", user_id=99)])
    buckets = buckets_of(spark, [GOOD_PROFILE])
    rows = transforms.assign_buckets(purchases, buckets)
    got = {row[1]: row[-3:] for row in rows}
    assert got == {7: ("25-29", "female", True), 99: ("unknown", "unknown", False)}
    assert all(len(row) == len(transforms.BUCKETED) for row in rows)


def test_counted_rows_are_rows_of_speed_purchases(spark):
    purchases = purchases_in(spark, [GOOD_ACTION, with_(event_id="b", user_id=99)])
    counted = counted_frame(spark, purchases, buckets_of(spark, [GOOD_PROFILE]), batch_id=5)
    assert counted.schema.fieldNames() == schemas.SPEED_PURCHASES.fieldNames()
    got = {
        r["user_id"]: (
            r["event_time"],
            r["event_date"],
            r["window_start"],
            r["kafka_timestamp"],
            r["age_bracket"],
            r["gender"],
            r["profile_found"],
            r["batch_id"],
        )
        for r in counted.collect()
    }
    # collect() gives the session's UTC times as naive datetimes in the machine's time zone:
    # compare through epoch seconds
    event_time = datetime(2015, 11, 11, 10, 0, 0, 123000, tzinfo=UTC)
    minute = event_time.replace(second=0, microsecond=0)
    for found, (bracket, gender) in ((True, ("25-29", "female")), (False, ("unknown",) * 2)):
        row = got[7 if found else 99]
        assert [t.timestamp() for t in (row[0], row[2], row[3])] == [
            event_time.timestamp(),
            minute.timestamp(),
            KAFKA_TIME.timestamp(),
        ]
        assert row[1] == date(2015, 11, 11)
        assert row[4:] == (bracket, gender, found, 5)


def test_orders_by_window_counts_per_minute(spark):
    values = [
        with_(event_id="a", event_time="2015-11-11T10:00:01Z"),
        with_(event_id="b", event_time="2015-11-11T10:00:59.999Z"),
        with_(event_id="c", event_time="2015-11-11T10:01:00Z"),
    ]
    purchases = purchases_in(spark, values)
    counted = counted_frame(spark, purchases, buckets_of(spark, [GOOD_PROFILE]), batch_id=0)
    counted.createOrReplaceTempView("counted_purchases")
    counts = spark.sql(transforms.orders_by_window_sql("counted_purchases"))
    got = sorted(
        (r["window_start"].minute, r["window_end"].minute, r["event_date"], r["orders"])
        for r in counts.collect()
    )
    assert got == [(0, 1, date(2015, 11, 11), 2), (1, 2, date(2015, 11, 11), 1)]
    assert counts.columns == [
        "window_start",
        "window_end",
        "event_date",
        "age_bracket",
        "gender",
        "orders",
        "updated_at",
    ]
