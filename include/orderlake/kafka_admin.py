"""What any orderlake process asks of Kafka, embedded or cluster: is it ready, the topics (created
idempotently with the contract's settings), and the offsets it holds. Runtime code (jobs, the
speed layer, reconciliation) reads Kafka through here; orderlake.stack.kafka only starts the
embedded broker.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from orderlake import contracts
from orderlake.errors import OrderlakeError
from orderlake.kafka_client import KafkaAuth, librdkafka_config
from orderlake.settings import Settings


def env_auth(auth: KafkaAuth | None = None) -> KafkaAuth:
    """``auth``, else how this process's ORDERLAKE_KAFKA_* variables say to authenticate
    (PLAINTEXT unless ORDERLAKE_KAFKA_SECURITY is set, as in cluster mode): the helpers below
    serve jobs that pass only a bootstrap address."""
    return auth if auth is not None else Settings.from_env().kafka_auth()


def admin(bootstrap: str, log_level: int = 3, auth: KafkaAuth | None = None) -> AdminClient:
    """An admin client; librdkafka's own stderr lines only from ``log_level`` (syslog levels;
    3 = errors: no info lines such as "Purging 1 unserved events" on a user's terminal)."""
    return AdminClient(
        {
            **librdkafka_config(bootstrap, env_auth(auth)),
            "socket.timeout.ms": 5000,
            "log_level": log_level,
        }
    )


def wait_ready(bootstrap: str, timeout: float = 60.0, auth: KafkaAuth | None = None) -> None:
    """Block until the broker answers a metadata request with a controller, or raise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    # refused connections are expected while the broker starts: not printed, and the last
    # one is in the error if it never answers
    client = admin(bootstrap, log_level=2, auth=auth)
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=2)
            if md.brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.5)
    raise OrderlakeError(f"Kafka at {bootstrap} did not become ready in {timeout:.0f} s ({last}).")


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The platform's topics. Actions keep long history so replays can re-read it; profiles are
    compacted (latest profile per user_id key); rejects keep the same retention as actions.

    Each topic has ORDERLAKE_REPLICATION_FACTOR replicas; above the broker default of one
    in-sync replica, ORDERLAKE_MIN_INSYNC_REPLICAS is pinned on the topic itself, so the
    guarantee of acks=all writes does not hang on a broker setting."""
    retention = str(settings.retention_ms)
    replicas = settings.replication_factor
    isr = settings.min_insync_replicas
    guard = {"min.insync.replicas": str(isr)} if isr > 1 else {}
    return [
        NewTopic(
            contracts.TOPIC_ACTIONS,
            num_partitions=settings.actions_partitions,
            replication_factor=replicas,
            config={"retention.ms": retention, **guard},
        ),
        NewTopic(
            contracts.TOPIC_PROFILES,
            num_partitions=1,
            replication_factor=replicas,
            config={"cleanup.policy": "compact", **guard},
        ),
        NewTopic(
            contracts.TOPIC_REJECTS,
            num_partitions=1,
            replication_factor=replicas,
            config={"retention.ms": retention, **guard},
        ),
    ]


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the created names."""
    client = admin(settings.bootstrap, auth=settings.kafka_auth())
    existing = set(client.list_topics(timeout=10).topics)
    missing = [t for t in topic_specs(settings) if t.topic not in existing]
    if not missing:
        return []
    for name, future in client.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise OrderlakeError(f"Creating Kafka topic {name} failed: {exc}") from exc
    return [t.topic for t in missing]


def watermarks(
    bootstrap: str,
    topics: tuple[str, ...] = contracts.ALL_TOPICS,
    timeout: float = 10,
    auth: KafkaAuth | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (earliest offset held, end offset)} as Kafka holds them now
    (missing topics are skipped). Status, the batch load, reconciliation and the speed
    layer's profile preload all read offsets through this one consumer."""
    # reading watermarks joins no group: the id only has to be one the ACLs could allow
    consumer = Consumer(
        {
            **librdkafka_config(bootstrap, env_auth(auth)),
            "group.id": "orderlake-offsets",
            "enable.auto.commit": False,
        }
    )
    try:
        md = consumer.list_topics(timeout=timeout)
        marks: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in topics:
            if topic not in md.topics:
                continue
            for partition in sorted(md.topics[topic].partitions):
                tp = TopicPartition(topic, partition)
                marks[(topic, partition)] = consumer.get_watermark_offsets(tp, timeout=timeout)
        return marks
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topics: tuple[str, ...] = contracts.ALL_TOPICS) -> dict:
    """{topic: {partition: end offset}} for the given topics (missing topics are skipped);
    a short timeout: `orderlake status` reads it and must answer quickly when Kafka is down."""
    result: dict[str, dict[int, int]] = {}
    for (topic, partition), (_, high) in watermarks(bootstrap, topics, timeout=5).items():
        result.setdefault(topic, {})[partition] = high
    return result
