"""The speed layer's input: tmall.user_actions + tmall.user_profiles (Kafka) -> parsed rows.

Every Kafka read the speed layer makes (the stream, and the profile preload before it) takes
its reader options from kafka_options, so where the brokers are and how to reach them is said
once. parse is the contract parse the stream applies; the start-up (app.start) takes the stream
as an argument, so a test can hand it parse() over other sources than Kafka.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException
from pyspark.sql import DataFrame, SparkSession

from orderlake import kafka_admin
from orderlake.contracts import TOPIC_ACTIONS, TOPIC_PROFILES
from orderlake.kafka_client import spark_options
from orderlake.settings import Settings
from orderlake.transforms import parsing

if TYPE_CHECKING:
    from orderlake.jobs.speed.step import SpeedLayer


def kafka_options(settings: Settings, topic: str) -> dict[str, str]:
    """The Spark Kafka reader options of every read of ``topic`` by the speed layer: the
    brokers and how it authenticates to them (its consumer groups under the prefix its ACLs
    allow), the topic, and lost offsets fail the read (failOnDataLoss), never skip records."""
    return {
        "kafka.bootstrap.servers": settings.bootstrap,
        **spark_options(settings.kafka_auth(), "orderlake-speed"),
        "subscribe": topic,
        "failOnDataLoss": "true",
    }


def kafka_source(spark: SparkSession, settings: Settings, topic: str) -> DataFrame:
    """One topic as a stream from its first offset."""
    return (
        spark.readStream.format("kafka")
        .options(**kafka_options(settings, topic))
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.speed_max_offsets_per_trigger)
        # larger polls than the consumer's default 500 records: fewer round trips per batch
        .option("kafka.max.poll.records", "20000")
        # the longest the broker holds a fetch that finds no data; at the default 500 ms some
        # backlog micro-batches had a Kafka task waiting off-CPU for it
        # (bench/results/speed-ab-fetch-wait-10k)
        .option("kafka.fetch.max.wait.ms", "20")
        .load()
    )


def parsed_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """Both topics, parsed against the contract, as one stream. The parse is part of the
    streaming query, so Spark analyses it once when the query starts, not in every micro-batch
    (bench/results/speed-ab-parse-in-stream-10k)."""
    return parse(
        kafka_source(spark, settings, TOPIC_ACTIONS), kafka_source(spark, settings, TOPIC_PROFILES)
    )


def parse(actions: DataFrame, profiles: DataFrame) -> DataFrame:
    """Kafka records of each topic -> one DataFrame of parsed rows with the actions' and the
    profiles' columns (a row has only its own topic's): what a micro-batch receives."""
    return parsing.slim(parsing.parse_actions(actions)).unionByName(
        parsing.slim(parsing.parse_profiles(profiles)), allowMissingColumns=True
    )


def preload_profiles(
    spark: SparkSession, settings: Settings, layer: SpeedLayer, processed: dict
) -> dict:
    """Profiles Kafka holds past the offsets the query last processed -> speed.user_profiles,
    before the query starts.

    Catching up on a backlog, maxOffsetsPerTrigger gives each micro-batch a share of both
    topics in proportion to what they hold, so most purchases would be read before their
    users' profiles, counted under unknown and moved by the restate step later (half of a
    micro-batch's time in `make bench-speed`'s backlog). speed.users shows the newest profile by
    updated_at whatever order profiles come in, and a purchase takes the profile known when
    it is counted, as the batch layer takes the newest: storing them early brings the speed
    layer closer to it. The query still reads every profile record (a stored one again costs
    a join, no write) and quarantines the invalid ones.
    """
    started = time.perf_counter()
    try:
        marks = kafka_admin.watermarks(settings.bootstrap, (TOPIC_PROFILES,))
    except KafkaException as exc:  # the query reports an unreachable broker in its own way
        return {"skipped": f"Kafka offsets not read: {exc}"}
    done = processed.get(TOPIC_PROFILES, {})
    # from where the query got to (the earliest offset Kafka still holds for a partition it
    # has not read), so every offset read exists and failOnDataLoss stays on
    ends = {p: high for (_, p), (_, high) in marks.items()}
    starts = {
        p: min(max(int(done.get(str(p), low)), low), high) for (_, p), (low, high) in marks.items()
    }
    if all(ends[p] <= starts[p] for p in ends):
        return {"users_stored": 0, "seconds": round(time.perf_counter() - started, 3)}
    records = (
        spark.read.format("kafka")
        .options(**kafka_options(settings, TOPIC_PROFILES))
        .option("startingOffsets", json.dumps({TOPIC_PROFILES: starts}))
        .option("endingOffsets", json.dumps({TOPIC_PROFILES: ends}))
        .load()
    )
    latest = parsing.latest_profiles(parsing.parse_profiles(records))
    stored = layer.store_profiles(latest)
    if layer.waiting:  # purchases counted before a crash or stop may wait for these profiles
        layer.restate_late_profiles(spark, latest, txn=None)
    layer.profiles_preloaded = {p: (starts[p], ends[p]) for p in ends}
    return {"users_stored": stored, "seconds": round(time.perf_counter() - started, 3)}
