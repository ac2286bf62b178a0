"""Batch-layer transforms on literal rows: bronze round trip, silver de-duplication and
quarantine, gold shares and the serving view; bronze load planning and replay parameters."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pyspark.sql import functions as F

from orderlake import contracts, schemas
from orderlake.errors import OrderlakeError, UsageError
from orderlake.jobs.replay import ReplayRequest, parse_layers, validate
from orderlake.kafka_log import plan_load as plan_bronze_load
from orderlake.transforms import bronze, gold, parsing, silver

T0 = datetime(2015, 11, 11, 12, 0, tzinfo=UTC)


def kafka_rows(spark, topic, values):
    rows = []
    for offset, value in enumerate(values):
        if isinstance(value, dict):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        rows.append((topic, 0, offset, T0, b"7", value))
    return spark.createDataFrame(rows, schemas.KAFKA_RECORD)


def action(event_id, user_id=7, action_type=2, day=11):
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": 1,
        "cat_id": 1,
        "seller_id": 1,
        "brand_id": None,
        "action_type": action_type,
        "event_time": f"2015-11-{day:02d}T10:00:00Z",
    }


def test_bronze_keeps_text_and_raw_bytes_losslessly(spark):
    values = ['{"a": 1}', b"caf\xe9"]
    rows = bronze.to_bronze(kafka_rows(spark, contracts.TOPIC_ACTIONS, values), load_id=42)
    got = rows.orderBy("offset").collect()
    assert got[0]["value"] == '{"a": 1}' and got[0]["value_bytes"] is None
    assert got[1]["value"] is None and got[1]["value_bytes"] == b"caf\xe9"
    assert {r["load_id"] for r in got} == {42} and got[0]["kafka_date"] == date(2015, 11, 11)
    assert rows.schema.fieldNames() == schemas.BRONZE_RECORDS.fieldNames()
    back = bronze.as_kafka_records(rows).orderBy("offset").collect()
    assert [r["value"] for r in back] == [b'{"a": 1}', b"caf\xe9"]


def test_silver_keeps_one_row_per_event_id_earliest_wins(spark):
    values = [action("e1"), action("e2", action_type=0), action("e1"), action("e3", day=10)]
    parsed = parsing.parse_actions(
        bronze.as_kafka_records(
            bronze.to_bronze(kafka_rows(spark, contracts.TOPIC_ACTIONS, values), load_id=1)
        ),
        carry=("load_id",),
    )
    unique = silver.unique_actions(parsed)
    rows = {r["event_id"]: r for r in unique.collect()}
    assert set(rows) == {"e1", "e2", "e3"}
    assert rows["e1"]["offset"] == 0 and rows["e3"]["event_date"] == date(2015, 11, 10)
    assert unique.schema.fieldNames() == schemas.SILVER_ACTIONS.fieldNames()


def test_the_same_record_loaded_twice_keeps_the_earliest_loads_row(spark):
    """A replay unions silver's rows with the range loaded again: every order of the union
    gives the same silver."""
    records = kafka_rows(spark, contracts.TOPIC_ACTIONS, [action("e1"), action("e2")])
    loads = [
        parsing.parse_actions(
            bronze.as_kafka_records(bronze.to_bronze(records, load_id=load)), carry=("load_id",)
        )
        for load in (5, 9)
    ]
    for union in (loads[0].unionByName(loads[1]), loads[1].unionByName(loads[0])):
        rows = silver.unique_actions(union.repartition(3)).collect()
        assert {(r["event_id"], r["load_id"]) for r in rows} == {("e1", 5), ("e2", 5)}


def test_edge_rejects_become_quarantine_rows_with_edge_reasons(spark):
    envelopes = [
        {
            "reason": "oversize",
            "bytes": 2000000,
            "topic": contracts.TOPIC_ACTIONS,
            "file": "/spool/host-1/actions.log",
            "sha256": "ab" * 32,
            "head_base64": "e30=",
            "truncated": True,
        },
        {
            "reason": "missing_key",
            "bytes": 12,
            "topic": contracts.TOPIC_PROFILES,
            "head_base64": "e30=",
            "truncated": False,
        },
    ]
    rows = silver.edge_rejects(kafka_rows(spark, contracts.TOPIC_REJECTS, envelopes)).collect()
    assert [r["reason"] for r in rows] == ["edge_oversize", "edge_missing_key"]
    assert json.loads(rows[0]["detail"]) == {
        "topic": contracts.TOPIC_ACTIONS,
        "file": "/spool/host-1/actions.log",
        "bytes": 2000000,
        "sha256": "ab" * 32,
    }
    assert {r["layer"] for r in rows} == {"silver"}


@pytest.fixture
def silver_tables(spark):
    actions = spark.createDataFrame(
        [
            ("a", 1, 2, date(2015, 11, 10)),
            ("b", 1, 2, date(2015, 11, 11)),
            ("c", 2, 2, date(2015, 11, 11)),
            ("d", 3, 2, date(2015, 11, 11)),  # user 3 has no profile
            ("e", 2, 0, date(2015, 11, 11)),  # a click: not an order
        ],
        "event_id string, user_id long, action_type int, event_date date",
    )
    users = spark.createDataFrame(
        [(1, "25-29", "female"), (2, ">=50", "male")],
        "user_id long, age_bracket string, gender_label string",
    )
    return actions, users


def test_gold_counts_orders_with_shares_that_sum_to_one(spark, silver_tables):
    actions, users = silver_tables
    rows = gold.daily_orders(actions, users, closed_through=date(2015, 11, 10)).collect()
    got = {
        (r["event_date"], r["age_bracket"], r["gender"]): (r["orders"], r["final"]) for r in rows
    }
    assert got == {
        (date(2015, 11, 10), "25-29", "female"): (1, True),
        (date(2015, 11, 11), "25-29", "female"): (1, False),
        (date(2015, 11, 11), ">=50", "male"): (1, False),
        (date(2015, 11, 11), "unknown", "unknown"): (1, False),
    }
    shares: dict = {}
    for r in rows:
        shares[r["event_date"]] = shares.get(r["event_date"], 0) + r["share"]
    assert shares == pytest.approx({date(2015, 11, 10): 1.0, date(2015, 11, 11): 1.0})
    assert gold.daily_orders(actions, users, None).schema.fieldNames() == (
        schemas.GOLD_DAILY.fieldNames()
    )


def test_serving_view_takes_final_days_from_gold_and_the_rest_from_speed(spark, silver_tables):
    actions, users = silver_tables
    gold.daily_orders(actions, users, date(2015, 11, 10)).createOrReplaceTempView("g")
    spark.createDataFrame(
        [
            (date(2015, 11, 10), "25-29", "female", 9, T0),  # a final day: gold wins
            (date(2015, 11, 11), "25-29", "female", 3, T0),
            (date(2015, 11, 11), "unknown", "unknown", 1, T0),
        ],
        "event_date date, age_bracket string, gender string, orders long, updated_at timestamp",
    ).createOrReplaceTempView("s")
    rows = spark.sql(gold.serving_view_sql("g", "s")).collect()
    got = {
        (r["event_date"], r["age_bracket"], r["status"]): (r["orders"], r["share"]) for r in rows
    }
    assert got == {
        (date(2015, 11, 10), "25-29", "final"): (1, 1.0),
        (date(2015, 11, 11), "25-29", "provisional"): (3, 0.75),
        (date(2015, 11, 11), "unknown", "provisional"): (1, 0.25),
    }


def test_bronze_plan_resumes_and_starts_new_partitions_at_the_earliest_offset():
    marks = {("t", 0): (0, 10), ("t", 1): (5, 8), ("t", 2): (0, 4)}
    plan = plan_bronze_load({("t", 0): 10, ("t", 2): 2}, marks)
    assert plan == {("t", 1): (5, 8), ("t", 2): (2, 4)}
    assert plan_bronze_load({("t", 0): 10}, {("t", 0): (0, 10)}) == {}


def test_bronze_plan_refuses_a_gap_left_by_retention():
    with pytest.raises(OrderlakeError, match=r"no longer holds offsets 3\.\.5 of t partition 0"):
        plan_bronze_load({("t", 0): 3}, {("t", 0): (6, 9)})


@pytest.mark.parametrize(
    ("topic", "start", "end", "layers", "message"),
    [
        ("tmall.nope", "0", "10", "bronze", "--topic must be one of"),
        (contracts.TOPIC_ACTIONS, "yesterday", "10", "bronze", "--from must be offsets"),
        (contracts.TOPIC_ACTIONS, "0", "0:1,x", "bronze", "--to must be offsets"),
        (contracts.TOPIC_ACTIONS, "0", "10", "bronze,platinum", "--layers must be"),
    ],
)
def test_replay_parameters_are_validated_before_any_work(topic, start, end, layers, message):
    with pytest.raises(UsageError, match=message):
        validate(ReplayRequest(topic, start, end, tuple(layers.split(","))))


def test_replay_accepts_offsets_times_and_layer_subsets():
    validate(ReplayRequest(contracts.TOPIC_ACTIONS, "0:10,1:5", "2026-11-25T10:00:00Z", ("gold",)))
    assert parse_layers("gold,bronze") == ("bronze", "gold")


def test_parsed_rejects_topic_is_not_an_action(spark):
    # the rejects topic never feeds silver.user_actions: its envelopes are not actions
    parsed = parsing.parse_actions(kafka_rows(spark, contracts.TOPIC_REJECTS, [{"reason": "x"}]))
    assert parsed.where(F.col("reason").isNull()).count() == 0


def gold_rows(spark, rows):
    """(date, bracket, gender, orders, final, restated_at, reason) -> gold daily rows."""
    return spark.createDataFrame(
        [(d, b, g, n, 1.0, f, T0, at, why) for d, b, g, n, f, at, why in rows],
        schemas.GOLD_DAILY,
    )


def test_a_final_day_that_changes_is_restated_with_its_reason(spark):
    d1, d2, d3 = date(2015, 11, 9), date(2015, 11, 10), date(2015, 11, 11)
    earlier = datetime(2015, 11, 20, tzinfo=UTC)
    previous = gold_rows(
        spark,
        [
            (d1, "18-24", "male", 5, True, None, None),  # final; a late purchase arrives
            (d2, "18-24", "male", 5, True, earlier, "restated before"),  # final, unchanged now
            (d3, "18-24", "male", 5, False, None, None),  # not final: changes are expected
        ],
    )
    new = gold_rows(
        spark,
        [
            (d1, "18-24", "male", 5, True, None, None),
            (d1, "25-29", "female", 1, True, None, None),
            (d2, "18-24", "male", 5, True, None, None),
            (d3, "18-24", "male", 7, False, None, None),
        ],
    )
    at = datetime(2015, 12, 1, tzinfo=UTC)
    rows = gold.with_restatements(new, previous, F.lit(at)).collect()
    got = {
        (r["event_date"], r["age_bracket"]): (r["restated_at"], r["restated_reason"]) for r in rows
    }
    reason = "recomputed after the day was final: 5 -> 6 orders (data that arrived late)"
    assert got[(d1, "18-24")] == got[(d1, "25-29")] == (at.replace(tzinfo=None), reason)
    assert got[(d2, "18-24")] == (earlier.replace(tzinfo=None), "restated before")
    assert got[(d3, "18-24")] == (None, None)
    assert len(rows) == 4
