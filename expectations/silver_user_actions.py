"""silver.user_actions -> suite `silver_user_actions`: one typed row per event_id.

Codes and ids follow the Tianchi contract (DESIGN.md section 3). Event times before 2015 or
more than a day in the future are parser or producer clock errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql import DataFrame

from orderlake import contracts
from orderlake.settings import Settings

NAME = "silver_user_actions"
TABLES = ("silver.user_actions",)
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)


def build(settings: Settings, now: datetime | None = None) -> gx.ExpectationSuite:
    """``now`` (default: the wall clock when the suite is built) bounds event_time from above."""
    latest = (now or datetime.now(UTC)) + timedelta(days=1)
    return gx.ExpectationSuite(
        name=NAME,
        expectations=[
            gxe.ExpectColumnValuesToBeUnique(column="event_id"),
            gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
            gxe.ExpectColumnValuesToBeInSet(
                column="action_type", value_set=sorted(contracts.ACTION_NAMES)
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="event_time", min_value=EARLIEST, max_value=latest
            ),
            *(
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
                for column in ("user_id", "item_id", "cat_id", "seller_id")
            ),
            # nulls are skipped by column-map expectations: brand_id may be null
            gxe.ExpectColumnValuesToBeBetween(column="brand_id", min_value=0, strict_min=True),
        ],
    )


def select(frames: Mapping[str, DataFrame]) -> DataFrame:
    return frames[TABLES[0]]
