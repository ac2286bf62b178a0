"""Configuration rendering of the embedded stack: pure functions on a Settings object."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderlake import contracts
from orderlake.cli import format_status
from orderlake.errors import UsageError
from orderlake.settings import Settings
from orderlake.stack import flume, kafka, supervisor
from orderlake.stack.jvm import _artifact


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kafka_port=19092,
        flume_collector_port=19414,
        flume_monitor_port=19545,
    )


def properties(text: str) -> dict[str, str]:
    """Parse Java properties the simple way (key = value, # comments)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_edge_agent_tails_its_host_spool_and_routes_by_topic_header(settings):
    conf = properties(flume.render(settings, "host-2"))
    assert conf["host_2.sources.tail.type"] == "TAILDIR"
    assert conf["host_2.sources.tail.filegroups.actions"] == (
        f"{settings.spool_dir}/host-2/actions\\\\.log(\\\\.1)?"
    )
    assert conf["host_2.sources.tail.headers.actions.topic"] == contracts.TOPIC_ACTIONS
    assert conf["host_2.sources.tail.headers.profiles.topic"] == contracts.TOPIC_PROFILES
    assert conf["host_2.channels.ch.type"] == "file"
    assert conf["host_2.sinks.avro.port"] == "19414"
    assert conf["host_2.sources.tail.interceptors"] == "key guard"
    assert conf["host_2.sources.tail.interceptors.guard.keyRequiredTopics"] == (
        contracts.TOPIC_PROFILES
    )
    assert conf["host_2.sources.tail.interceptors.guard.type"].endswith("$Builder")
    assert conf["host_2.sources.tail.interceptors.key.serializers.k.name"] == "key"


def test_collector_writes_to_kafka_with_acks_all_and_idempotence(settings):
    conf = properties(flume.render(settings, "collector"))
    assert conf["collector.sinks.kafka.kafka.bootstrap.servers"] == "127.0.0.1:19092"
    assert conf["collector.sinks.kafka.kafka.producer.acks"] == "all"
    assert conf["collector.sinks.kafka.kafka.producer.enable.idempotence"] == "true"
    assert conf["collector.sinks.kafka.topicHeader"] == "topic"
    assert conf["collector.channels.ch.type"] == "file"


def test_monitoring_ports_do_not_collide(settings):
    ports = [settings.flume_monitor_port_for(a) for a in flume.agent_names(settings)]
    assert len(set(ports)) == len(ports) == 3


def test_kafka_is_a_single_kraft_node_on_loopback(settings):
    conf = properties(kafka.server_properties(settings))
    assert conf["process.roles"] == "broker,controller"
    assert conf["listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert conf["auto.create.topics.enable"] == "false"


def test_topics_have_the_contracted_settings(settings):
    specs = {t.topic: t for t in kafka.topic_specs(settings)}
    assert specs[contracts.TOPIC_ACTIONS].num_partitions == 3
    assert specs[contracts.TOPIC_ACTIONS].config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert specs[contracts.TOPIC_PROFILES].config["cleanup.policy"] == "compact"


def test_supervisor_config_restarts_programs_and_escapes_percent(settings):
    prog = supervisor.Program("kafka", ["java", "-Dx=50%", "kafka.Kafka"])
    text = supervisor.config_text(settings, [prog])
    assert "[program:kafka]" in text
    assert "autorestart=true" in text
    assert "-Dx=50%%" in text
    assert f"stdout_logfile={settings.logs_dir / 'kafka.log'}" in text


def test_long_homes_get_a_short_socket_path(tmp_path):
    deep = Settings(home=tmp_path / ("x" * 120))
    assert len(str(supervisor.socket_path(deep))) < 100


def test_bad_environment_value_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("ORDERLAKE_KAFKA_PORT", "ninety")
    with pytest.raises(UsageError, match="ORDERLAKE_KAFKA_PORT='ninety' is not valid"):
        Settings.from_env()


def test_jar_artifact_names():
    assert _artifact("kafka-clients-3.9.1.jar") == "kafka-clients"
    assert _artifact("delta-spark_4.1_2.13-4.4.0.jar") == "delta-spark_4.1_2.13"
    assert _artifact("zstd-jni-1.5.7-6.jar") == "zstd-jni"


def test_status_table_lists_components_and_offsets():
    state = {
        "kafka": {
            "state": "RUNNING",
            "pid": 1,
            "bootstrap": "127.0.0.1:9092",
            "end_offsets": {"tmall.user_actions": {0: 5, 1: 7}},
        },
        "flume-collector": {
            "state": "RUNNING",
            "pid": 2,
            "url": "http://x",
            "channel_size": 3,
            "channel_fill_percent": 0.5,
            "events_in": 9,
            "events_out": 6,
        },
    }
    table = format_status(state)
    assert "flume-collector" in table and "channel 3 events" in table
    assert "tmall.user_actions: 0=5 1=7  total=12" in table


def test_cluster_ids_never_look_like_flags():
    ids = [kafka.new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
