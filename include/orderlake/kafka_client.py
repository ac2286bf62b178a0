"""How a client reaches Kafka: one ``KafkaAuth`` -> librdkafka's and Java clients' settings.

The embedded default is one PLAINTEXT broker on loopback; the cluster deployment puts every
listener behind SASL_SSL (SCRAM-SHA-512 over TLS, orderlake.cluster.kafka_node). The same
``KafkaAuth`` configures confluent-kafka (``librdkafka_config``) and the JVM clients, Flume's
Kafka channels and Spark's Kafka source (``java_properties``), so they cannot disagree.

A refused connection, a refused login or a missing ACL reaches the user as one sentence naming
the principal and what to check (``describe_failure``), not as librdkafka's error code.

Example::

    auth = KafkaAuth.scram(secrets_dir, "collector")
    producer = Producer({**librdkafka_config("kafka-1:9092", auth), "acks": "all"})
    spark_options = {f"kafka.{k}": v for k, v in java_properties(auth).items()}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

from confluent_kafka import KafkaError

from orderlake.errors import OrderlakeError

Protocol = Literal["PLAINTEXT", "SASL_SSL"]
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class KafkaAuth:
    """Who a client is and how it trusts the brokers.

    PLAINTEXT needs nothing else. SASL_SSL needs the SCRAM user and password, and the cluster's
    CA: ``ca_pem`` for librdkafka, ``truststore`` (PKCS12) and its password for Java clients."""

    protocol: Protocol = "PLAINTEXT"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: Path | None = None
    truststore: Path | None = None
    truststore_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("PLAINTEXT", "SASL_SSL"):
            raise OrderlakeError(
                f"Kafka security protocol {self.protocol!r} is not supported; use PLAINTEXT "
                "(embedded default) or SASL_SSL (cluster)."
            )
        if self.protocol == "SASL_SSL" and not (self.username and self.password):
            raise OrderlakeError(
                "A SASL_SSL Kafka client needs a user name and a password; give the principal's "
                "SCRAM credentials (KafkaAuth.scram reads them from the secrets directory)."
            )

    @property
    def principal(self) -> str:
        """The name brokers authorize this client as (``User:<name>`` in ACLs)."""
        return self.username or "ANONYMOUS"

    @classmethod
    def scram(cls, secrets_dir: Path, username: str) -> KafkaAuth:
        """SASL_SSL as ``username``, from a cluster's secrets directory: the user's password in
        ``users/<name>.password``, the CA in ``ca.pem`` and ``truststore.p12``."""
        password_file = user_password_file(secrets_dir, username)
        if not password_file.is_file():
            raise OrderlakeError(
                f"No password for Kafka principal {username!r} at {password_file}; create the "
                "cluster's users first (orderlake.cluster.kafka_acls.ensure_users)."
            )
        trust_password = secrets_dir / "truststore.password"
        return cls(
            protocol="SASL_SSL",
            username=username,
            password=password_file.read_text().strip(),
            ca_pem=secrets_dir / "ca.pem",
            truststore=secrets_dir / "truststore.p12",
            truststore_password=(
                trust_password.read_text().strip() if trust_password.is_file() else None
            ),
        )


PLAINTEXT = KafkaAuth()


def user_password_file(secrets_dir: Path, username: str) -> Path:
    """Where a SCRAM user's password lives in a cluster's secrets directory (mode 0600)."""
    return secrets_dir / "users" / f"{username}.password"


def librdkafka_config(bootstrap: str, auth: KafkaAuth = PLAINTEXT) -> dict[str, str]:
    """confluent-kafka settings to reach ``bootstrap`` as ``auth`` (merge in the client's own)."""
    config = {"bootstrap.servers": bootstrap}
    if auth.protocol == "PLAINTEXT":
        return config
    if auth.ca_pem is None:
        raise OrderlakeError(
            f"Kafka principal {auth.principal!r} has no CA certificate (ca_pem); librdkafka "
            "needs the cluster's ca.pem to trust the brokers."
        )
    config.update(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": auth.username or "",
            "sasl.password": auth.password or "",
            "ssl.ca.location": str(auth.ca_pem),
            # the broker's certificate must name the host dialled (librdkafka's default, pinned)
            "ssl.endpoint.identification.algorithm": "https",
        }
    )
    return config


def spark_options(auth: KafkaAuth = PLAINTEXT, group_prefix: str | None = None) -> dict[str, str]:
    """Options of Spark's Kafka source for ``auth`` (``kafka.``-prefixed client settings), and
    the consumer group prefix its ACLs allow (Spark's own ids otherwise start spark-kafka-)."""
    options = {f"kafka.{k}": v for k, v in java_properties(auth).items()}
    if group_prefix:
        options["groupIdPrefix"] = group_prefix
    return options


def java_properties(auth: KafkaAuth = PLAINTEXT) -> dict[str, str]:
    """Kafka Java client settings for ``auth`` (Flume's sink: ``kafka.producer.<key>``; Spark's
    source: ``kafka.<key>``)."""
    if auth.protocol == "PLAINTEXT":
        return {"security.protocol": "PLAINTEXT"}
    if auth.truststore is None or auth.truststore_password is None:
        raise OrderlakeError(
            f"Kafka principal {auth.principal!r} has no truststore; Java clients need the "
            "cluster's truststore.p12 and its password to trust the brokers."
        )
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.jaas.config": (
            f"{SCRAM_LOGIN_MODULE} required "
            f'username="{_jaas_quote(auth.username or "")}" '
            f'password="{_jaas_quote(auth.password or "")}";'
        ),
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(auth.truststore),
        "ssl.truststore.password": auth.truststore_password,
        "ssl.endpoint.identification.algorithm": "https",
    }


Failure = BaseException | KafkaError


def describe_failure(
    error: Failure | Sequence[Failure],
    auth: KafkaAuth = PLAINTEXT,
    *,
    bootstrap: str | None = None,
    topic: str | None = None,
    group: str | None = None,
) -> str:
    """One sentence for a failed Kafka call: what was refused, for which principal, what to check.

    ``error`` is what confluent-kafka raised or reported: a ``KafkaException`` (or an exception
    raised from one), the ``KafkaError`` of a delivery report, ``Message.error()`` or
    ``error_cb``, or several of these (the most telling one is described: a refused login or
    ACL rather than the time-out it caused). ``topic`` and ``group`` name what the client was
    using, when known.

    Example::

        errors = []
        consumer = Consumer({..., "error_cb": errors.append})
        ...
        raise OrderlakeError(describe_failure(errors, auth, bootstrap=bootstrap))
    """
    failures = [error] if isinstance(error, BaseException | KafkaError) else list(error)
    errors = [e for e in (_kafka_error(f) for f in failures) if e is not None]
    if not errors:
        text = "; ".join(str(f) for f in failures) or "no error reported"
        return f"A Kafka request of {_who(auth)} failed: {text}."
    err = min(errors, key=_rank)
    code, text = err.code(), _short(err.str())
    who, where = _who(auth), f"Kafka at {bootstrap}" if bootstrap else "Kafka"
    refused = any("connection refused" in e.str().lower() for e in errors)

    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return (
            f"{_cap(who)} is not authorized on {f'topic {topic}' if topic else 'the topic'}; "
            "check its ACLs (only the collector writes tmall.* topics, the speed and batch "
            "principals only read them) or use the principal meant for this job."
        )
    if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
        return (
            f"{_cap(who)} is not authorized to use "
            f"{f'consumer group {group}' if group else 'its consumer group'}; its group.id must "
            "start with a prefix its ACLs allow (orderlake-speed for speed, orderlake-batch for "
            "batch)."
        )
    if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED and "idempotence" in text.lower():
        return (
            f"{_cap(who)} may not produce: the cluster refused it an idempotent producer id, as "
            "only the collector may write tmall.* topics; check its ACLs or use the collector "
            "principal."
        )
    if code in (
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ):
        return (
            f"{_cap(who)} is not authorized for this cluster operation ({text}); check its "
            "ACLs or run the operation as the admin principal."
        )
    if code == KafkaError._AUTHENTICATION:
        if not auth.username:
            return (
                f"{where} refused {who}; its listeners require SASL_SSL with {MECHANISM}, so "
                "give the client a principal's credentials and the cluster's CA "
                "(KafkaAuth.scram)."
            )
        return (
            f"{where} refused the credentials of {who} ({MECHANISM}); check its password "
            f"(users/{auth.username}.password in the cluster's secrets) and that the user exists "
            "(kafka_acls.ensure_users)."
        )
    if code == KafkaError._SSL:
        return (
            f"The TLS handshake of {who} with {where} failed ({text}); check that the client "
            "trusts the cluster's CA (ca.pem) and that the broker's certificate names the host "
            "dialled."
        )
    if refused:
        return (
            f"{where} refused the connection of {who}; check that the brokers run and that the "
            "bootstrap addresses and ports are right."
        )
    if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) and not auth.username:
        return (
            f"{where} closed every connection of {who} speaking PLAINTEXT; the cluster's "
            f"listeners require SASL_SSL with {MECHANISM}, so give the client a principal's "
            "credentials and the cluster's CA (KafkaAuth.scram)."
        )
    if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
        return (
            f"{where} closed every connection of {who} ({text}); check that the brokers run and "
            "that their listeners speak SASL_SSL."
        )
    return f"A Kafka request of {who} failed: {text}."


# the most telling error first: a refused ACL or login explains the time-outs that follow it
_RANKS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: 0,
    KafkaError.GROUP_AUTHORIZATION_FAILED: 0,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: 0,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 0,
    KafkaError._AUTHENTICATION: 1,
    KafkaError._SSL: 2,
    KafkaError._TRANSPORT: 3,
    KafkaError._ALL_BROKERS_DOWN: 4,
}


def _rank(error: KafkaError) -> int:
    return _RANKS.get(error.code(), 5)


def _who(auth: KafkaAuth) -> str:
    return f"Kafka principal {auth.username!r}" if auth.username else "a client without credentials"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(text: str) -> str:
    """librdkafka's message without the broker prefix and the state timings."""
    text = text.strip()
    text = re.sub(r"^\S+/(?:bootstrap|\d+): ", "", text)
    text = re.sub(r" \(after \d+ms in state \w+[^)]*\)$", "", text)
    text = text.split(", verify that")[0]  # librdkafka's own advice follows
    return text.rstrip(".")


def raise_for(
    error: Failure | Sequence[Failure],
    auth: KafkaAuth = PLAINTEXT,
    *,
    bootstrap: str | None = None,
    topic: str | None = None,
    group: str | None = None,
) -> NoReturn:
    """Raise ``OrderlakeError(describe_failure(...))`` for ``error``."""
    raise OrderlakeError(
        describe_failure(error, auth, bootstrap=bootstrap, topic=topic, group=group)
    )


def _kafka_error(error: Failure) -> KafkaError | None:
    """The KafkaError in ``error`` or in the exceptions it was raised from: confluent-kafka
    2.16 raises a fatal producer error (a refused idempotent producer id) while it calls the
    delivery callback, which then fails with a SystemError caused by the KafkaException."""
    seen: set[int] = set()
    current: BaseException | KafkaError | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KafkaError):
            return current
        seen.add(id(current))
        first = current.args[0] if current.args else None
        if isinstance(first, KafkaError):
            return first
        current = current.__cause__ or current.__context__
    return None


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
