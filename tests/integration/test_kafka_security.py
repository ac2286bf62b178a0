"""A real three-node KRaft cluster secured as the cluster deployment runs it, on 127.0.0.1.

Three combined broker+controller voters are started from image-style KAFKA_* environments
(docker-compose.yaml's x-kafka-env plus kafka_node.secured_environment) through
orderlake.cluster: certificates from keytool, storage formatted with the broker and admin SCRAM
users, SASL_SSL on every listener. Then, as the admin principal: the service users, their ACLs,
topics with three replicas and min.insync.replicas 2. Then what a user meets: an authorized
round trip; clients without credentials, or without the ACL, refused in one sentence. Brokers
killed under load are the cluster tier's (tests/cluster/test_deployment.py): there the whole
pipeline runs on the secured brokers and every event is counted in the speed layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, NewTopic

from orderlake import contracts, kafka_admin
from orderlake.cluster import kafka_acls, kafka_node, tls
from orderlake.kafka_client import (
    PLAINTEXT,
    KafkaAuth,
    describe_failure,
    java_properties,
    librdkafka_config,
)
from orderlake.private import write_private
from orderlake.settings import Settings
from orderlake.stack import jvm, kafka
from orderlake.stack.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

NODES = (1, 2, 3)
PRIVATE_TOPIC = "ops.private"  # outside tmall.*: no service principal may read it

# docker-compose.yaml's x-kafka-env, minus what the loopback cluster sets per node below
COMPOSE_KAFKA_ENV = {
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
    "KAFKA_MIN_INSYNC_REPLICAS": "2",
    "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "3",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "2",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    # three JVMs on two busy cores: small heaps, no rebalance wait for the test's consumers
    "KAFKA_HEAP_OPTS": "-Xms256m -Xmx256m",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_NUM_NETWORK_THREADS": "2",
    "KAFKA_NUM_IO_THREADS": "2",
}


@dataclass
class Node:
    node_id: int
    host: str
    env: dict[str, str]
    data_dir: Path
    log: Path
    proc: subprocess.Popen | None = None

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.host} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    secrets: Path
    bootstrap: str
    nodes: dict[int, Node]
    scram_users: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def auth(self, user: str) -> KafkaAuth:
        return KafkaAuth.scram(self.secrets, user)

    def prepare(self, node: Node) -> Path:
        """What a broker host runs first: render and format (idempotent)."""
        return kafka_node.prepare(
            node.env, node.data_dir, self.scram_users, secrets_dir=self.secrets
        )

    def run(self, node: Node, config: Path) -> None:
        """The broker JVM; call from the main thread (it dies with the thread that started it)."""
        argv = kafka_node.command(node.env, config, secrets_dir=self.secrets)
        with node.log.open("a") as log:
            node.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        self.procs.append(node.proc)

    def start(self, node: Node) -> None:
        self.run(node, self.prepare(node))

    def logs(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes.values())


def _die_with_parent() -> None:
    """No broker outlives the test run, even a killed pytest (PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def node_env(node_id: int, ports: dict[int, tuple[int, int]], cluster_id: str) -> dict[str, str]:
    """One broker's image-style environment: compose's settings, loopback listeners, secured."""
    port, controller = ports[node_id]
    voters = ",".join(f"{n}@127.0.0.1:{c}" for n, (_, c) in ports.items())
    return {
        "CLUSTER_ID": cluster_id,
        **COMPOSE_KAFKA_ENV,
        "KAFKA_NODE_ID": str(node_id),
        "KAFKA_CONTROLLER_QUORUM_VOTERS": voters,
        "KAFKA_LISTENERS": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "KAFKA_ADVERTISED_LISTENERS": f"SASL_SSL://127.0.0.1:{port}",
        **kafka_node.secured_environment(f"kafka-{node_id}"),
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("kafka-cluster")
    secrets = base / "secrets"
    ports = {n: (free_port(), free_port()) for n in NODES}
    cluster_id = kafka.new_cluster_id()
    bootstrap = ",".join(f"127.0.0.1:{port}" for port, _ in ports.values())
    scram_users = {
        name: kafka_acls.user_password(secrets, name)
        for name in (kafka_node.BROKER_USER, kafka_node.ADMIN_USER)
    }
    nodes = {
        n: Node(
            n,
            f"kafka-{n}",
            node_env(n, ports, cluster_id),
            base / f"kafka-{n}" / "data",
            base / f"kafka-{n}.log",
        )
        for n in NODES
    }
    # the CA first (shared), then each host's keystore for the names clients dial
    tls.make_ca(secrets)
    tls.truststore(secrets)
    for node in nodes.values():
        kafka_node.write_secrets(
            secrets, node.host, [node.host, "127.0.0.1"], scram_users[kafka_node.BROKER_USER]
        )
    state = Cluster(secrets, bootstrap, nodes, scram_users)
    try:
        # formatting is a JVM each: in parallel, then the three brokers
        with ThreadPoolExecutor(len(NODES)) as pool:
            configs = list(pool.map(state.prepare, nodes.values()))
        for node, config in zip(nodes.values(), configs, strict=True):
            state.run(node, config)
        admin_auth = state.auth("admin")
        try:
            kafka_acls.wait_for_brokers(bootstrap, admin_auth, len(NODES), timeout=150)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{state.logs()}") from exc
        admin = kafka_acls.admin_client(bootstrap, admin_auth)
        kafka_acls.ensure_users(
            admin, kafka_acls.service_passwords(secrets), auth=admin_auth, bootstrap=bootstrap
        )
        kafka_acls.ensure_acls(
            admin, kafka_acls.acl_bindings(), auth=admin_auth, bootstrap=bootstrap
        )
        yield state
    finally:
        for proc in state.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in state.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


def create_topics(cluster: Cluster) -> None:
    """The platform's topics (kafka_admin's topic specs at RF 3, min ISR 2) and a private one."""
    admin = kafka_acls.admin_client(cluster.bootstrap, cluster.auth("admin"))
    settings = Settings(home=cluster.secrets.parent, replication_factor=3, min_insync_replicas=2)
    specs = kafka_admin.topic_specs(settings) + [
        NewTopic(PRIVATE_TOPIC, 1, 3, config={"min.insync.replicas": "2"}),
    ]
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [s for s in specs if s.topic not in existing]
    for future in admin.create_topics(missing, operation_timeout=60).values():
        future.result()


@pytest.fixture(scope="module")
def topics(cluster: Cluster) -> Cluster:
    create_topics(cluster)
    return cluster


# --- clients ------------------------------------------------------------------------------------
def producer(cluster: Cluster, auth: KafkaAuth, errors: list) -> Producer:
    """The collector's producer settings: acks=all, idempotent."""
    return Producer(
        {
            **librdkafka_config(cluster.bootstrap, auth),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
            "error_cb": lambda error: errors.append(error),
            "log_level": 0,
        }
    )


def consumer(cluster: Cluster, auth: KafkaAuth, group: str, errors: list) -> Consumer:
    return Consumer(
        {
            **librdkafka_config(cluster.bootstrap, auth),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "error_cb": lambda error: errors.append(error),
            "log_level": 0,
        }
    )


def refused_produce(cluster: Cluster, auth: KafkaAuth, topic: str) -> list:
    """Everything librdkafka reports while ``auth`` tries to write one record."""
    errors: list = []
    p = producer(cluster, auth, errors)
    reports: list = []
    try:
        p.produce(topic, key=b"k", value=b"v", on_delivery=lambda e, m: reports.append(e))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (errors or any(reports)):
            p.poll(0.2)
    except Exception as exc:  # a fatal producer error is raised, not reported
        errors.append(exc)
    finally:
        with contextlib.suppress(KafkaException):
            p.purge()
    failures = errors + [r for r in reports if r is not None]
    assert failures, f"{auth.principal} wrote to {topic} without being refused"
    return failures


def refused_consume(cluster: Cluster, auth: KafkaAuth, topic: str, group: str) -> list:
    """Everything librdkafka reports while ``auth`` tries to read ``topic`` in ``group``."""
    errors: list = []
    c = consumer(cluster, auth, group, errors)
    records = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not errors:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
            else:
                records.append(msg)
    finally:
        c.close()
    assert not records, f"{auth.principal} read {len(records)} records of {topic}"
    assert errors, f"{auth.principal} was not refused reading {topic}"
    return errors


def consume_all(
    cluster: Cluster, auth: KafkaAuth, topic: str, group: str, expected: int
) -> list[bytes]:
    errors: list = []
    c = consumer(cluster, auth, group, errors)
    values: list[bytes] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(values) < expected:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert not msg.error(), describe_failure(msg.error(), auth, topic=topic, group=group)
            values.append(msg.value())
    finally:
        c.close()
    assert len(values) >= expected, (
        f"read {len(values)} of {expected}: {describe_failure(errors, auth) if errors else ''}"
    )
    return values


def one_sentence(text: str) -> str:
    assert "\n" not in text and text.endswith(".") and ". " not in text, text
    return text


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s")


# --- tests --------------------------------------------------------------------------------------
def test_every_listener_requires_sasl_ssl_and_secrets_are_private(cluster):
    for node in cluster.nodes.values():
        config = node.data_dir.parent / "server.properties"
        props = dict(
            line.split("=", 1)
            for line in config.read_text().splitlines()
            if line and not line.startswith("#")
        )
        protocol = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
        for listener in props["listeners"].split(","):
            assert protocol[listener.split("://")[0]] == "SASL_SSL", listener
        assert config.stat().st_mode & 0o077 == 0  # it carries the keystore password
    files = [p for p in cluster.secrets.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"ca.p12", "ca.pem", "truststore.p12", "kafka-1.jaas.conf"}
    assert all(p.stat().st_mode & 0o077 == 0 for p in files), "a secret readable by others"
    # reused, not made again, on the next host start
    before = {p: p.stat().st_mtime_ns for p in files}
    kafka_node.write_secrets(
        cluster.secrets, "kafka-1", ["kafka-1", "127.0.0.1"], cluster.scram_users["broker"]
    )
    keystore = cluster.secrets / "kafka-1.keystore.p12"
    assert keystore.stat().st_mtime_ns == before[keystore]


def test_a_keystore_is_made_again_when_its_host_names_change(cluster):
    first = tls.broker_keystore(cluster.secrets, ["kafka-9"])
    made = first.path.stat().st_mtime_ns
    assert tls.broker_keystore(cluster.secrets, ["kafka-9"]).path.stat().st_mtime_ns == made
    again = tls.broker_keystore(cluster.secrets, ["kafka-9", "10.0.0.9"])
    assert again.path.stat().st_mtime_ns != made
    assert again.path.stat().st_mode & 0o077 == 0
    listing = tls._listing(again, tls.KEY_ALIAS)
    assert "DNSName: kafka-9" in listing and "IPAddress: 10.0.0.9" in listing


def test_admin_creates_replicated_topics_and_the_acls_are_in_place(topics):
    admin = kafka_acls.admin_client(topics.bootstrap, topics.auth("admin"))
    metadata = admin.list_topics(timeout=10)
    for name in contracts.ALL_TOPICS:
        partitions = metadata.topics[name].partitions.values()
        assert {len(p.replicas) for p in partitions} == {3}, name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in contracts.ALL_TOPICS]
    for future in admin.describe_configs(resources).values():
        assert future.result()["min.insync.replicas"].value == "2"
    # applying users and ACLs again changes nothing
    auth = topics.auth("admin")
    assert (
        kafka_acls.ensure_users(admin, kafka_acls.service_passwords(topics.secrets), auth=auth)
        == []
    )
    wait_until(
        lambda: kafka_acls.ensure_acls(admin, kafka_acls.acl_bindings(), auth=auth) == [],
        30,
        "the ACLs did not all show up",
    )


def test_authorized_collector_writes_and_speed_reads(topics):
    errors: list = []
    p = producer(topics, topics.auth("collector"), errors)
    reports: list = []
    for i in range(20):
        p.produce(contracts.TOPIC_ACTIONS, key=str(i), value=f"rt-{i}",
                  on_delivery=lambda e, m: reports.append(e))  # fmt: skip
    assert p.flush(60) == 0, describe_failure(errors, topics.auth("collector"))
    assert reports == [None] * 20
    values = consume_all(
        topics, topics.auth("speed"), contracts.TOPIC_ACTIONS, "orderlake-speed-roundtrip", 20
    )
    assert sorted(values) == sorted(f"rt-{i}".encode() for i in range(20))


JAVA_CLIENT = """\
import java.io.FileReader;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;

public class JavaClientCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileReader reader = new FileReader(args[0])) { props.load(reader); }
        try (Admin admin = Admin.create(props)) {
            System.out.println("nodes=" + admin.describeCluster().nodes().get().size());
            System.out.println("sees=" + admin.listTopics().names().get().contains(args[1]));
        }
    }
}
"""


def test_java_client_settings_reach_the_cluster(topics, tmp_path):
    """What Flume's sink and Spark's source will get: java_properties of the same KafkaAuth."""
    props = {
        **java_properties(topics.auth("speed")),
        "bootstrap.servers": topics.bootstrap,
        "request.timeout.ms": "20000",
    }
    config = tmp_path / "client.properties"
    write_private(config, "".join(f"{k}={v}\n" for k, v in props.items()))
    source = tmp_path / "JavaClientCheck.java"
    source.write_text(JAVA_CLIENT)
    done = subprocess.run(
        [jvm.java_executable(), "-cp", jvm.classpath("kafka"), str(source), str(config)]
        + [contracts.TOPIC_ACTIONS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nodes=3" in done.stdout and "sees=true" in done.stdout, done.stdout


def test_a_client_without_credentials_is_refused_in_one_sentence(topics):
    for failures in (
        refused_produce(topics, PLAINTEXT, contracts.TOPIC_ACTIONS),
        refused_consume(topics, PLAINTEXT, contracts.TOPIC_ACTIONS, "orderlake-speed-anon"),
    ):
        text = one_sentence(describe_failure(failures, PLAINTEXT, bootstrap=topics.bootstrap))
        assert "a client without credentials" in text
        assert "require SASL_SSL" in text


def test_a_wrong_password_is_refused_in_one_sentence(topics):
    speed = topics.auth("speed")
    wrong = KafkaAuth("SASL_SSL", "speed", "not-the-password", ca_pem=speed.ca_pem)
    failures = refused_consume(topics, wrong, contracts.TOPIC_ACTIONS, "orderlake-speed-x")
    text = one_sentence(describe_failure(failures, wrong, bootstrap=topics.bootstrap))
    assert "refused the credentials of Kafka principal 'speed'" in text


def test_a_principal_without_the_acl_is_refused_in_one_sentence(topics):
    speed, collector = topics.auth("speed"), topics.auth("collector")
    # a reader writing: the cluster refuses it an idempotent producer id
    text = describe_failure(refused_produce(topics, speed, contracts.TOPIC_ACTIONS), speed)
    assert "Kafka principal 'speed' may not produce" in one_sentence(text)
    # the writer reading: no consumer group of its own
    text = describe_failure(
        refused_consume(topics, collector, contracts.TOPIC_ACTIONS, "orderlake-speed-stolen"),
        collector,
        group="orderlake-speed-stolen",
    )
    assert "Kafka principal 'collector' is not authorized to use consumer group" in (
        one_sentence(text)
    )
    # a reader outside its groups, and a reader outside tmall.*
    text = describe_failure(
        refused_consume(topics, speed, contracts.TOPIC_ACTIONS, "adhoc"), speed, group="adhoc"
    )
    assert "'speed' is not authorized to use consumer group adhoc" in one_sentence(text)
    text = describe_failure(
        refused_consume(topics, speed, PRIVATE_TOPIC, "orderlake-speed-private"),
        speed,
        topic=PRIVATE_TOPIC,
    )
    assert f"'speed' is not authorized on topic {PRIVATE_TOPIC}" in one_sentence(text)
