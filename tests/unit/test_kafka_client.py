"""Client settings from one KafkaAuth, failures as one sentence, and least-privilege ACLs.

librdkafka's errors here are the ones a real secured cluster gave (the cluster tier,
tests/cluster/test_deployment.py, produces them for real); each must name the principal and
what to check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from orderlake.cluster import kafka_acls
from orderlake.errors import OrderlakeError
from orderlake.kafka_client import (
    PLAINTEXT,
    KafkaAuth,
    describe_failure,
    java_properties,
    librdkafka_config,
)
from tests.fixtures.errors import one_sentence

SPEED = KafkaAuth(
    "SASL_SSL",
    "speed",
    "pw",
    ca_pem=Path("/s/ca.pem"),
    truststore=Path("/s/truststore.p12"),
    truststore_password="tpw",
)


def test_plaintext_is_just_the_bootstrap():
    assert librdkafka_config("h:1") == {"bootstrap.servers": "h:1"}
    assert java_properties() == {"security.protocol": "PLAINTEXT"}


def test_sasl_ssl_for_librdkafka_and_java_from_the_same_auth():
    rd = librdkafka_config("kafka-1:9092", SPEED)
    assert rd["security.protocol"] == "SASL_SSL" and rd["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert (rd["sasl.username"], rd["sasl.password"]) == ("speed", "pw")
    assert rd["ssl.ca.location"] == "/s/ca.pem"
    java = java_properties(SPEED)
    assert java["sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="speed" password="pw";'
    )
    assert java["ssl.truststore.location"] == "/s/truststore.p12"
    assert java["ssl.truststore.password"] == "tpw"


def test_a_password_never_shows_in_repr():
    assert "pw" not in repr(SPEED).replace("speed", "")


def test_sasl_ssl_without_credentials_or_trust_is_one_clear_error():
    with pytest.raises(OrderlakeError, match="needs a user name and a password"):
        KafkaAuth("SASL_SSL", "speed")
    with pytest.raises(OrderlakeError, match="no CA certificate"):
        librdkafka_config("h:1", KafkaAuth("SASL_SSL", "speed", "pw"))
    with pytest.raises(OrderlakeError, match="no truststore"):
        java_properties(KafkaAuth("SASL_SSL", "speed", "pw", ca_pem=Path("/ca.pem")))


def test_scram_reads_the_principal_from_the_secrets_directory(tmp_path):
    with pytest.raises(OrderlakeError, match="No password for Kafka principal 'batch'"):
        KafkaAuth.scram(tmp_path, "batch")
    kafka_acls.user_password(tmp_path, "batch")
    auth = KafkaAuth.scram(tmp_path, "batch")
    assert auth.username == "batch" and len(auth.password or "") >= 24
    assert (tmp_path / "users" / "batch.password").stat().st_mode & 0o077 == 0
    assert kafka_acls.user_password(tmp_path, "batch") == auth.password  # reused


AUTH_FAILED = (
    "sasl_ssl://127.0.0.1:29235/bootstrap: SASL authentication error: Authentication failed "
    "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 327ms in state AUTH_REQ)"
)
SSL_FAILED = (
    "sasl_ssl://127.0.0.1:20979/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured or root CA certificates are installed (install "
    "ca-certificates package) (after 4ms in state SSL_HANDSHAKE)"
)


@pytest.mark.parametrize(
    ("errors", "auth", "expected"),
    [
        ([KafkaError(KafkaError._MSG_TIMED_OUT),
          KafkaError(KafkaError._AUTHENTICATION, AUTH_FAILED)],
         SPEED, "refused the credentials of Kafka principal 'speed'"),
        ([KafkaError(KafkaError._SSL, SSL_FAILED)], SPEED, "trusts the cluster's CA (ca.pem)"),
        ([KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)], SPEED,
         "Kafka principal 'speed' is not authorized on topic tmall.user_actions"),
        ([KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)], SPEED,
         "'speed' is not authorized to use consumer group g1"),
        ([KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                     "Failed to acquire idempotence PID from broker x: Broker: Cluster "
                     "authorization failed", fatal=True)],
         SPEED, "Kafka principal 'speed' may not produce"),
        ([KafkaError(KafkaError._ALL_BROKERS_DOWN, "3/3 brokers are down")], PLAINTEXT,
         "closed every connection of a client without credentials speaking PLAINTEXT"),
        ([KafkaError(KafkaError._TRANSPORT, "h:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
                     "Connection refused (after 0ms in state CONNECT)"),
          KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")], PLAINTEXT,
         "refused the connection of a client without credentials"),
    ],
    ids=["login", "tls", "topic-acl", "group-acl", "idempotent-pid", "plaintext", "refused"],
)  # fmt: skip
def test_failures_are_one_sentence_naming_principal_and_what_to_check(errors, auth, expected):
    text = describe_failure(errors, auth, bootstrap="h:1", topic="tmall.user_actions", group="g1")
    assert expected in one_sentence(text)
    assert "(after" not in text and "verify that ssl.ca.location" not in text


def test_a_failure_raised_from_a_kafka_exception_is_found_through_the_chain():
    # confluent-kafka 2.16: a fatal producer error surfaces as a SystemError from the
    # delivery callback, raised from the KafkaException that carries the real cause
    fatal = KafkaException(
        KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "Failed to acquire idempotence PID")
    )
    try:
        try:
            raise fatal
        except KafkaException as exc:
            raise SystemError("append returned a result with an exception set") from exc
    except SystemError as wrapped:
        assert "may not produce" in describe_failure(wrapped, SPEED)


def test_acls_are_least_privilege():
    grants = {
        (b.principal, b.restype, b.name, b.resource_pattern_type, b.operation)
        for b in kafka_acls.acl_bindings()
    }
    prefixed, literal = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    assert grants == {
        ("User:collector", topic, "tmall.", prefixed, AclOperation.WRITE),
        ("User:collector", topic, "tmall.", prefixed, AclOperation.DESCRIBE),
        ("User:collector", ResourceType.BROKER, "kafka-cluster", literal,
         AclOperation.IDEMPOTENT_WRITE),
        ("User:speed", topic, "tmall.", prefixed, AclOperation.READ),
        ("User:speed", topic, "tmall.", prefixed, AclOperation.DESCRIBE),
        ("User:speed", group, "orderlake-speed", prefixed, AclOperation.READ),
        ("User:batch", topic, "tmall.", prefixed, AclOperation.READ),
        ("User:batch", topic, "tmall.", prefixed, AclOperation.DESCRIBE),
        ("User:batch", group, "orderlake-batch", prefixed, AclOperation.READ),
    }  # fmt: skip
    assert {b.permission_type.name for b in kafka_acls.acl_bindings()} == {"ALLOW"}
