"""A broker host from the apache/kafka image's environment: KAFKA_* -> server.properties.

docker-compose.yaml's own kafka-1 environment (read by the compose specification's loader) must
give the node id, quorum, listeners and replication settings DESIGN.md section 4 asks for;
the image's naming rule and its exceptions are checked one by one, then the secured
environment (SASL_SSL everywhere) against a secrets directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orderlake.cluster import compose, kafka_node
from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT

# the compose file refuses to start without a PostgreSQL password; its value does not matter here
REQUIRED_ENV = {"POSTGRES_PASSWORD": "test-password"}


def parse(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            assert key not in out, f"{key} twice"
            out[key] = value
    return out


@pytest.fixture(scope="module")
def kafka_1_env() -> dict[str, str]:
    project = compose.load(PROJECT_ROOT / "docker-compose.yaml", environment=REQUIRED_ENV)
    return project.services["kafka-1"].environment


def test_compose_kafka_1_environment_gives_the_quorum_listeners_and_replication(
    kafka_1_env, tmp_path
):
    data = tmp_path / "kafka-1" / "data"
    props = parse(kafka_node.properties(kafka_1_env, data))
    assert props == {
        "node.id": "1",
        "process.roles": "broker,controller",
        "controller.quorum.voters": "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
        "listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "advertised.listeners": "PLAINTEXT://kafka-1:9092",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        # the container's volume path becomes this host's own data directory
        "log.dirs": str(data),
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "auto.create.topics.enable": "false",
    }
    # CLUSTER_ID is the format step's, KAFKA_HEAP_OPTS the JVM's: neither is a property
    assert kafka_1_env["CLUSTER_ID"] and kafka_1_env["KAFKA_HEAP_OPTS"]


def test_every_compose_broker_differs_only_in_its_id_and_advertised_name(tmp_path):
    project = compose.load(PROJECT_ROOT / "docker-compose.yaml", environment=REQUIRED_ENV)
    rendered = {
        n: parse(kafka_node.properties(project.services[f"kafka-{n}"].environment, tmp_path))
        for n in (1, 2, 3)
    }
    for n, props in rendered.items():
        assert props["node.id"] == str(n)
        assert props["advertised.listeners"] == f"PLAINTEXT://kafka-{n}:9092"
        rest = {k: v for k, v in props.items() if k not in ("node.id", "advertised.listeners")}
        assert rest == {
            k: v for k, v in rendered[1].items() if k not in ("node.id", "advertised.listeners")
        }


@pytest.mark.parametrize(
    ("variable", "name"),
    [
        ("KAFKA_NODE_ID", "node.id"),
        ("KAFKA_CONTROLLER_QUORUM_VOTERS", "controller.quorum.voters"),
        ("KAFKA_LISTENER_NAME_SASL__SSL_SASL_ENABLED_MECHANISMS",
         "listener.name.sasl_ssl.sasl.enabled.mechanisms"),
        ("KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG",
         "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"),
        ("KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL", "sasl.mechanism.controller.protocol"),
    ],
)  # fmt: skip
def test_the_images_naming_rule(variable, name):
    assert kafka_node.property_name(variable) == name


def test_launcher_variables_and_foreign_variables_are_not_properties(tmp_path):
    env = {
        "KAFKA_NODE_ID": "7",
        "CLUSTER_ID": "abc",
        "ORDERLAKE_HOME": "/x",
        "PATH": "/usr/bin",
        "kafka_lower": "no",  # the prefix is case-sensitive, as in the image
        **{v: "-Dx=1" for v in kafka_node.LAUNCHER_VARIABLES},
    }
    assert parse(kafka_node.properties(env, tmp_path)) == {"node.id": "7"}


def test_a_broker_without_listeners_listens_on_its_advertised_ports_everywhere(tmp_path):
    env = {
        "KAFKA_PROCESS_ROLES": "broker",
        "KAFKA_ADVERTISED_LISTENERS": "SASL_SSL://kafka-2:9092, EXTERNAL://kafka.example:19092",
    }
    props = parse(kafka_node.properties(env, tmp_path))
    assert props["listeners"] == "SASL_SSL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092"


def test_a_controller_only_node_refuses_advertised_listeners(tmp_path):
    env = {"KAFKA_PROCESS_ROLES": "controller", "KAFKA_ADVERTISED_LISTENERS": "X://h:1"}
    with pytest.raises(OrderlakeError, match="controller-only node"):
        kafka_node.properties(env, tmp_path)


def test_a_value_on_two_lines_is_refused(tmp_path):
    with pytest.raises(OrderlakeError, match="KAFKA_SUPER_USERS holds a line break"):
        kafka_node.properties({"KAFKA_SUPER_USERS": "User:a\nUser:b"}, tmp_path)


# --- the secured node -----------------------------------------------------------------------------
def secured(host: str = "kafka-1") -> dict[str, str]:
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_LISTENERS": "SASL_SSL://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"SASL_SSL://{host}:9092",
        **kafka_node.secured_environment(host),
    }


def fake_secrets(directory: Path, host: str = "kafka-1") -> Path:
    directory.mkdir()
    (directory / f"{host}.keystore.password").write_text("s3cret\n")
    return directory


def test_secured_node_speaks_sasl_ssl_on_every_listener_and_denies_by_default(tmp_path):
    secrets = fake_secrets(tmp_path / "secrets")
    props = parse(kafka_node.properties(secured(), tmp_path / "data", secrets))
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    listeners = [item.split("://")[0] for item in props["listeners"].split(",")]
    assert {protocols[name] for name in listeners} == {"SASL_SSL"}
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    # the controller listener: PLAIN inside TLS (SCRAM cannot elect a first leader, KAFKA-15513)
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"] == kafka_node.AUTHORIZER
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker;User:admin"


def test_the_images_secret_files_become_host_paths_and_passwords(tmp_path):
    secrets = fake_secrets(tmp_path / "secrets")
    props = parse(kafka_node.properties(secured(), tmp_path / "data", secrets))
    assert props["ssl.keystore.location"] == f"{secrets}/kafka-1.keystore.p12"
    assert props["ssl.keystore.password"] == "s3cret"
    assert props["ssl.key.password"] == "s3cret"
    assert props["ssl.keystore.type"] == "PKCS12"
    assert props["ssl.truststore.location"] == f"{secrets}/ca.pem"
    assert props["ssl.truststore.type"] == "PEM"
    # the convention's own variables are consumed, not passed on as unknown properties
    assert not [k for k in props if k.endswith((".filename", ".credentials"))]


def test_secret_files_need_the_hosts_secrets_directory_and_the_files(tmp_path):
    with pytest.raises(OrderlakeError, match="give the host's secrets directory"):
        kafka_node.properties(secured(), tmp_path / "data")
    with pytest.raises(OrderlakeError, match=r"kafka-1\.keystore\.password, which does not exist"):
        kafka_node.properties(secured(), tmp_path / "data", tmp_path)


def test_the_secrets_directory_is_never_in_the_environment_only_file_names():
    env = kafka_node.secured_environment("kafka-2")
    for variable, value in env.items():
        assert "password=" not in value.lower(), variable
    assert env["KAFKA_SSL_KEYSTORE_FILENAME"] == "kafka-2.keystore.p12"
    assert env["KAFKA_OPTS"] == (
        "-Djava.security.auth.login.config=/etc/kafka/secrets/kafka-2.jaas.conf"
    )


def test_jaas_gives_scram_between_brokers_and_plain_on_the_controller_listener():
    text = kafka_node.jaas("broker", "pw")
    scram, _, controller = text.partition("controller.KafkaServer {")
    assert scram.startswith("KafkaServer {") and kafka_node.SCRAM_LOGIN_MODULE in scram
    assert 'username="broker"' in scram and 'password="pw";' in scram
    assert kafka_node.PLAIN_LOGIN_MODULE in controller
    assert 'user_broker="pw";' in controller


def test_command_takes_the_heap_and_jaas_file_from_the_environment(tmp_path):
    config = tmp_path / "server.properties"
    env = {"KAFKA_HEAP_OPTS": "-Xms128m -Xmx128m", **kafka_node.secured_environment("kafka-3")}
    argv = kafka_node.command(env, config, secrets_dir=tmp_path / "s")
    assert argv[1:3] == ["-Xms128m", "-Xmx128m"]
    assert f"-Djava.security.auth.login.config={tmp_path}/s/kafka-3.jaas.conf" in argv
    assert f"-Dlog4j2.configurationFile={tmp_path}/log4j2.properties" in argv
    assert argv[-2:] == ["kafka.Kafka", str(config)]
    default = kafka_node.command({}, config)
    assert default[1:3] == ["-Xmx1G", "-Xms1G"]  # the image's kafka-server-start.sh default


def test_prepare_needs_the_cluster_id(tmp_path):
    with pytest.raises(OrderlakeError, match="CLUSTER_ID is not set"):
        kafka_node.prepare({"KAFKA_NODE_ID": "1"}, tmp_path / "data", {})


def test_the_active_controller_is_the_leader_of_the_highest_epoch(tmp_path):
    dirs = {n: tmp_path / f"kafka-{n}-data" for n in (1, 2, 3)}
    assert kafka_node.active_controller(dirs) is None  # no voter has written its state yet
    for node, (leader, epoch) in {1: (1, 4), 2: (3, 5), 3: (-1, 6)}.items():
        state = dirs[node] / "__cluster_metadata-0" / "quorum-state"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"leaderId": leader, "leaderEpoch": epoch}))
    # node 1 names an older epoch's leader; node 3 is in an election and names none
    assert kafka_node.active_controller(dirs) == 3
