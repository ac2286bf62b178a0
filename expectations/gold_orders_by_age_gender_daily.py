"""gold.orders_by_age_gender_daily -> suite `gold_orders_by_age_gender_daily`.

One row per (event_date, age_bracket, gender); the shares of a day are its buckets' parts of
that day's orders, so they sum to 1 (floating point: within 1e-9).
"""

from __future__ import annotations

from collections.abc import Mapping

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql import DataFrame

from orderlake.settings import Settings

NAME = "gold_orders_by_age_gender_daily"
TABLES = ("gold.orders_by_age_gender_daily",)
TOLERANCE = 1e-9

SHARES_NOT_SUMMING_TO_ONE = f"""
    SELECT event_date, SUM(share) AS share_total
    FROM {{batch}}
    GROUP BY event_date
    HAVING ABS(SUM(share) - 1) > {TOLERANCE}
"""


def build(settings: Settings) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=NAME,
        expectations=[
            gxe.ExpectColumnValuesToBeBetween(column="orders", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="share", min_value=0, max_value=1),
            gxe.UnexpectedRowsExpectation(
                unexpected_rows_query=SHARES_NOT_SUMMING_TO_ONE,
                description="the shares of each event_date sum to 1",
            ),
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=["event_date", "age_bracket", "gender"]
            ),
        ],
    )


def select(frames: Mapping[str, DataFrame]) -> DataFrame:
    return frames[TABLES[0]]
