"""Kafka records -> contract rows, each valid or carrying the reason it is not.

Shared by the speed layer and the silver layer so both quarantine the same records for the same
reasons. Values are parsed once into Spark's VARIANT, so a field's JSON type is known exactly
(an id sent as the string "12" or as 1.5 is mistyped, not silently cast).

Input columns: topic, partition, offset, timestamp, key (binary), value (binary), as Spark's
Kafka source delivers them. Output: the Kafka coordinates, ``key`` and ``value_text`` as strings,
the typed contract columns (null when the record is invalid), ``reason`` (null when valid) and
``detail``.

Reason codes (DESIGN.md section 3 contract):
    empty_record        the value is empty or blank
    not_utf8            the value is not valid UTF-8
    not_json            the value is not JSON
    not_object          JSON, but not an object (array, string, number, null)
    missing_field       a required field is absent or null (detail: the field)
    mistyped_field      a field has the wrong JSON type, e.g. an id as a string (detail: field)
    invalid_id          an id is not a positive 64-bit integer (detail: field)
    invalid_event_id    event_id is empty or longer than 256 characters
    unknown_action_type action_type is not 0, 1, 2 or 3
    unknown_age_range   age_range is not 0..8 (or null)
    unknown_gender      gender is not 0, 1, 2 (or null)
    bad_event_time      event_time / updated_at cannot be parsed as a time stamp
    absurd_event_time   the time is before 2000 or more than a day in the future
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from orderlake import contracts

REASONS = (
    "empty_record",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "mistyped_field",
    "invalid_id",
    "invalid_event_id",
    "unknown_action_type",
    "unknown_age_range",
    "unknown_gender",
    "bad_event_time",
    "absurd_event_time",
)

ACTION_IDS = ("user_id", "item_id", "cat_id", "seller_id")
EARLIEST_PLAUSIBLE = "2000-01-01 00:00:00"
MAX_EVENT_ID_LENGTH = 256


def _field(name: str) -> Column:
    return F.expr(f"variant_get(_v, '$.{name}')")


def _type(name: str) -> Column:
    return F.expr(f"schema_of_variant(variant_get(_v, '$.{name}'))")


def _absent(name: str) -> Column:
    return _field(name).isNull() | (_type(name) == "VOID")


def _is_integral(name: str) -> Column:
    # JSON integers come back as BIGINT; 6.0 as DECIMAL(1,0): integral, accepted
    t = _type(name)
    return (t == "BIGINT") | t.rlike(r"^DECIMAL\(\d+,0\)$")


def _long(name: str) -> Column:
    return F.expr(f"try_variant_get(_v, '$.{name}', 'bigint')")


def _first_failure(checks: list[tuple[Column, str, str | Column | None]]) -> Column:
    """The (reason, detail) struct of the first failing check, or null when all pass."""
    failures = [
        F.when(
            failed,
            F.struct(
                F.lit(reason).alias("reason"),
                (detail if isinstance(detail, Column) else F.lit(detail))
                .cast("string")
                .alias("detail"),
            ),
        )
        for failed, reason, detail in checks
    ]
    return F.coalesce(*failures)


def _envelope(records: DataFrame) -> DataFrame:
    """Decode key and value, parse the value once into a VARIANT column _v."""
    text = F.col("value").cast("string")
    return records.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("key"),
        "value",
        F.when(F.expr("is_valid_utf8(value)"), text).alias("value_text"),
        F.expr("try_parse_json(CAST(value AS STRING))").alias("_v"),
    )


def _envelope_checks() -> list[tuple[Column, str, str | Column | None]]:
    value = F.col("value")
    return [
        (value.isNull() | (F.length(F.trim(value.cast("string"))) == 0), "empty_record", None),
        (~F.expr("is_valid_utf8(value)"), "not_utf8", None),
        (F.col("_v").isNull(), "not_json", None),
        (
            ~F.expr("schema_of_variant(_v)").startswith("OBJECT"),
            "not_object",
            F.expr("schema_of_variant(_v)"),
        ),
    ]


def _time_checks(name: str, parsed: Column, now: Column) -> list:
    return [
        (
            parsed.isNull(),
            "bad_event_time",
            F.concat(F.lit(f"{name}="), F.expr(f"try_variant_get(_v, '$.{name}', 'string')")),
        ),
        (
            (parsed < F.lit(EARLIEST_PLAUSIBLE).cast("timestamp"))
            | (parsed > now + F.expr("INTERVAL 1 DAY")),
            "absurd_event_time",
            F.concat(F.lit(f"{name}="), parsed.cast("string")),
        ),
    ]


def _reference_now() -> Column:
    # "the future" is judged against the record's Kafka time stamp, not the wall clock, so the
    # speed and batch layers (and any replay) make the same decision for the same record
    return F.coalesce(F.col("kafka_timestamp"), F.current_timestamp())


def parse_actions(records: DataFrame, now: Column | None = None) -> DataFrame:
    """Kafka records of tmall.user_actions -> typed user actions with ``reason``/``detail``."""
    now = _reference_now() if now is None else now
    env = _envelope(records)
    event_time = F.expr("try_to_timestamp(try_variant_get(_v, '$.event_time', 'string'))")
    required = ["event_id", *ACTION_IDS, "action_type", "event_time"]
    checks = _envelope_checks()
    checks += [(_absent(f), "missing_field", f) for f in required]
    checks += [(_type("event_id") != "STRING", "mistyped_field", "event_id")]
    checks += [(~_is_integral(f), "mistyped_field", f) for f in [*ACTION_IDS, "action_type"]]
    checks += [(~_absent("brand_id") & ~_is_integral("brand_id"), "mistyped_field", "brand_id")]
    checks += [(_type("event_time") != "STRING", "mistyped_field", "event_time")]
    checks += [(_long(f).isNull() | (_long(f) <= 0), "invalid_id", f) for f in [*ACTION_IDS]]
    checks += [
        (
            ~_absent("brand_id") & (_long("brand_id").isNull() | (_long("brand_id") <= 0)),
            "invalid_id",
            "brand_id",
        ),
    ]
    event_id = F.expr("try_variant_get(_v, '$.event_id', 'string')")
    checks += [
        (
            (F.length(F.trim(event_id)) == 0) | (F.length(event_id) > MAX_EVENT_ID_LENGTH),
            "invalid_event_id",
            None,
        ),
        (
            ~_long("action_type").isin(*contracts.ACTION_NAMES),
            "unknown_action_type",
            _long("action_type").cast("string"),
        ),
    ]
    checks += _time_checks("event_time", event_time, now)
    failure = _first_failure(checks)
    parsed = env.select(
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "value",
        "value_text",
        event_id.alias("event_id"),
        *(_long(f).alias(f) for f in ACTION_IDS),
        _long("brand_id").alias("brand_id"),
        _long("action_type").cast("int").alias("action_type"),
        event_time.alias("event_time"),
        failure.alias("_failure"),
    )
    return _finish(
        parsed,
        [
            "event_id",
            *ACTION_IDS,
            "brand_id",
            "action_type",
            "event_time",
        ],
    )


def parse_profiles(records: DataFrame, now: Column | None = None) -> DataFrame:
    """Kafka records of tmall.user_profiles -> typed profiles with ``reason``/``detail``."""
    now = _reference_now() if now is None else now
    env = _envelope(records)
    updated_at = F.expr("try_to_timestamp(try_variant_get(_v, '$.updated_at', 'string'))")
    checks = _envelope_checks()
    checks += [(_absent(f), "missing_field", f) for f in ("user_id", "updated_at")]
    checks += [(~_is_integral("user_id"), "mistyped_field", "user_id")]
    checks += [
        (~_absent(f) & ~_is_integral(f), "mistyped_field", f) for f in ("age_range", "gender")
    ]
    checks += [(_type("updated_at") != "STRING", "mistyped_field", "updated_at")]
    checks += [(_long("user_id").isNull() | (_long("user_id") <= 0), "invalid_id", "user_id")]
    checks += [
        (
            ~_absent("age_range") & ~_long("age_range").between(0, 8),
            "unknown_age_range",
            _long("age_range").cast("string"),
        ),
        (
            ~_absent("gender") & ~_long("gender").between(0, 2),
            "unknown_gender",
            _long("gender").cast("string"),
        ),
    ]
    checks += _time_checks("updated_at", updated_at, now)
    parsed = env.select(
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "value",
        "value_text",
        _long("user_id").alias("user_id"),
        _long("age_range").cast("int").alias("age_range"),
        _long("gender").cast("int").alias("gender"),
        updated_at.alias("updated_at"),
        _first_failure(checks).alias("_failure"),
    )
    return _finish(parsed, ["user_id", "age_range", "gender", "updated_at"])


def _finish(parsed: DataFrame, typed: list[str]) -> DataFrame:
    """Null the typed columns of invalid rows; expose reason and detail."""
    invalid = F.col("_failure").isNotNull()
    return parsed.select(
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "value",
        "value_text",
        *(F.when(~invalid, F.col(c)).alias(c) for c in typed),
        F.col("_failure.reason").alias("reason"),
        F.col("_failure.detail").alias("detail"),
    )


def age_bracket(age_range: Column) -> Column:
    """Spark version of contracts.age_bracket (0, null and unknown codes -> 'unknown')."""
    expr = F.lit(contracts.UNKNOWN)
    for code in range(8, 0, -1):
        expr = F.when(age_range == code, F.lit(contracts.age_bracket(code))).otherwise(expr)
    return expr


def gender_label(gender: Column) -> Column:
    """Spark version of contracts.gender_label (2, null and unknown codes -> 'unknown')."""
    return (
        F.when(gender == 0, F.lit(contracts.gender_label(0)))
        .when(gender == 1, F.lit(contracts.gender_label(1)))
        .otherwise(F.lit(contracts.UNKNOWN))
    )


def quarantine_rows(parsed: DataFrame, layer: str, at: Column | None = None) -> DataFrame:
    """Invalid parsed rows -> quarantine rows (schemas.QUARANTINE): raw value, Kafka
    coordinates, reason code, detail and the layer that quarantined them."""
    at = F.current_timestamp() if at is None else at
    return parsed.where(F.col("reason").isNotNull()).select(
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "key",
        "value",
        "value_text",
        "reason",
        "detail",
        F.lit(layer).alias("layer"),
        at.alias("quarantined_at"),
    )


def latest_profiles(parsed_profiles: DataFrame) -> DataFrame:
    """Valid parsed profiles -> one row per user (schemas.USERS): the latest by updated_at; on a
    tie the later Kafka record wins, so replays and re-sends resolve the same way."""
    latest = F.max_by(
        F.struct("age_range", "gender", "updated_at", "topic", "partition", "offset"),
        F.struct("updated_at", "partition", "offset"),
    )
    return (
        parsed_profiles.where(F.col("reason").isNull())
        .groupBy("user_id")
        .agg(latest.alias("p"))
        .select(
            "user_id",
            "p.age_range",
            "p.gender",
            age_bracket(F.col("p.age_range")).alias("age_bracket"),
            gender_label(F.col("p.gender")).alias("gender_label"),
            "p.updated_at",
            "p.topic",
            "p.partition",
            "p.offset",
        )
    )
