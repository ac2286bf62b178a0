"""Kafka records -> contract rows, each valid or carrying the reason it is not.

Shared by the speed layer and the silver layer so both quarantine the same records for the same
reasons; one module, because a reason code and the check that gives it must stay side by side.
Values are parsed once into Spark's VARIANT, so a field's JSON type is known exactly
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

import functools
from collections.abc import Callable

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


# Field kinds: how a field's JSON value is typed and checked.
ID, CODE, TEXT, TIME = "id", "code", "text", "time"
ACTION_FIELDS = {
    "event_id": TEXT,
    "user_id": ID,
    "item_id": ID,
    "cat_id": ID,
    "seller_id": ID,
    "brand_id": ID,
    "action_type": CODE,
    "event_time": TIME,
}
PROFILE_FIELDS = {"user_id": ID, "age_range": CODE, "gender": CODE, "updated_at": TIME}
# what a parse outputs (after the columns it carries): Kafka coordinates and raw value, the
# contract fields, the verdict
COORDINATES = ("topic", "partition", "offset", "kafka_timestamp", "key", "value", "value_text")
ACTION_COLUMNS = (*COORDINATES, *ACTION_FIELDS, "reason", "detail")
PROFILE_COLUMNS = (*COORDINATES, *PROFILE_FIELDS, "reason", "detail")


# A parse is a fixed sequence of projections (one ``select`` each). Their columns are built once
# per (topic kind, carried columns) and reused: building them costs thousands of calls into the
# JVM, which the speed layer would otherwise pay for each topic in every micro-batch. A
# Column is an unresolved expression, valid for any DataFrame with the input's column names.
Stages = tuple[tuple[Column, ...], ...]
# builds a parse's stages for a reference time and the carried columns
StageBuilder = Callable[[Column, tuple[str, ...]], Stages]


def _project(records: DataFrame, stages: Stages) -> DataFrame:
    for columns in stages:
        records = records.select(*columns)
    return records


def _stages(build: StageBuilder, now: Column | None, carry: tuple[str, ...]) -> Stages:
    """A parse's stages: cached for the default reference time, built anew for a given one."""
    return _default_stages(build, carry) if now is None else build(now, carry)


@functools.cache
def _default_stages(build: StageBuilder, carry: tuple[str, ...]) -> Stages:
    return build(_reference_now(), carry)


def _facts(fields: dict[str, str], now: Column, carry: tuple[str, ...]) -> Stages:
    """Stage 1: decode key and value and extract, per contract field, its JSON type
    (``_t_<f>``: NULL when absent, VOID for null, BIGINT, STRING, ...) and typed value
    (``_x_<f>``). Later stages only compare these plain columns.

    Two paths, one result: well-formed records (the vast majority) are read by ``from_json``
    with the contract's schema, which is fast; a record that schema refuses (not JSON, not an
    object, a mistyped field) is parsed into a VARIANT, which tells its exact JSON types. Each
    stage is its own projection so Spark computes every extracted value once per row.

    ``now`` (over the Kafka record's columns) becomes ``_now`` here, in the first projection:
    its wall-clock fallback is an interpreted expression, which makes Spark build each input
    row of the projection it sits in; the Kafka record is such a row already
    (bench/results/speed-ab-reference-time-400k).
    """
    text = F.col("value").cast("string")
    fast_schema = ", ".join(
        f"{name} {'variant' if kind in (TEXT, TIME) else 'bigint'}" for name, kind in fields.items()
    )
    env = (
        *(F.col(c) for c in carry),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        now.alias("_now"),
        F.col("key").cast("string").alias("key"),
        F.col("value"),
        F.expr("is_valid_utf8(value)").alias("_utf8"),
        F.when(F.expr("is_valid_utf8(value)"), text).alias("value_text"),
        F.from_json(
            text, f"{fast_schema}, _corrupt string", {"columnNameOfCorruptRecord": "_corrupt"}
        ).alias("_fast"),
    )
    slow = F.col("_fast").isNull() | F.col("_fast._corrupt").isNotNull()
    every = F.col("*")
    flagged = (every, slow.alias("_slow"))
    variant = (
        every,
        F.when(F.col("_slow"), F.expr("try_parse_json(CAST(value AS STRING))")).alias("_v"),
    )
    on_slow = F.col("_slow")
    extracted = [
        F.when(on_slow, F.expr("schema_of_variant(_v)")).otherwise(F.lit("OBJECT")).alias("_t")
    ]
    for name, kind in fields.items():
        slow_type = F.expr(f"schema_of_variant(variant_get(_v, '$.{name}'))")
        fast_field = F.col(f"_fast.{name}")
        if kind in (TEXT, TIME):
            fast_type = F.expr(f"schema_of_variant(_fast.{name})")
            fast_value = F.expr(f"try_variant_get(_fast.{name}, '$', 'string')")
            slow_value = F.expr(f"try_variant_get(_v, '$.{name}', 'string')")
        else:
            fast_type = F.when(fast_field.isNotNull(), F.lit("BIGINT"))
            fast_value = fast_field
            slow_value = F.expr(f"try_variant_get(_v, '$.{name}', 'bigint')")
        extracted += [
            F.when(on_slow, slow_type).otherwise(fast_type).alias(f"_t_{name}"),
            F.when(on_slow, slow_value).otherwise(fast_value).alias(f"_x_{name}"),
        ]
    times = [
        F.expr(f"try_to_timestamp(_x_{name})").alias(f"_p_{name}")
        for name, kind in fields.items()
        if kind == TIME
    ]
    # An optimizer fence: the same rows through a Generate node. Spark pushes a filter through
    # projections by substituting each column's definition; a filter on ``reason`` would inline
    # every extraction above (from_json, VARIANT navigation) once per reference, growing plans
    # to hundreds of thousands of nodes (slow planning, driver out of memory). Predicates on
    # generated columns are not pushed below a Generate.
    fence = (F.inline(F.array(F.struct(every))),)
    return (env, flagged, variant, (every, *extracted), (every, *times), fence)


def _absent(name: str) -> Column:
    t = F.col(f"_t_{name}")
    return t.isNull() | (t == "VOID")


def _is_integral(name: str) -> Column:
    # JSON integers come back as BIGINT; 6.0 as DECIMAL(1,0): integral, accepted
    t = F.col(f"_t_{name}")
    return (t == "BIGINT") | t.rlike(r"^DECIMAL\(\d+,0\)$")


def _x(name: str) -> Column:
    return F.col(f"_x_{name}")


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


def _envelope_checks() -> list[tuple[Column, str, str | Column | None]]:
    value = F.col("value")
    # only a record the fast path refused can be empty: the blank test copies every value, so
    # it runs on those alone (bench/results/speed-ab-blank-check-400k)
    empty = value.isNull() | (F.length(F.trim(value.cast("string"))) == 0)
    return [
        (F.col("_slow") & empty, "empty_record", None),
        (~F.col("_utf8"), "not_utf8", None),
        (F.col("_slow") & F.col("_v").isNull(), "not_json", None),
        (~F.col("_t").startswith("OBJECT"), "not_object", F.col("_t")),
    ]


def _field_checks(fields: dict[str, str], required: list[str]) -> list:
    """Presence, JSON type and id sign of each field, in contract order."""
    checks: list = [(_absent(f), "missing_field", f) for f in required]
    for name, kind in fields.items():
        present = ~_absent(name)
        if kind in (TEXT, TIME):
            checks.append((present & (F.col(f"_t_{name}") != "STRING"), "mistyped_field", name))
        else:
            checks.append((present & ~_is_integral(name), "mistyped_field", name))
    for name, kind in fields.items():
        if kind == ID:
            bad = _x(name).isNull() | (_x(name) <= 0)
            checks.append((~_absent(name) & bad, "invalid_id", name))
    return checks


def _time_checks(name: str) -> list:
    parsed = F.col(f"_p_{name}")
    return [
        (parsed.isNull(), "bad_event_time", F.concat(F.lit(f"{name}="), _x(name))),
        (
            (parsed < F.lit(EARLIEST_PLAUSIBLE).cast("timestamp"))
            | (parsed > F.col("_now") + F.expr("INTERVAL 1 DAY")),
            "absurd_event_time",
            F.concat(F.lit(f"{name}="), parsed.cast("string")),
        ),
    ]


def _reference_now() -> Column:
    # "the future" is judged against the record's Kafka time stamp, not the wall clock, so the
    # speed and batch layers (and any replay) make the same decision for the same record.
    # Records without one are judged against the wall clock, read through reflect():
    # current_timestamp() becomes a literal inlined into the generated code, so every
    # micro-batch compiled the whole parse anew.
    wall_clock = F.expr(
        "timestamp_millis(CAST(reflect('java.lang.System', 'currentTimeMillis') AS BIGINT))"
    )
    return F.coalesce(F.col("timestamp"), wall_clock)


def parse_actions(
    records: DataFrame, now: Column | None = None, carry: tuple[str, ...] = ()
) -> DataFrame:
    """Kafka records of tmall.user_actions -> typed user actions with ``reason``/``detail``.

    ``now``, over the Kafka record's columns, is what an event time may not exceed by more
    than a day (default: the record's time stamp, else the wall clock). ``carry`` names extra
    input columns passed through unchanged (e.g. bronze's load_id)."""
    return _project(records, _stages(_build_action_stages, now, carry))


def _build_action_stages(now: Column, carry: tuple[str, ...]) -> Stages:
    required = ["event_id", *ACTION_IDS, "action_type", "event_time"]
    event_id = _x("event_id")
    checks = _envelope_checks() + _field_checks(ACTION_FIELDS, required)
    checks += [
        (
            (F.length(F.trim(event_id)) == 0) | (F.length(event_id) > MAX_EVENT_ID_LENGTH),
            "invalid_event_id",
            None,
        ),
        (
            ~_x("action_type").isin(*contracts.ACTION_NAMES),
            "unknown_action_type",
            _x("action_type").cast("string"),
        ),
    ]
    checks += _time_checks("event_time")
    typed = {
        "event_id": event_id,
        **{f: _x(f) for f in ACTION_IDS},
        "brand_id": _x("brand_id"),
        "action_type": _x("action_type").cast("int"),
        "event_time": F.col("_p_event_time"),
    }
    return _facts(ACTION_FIELDS, now, carry) + _finish(checks, typed, carry)


def parse_profiles(
    records: DataFrame, now: Column | None = None, carry: tuple[str, ...] = ()
) -> DataFrame:
    """Kafka records of tmall.user_profiles -> typed profiles with ``reason``/``detail``."""
    return _project(records, _stages(_build_profile_stages, now, carry))


def _build_profile_stages(now: Column, carry: tuple[str, ...]) -> Stages:
    checks = _envelope_checks() + _field_checks(PROFILE_FIELDS, ["user_id", "updated_at"])
    checks += [
        (
            ~_absent("age_range") & ~_x("age_range").between(0, 8),
            "unknown_age_range",
            _x("age_range").cast("string"),
        ),
        (
            ~_absent("gender") & ~_x("gender").between(0, 2),
            "unknown_gender",
            _x("gender").cast("string"),
        ),
    ]
    checks += _time_checks("updated_at")
    typed = {
        "user_id": _x("user_id"),
        "age_range": _x("age_range").cast("int"),
        "gender": _x("gender").cast("int"),
        "updated_at": F.col("_p_updated_at"),
    }
    return _facts(PROFILE_FIELDS, now, carry) + _finish(checks, typed, carry)


def _finish(checks: list, typed: dict[str, Column], carry: tuple[str, ...]) -> Stages:
    """Stage 2 decides each row's first failure; stage 3 nulls the typed columns of invalid
    rows and exposes reason and detail."""
    coordinates = [*carry, *COORDINATES]
    decided = (
        *(F.col(c) for c in coordinates),
        *(column.alias(name) for name, column in typed.items()),
        _first_failure(checks).alias("_failure"),
    )
    invalid = F.col("_failure").isNotNull()
    typed_or_null = (
        *(F.col(c) for c in coordinates),
        *(F.when(~invalid, F.col(name)).alias(name) for name in typed),
        F.col("_failure.reason").alias("reason"),
        F.col("_failure.detail").alias("detail"),
    )
    return (decided, typed_or_null)


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


def slim(parsed: DataFrame) -> DataFrame:
    """Keep the raw value only on invalid rows, where quarantine needs it: caches stay small."""
    invalid = F.col("reason").isNotNull()
    return parsed.withColumns(
        {
            "value": F.when(invalid, F.col("value")),
            "value_text": F.when(invalid, F.col("value_text")),
        }
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
