"""Speed-layer edge cases on a real broker: malformed records, users without a profile, and
duplicates (sent a minute later; older than the keys kept in memory). Each test uses its own
users and event ids and reads only them."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from orderlake import contracts, lake, schemas, speed_progress
from orderlake.jobs.speed import QUERY_NAME, app, step
from orderlake.jobs.speed.source import parse
from orderlake.kafka_admin import watermarks
from orderlake.transforms.parsing import REASONS
from tests.fixtures.stack import produce
from tests.integration.test_speed import (
    orders_1m,
    progress_batches,
    run_once,
    settings_for,
    table,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def action(event_id: str, user_id: int, action_type: int = 2, minute: int = 0) -> dict:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": 1,
        "cat_id": 1,
        "seller_id": 1,
        "brand_id": None,
        "action_type": action_type,
        "event_time": f"2015-11-11T09:{minute:02d}:30.000Z",
    }


def profile(user_id: int, age_range: int | None, gender: int | None, day: int = 1) -> dict:
    return {
        "user_id": user_id,
        "age_range": age_range,
        "gender": gender,
        "updated_at": f"2015-11-{day:02d}T00:00:00.000Z",
    }


def orders_of(spark, settings, event_ids: set[str]) -> dict[str, tuple]:
    rows = (
        table(spark, settings, schemas.SPEED_PURCHASES_TABLE)
        .where(F.col("event_id").isin(list(event_ids)))
        .collect()
    )
    return {r["event_id"]: (r["age_bracket"], r["gender"], r["profile_found"]) for r in rows}


def window_counts(spark, settings, minute: int) -> dict[tuple[str, str], int]:
    """{(age bracket, gender): orders} of the 1-minute window at 2015-11-11 09:<minute>."""
    window = datetime(2015, 11, 11, 9, minute)
    rows = orders_1m(spark, settings).where(F.col("window_start") == window).collect()
    return {(r["age_bracket"], r["gender"]): r["orders"] for r in rows}


def test_malformed_records_are_quarantined_with_their_reason_and_never_counted(
    spark, kafka_only, tmp_path
):
    bootstrap = kafka_only.settings.bootstrap
    uid = 9_100_001
    bad = {
        "empty_record": "",
        "not_utf8": b'{"event_id": "\xff\xfe"}',
        "not_json": '{"event_id": "m-1", ',
        "not_object": "[1, 2]",
        "missing_field": {k: v for k, v in action("m-2", uid).items() if k != "item_id"},
        "mistyped_field": {**action("m-3", uid), "user_id": str(uid)},
        "invalid_id": {**action("m-4", uid), "seller_id": -5},
        "invalid_event_id": {**action("m-5", uid), "event_id": ""},
        "unknown_action_type": action("m-6", uid, action_type=9),
        "bad_event_time": {**action("m-7", uid), "event_time": "11/11/2015 10:00"},
        "absurd_event_time": {**action("m-8", uid), "event_time": "1999-12-31T23:59:59Z"},
    }
    produce(
        bootstrap, contracts.TOPIC_PROFILES, [profile(uid, 3, 1), {"user_id": uid, "age_range": 12}]
    )
    good_before, good_after = action("m-good-1", uid), action("m-good-2", uid)
    produce(bootstrap, contracts.TOPIC_ACTIONS, [good_before, *bad.values(), good_after])
    settings = settings_for(kafka_only, tmp_path)
    run_once(spark, settings)
    # the query keeps running after bad input: a later batch is processed too
    good_later = action("m-good-3", uid)
    produce(bootstrap, contracts.TOPIC_ACTIONS, [good_later])
    query = run_once(spark, settings)

    quarantine = table(spark, settings, schemas.SPEED_QUARANTINE).collect()
    reasons = {r["reason"] for r in quarantine if r["topic"] == contracts.TOPIC_ACTIONS}
    assert reasons == set(bad), f"missing: {set(bad) - reasons}"
    assert len(bad) >= 10 and set(bad) <= set(REASONS)
    profile_reasons = {r["reason"] for r in quarantine if r["topic"] == contracts.TOPIC_PROFILES}
    assert profile_reasons == {"missing_field"}  # the profile without updated_at
    for row in quarantine:
        assert row["layer"] == "speed" and row["offset"] is not None and row["value"] is not None

    counted = orders_of(
        spark, settings, {"m-good-1", "m-good-2", "m-good-3"} | {f"m-{i}" for i in range(1, 9)}
    )
    assert set(counted) == {"m-good-1", "m-good-2", "m-good-3"}
    assert set(counted.values()) == {("25-29", "male", True)}

    # each micro-batch's statistics in the progress file (observed while parsing) agree with
    # Spark's own input count and with what the tables received
    batches = progress_batches(settings, query.lastProgress.batchId)
    assert [b["rows"] for b in batches] == [b["input_rows"] for b in batches]
    in_kafka = watermarks(bootstrap, (contracts.TOPIC_ACTIONS,)).values()
    assert sum(b["actions"] for b in batches) == sum(high - low for low, high in in_kafka)
    assert sum(b["quarantined"] for b in batches) == len(quarantine)
    purchases = table(spark, settings, schemas.SPEED_PURCHASES_TABLE).count()
    assert sum(b["purchases_counted"] for b in batches) == purchases


def test_purchases_of_a_user_without_profile_count_as_unknown(spark, kafka_only, tmp_path):
    bootstrap = kafka_only.settings.bootstrap
    known, stranger = 9_200_001, 9_200_002
    produce(bootstrap, contracts.TOPIC_PROFILES, [profile(known, 6, 0)])
    produce(
        bootstrap,
        contracts.TOPIC_ACTIONS,
        [
            action("u-1", known, minute=1),
            action("u-2", stranger, minute=1),
            action("u-3", stranger, minute=1),
        ],
    )
    settings = settings_for(kafka_only, tmp_path)
    run_once(spark, settings)

    assert orders_of(spark, settings, {"u-1", "u-2", "u-3"}) == {
        "u-1": ("40-49", "female", True),
        "u-2": ("unknown", "unknown", False),
        "u-3": ("unknown", "unknown", False),
    }
    counts = window_counts(spark, settings, minute=1)
    assert counts[("unknown", "unknown")] >= 2  # other tests' strangers may share the window


def test_a_profile_arriving_after_its_users_purchases_moves_them_to_its_bucket(
    spark, kafka_only, tmp_path
):
    # empty topics: the job skips this step while no purchase waits for a profile, and the
    # module's earlier tests left users in Kafka who never get one
    kafka_only.empty_topics()
    settings = settings_for(kafka_only, tmp_path)
    bootstrap = kafka_only.settings.bootstrap
    late, stranger, later = 9_400_001, 9_400_002, 9_400_003
    unknown = ("unknown", "unknown", False)
    produce(
        bootstrap,
        contracts.TOPIC_ACTIONS,
        [
            action("l-1", late, minute=4),
            action("l-2", late, minute=4),
            action("l-3", stranger, minute=4),
        ],
    )
    run_once(spark, settings)
    assert orders_of(spark, settings, {"l-1", "l-2", "l-3"}) == {
        "l-1": unknown,
        "l-2": unknown,
        "l-3": unknown,
    }

    # the profile arrives in a batch of a restarted query, which finds the waiting purchases
    # in the table ...
    query = app.start(spark, settings)
    try:
        produce(bootstrap, contracts.TOPIC_PROFILES, [profile(late, 2, 1)])
        query.processAllAvailable()
        assert orders_of(spark, settings, {"l-1", "l-2", "l-3"}) == {
            "l-1": ("18-24", "male", True),
            "l-2": ("18-24", "male", True),
            "l-3": unknown,  # still no profile: stays where it was counted
        }
        assert window_counts(spark, settings, minute=4)[("18-24", "male")] == 2
        produce(bootstrap, contracts.TOPIC_PROFILES, [profile(stranger, 4, 0)])
        query.processAllAvailable()
        assert orders_of(spark, settings, {"l-3"}) == {"l-3": ("30-34", "female", True)}

        # ... or in a later batch of the query that counted the purchase, with nothing else
        # waiting before it
        produce(bootstrap, contracts.TOPIC_ACTIONS, [action("l-4", later, minute=4)])
        query.processAllAvailable()
        assert orders_of(spark, settings, {"l-4"}) == {"l-4": unknown}
        produce(bootstrap, contracts.TOPIC_PROFILES, [profile(later, 8, 0)])
        query.processAllAvailable()
        assert query.exception() is None
    finally:
        query.stop()
    assert orders_of(spark, settings, {"l-4"}) == {"l-4": (">=50", "female", True)}


def test_profiles_in_kafka_when_the_query_starts_are_stored_before_any_purchase_is_counted(
    spark, kafka_only, tmp_path
):
    # A backlog whose purchases come before their user's profile in micro-batch order: batches
    # take at most 3 records of each topic (at least one from each partition), so the first
    # reads purchases of `buyer` and three profiles of others; `buyer`'s profile is the 21st,
    # in the seventh. Empty topics, so the backlog holds exactly this.
    kafka_only.empty_topics()
    bootstrap = kafka_only.settings.bootstrap
    buyer, others = 9_600_001, range(9_600_100, 9_600_120)
    produce(
        bootstrap,
        contracts.TOPIC_ACTIONS,
        [action(f"b-{i}", buyer, minute=7) for i in range(6)],
    )
    produce(
        bootstrap,
        contracts.TOPIC_PROFILES,
        [*(profile(u, 1, 1) for u in others), profile(buyer, 5, 0)],
    )
    settings = settings_for(kafka_only, tmp_path).model_copy(
        update={"speed_max_offsets_per_trigger": 3}
    )
    run_once(spark, settings)

    assert set(orders_of(spark, settings, {f"b-{i}" for i in range(6)}).values()) == {
        ("35-39", "female", True)
    }
    # counted in the buyer's bucket at once: never under unknown, never moved (MERGE)
    purchases_path = lake.table_path(settings, schemas.SPEED_PURCHASES_TABLE.name)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{purchases_path}`").collect()
    assert "MERGE" not in {r["operation"] for r in history}
    report = json.loads(speed_progress.path(settings).read_text())
    assert report["profiles_preloaded"]["users_stored"] == 21
    # the backlog did take several micro-batches: counted from the checkpoint, as the
    # listener may not have written the last ones when an availableNow query stops
    commits = lake.checkpoint_path(settings, QUERY_NAME) / "commits"
    assert len([f for f in commits.iterdir() if f.name.isdigit()]) >= 6
    # micro-batches whose profiles were all preloaded store none again
    assert not [b for b in report["batches"] if "users" in b["steps_ms"]]

    # purchases counted under unknown by one run move to their bucket when the next run
    # preloads the profile that came in between
    late = 9_600_002
    produce(bootstrap, contracts.TOPIC_ACTIONS, [action(f"c-{i}", late, minute=8) for i in (1, 2)])
    run_once(spark, settings)
    assert set(orders_of(spark, settings, {"c-1", "c-2"}).values()) == {
        ("unknown", "unknown", False)
    }
    produce(bootstrap, contracts.TOPIC_PROFILES, [profile(late, 2, 1)])
    run_once(spark, settings)
    assert set(orders_of(spark, settings, {"c-1", "c-2"}).values()) == {("18-24", "male", True)}


def test_the_same_event_sent_twice_a_minute_apart_counts_once(spark, kafka_only, tmp_path):
    bootstrap = kafka_only.settings.bootstrap
    uid = 9_300_001
    produce(bootstrap, contracts.TOPIC_PROFILES, [profile(uid, 4, 1)])
    first_sent = int(time.time() * 1000)
    produce(
        bootstrap, contracts.TOPIC_ACTIONS, [action("d-1", uid, minute=2)], timestamp_ms=first_sent
    )
    settings = settings_for(kafka_only, tmp_path)
    run_once(spark, settings)
    # the duplicate arrives a minute later (Kafka time), in a later micro-batch
    produce(
        bootstrap,
        contracts.TOPIC_ACTIONS,
        [action("d-1", uid, minute=2)],
        timestamp_ms=first_sent + 60_000,
    )
    run_once(spark, settings)

    purchases = (
        table(spark, settings, schemas.SPEED_PURCHASES_TABLE)
        .where(F.col("event_id") == "d-1")
        .collect()
    )
    assert len(purchases) == 1
    rows = (
        orders_1m(spark, settings)
        .where(
            (F.col("window_start") == datetime(2015, 11, 11, 9, 2))
            & (F.col("age_bracket") == "30-34")
            & (F.col("gender") == "male")
        )
        .collect()
    )
    assert [r["orders"] for r in rows] == [1]


def test_a_users_latest_profile_by_updated_at_wins_whatever_the_arrival_order(
    spark, kafka_only, tmp_path
):
    bootstrap = kafka_only.settings.bootstrap
    uid = 9_500_001
    settings = settings_for(kafka_only, tmp_path)

    def stored(rows) -> tuple:
        rows = rows.where(F.col("user_id") == uid).orderBy("updated_at").collect()
        return tuple((r["age_range"], r["gender"], r["updated_at"].day) for r in rows)

    query = app.start(spark, settings)
    try:
        for batch, (age_range, day) in enumerate([(2, 1), (5, 5), (7, 3), (5, 5)]):
            produce(bootstrap, contracts.TOPIC_PROFILES, [profile(uid, age_range, 1, day)])
            produce(bootstrap, contracts.TOPIC_ACTIONS, [action(f"p-{batch}", uid, minute=6)])
            query.processAllAvailable()
        assert query.exception() is None
    finally:
        query.stop()

    # first seen, then a newer profile (both stored), an older one and a re-send (ignored)
    assert stored(table(spark, settings, schemas.SPEED_USER_PROFILES)) == ((2, 1, 1), (5, 1, 5))
    lake.register_tables(spark, settings)
    assert stored(spark.table("speed.users")) == ((5, 1, 5),)
    assert orders_of(spark, settings, {"p-0", "p-1", "p-2", "p-3"}) == {
        "p-0": ("18-24", "male", True),
        "p-1": ("35-39", "male", True),
        "p-2": ("35-39", "male", True),
        "p-3": ("35-39", "male", True),
    }


def test_a_duplicate_older_than_the_keys_kept_in_memory_is_found_in_the_table(
    spark, kafka_only, tmp_path
):
    bootstrap = kafka_only.settings.bootstrap
    uid = 9_700_001
    # memory keeps at most 4 counted keys: six purchases make it keep the newer ones only
    settings = settings_for(kafka_only, tmp_path).model_copy(update={"speed_counted_keys": 4})

    def purchase(event_id: str, minute: int) -> dict:  # a day after every other test's events
        return {**action(event_id, uid), "event_time": f"2015-11-12T09:{minute:02d}:30.000Z"}

    produce(bootstrap, contracts.TOPIC_PROFILES, [profile(uid, 4, 1)])
    query = app.start(spark, settings)
    try:
        produce(bootstrap, contracts.TOPIC_ACTIONS, [purchase(f"k-{m}", m) for m in range(6)])
        query.processAllAvailable()
        # a duplicate of the newest purchase (in memory), then one of the oldest (trimmed from
        # memory: the micro-batch reads speed.purchases), each beside a new purchase
        produce(bootstrap, contracts.TOPIC_ACTIONS, [purchase("k-5", 5), purchase("k-new-1", 5)])
        query.processAllAvailable()
        produce(bootstrap, contracts.TOPIC_ACTIONS, [purchase("k-0", 0), purchase("k-new-2", 0)])
        query.processAllAvailable()
        assert query.exception() is None
    finally:
        query.stop()

    ids = {f"k-{m}" for m in range(6)} | {"k-new-1", "k-new-2"}
    rows = table(spark, settings, schemas.SPEED_PURCHASES_TABLE).where(F.col("event_id").isin(ids))
    counted = rows.collect()
    assert Counter(r["event_id"] for r in counted) == dict.fromkeys(ids, 1)

    # where each micro-batch looked up the counted keys (its entry in the progress file, which
    # the listener writes asynchronously)
    batch_of = {r["event_id"]: r["batch_id"] for r in counted}
    wanted = {batch_of["k-new-1"]: "memory", batch_of["k-new-2"]: "table"}
    batches = progress_batches(settings, max(wanted))  # the listener writes them in order
    reads = {b["batch_id"]: b.get("dedup_read") for b in batches if b["batch_id"] in wanted}
    assert reads == wanted


def test_a_micro_batch_run_again_after_its_commit_changes_no_table(spark, kafka_only, tmp_path):
    # what a restart after a crash between the tables' commits and the offsets' commit does:
    # the same micro-batch (same records, same id) once more, in the same and in a new process
    bootstrap = kafka_only.settings.bootstrap
    uid = 9_800_001
    produce(bootstrap, contracts.TOPIC_PROFILES, [profile(uid, 3, 0)])
    produce(
        bootstrap,
        contracts.TOPIC_ACTIONS,
        [action("r-1", uid, minute=9), action("r-2", uid, minute=9), "not json"],
    )
    settings = settings_for(kafka_only, tmp_path)

    def topic(name: str):
        return (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", name)
            .load()
        )

    # the micro-batch's rows, fixed
    records = parse(
        topic(contracts.TOPIC_ACTIONS), topic(contracts.TOPIC_PROFILES)
    ).localCheckpoint()
    checkpoint = tmp_path / "checkpoint"  # as Spark leaves it at a query's first start
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text('{"id":"c0ffee00-0000-4000-8000-000000000007"}')
    app_id = step.app_id(checkpoint)
    assert app_id == "orderlake-speed-c0ffee00-0000-4000-8000-000000000007"

    def contents() -> dict[str, list[tuple]]:
        return {
            spec.name: sorted(map(tuple, table(spark, settings, spec).collect()), key=repr)
            for spec in schemas.SPEED_TABLES
        }

    layer = step.SpeedLayer(spark, settings, app_id)
    layer.process_batch(records, 7)
    first = contents()
    assert set(orders_of(spark, settings, {"r-1", "r-2"}).values()) == {("25-29", "female", True)}
    quarantined = table(spark, settings, schemas.SPEED_QUARANTINE)
    assert quarantined.where(F.col("value_text") == "not json").count() == 1
    layer.process_batch(records, 7)
    assert contents() == first
    step.SpeedLayer(spark, settings, app_id).process_batch(records, 7)  # a restarted process
    assert contents() == first


def test_a_new_checkpoint_writes_what_the_old_one_did_not(spark, kafka_only, tmp_path):
    """Removing only the checkpoint starts batch ids at 0 again. With the Delta transaction app
    id kept beside the checkpoint, Delta took the new checkpoint's writes for ones already done
    and skipped them without a word; the app id is now the checkpoint's own query id. The new
    checkpoint reads Kafka from the start: what was quarantined before is not quarantined
    twice."""
    bootstrap = kafka_only.settings.bootstrap
    settings = settings_for(kafka_only, tmp_path)
    marker = f"checkpoint-{time.time_ns()}"
    produce(bootstrap, contracts.TOPIC_ACTIONS, [f"{marker} first, not json"])
    run_once(spark, settings)
    checkpoint = lake.checkpoint_path(settings, QUERY_NAME)
    first_app = step.app_id(checkpoint)
    shutil.rmtree(checkpoint)
    produce(bootstrap, contracts.TOPIC_ACTIONS, [f"{marker} second, not json"])
    run_once(spark, settings)
    assert step.app_id(checkpoint) != first_app
    quarantined = (
        table(spark, settings, schemas.SPEED_QUARANTINE)
        .where(F.col("value_text").startswith(marker))
        .collect()
    )
    assert Counter(r["value_text"] for r in quarantined) == {
        f"{marker} first, not json": 1,
        f"{marker} second, not json": 1,
    }
