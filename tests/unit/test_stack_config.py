"""Configuration rendering of the embedded stack: pure functions on a Settings object."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orderlake import contracts, jvm, kafka_admin, supervised
from orderlake.cli import format_status
from orderlake.errors import OrderlakeError, UsageError
from orderlake.jvm import _artifact
from orderlake.kafka_client import user_password_file
from orderlake.settings import Settings
from orderlake.stack import flume, kafka, supervisor
from orderlake.stack.component import Component
from orderlake.stack.platform import components, start_steps


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
    assert conf["host_2.sources.tail.type"] == "org.orderlake.flume.InodeTailSource"
    for group, name in (("actions", "actions.log"), ("profiles", "profiles.log")):
        # Java properties read a doubled backslash as one; the source matches file names in the dir
        directory, _, pattern = conf[f"host_2.sources.tail.filegroups.{group}"].rpartition("/")
        assert directory == f"{settings.spool_dir}/host-2"
        regex = re.compile(pattern.replace("\\\\", "\\"))
        # every rotated generation, however many rotations an agent was stopped across
        for tailed in (name, f"{name}.1", f"{name}.2", f"{name}.17", f"{name}.1000"):
            assert regex.fullmatch(tailed), tailed
        for other in (f"{name}.0", f"{name}.1.gz", f"{name}.tmp", ".seq.json", f"x{name}"):
            assert not regex.fullmatch(other), other
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


def test_collector_writes_each_topic_through_its_own_kafka_channel(settings):
    """No sink and no file channel: a put commits once Kafka acknowledged the batch, so the
    edge's Avro sink sees success only then (Kafka is the collector's buffer)."""
    conf = properties(flume.render(settings, "collector"))
    assert conf["collector.channels"].split() == list(flume.COLLECTOR_CHANNELS)
    assert "collector.sinks" not in conf and "collector.sinkgroups" not in conf
    topics = {
        "actions": contracts.TOPIC_ACTIONS,
        "profiles": contracts.TOPIC_PROFILES,
        "rejects": contracts.TOPIC_REJECTS,
    }
    for channel, topic in topics.items():
        prefix = f"collector.channels.{channel}"
        assert conf[f"{prefix}.type"] == "org.apache.flume.channel.kafka.KafkaChannel"
        assert conf[f"{prefix}.kafka.topic"] == topic
        assert conf[f"{prefix}.kafka.bootstrap.servers"] == "127.0.0.1:19092"
        assert conf[f"{prefix}.parseAsFlumeEvent"] == "false"  # the line itself, not Avro
        assert conf[f"{prefix}.kafka.producer.acks"] == "all"
        assert conf[f"{prefix}.kafka.producer.enable.idempotence"] == "true"
        assert conf[f"{prefix}.kafka.producer.security.protocol"] == "PLAINTEXT"
        # delivered or failed before the edge's Avro request times out and re-sends the batch
        edge = properties(flume.render(settings, "host-1"))
        assert int(conf[f"{prefix}.kafka.producer.delivery.timeout.ms"]) < int(
            edge["host_1.sinks.avro.request-timeout"]
        )
        assert conf[f"collector.sources.avro.selector.mapping.{topic}"] == channel
    assert conf["collector.sources.avro.selector.header"] == "topic"
    assert conf["collector.sources.avro.selector.default"] == "rejects"


def test_secured_collector_authenticates_every_kafka_channel(tmp_path):
    secrets = tmp_path / "secrets"
    user_password_file(secrets, "collector").parent.mkdir(parents=True)
    user_password_file(secrets, "collector").write_text("pw\n")
    (secrets / "truststore.password").write_text("tpw\n")
    secured = Settings(
        home=tmp_path / "home",
        kafka_security="SASL_SSL",
        kafka_user="collector",
        kafka_auth_dir=secrets,
    )
    conf = properties(flume.render(secured, "collector"))
    for channel in flume.COLLECTOR_CHANNELS:
        prefix = f"collector.channels.{channel}.kafka.producer"
        assert conf[f"{prefix}.security.protocol"] == "SASL_SSL"
        assert 'username="collector" password="pw"' in conf[f"{prefix}.sasl.jaas.config"]
        assert conf[f"{prefix}.ssl.truststore.location"] == str(secrets / "truststore.p12")
        assert conf[f"{prefix}.ssl.truststore.password"] == "tpw"


def test_edge_file_channels_roll_data_files_at_256_mib_so_taken_events_free_disk(settings):
    conf = properties(flume.render(settings, "host-1"))
    assert conf["host_1.channels.ch.type"] == "file"
    assert conf["host_1.channels.ch.maxFileSize"] == str(256 * 2**20)


def test_the_edge_sink_runs_under_the_short_backoff_processor(settings):
    conf = properties(flume.render(settings, "host-1"))
    assert conf["host_1.sinkgroups.out.sinks"] == "avro"
    assert conf["host_1.sinkgroups.out.processor.type"] == (
        "org.orderlake.flume.ShortBackoffSinkProcessor"
    )
    assert int(conf["host_1.sinkgroups.out.processor.maxBackoffSleep"]) <= 500


def test_agent_summary_counts_what_left_for_the_next_hop():
    edge = {
        "SOURCE.tail": {"EventAcceptedCount": "10"},
        "CHANNEL.ch": {"ChannelSize": "4", "ChannelFillPercentage": "0.5"},
        "SINK.avro": {"EventDrainSuccessCount": "6", "RollbackCount": "1"},
    }
    assert flume.summarize(edge) == {
        "events_in": 10,
        "events_out": 6,
        "sink_rollbacks": 1,
        "channel_size": 4,
        "channel_fill_percent": 0.5,
    }
    kafka_channel = {"KafkaEventSendTimer": "3", "ChannelSize": "0"}
    collector = {
        "SOURCE.avro": {"EventAcceptedCount": "9"},
        "CHANNEL.actions": {**kafka_channel, "EventPutSuccessCount": "7"},
        "CHANNEL.rejects": {**kafka_channel, "EventPutSuccessCount": "1"},
    }
    # no buffer of its own to show: what Kafka acknowledged is what left
    assert flume.summarize(collector) == {"events_in": 9, "events_out": 8, "sink_rollbacks": 0}
    assert flume.summarize(None) == {}


def test_monitoring_ports_do_not_collide(settings):
    ports = [settings.flume_monitor_port_for(a) for a in flume.agent_names(settings)]
    assert len(set(ports)) == len(ports) == 3


def test_kafka_is_a_single_kraft_node_on_loopback(settings):
    conf = properties(kafka.server_properties(settings))
    assert conf["process.roles"] == "broker,controller"
    assert conf["listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert conf["auto.create.topics.enable"] == "false"


def test_topics_have_the_contracted_settings(settings):
    specs = {t.topic: t for t in kafka_admin.topic_specs(settings)}
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


def test_supervisor_stops_programs_in_reverse_start_order(settings):
    # supervisord stops the highest priority first and waits for it before the next
    names = ["kafka", "flume-collector", "flume-edge-host-1", "streaming", "airflow-scheduler"]
    text = supervisor.config_text(settings, [supervisor.Program(n, ["true"]) for n in names])
    priority = {}
    for block in text.split("[program:")[1:]:
        name = block.split("]")[0]
        priority[name] = int(block.split("priority=")[1].split()[0])
    assert sorted(priority, key=priority.get, reverse=True) == names[::-1]


def test_down_stops_each_component_before_those_it_needs_a_step_at_a_time(settings):
    steps = [sorted(part.name for part in step) for step in start_steps(components(settings))]
    assert steps == [
        ["dashboard", "kafka", "spark"],
        ["flume-collector", "streaming"],
        ["airflow", "flume-edge-host-1", "flume-edge-host-2"],
    ]  # `down` walks them backwards: the edges first, Kafka and Spark last


def test_components_that_need_each_other_have_no_start_order():
    loop = [Component("a", list, needs=("b",)), Component("b", list, needs=("a",))]
    with pytest.raises(OrderlakeError, match="need each other"):
        start_steps(loop)


def test_long_homes_get_a_short_socket_path(tmp_path):
    deep = Settings(home=tmp_path / ("x" * 120))
    assert len(str(supervised.socket_path(deep))) < 100


def test_bad_environment_value_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("ORDERLAKE_KAFKA_PORT", "ninety")
    with pytest.raises(UsageError, match="ORDERLAKE_KAFKA_PORT='ninety' is not valid"):
        Settings.from_env()


def test_jvms_map_their_programs_class_archive_only_once_setup_made_it(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm, "JVM_DIR", tmp_path)
    assert jvm.class_archive_options("kafka") == []
    archive = tmp_path / "kafka" / "target" / "classes.jsa"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"dumped by make setup")
    assert jvm.class_archive_options("kafka") == [f"-XX:SharedArchiveFile={archive}"]
    assert jvm.class_archive_options("flume") == []  # each program has its own classpath


def test_jvm_archives_refuses_an_unknown_program_in_one_sentence(capsys):
    from orderlake.stack import jvm_archives

    assert jvm_archives.main(["zookeeper"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "Unknown program zookeeper; choose from kafka, flume, spark."


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
    state["flume-edge-host-1"] = {**state.pop("flume-collector"), "pid": 3}
    state["flume-collector"] = {"state": "RUNNING", "pid": 2, "events_in": 9, "events_out": 8}
    table = format_status(state)
    assert "channel 3 events (0.50% full), in 9, out 6" in table  # the edge's file channel
    assert re.search(r"flume-collector +RUNNING +2 +in 9, out 8$", table, re.MULTILINE)
    assert "tmall.user_actions: 0=5 1=7  total=12" in table


def test_status_shows_an_airflow_that_does_not_answer_its_health_check():
    """Right after start on a busy machine Airflow's API may not answer within 3 s: the table
    says so next to the parts' own health (it once crashed on that case)."""
    state = {
        "airflow": {"state": "RUNNING", "pid": 7, "health": {"api-server": "not answering"}},
        "flume-edge-host-1": {"state": "RUNNING", "pid": 8, "health": {"state": "reading"}},
    }
    table = format_status(state)
    assert "api-server not answering" in table and "; reading" in table
    parts = {"metadatabase": "healthy", "scheduler": "unhealthy", "triggerer": None}
    table = format_status({"airflow": {"state": "RUNNING", "pid": 7, "health": parts}})
    assert table.splitlines()[1].endswith("scheduler unhealthy")


def test_cluster_ids_never_look_like_flags():
    ids = [kafka.new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


# --- cluster settings (docker-compose.yaml); the defaults keep the embedded stack unchanged -----
def test_flume_agents_bind_and_connect_on_loopback_by_default(settings):
    collector = properties(flume.render(settings, "collector"))
    edge = properties(flume.render(settings, "host-1"))
    assert collector["collector.sources.avro.bind"] == "127.0.0.1"
    assert edge["host_1.sinks.avro.hostname"] == "127.0.0.1"


def test_flume_agents_follow_bind_and_collector_host(tmp_path):
    cluster = Settings(home=tmp_path, bind_host="0.0.0.0", flume_collector_host="flume-collector")
    collector = properties(flume.render(cluster, "collector"))
    edge = properties(flume.render(cluster, "host-2"))
    assert collector["collector.sources.avro.bind"] == "0.0.0.0"
    assert edge["host_2.sinks.avro.hostname"] == "flume-collector"
    assert edge["host_2.sinks.avro.port"] == str(cluster.flume_collector_port)


def test_topics_have_one_replica_and_no_isr_override_by_default(settings):
    for spec in kafka_admin.topic_specs(settings):
        assert spec.replication_factor == 1
        assert "min.insync.replicas" not in spec.config


def test_topics_follow_the_replication_settings(tmp_path):
    cluster = Settings(home=tmp_path, replication_factor=3, min_insync_replicas=2)
    specs = {t.topic: t for t in kafka_admin.topic_specs(cluster)}
    assert {t.replication_factor for t in specs.values()} == {3}
    assert {t.config["min.insync.replicas"] for t in specs.values()} == {"2"}
    assert specs[contracts.TOPIC_PROFILES].config["cleanup.policy"] == "compact"


def test_more_in_sync_replicas_than_replicas_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("ORDERLAKE_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("ORDERLAKE_MIN_INSYNC_REPLICAS", "3")
    with pytest.raises(UsageError, match="must not exceed ORDERLAKE_REPLICATION_FACTOR"):
        Settings.from_env()


def test_airflow_uses_sqlite_on_loopback_by_default(settings):
    from orderlake.stack import airflow

    env = airflow.environment(settings)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{settings.airflow_home / 'airflow.db'}"
    )
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"


def test_airflow_follows_the_database_url_bind_and_api_host(tmp_path):
    from orderlake.stack import airflow

    url = "postgresql+psycopg2://airflow:secret@postgres:5432/airflow"
    cluster = Settings(
        home=tmp_path,
        airflow_database_url=url,
        bind_host="0.0.0.0",
        airflow_host="airflow-api-server",
    )
    env = airflow.environment(cluster)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert env["AIRFLOW__API__BASE_URL"] == "http://airflow-api-server:8080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-api-server:8080/execution/"
    )
    # the URL holds a password: hidden in reprs, handed to Airflow's processes in full
    assert "secret" not in repr(cluster)
    assert env["ORDERLAKE_AIRFLOW_DATABASE_URL"] == url


def test_every_spark_jvm_compiles_later_by_the_jit_scaling_setting(tmp_path, monkeypatch):
    from orderlake.spark import session_conf

    conf = session_conf(Settings(home=tmp_path), "1g")
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert "-XX:CompileThresholdScaling=4" in conf[key].split(), key
    conf = session_conf(Settings(home=tmp_path, spark_jit_scaling=1), "1g")
    assert "-XX:CompileThresholdScaling=1" in conf["spark.executor.extraJavaOptions"].split()
    monkeypatch.setenv("ORDERLAKE_SPARK_JIT_SCALING", "0")
    with pytest.raises(UsageError, match="ORDERLAKE_SPARK_JIT_SCALING='0' is not valid"):
        Settings.from_env()
