"""The secured cluster's principals: SCRAM users and least-privilege ACLs, applied idempotently.

Principals (SCRAM-SHA-512 users; passwords in ``<secrets>/users/<name>.password``, 0600):

- ``broker``: brokers and controllers between themselves; super user (kafka_node).
- ``admin``: manages topics, users and ACLs; super user, created at format time with ``broker``
  (creating ACLs needs ALTER on the cluster, which lets a principal grant itself anything, so a
  narrower admin would be narrower on paper only).
- ``collector``: the Flume collector's Kafka channels. WRITE and DESCRIBE on topics starting with
  ``tmall.``; IDEMPOTENT_WRITE on the cluster (its producer is idempotent).
- ``speed``: the streaming job. READ and DESCRIBE on ``tmall.*``; READ on consumer groups
  starting with ``orderlake-speed``.
- ``batch``: the batch loaders (bronze ingest, replays, reconciliation). READ and DESCRIBE on
  ``tmall.*``; READ on groups starting with ``orderlake-batch``.

Everything else is denied (StandardAuthorizer, allow.everyone.if.no.acl.found=false): a reader
cannot write, the collector cannot read, nobody but the admin creates topics.

Example::

    admin = admin_client(bootstrap, KafkaAuth.scram(secrets, "admin"))
    ensure_users(admin, service_passwords(secrets))
    ensure_acls(admin, acl_bindings())
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from orderlake.cluster import tls
from orderlake.errors import OrderlakeError
from orderlake.kafka_client import KafkaAuth, describe_failure, librdkafka_config
from orderlake.kafka_client import user_password_file as password_file

COLLECTOR = "collector"
SPEED = "speed"
BATCH = "batch"
SERVICES = (COLLECTOR, SPEED, BATCH)
TOPIC_PREFIX = "tmall."
SPEED_GROUP_PREFIX = "orderlake-speed"
BATCH_GROUP_PREFIX = "orderlake-batch"
CLUSTER_RESOURCE = "kafka-cluster"  # the one name ACLs on the cluster resource take
SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0


def user_password(secrets_dir: Path, name: str) -> str:
    """The principal's password, generated (0600) on first use and reused afterwards."""
    return tls.secret(password_file(secrets_dir, name))


def service_passwords(secrets_dir: Path, names: Iterable[str] = SERVICES) -> dict[str, str]:
    """{principal: password} of the platform's service principals."""
    return {name: user_password(secrets_dir, name) for name in names}


def acl_bindings(
    topic_prefix: str = TOPIC_PREFIX,
    speed_groups: str = SPEED_GROUP_PREFIX,
    batch_groups: str = BATCH_GROUP_PREFIX,
) -> list[AclBinding]:
    """Every ACL the platform needs, nothing more (the module docstring lists them)."""

    def allow(
        principal: str,
        kind: ResourceType,
        name: str,
        operation: AclOperation,
        pattern: ResourcePatternType = ResourcePatternType.PREFIXED,
    ) -> AclBinding:
        return AclBinding(
            kind, name, pattern, f"User:{principal}", "*", operation, AclPermissionType.ALLOW
        )

    topic = ResourceType.TOPIC
    bindings = [
        allow(COLLECTOR, topic, topic_prefix, AclOperation.WRITE),
        allow(COLLECTOR, topic, topic_prefix, AclOperation.DESCRIBE),
        allow(
            COLLECTOR,
            ResourceType.BROKER,  # librdkafka's name for the cluster resource
            CLUSTER_RESOURCE,
            AclOperation.IDEMPOTENT_WRITE,
            ResourcePatternType.LITERAL,
        ),
    ]
    for principal, groups in ((SPEED, speed_groups), (BATCH, batch_groups)):
        bindings += [
            allow(principal, topic, topic_prefix, AclOperation.READ),
            allow(principal, topic, topic_prefix, AclOperation.DESCRIBE),
            allow(principal, ResourceType.GROUP, groups, AclOperation.READ),
        ]
    return bindings


def admin_client(
    bootstrap: str, auth: KafkaAuth, errors: list[KafkaError] | None = None
) -> AdminClient:
    """An AdminClient authenticated as ``auth``; librdkafka's errors go to ``errors`` when given
    (for ``describe_failure``), otherwise only errors are logged."""
    config: dict[str, Any] = {
        **librdkafka_config(bootstrap, auth),
        "socket.timeout.ms": 10000,
        "log_level": 3,
    }
    if errors is not None:
        config.update({"error_cb": lambda error: errors.append(error), "log_level": 0})
    return AdminClient(config)


def wait_for_brokers(
    bootstrap: str, auth: KafkaAuth, count: int, timeout: float = 120.0
) -> dict[int, str]:
    """Block until ``count`` brokers are registered and unfenced, as ``auth`` sees them;
    returns {node id: address}. Raises one sentence (``describe_failure``) when they are not
    there in time."""
    errors: list[KafkaError] = []
    admin = admin_client(bootstrap, auth, errors)
    deadline = time.monotonic() + timeout
    brokers: dict[int, str] = {}
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=5)
            brokers = {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()}
            if len(brokers) >= count:
                return brokers
        except KafkaException as exc:
            errors.append(exc.args[0])
        time.sleep(0.5)
    if errors and not brokers:
        raise OrderlakeError(describe_failure(errors, auth, bootstrap=bootstrap))
    raise OrderlakeError(
        f"Only {len(brokers)} of {count} Kafka brokers at {bootstrap} registered in "
        f"{timeout:.0f} s; check the missing brokers' logs."
    )


def ensure_users(
    admin: AdminClient, users: Mapping[str, str], *, auth: KafkaAuth, bootstrap: str | None = None
) -> list[str]:
    """Create the SCRAM-SHA-512 users of ``users`` ({name: password}) that do not exist yet;
    existing users keep their credentials. Returns the names created. ``auth`` is the admin's
    (named in errors)."""
    if not users:
        return []
    futures = admin.describe_user_scram_credentials(list(users), request_timeout=TIMEOUT_S)
    if not isinstance(futures, dict):  # one future per user whenever users are named
        raise TypeError(f"describe_user_scram_credentials returned {type(futures).__name__}")
    missing = []
    for name, future in futures.items():
        try:
            description = future.result()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.RESOURCE_NOT_FOUND:
                missing.append(name)
                continue
            raise OrderlakeError(describe_failure(exc, auth, bootstrap=bootstrap)) from exc
        mechanisms = {info.mechanism for info in description.scram_credential_infos}
        if ScramMechanism.SCRAM_SHA_512 not in mechanisms:
            missing.append(name)
    if not missing:
        return []
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(n, info, users[n].encode()) for n in missing
    ]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT_S).values():
        try:
            future.result()
        except KafkaException as exc:
            raise OrderlakeError(describe_failure(exc, auth, bootstrap=bootstrap)) from exc
    return missing


def ensure_acls(
    admin: AdminClient,
    bindings: Iterable[AclBinding],
    *,
    auth: KafkaAuth,
    bootstrap: str | None = None,
) -> list[AclBinding]:
    """Create the ACLs of ``bindings`` the cluster does not hold yet; returns those created.

    ACLs reach every broker through the metadata log a moment after they are created, so a
    second call right after the first may create some again: harmless, Kafka keeps one."""
    try:
        existing = set(admin.describe_acls(_ANY, request_timeout=TIMEOUT_S).result())
        missing = [b for b in dict.fromkeys(bindings) if b not in existing]
        if missing:
            for future in admin.create_acls(missing, request_timeout=TIMEOUT_S).values():
                future.result()
    except KafkaException as exc:
        raise OrderlakeError(describe_failure(exc, auth, bootstrap=bootstrap)) from exc
    return missing


# None matches any name, principal and host (confluent-kafka's stubs say str)
_ANY = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]
    None,  # type: ignore[arg-type]
    AclOperation.ANY,
    AclPermissionType.ANY,
)
