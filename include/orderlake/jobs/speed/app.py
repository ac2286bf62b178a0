"""Start-up of the speed layer: session settings, the single-instance lock, and start(), which
wires a source of parsed rows, the micro-batch step and the progress file into one query.

The source is an argument of start(): the platform reads Kafka (source.parsed_stream, with
the profile preload before it), a test can hand in any stream of parsed rows and run the same
query without a broker. streaming/speed_layer.py is the process that calls start().
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from orderlake import lake, locks
from orderlake.errors import OrderlakeError
from orderlake.jobs import maintenance
from orderlake.jobs.speed import QUERY_NAME
from orderlake.jobs.speed.progress import ProgressWriter
from orderlake.jobs.speed.source import parsed_stream, preload_profiles
from orderlake.jobs.speed.step import SpeedLayer
from orderlake.settings import Settings

# The streaming session writes only speed.* tables: compact their small files as it goes.
SESSION_CONF = {
    "spark.databricks.delta.autoCompact.enabled": "true",
    # micro-batches are small: one shuffle partition per core
    "spark.sql.shuffle.partitions": "2",
    # each micro-batch materializes its results (lake.detached): a JVM GC at least this
    # often lets Spark's cleaner drop the blocks of finished batches
    "spark.cleaner.periodicGC.interval": "5min",
    # compiled code of 100 queries (the default) is too little: a micro-batch runs ~20
    # queries whose literals differ every time, which evicted the contract parse's code, so it
    # was compiled again and ran cold (bench/results/speed-ab-codegen-10k.md)
    "spark.sql.codegen.cache.maxEntries": "1000",
}


# the speed lock of each lake this process has taken, kept until the process ends: one process
# runs one speed layer per lake (Spark refuses a second active query of the same name)
_HELD: dict[Path, locks.Held] = {}


def hold_lock(settings: Settings) -> locks.Held:
    """The speed layer's single-instance lock, held by this process from now on, or one
    sentence naming the process that runs the speed layer already."""
    path = locks.lock_path(settings, locks.SPEED)
    if path in _HELD:
        return _HELD[path]
    try:
        _HELD[path] = locks.acquire(settings, locks.SPEED)
        return _HELD[path]
    except OrderlakeError:
        holder = locks.holder(settings, locks.SPEED) or "unknown"
        raise OrderlakeError(
            f"A speed layer already runs on the lake {settings.lake_dir} ({holder}); two would "
            "write the same speed tables. `orderlake status` shows it; stop it first."
        ) from None


def start(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool = False,
    checkpoint: Path | None = None,
    source: Callable[[SparkSession], DataFrame] | None = None,
    phase: Callable[[str | None], None] = lambda _: None,
) -> StreamingQuery:
    """Start the speed-layer query and return it.

    ``available_now`` processes what is there and stops (tests, catch-up runs); otherwise
    micro-batches run back to back, always on. The process holds the speed lock from here on
    (hold_lock); ``phase`` hears what start-up is doing (progress.starting).

    ``source`` builds the streaming DataFrame of parsed rows (source.parse's shape) in the
    session; by default both Kafka topics (source.parsed_stream), whose profiles not processed
    yet are stored first (source.preload_profiles). For example, Kafka-shaped records dropped
    as Parquet files into two directories (tests/integration/test_speed.py does this)::

        from orderlake.jobs.speed import app, source

        def files(spark):
            def read(directory):
                return spark.readStream.schema(schemas.KAFKA_RECORD).parquet(str(directory))

            return source.parse(read(actions_dir), read(profiles_dir))

        query = app.start(spark, settings, available_now=True, source=files)
        query.awaitTermination()
    """
    checkpoint = checkpoint or lake.checkpoint_path(settings, QUERY_NAME)
    hold_lock(settings)
    layer = SpeedLayer(spark, settings, checkpoint=checkpoint)
    listener = ProgressWriter(settings, layer)
    if source is None:
        phase("profile preload")
        listener.preload = preload_profiles(spark, settings, layer, listener.offsets)
    else:
        listener.preload = {"skipped": "the source is not Kafka"}
    spark.streams.addListener(listener)
    stream = parsed_stream(spark, settings) if source is None else source(spark)
    writer = (
        stream.writeStream.queryName(QUERY_NAME)
        .foreachBatch(layer.process_batch)
        .option("checkpointLocation", str(checkpoint))
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime="0 seconds")
    )
    phase(None)  # from here the query's listener reports
    query = writer.start()
    listener.run_id = str(query.runId)
    layer.maintenance = maintenance.SpeedMaintenance(spark, settings, layer.between).start()
    return query
