"""Each data-quality suite (expectations/) on literal rows: one passing example, and failing
examples that name exactly which expectations fail. Runs GX's Spark path on the real session."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pyspark.sql.types import StructField, StructType

from expectations import (
    SUITES,
    bronze_kafka_records,
    gold_orders_by_age_gender_daily,
    quarantine_rate,
    silver_user_actions,
    silver_users,
)
from orderlake import schemas
from orderlake.quality import failed_expectations, suite_names, validate_frame
from orderlake.settings import Settings

T0 = datetime(2015, 11, 11, 10, 0, tzinfo=UTC)
D0 = date(2015, 11, 11)
SETTINGS = Settings(home="/nonexistent-orderlake-home")  # suites read settings, never the disk


def frame(spark, schema: StructType, rows: list[dict]):
    """Rows given as {column: value} (missing columns are null) against a lake schema; nulls are
    allowed everywhere so failing examples can hold what the table's writer would refuse."""
    relaxed = StructType([StructField(f.name, f.dataType, True) for f in schema.fields])
    return spark.createDataFrame(
        [tuple(row.get(name) for name in schema.fieldNames()) for row in rows], relaxed
    )


def failures(spark, module, schema, rows, **build) -> set[str]:
    df = module.select({module.TABLES[0]: frame(spark, schema, rows)})
    return set(failed_expectations(validate_frame(df, module.build(SETTINGS, **build))))


# --- row builders: a valid row, changed by keyword ------------------------------------------------
def record(offset: int, **changes) -> dict:
    row = {"topic": "tmall.user_actions", "partition": 0, "offset": offset, "load_id": 1}
    return {**row, "kafka_timestamp": T0, "value": "{}", "ingested_at": T0, **changes}


def action(event_id: str, **changes) -> dict:
    row = {"event_id": event_id, "user_id": 1, "item_id": 2, "cat_id": 3, "seller_id": 4}
    row |= {"brand_id": 5, "action_type": 2, "event_time": T0, "event_date": D0}
    return {
        **row,
        "topic": "tmall.user_actions",
        "partition": 0,
        "offset": 0,
        "load_id": 1,
        **changes,
    }


def user(user_id: int, **changes) -> dict:
    row = {"user_id": user_id, "age_range": 3, "gender": 0, "age_bracket": "25-29"}
    row |= {"gender_label": "female", "updated_at": T0, "topic": "tmall.user_profiles"}
    return {**row, "partition": 0, "offset": user_id, **changes}


def bucket(day: int, age: str, gender: str, orders: int, share: float) -> dict:
    return {
        "event_date": date(2015, 11, day),
        "age_bracket": age,
        "gender": gender,
        "orders": orders,
        "share": share,
        "final": True,
        "computed_at": T0,
    }


def test_every_suite_module_is_listed():
    assert suite_names() == SUITES
    for name, module in [
        ("bronze_kafka_records", bronze_kafka_records),
        ("silver_user_actions", silver_user_actions),
        ("silver_users", silver_users),
        ("gold_orders_by_age_gender_daily", gold_orders_by_age_gender_daily),
        ("quarantine_rate", quarantine_rate),
    ]:
        assert name == module.NAME and module.build(SETTINGS).name == name
        assert all(table in schemas.TABLES for table in module.TABLES)


# --- bronze ---------------------------------------------------------------------------------------
def test_bronze_passes_one_row_per_kafka_record(spark):
    rows = [record(0), record(1), record(0, partition=1), record(0, topic="tmall.user_profiles")]
    assert failures(spark, bronze_kafka_records, schemas.BRONZE_RECORDS, rows) == set()


def test_bronze_fails_on_a_record_loaded_twice_and_on_missing_coordinates(spark):
    rows = [record(0), record(1), record(1, load_id=2), record(None)]
    assert failures(spark, bronze_kafka_records, schemas.BRONZE_RECORDS, rows) == {
        "expect_compound_columns_to_be_unique(topic,partition,offset)",
        "expect_column_values_to_not_be_null(offset)",
    }


# --- silver.user_actions --------------------------------------------------------------------------
def test_silver_actions_pass_with_every_code_and_a_null_brand(spark):
    rows = [action(f"e{code}", action_type=code) for code in range(4)]
    rows.append(action("e9", brand_id=None, event_time=datetime(2015, 1, 1, tzinfo=UTC)))
    assert failures(spark, silver_user_actions, schemas.SILVER_ACTIONS, rows) == set()


def test_silver_actions_fail_on_duplicate_event_id_and_unknown_action_type(spark):
    rows = [action("e1"), action("e1", offset=1), action("e2", action_type=7)]
    assert failures(spark, silver_user_actions, schemas.SILVER_ACTIONS, rows) == {
        "expect_column_values_to_be_unique(event_id)",
        "expect_column_values_to_be_in_set(action_type)",
    }


def test_silver_actions_fail_on_bad_times_ids_and_missing_event_id(spark):
    future = datetime.now(UTC) + timedelta(days=2)
    rows = [
        action("e1", event_time=datetime(2014, 12, 31, 23, 59, tzinfo=UTC)),
        action("e2", event_time=future),
        action("e3", user_id=0, brand_id=-1),
        action(None),
    ]
    assert failures(spark, silver_user_actions, schemas.SILVER_ACTIONS, rows) == {
        "expect_column_values_to_not_be_null(event_id)",
        "expect_column_values_to_be_between(event_time)",
        "expect_column_values_to_be_between(user_id)",
        "expect_column_values_to_be_between(brand_id)",
    }


def test_silver_actions_latest_time_is_fixed_when_the_suite_is_built(spark):
    rows = [action("e1")]  # 2015-11-11: in the future for a suite built on 2015-06-01
    built_then = {"now": datetime(2015, 6, 1, tzinfo=UTC)}
    assert failures(spark, silver_user_actions, schemas.SILVER_ACTIONS, rows, **built_then) == {
        "expect_column_values_to_be_between(event_time)"
    }


# --- silver.users ---------------------------------------------------------------------------------
def test_silver_users_pass_with_unknown_and_null_codes(spark):
    rows = [
        user(1),
        user(2, age_range=None, gender=None, age_bracket="unknown", gender_label="unknown"),
        user(3, age_range=8, gender=2, age_bracket=">=50", gender_label="unknown"),
        user(4, age_range=0, gender=1, age_bracket="unknown", gender_label="male"),
    ]
    assert failures(spark, silver_users, schemas.USERS, rows) == set()


def test_silver_users_fail_on_duplicates_bad_codes_and_labels(spark):
    rows = [user(1), user(1, offset=9), user(2, age_range=9, gender=3)]
    rows.append(user(3, age_bracket="60+", gender_label="f"))
    assert failures(spark, silver_users, schemas.USERS, rows) == {
        "expect_column_values_to_be_unique(user_id)",
        "expect_column_values_to_be_between(age_range)",
        "expect_column_values_to_be_in_set(gender)",
        "expect_column_values_to_be_in_set(age_bracket)",
        "expect_column_values_to_be_in_set(gender_label)",
    }


# --- gold -----------------------------------------------------------------------------------------
GOLD = (gold_orders_by_age_gender_daily, schemas.GOLD_DAILY)


def test_gold_passes_when_each_day_shares_sum_to_one(spark):
    rows = [bucket(10, "18-24", "female", 1, 1 / 3), bucket(10, "18-24", "male", 2, 2 / 3)]
    rows.append(bucket(11, "unknown", "unknown", 5, 1.0))
    assert failures(spark, *GOLD, rows) == set()


def test_gold_fails_when_a_day_shares_do_not_sum_to_one(spark):
    rows = [bucket(10, "18-24", "female", 5, 0.5), bucket(10, "18-24", "male", 4, 0.4)]
    assert failures(spark, *GOLD, rows) == {
        "unexpected_rows_expectation(the shares of each event_date sum to 1)"
    }


def test_gold_fails_on_negative_orders_shares_out_of_range_and_duplicate_buckets(spark):
    rows = [bucket(10, "<18", "male", 1, 0.5), bucket(10, "<18", "male", 1, 0.5)]
    rows += [bucket(11, "<18", "male", -1, 1.0)]
    rows += [bucket(12, "<18", "male", 3, 1.5), bucket(12, "<18", "female", 1, -0.5)]
    assert failures(spark, *GOLD, rows) == {
        "expect_compound_columns_to_be_unique(event_date,age_bracket,gender)",
        "expect_column_values_to_be_between(orders)",
        "expect_column_values_to_be_between(share)",
    }


# --- quarantine rate ------------------------------------------------------------------------------
def quarantine_frames(spark, bronze: int, silver: int, speed: int = 0) -> dict:
    def quarantined(offset: int, layer: str) -> dict:
        row = {"topic": "tmall.user_actions", "partition": 0, "offset": offset}
        return row | {
            "value_text": "x",
            "reason": "invalid_json",
            "layer": layer,
            "quarantined_at": T0,
        }

    rows = [quarantined(i, "silver") for i in range(silver)]
    rows += [quarantined(i, "speed") for i in range(speed)]
    return {
        "bronze.kafka_records": frame(
            spark, schemas.BRONZE_RECORDS, [record(i) for i in range(bronze)]
        ),
        "quarantine.records": frame(spark, schemas.QUARANTINE, rows),
    }


def rate_failures(spark, frames, max_rate: float) -> set[str]:
    settings = Settings(home="/nonexistent-orderlake-home", dq_max_quarantine_rate=max_rate)
    df = quarantine_rate.select(frames)
    return set(failed_expectations(validate_frame(df, quarantine_rate.build(settings))))


def test_quarantine_rate_passes_at_the_threshold_counting_silver_only(spark):
    frames = quarantine_frames(spark, bronze=100, silver=1, speed=5)
    assert quarantine_rate.select(frames).first().asDict() == {
        "bronze_records": 100,
        "quarantined": 1,
        "rate": 0.01,
    }
    assert rate_failures(spark, frames, max_rate=0.01) == set()
    assert rate_failures(spark, quarantine_frames(spark, bronze=0, silver=0), 0.01) == set()


def test_quarantine_rate_fails_above_the_threshold(spark):
    frames = quarantine_frames(spark, bronze=100, silver=2)
    assert rate_failures(spark, frames, max_rate=0.01) == {
        "expect_column_values_to_be_between(rate)"
    }
