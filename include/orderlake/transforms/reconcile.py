"""Speed vs batch, purchase by purchase: silver.user_actions + silver.users + speed.purchases ->
the purchases on which the two layers differ, and why.

Pure functions; the reconciliation job (orderlake.jobs.reconcile) reads the tables, sums what
these return per bucket and decides which differences are explained. Kept apart from the job
so the classification can be tested on literal rows.

Kinds, for a purchase of a compared day:

    in_flight        in silver, not (yet) in speed, at an offset the speed layer has not read
    missing          in silver, not in speed, at an offset the speed layer has read
    extra            in speed, not in silver
    late_profile     in both, in different buckets, counted by speed before its user's profile
                     arrived (profile_found false)
    profile_changed  in both, in different buckets, the profile changed after speed counted it
    speed_duplicate  counted by speed more than once (every count after the first)

A purchase in both layers in the same bucket is not a difference and is not returned.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from orderlake import contracts

KINDS = (
    "in_flight",
    "missing",
    "extra",
    "late_profile",
    "profile_changed",
    "speed_duplicate",
)
BUCKET_COLUMNS = ("b_date", "b_age", "b_gender", "s_date", "s_age", "s_gender")


def speed_vs_batch(
    actions: DataFrame,
    users: DataFrame,
    speed_purchases: DataFrame,
    processed_offsets: dict[int, int],
) -> DataFrame:
    """silver.user_actions rows + silver.users + speed.purchases rows -> one row per purchase on
    which the layers differ: ``kind``, ``event_id``, the batch layer's bucket (``b_date``,
    ``b_age``, ``b_gender``: silver's event date and its user's latest profile, unknown without
    one) and the speed layer's (``s_date``, ``s_age``, ``s_gender``); a side without the
    purchase has nulls.

    ``processed_offsets``: {partition of tmall.user_actions: the next offset the speed layer
    will read}; a purchase silver holds at or past it is in flight, not missing. Empty: nothing
    is in flight.

    Example::

        differences = speed_vs_batch(
            silver_actions.where(F.col("event_date") == day),
            silver_users,
            speed_purchases.where(F.col("event_date") == day),
            {0: 1200, 1: 1180},
        )
    """
    profiles = users.select(
        "user_id", F.col("age_bracket").alias("_b_age"), F.col("gender_label").alias("_b_gender")
    )
    batch = (
        actions.where(F.col("action_type") == contracts.ACTION_PURCHASE)
        .join(profiles, "user_id", "left")
        .select(
            "event_id",
            F.col("event_date").alias("b_date"),
            F.coalesce("_b_age", F.lit(contracts.UNKNOWN)).alias("b_age"),
            F.coalesce("_b_gender", F.lit(contracts.UNKNOWN)).alias("b_gender"),
            F.col("partition").alias("b_partition"),
            F.col("offset").alias("b_offset"),
        )
    )
    # the first count of a purchase is the one that stands; later ones are duplicates
    first = Window.partitionBy("event_id").orderBy("batch_id", "partition", "offset")
    speed = speed_purchases.select(
        "event_id",
        F.col("event_date").alias("s_date"),
        F.col("age_bracket").alias("s_age"),
        F.col("gender").alias("s_gender"),
        "profile_found",
        F.row_number().over(first).alias("rank"),
    )
    compared = batch.join(speed.where(F.col("rank") == 1), "event_id", "full_outer").select(
        "event_id",
        *BUCKET_COLUMNS,
        F.when(
            F.col("s_date").isNull(),
            F.when(_in_flight(processed_offsets), "in_flight").otherwise("missing"),
        )
        .when(F.col("b_date").isNull(), "extra")
        .when(
            (F.col("b_age") != F.col("s_age")) | (F.col("b_gender") != F.col("s_gender")),
            F.when(F.col("profile_found"), "profile_changed").otherwise("late_profile"),
        )
        .otherwise("same")
        .alias("kind"),
    )
    duplicates = speed.where(F.col("rank") > 1).select(
        "event_id",
        F.lit(None).cast("date").alias("b_date"),
        F.lit(None).cast("string").alias("b_age"),
        F.lit(None).cast("string").alias("b_gender"),
        "s_date",
        "s_age",
        "s_gender",
        F.lit("speed_duplicate").alias("kind"),
    )
    return (
        compared.where(F.col("kind") != "same")
        .unionByName(duplicates)
        .select("kind", "event_id", *BUCKET_COLUMNS)
    )


def differences_by_bucket(differences: DataFrame, sample: int) -> DataFrame:
    """speed_vs_batch's rows -> one row per kind and pair of buckets: ``n`` purchases and up to
    ``sample`` of their event ids (``event_ids``)."""
    return differences.groupBy("kind", *BUCKET_COLUMNS).agg(
        F.count("*").alias("n"),
        F.slice(F.collect_list("event_id"), 1, sample).alias("event_ids"),
    )


def _in_flight(processed_offsets: dict[int, int]) -> Column:
    """A batch-side purchase at or past the offset the speed layer reads next."""
    in_flight = F.lit(False)
    for partition, offset in processed_offsets.items():
        in_flight = in_flight | (
            (F.col("b_partition") == partition) & (F.col("b_offset") >= offset)
        )
    return in_flight
