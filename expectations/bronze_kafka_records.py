"""bronze.kafka_records -> suite `bronze_kafka_records`: one row per Kafka record.

(topic, partition, offset) is the record's identity in Kafka: a second row with the same
coordinates means a load was committed twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql import DataFrame

from orderlake.settings import Settings

NAME = "bronze_kafka_records"
TABLES = ("bronze.kafka_records",)
KEY = ["topic", "partition", "offset"]


def build(settings: Settings) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=NAME,
        expectations=[
            gxe.ExpectCompoundColumnsToBeUnique(column_list=KEY),
            *(gxe.ExpectColumnValuesToNotBeNull(column=column) for column in KEY),
        ],
    )


def select(frames: Mapping[str, DataFrame]) -> DataFrame:
    return frames[TABLES[0]]
