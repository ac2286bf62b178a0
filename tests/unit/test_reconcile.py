"""Reconciliation arithmetic on literal numbers: offsets vs bronze, and speed vs gold buckets
with their explained causes."""

from __future__ import annotations

from datetime import date

from orderlake.jobs.findings import (
    Bucket,
    bucket_findings,
    offset_ranges,
    partition_finding,
    speed_vs_batch_causes,
)

D = date(2015, 11, 10)


def test_offset_ranges_are_compact():
    assert offset_ranges([9, 3, 4, 5]) == ["3..5", "9"]
    assert offset_ranges([]) == []


def test_a_complete_partition_is_ok():
    f = partition_finding("t", 0, (0, 10), (10, 10, 0, 9), [])
    assert (f.expected, f.actual, f.difference, f.status) == (10, 10, 0, "ok")


def test_records_after_the_last_load_are_explained_as_pending():
    f = partition_finding("t", 1, (0, 15), (10, 10, 0, 9), [])
    assert (f.difference, f.explained, f.status) == (5, 5, "explained")
    assert f.detail["pending_next_load"] == 5


def test_a_missing_offset_fails_and_is_named():
    f = partition_finding("t", 2, (0, 10), (9, 9, 0, 9), [(4, 4)])
    assert f.status == "failed"
    assert f.detail["unexplained"] == {"missing_offsets": ["4"]}
    assert "t/2" in f.summary() and "missing_offsets [4]" in f.summary()


def test_a_gap_before_bronze_first_offset_fails():
    f = partition_finding("t", 0, (0, 10), (7, 7, 3, 9), [])
    assert f.status == "failed" and f.detail["unexplained"]["missing_offsets"] == ["0..2"]


def test_duplicated_offsets_fail():
    f = partition_finding("t", 0, (0, 10), (11, 10, 0, 9), [])
    assert f.status == "failed" and f.detail["unexplained"] == {"duplicate_rows": 1}


def test_retention_past_bronze_is_fine():
    # Kafka deleted offsets 0..4 after bronze loaded them: bronze holds more than Kafka now
    f = partition_finding("t", 0, (5, 10), (10, 10, 0, 9), [])
    assert f.status == "ok"


def test_partition_never_loaded_is_pending():
    f = partition_finding("t", 0, (0, 3), None, [])
    assert (f.status, f.explained) == ("explained", 3)


F_25 = Bucket(D, "25-29", "female")
UNK = Bucket(D, "unknown", "unknown")


def test_equal_buckets_are_ok_and_so_is_the_day():
    findings = bucket_findings({F_25: 3}, {F_25: 3}, {})
    assert [(f.scope, f.status) for f in findings] == [
        ("2015-11-10/25-29/female", "ok"),
        ("2015-11-10/all/all", "ok"),
    ]


def test_a_late_profile_moves_a_purchase_between_buckets_explained():
    # speed counted one purchase under unknown before the profile arrived; batch knows better
    causes = {F_25: {"late_profile_in": 1}, UNK: {"late_profile_out": 1}}
    findings = {f.scope: f for f in bucket_findings({F_25: 3}, {F_25: 2, UNK: 1}, causes)}
    assert findings["2015-11-10/25-29/female"].status == "explained"
    assert findings["2015-11-10/unknown/unknown"].status == "explained"
    assert findings["2015-11-10/unknown/unknown"].difference == -1
    assert findings["2015-11-10/all/all"].status == "ok"


def test_a_purchase_the_speed_layer_has_not_read_yet_is_explained():
    findings = bucket_findings({F_25: 3}, {F_25: 2}, {F_25: {"in_flight": 1}})
    assert {f.status for f in findings} == {"explained"}


def test_a_purchase_missing_from_speed_fails_and_is_named():
    causes = {F_25: {"missing_in_speed": 1, "missing_event_ids": ["e9"]}}
    findings = bucket_findings({F_25: 3}, {F_25: 2}, causes)
    assert {f.status for f in findings} == {"failed"}
    assert "e9" in findings[0].summary()


def test_an_unexplained_count_difference_fails():
    findings = bucket_findings({F_25: 3}, {F_25: 2}, {})
    assert findings[0].status == "failed" and "difference 1" in findings[0].summary()


def difference(kind, n, batch=None, speed=None, ids=()):
    """A row of transforms.reconcile.differences_by_bucket."""
    b, s = batch or Bucket(None, None, None), speed or Bucket(None, None, None)
    return {
        "kind": kind,
        **dict(
            zip(
                ("b_date", "b_age", "b_gender"),
                (b.event_date, b.age_bracket, b.gender),
                strict=True,
            )
        ),
        **dict(
            zip(
                ("s_date", "s_age", "s_gender"),
                (s.event_date, s.age_bracket, s.gender),
                strict=True,
            )
        ),
        "n": n,
        "event_ids": list(ids),
    }


def test_differences_become_causes_in_the_bucket_of_the_layer_that_has_them():
    rows = [
        difference("late_profile", 2, batch=F_25, speed=UNK),
        difference("in_flight", 1, batch=F_25),
        difference("speed_duplicate", 1, speed=UNK),
        difference("missing", 1, batch=F_25, ids=["e9"]),
        difference("extra", 1, speed=UNK, ids=["x1"]),
    ]
    assert speed_vs_batch_causes(rows) == {
        F_25: {
            "late_profile_in": 2,
            "in_flight": 1,
            "missing_in_speed": 1,
            "missing_event_ids": ["e9"],
        },
        UNK: {
            "late_profile_out": 2,
            "speed_duplicate": 1,
            "extra_in_speed": 1,
            "extra_event_ids": ["x1"],
        },
    }
