"""Speed vs batch, purchase by purchase, on literal rows: which purchases differ between the
layers and why (orderlake.transforms.reconcile)."""

from __future__ import annotations

from datetime import date

from orderlake import contracts
from orderlake.transforms.reconcile import differences_by_bucket, speed_vs_batch

DAY = date(2015, 11, 11)
UNKNOWN = contracts.UNKNOWN
CLICK, BUY = 0, contracts.ACTION_PURCHASE
ACTIONS = (
    "event_id string, user_id long, action_type int, event_date date, partition int, offset long"
)
USERS = "user_id long, age_bracket string, gender_label string"
SPEED = (
    "event_id string, event_date date, age_bracket string, gender string, profile_found boolean,"
    " batch_id long, partition int, offset long"
)


def frames(spark, actions, users, speed):
    return (
        spark.createDataFrame(actions, ACTIONS),
        spark.createDataFrame(users, USERS),
        spark.createDataFrame(speed, SPEED),
    )


def kinds(spark, actions, users, speed, processed):
    rows = speed_vs_batch(*frames(spark, actions, users, speed), processed).collect()
    return sorted(tuple(r) for r in rows)


def test_purchases_in_the_same_bucket_in_both_layers_are_no_difference(spark):
    actions = [
        ("same", 1, BUY, DAY, 0, 0),
        ("no-profile", 9, BUY, DAY, 0, 1),  # unknown in both layers
        ("click", 1, CLICK, DAY, 0, 2),  # not a purchase: the speed layer never counts it
    ]
    users = [(1, "25-29", "female")]
    speed = [
        ("same", DAY, "25-29", "female", True, 0, 0, 0),
        ("no-profile", DAY, UNKNOWN, UNKNOWN, False, 0, 0, 1),
    ]
    assert kinds(spark, actions, users, speed, {0: 3}) == []


def test_each_kind_of_difference_is_named_with_both_buckets(spark):
    actions = [
        ("late", 1, BUY, DAY, 0, 0),
        ("changed", 2, BUY, DAY, 0, 1),
        ("missing", 1, BUY, DAY, 0, 2),
        ("in-flight", 1, BUY, DAY, 0, 5),
        ("other-partition", 1, BUY, DAY, 1, 0),  # the speed layer never read partition 1
        ("twice", 1, BUY, DAY, 0, 3),
    ]
    users = [(1, "25-29", "female"), (2, "30-34", "male")]
    speed = [
        ("late", DAY, UNKNOWN, UNKNOWN, False, 0, 0, 0),
        ("changed", DAY, "25-29", "female", True, 0, 0, 1),
        ("extra", DAY, "40-49", "male", True, 0, 0, 4),
        ("twice", DAY, "25-29", "female", True, 1, 0, 3),
        ("twice", DAY, "18-24", "female", True, 2, 0, 3),  # re-counted later: the first stands
    ]
    got = kinds(spark, actions, users, speed, {0: 5})
    f, m = ("25-29", "female"), ("30-34", "male")
    assert got == sorted(
        [
            ("late_profile", "late", DAY, *f, DAY, UNKNOWN, UNKNOWN),
            ("profile_changed", "changed", DAY, *m, DAY, *f),
            ("missing", "missing", DAY, *f, None, None, None),
            ("in_flight", "in-flight", DAY, *f, None, None, None),
            ("missing", "other-partition", DAY, *f, None, None, None),
            ("extra", "extra", None, None, None, DAY, "40-49", "male"),
            ("speed_duplicate", "twice", None, None, None, DAY, "18-24", "female"),
        ]
    )


def test_without_processed_offsets_nothing_is_in_flight(spark):
    actions = [("unread", 1, BUY, DAY, 0, 100)]
    got = kinds(spark, actions, [(1, "25-29", "female")], [], {})
    assert [row[0] for row in got] == ["missing"]


def test_differences_are_counted_per_kind_and_buckets_with_a_sample_of_event_ids(spark):
    actions = [(f"m{i}", 1, BUY, DAY, 0, i) for i in range(5)]
    speed = [("x", DAY, UNKNOWN, UNKNOWN, False, 0, 0, 9)]
    differences = speed_vs_batch(*frames(spark, actions, [], speed), {})
    rows = {r["kind"]: r for r in differences_by_bucket(differences, sample=3).collect()}
    assert set(rows) == {"missing", "extra"}
    assert rows["missing"]["n"] == 5 and (
        rows["missing"]["b_age"],
        rows["missing"]["b_gender"],
    ) == (
        UNKNOWN,
        UNKNOWN,
    )
    assert len(rows["missing"]["event_ids"]) == 3
    assert set(rows["missing"]["event_ids"]) <= {f"m{i}" for i in range(5)}
    assert rows["extra"]["n"] == 1 and rows["extra"]["event_ids"] == ["x"]
