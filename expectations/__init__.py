"""Great Expectations suites as code: lake tables -> one ``gx.ExpectationSuite`` per module.

Every module here is one suite and has the same four parts:

    NAME              the suite's name (the module's name)
    TABLES            the lake tables it reads; the first is the one it validates
    build(settings)   the suite, built when a validation starts (never at import)
    select(frames)    the DataFrame the suite validates, from {table name: DataFrame}

orderlake.quality runs them against the lake's current Delta tables (`orderlake validate`);
tests/unit/test_expectations.py runs each against literal rows that pass and rows that fail.
"""

SUITES = (
    "bronze_kafka_records",
    "silver_user_actions",
    "silver_users",
    "gold_orders_by_age_gender_daily",
    "quarantine_rate",
)
