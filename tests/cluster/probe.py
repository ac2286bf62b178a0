"""Looks at the cluster's Kafka from inside one of its hosts, for tests/cluster (prints JSON).

    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py topics
    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py count tmall.user_actions
    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py refused
    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py reapply
    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py watermarks
    orderlake cluster exec kafka-topics -- python tests/cluster/probe.py gap TOPIC SINCE_MS

Runs with the host's environment (kafka-topics: the admin principal over SASL_SSL, its CA and
password from ORDERLAKE_KAFKA_AUTH_DIR), so brokers are dialled by the names their
certificates carry.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from orderlake import kafka_admin
from orderlake.cluster import kafka_acls
from orderlake.kafka_client import PLAINTEXT, KafkaAuth, describe_failure, librdkafka_config
from orderlake.settings import Settings

PRIVATE_TOPIC = "audit.private"  # outside tmall.*: no service principal may read it


def topics(settings: Settings) -> dict:
    """Per topic: partitions with leader, replicas, in-sync replicas; min.insync.replicas."""
    admin = AdminClient(librdkafka_config(settings.bootstrap, settings.kafka_auth()))
    md = admin.list_topics(timeout=20)
    out = {}
    for name, topic in md.topics.items():
        if not name.startswith("tmall."):
            continue
        config = admin.describe_configs([ConfigResource("topic", name)])
        (future,) = config.values()
        isr_min = future.result(timeout=20)["min.insync.replicas"].value
        out[name] = {
            "min_insync_replicas": int(isr_min),
            "partitions": {
                p.id: {"leader": p.leader, "replicas": list(p.replicas), "isrs": list(p.isrs)}
                for p in topic.partitions.values()
            },
        }
    return {"topics": out, "brokers": sorted(md.brokers)}


def gap(settings: Settings, topic: str, since_ms: int) -> dict:
    """The longest pause between consecutive records' broker time stamps after ``since_ms``
    (all partitions together): how long writes stalled, e.g. while a leader failed over."""
    stamps = count(settings, topic, since_ms=since_ms)["timestamps"]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"records": len(stamps), "max_gap_ms": max(gaps, default=0)}


def count(settings: Settings, topic: str, since_ms: int | None = None) -> dict:
    """Every record of ``topic`` up to its end offsets now: records, distinct event ids."""
    config = librdkafka_config(settings.bootstrap, settings.kafka_auth())
    consumer = Consumer(
        {
            **config,
            "group.id": f"orderlake-batch-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 0,  # a dead broker's refusals are expected: no stderr lines
        }
    )
    md = consumer.list_topics(topic, timeout=20)
    parts = sorted(md.topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20) for p in parts}
    consumer.assign([TopicPartition(topic, p, lo) for p, (lo, _) in ends.items()])
    remaining = {p for p, (lo, hi) in ends.items() if hi > lo}
    records, ids, hosts, stamps = 0, set(), Counter(), []
    deadline = time.monotonic() + 120
    while remaining and time.monotonic() < deadline:
        for msg in consumer.consume(2000, timeout=1):
            if msg.error():
                continue
            records += 1
            if since_ms is not None and msg.timestamp()[1] >= since_ms:
                stamps.append(msg.timestamp()[1])
            value = json.loads(msg.value())
            if "event_id" in value:
                ids.add(value["event_id"])
                hosts[value["event_id"].split(":", 1)[0]] += 1
            if msg.offset() >= ends[msg.partition()][1] - 1:
                remaining.discard(msg.partition())
    consumer.close()
    return {
        "records": records,
        "distinct_event_ids": len(ids),
        "by_host": dict(hosts),
        "complete": not remaining,
        **({"timestamps": sorted(stamps)} if since_ms is not None else {}),
    }


def refused_consume(settings: Settings, auth: KafkaAuth, topic: str, group: str) -> list:
    """Everything librdkafka reports while ``auth`` tries to read ``topic`` in ``group``
    (nothing read: a record read is reported as a failure of the probe)."""
    errors: list = []
    consumer = Consumer(
        {
            **librdkafka_config(settings.bootstrap, auth),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "error_cb": errors.append,
            "log_level": 0,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not errors:
            msg = consumer.poll(0.2)
            if msg is not None:
                errors.append(msg.error() or f"{auth.principal} READ a record of {topic}")
    finally:
        consumer.close()
    return errors


def refused(settings: Settings) -> dict:
    """What a client without credentials, a wrong password, the speed principal writing, and
    principals outside their consumer groups or topics are told."""
    found = {}
    errors: list = []
    anonymous = Consumer(
        {
            **librdkafka_config(settings.bootstrap, PLAINTEXT),
            "group.id": "orderlake-speed-anonymous",
            "error_cb": errors.append,
            "log_level": 0,
        }
    )
    try:
        anonymous.list_topics(timeout=10)
        found["anonymous_metadata"] = "answered"
    except Exception as exc:  # noqa: BLE001 - what the user would see
        errors.append(exc)
    anonymous.close()
    found["anonymous"] = describe_failure(errors, PLAINTEXT, bootstrap=settings.bootstrap)

    assert settings.kafka_auth_dir is not None
    speed = KafkaAuth.scram(settings.kafka_auth_dir, "speed")
    failures: list = []
    producer = Producer(
        {
            **librdkafka_config(settings.bootstrap, speed),
            "acks": "all",
            "message.timeout.ms": 15000,
            "error_cb": failures.append,
            "log_level": 0,
        }
    )
    producer.produce(
        "tmall.user_actions", b"{}", on_delivery=lambda err, _msg: err and failures.append(err)
    )
    producer.flush(30)
    codes = [e.code() for e in failures if isinstance(e, KafkaError)]
    found["speed_produce_refused"] = KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    found["speed_produce"] = describe_failure(failures, speed, topic="tmall.user_actions")

    wrong = KafkaAuth("SASL_SSL", "speed", "not-the-password", ca_pem=speed.ca_pem)
    failures = refused_consume(settings, wrong, "tmall.user_actions", "orderlake-speed-x")
    found["wrong_password"] = describe_failure(failures, wrong, bootstrap=settings.bootstrap)
    admin = AdminClient(librdkafka_config(settings.bootstrap, settings.kafka_auth()))
    for future in admin.create_topics([NewTopic(PRIVATE_TOPIC, 1, 3)]).values():
        with contextlib.suppress(KafkaException):  # there from an earlier probe
            future.result(timeout=30)
    collector = KafkaAuth.scram(settings.kafka_auth_dir, "collector")
    for name, auth, topic, group in (
        ("collector_reads", collector, "tmall.user_actions", "orderlake-speed-stolen"),
        ("speed_other_group", speed, "tmall.user_actions", "adhoc"),
        ("speed_private_topic", speed, PRIVATE_TOPIC, "orderlake-speed-private"),
    ):
        failures = refused_consume(settings, auth, topic, group)
        found[name] = describe_failure(failures, auth, topic=topic, group=group)
    return found


def reapply(settings: Settings) -> dict:
    """The users and ACLs the topic step made, applied again as the admin: what changed."""
    assert settings.kafka_auth_dir is not None
    auth = settings.kafka_auth()
    admin = kafka_acls.admin_client(settings.bootstrap, auth)
    users = kafka_acls.service_passwords(settings.kafka_auth_dir)
    changed = kafka_acls.ensure_users(admin, users, auth=auth)
    added = kafka_acls.ensure_acls(admin, kafka_acls.acl_bindings(), auth=auth)
    return {"users_changed": changed, "acls_added": [str(b) for b in added]}


def watermarks(settings: Settings) -> dict:
    """{"topic/partition": [earliest, end]} of every tmall.* partition."""
    held = kafka_admin.watermarks(settings.bootstrap, timeout=20, auth=settings.kafka_auth())
    return {f"{topic}/{part}": list(marks) for (topic, part), marks in held.items()}


def retried(work, timeout: float = 90.0):
    """``work()``, again while a partition's leadership moves (a broker just died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return work()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    if argv[:1] == ["topics"]:
        result = retried(lambda: topics(settings))
    elif argv[:1] == ["count"]:
        result = retried(lambda: count(settings, argv[1]))
    elif argv[:1] == ["gap"]:
        result = retried(lambda: gap(settings, argv[1], int(argv[2])))
    elif argv[:1] == ["refused"]:
        result = refused(settings)
    elif argv[:1] == ["reapply"]:
        result = reapply(settings)
    elif argv[:1] == ["watermarks"]:
        result = retried(lambda: watermarks(settings))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
