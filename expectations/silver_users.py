"""silver.users -> suite `silver_users`: one row per user_id with valid codes and labels.

Codes may be null (the profile left them empty); labels never are: an unknown code maps to
'unknown' (orderlake.contracts).
"""

from __future__ import annotations

from collections.abc import Mapping

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql import DataFrame

from orderlake import contracts
from orderlake.settings import Settings

NAME = "silver_users"
TABLES = ("silver.users",)


def build(settings: Settings) -> gx.ExpectationSuite:
    # nulls are skipped by column-map expectations: age_range and gender may be null
    return gx.ExpectationSuite(
        name=NAME,
        expectations=[
            gxe.ExpectColumnValuesToBeUnique(column="user_id"),
            gxe.ExpectColumnValuesToBeBetween(column="age_range", min_value=0, max_value=8),
            gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=[0, 1, 2]),
            gxe.ExpectColumnValuesToBeInSet(
                column="age_bracket", value_set=list(contracts.AGE_BRACKETS)
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="gender_label", value_set=list(contracts.GENDERS)
            ),
        ],
    )


def select(frames: Mapping[str, DataFrame]) -> DataFrame:
    return frames[TABLES[0]]
