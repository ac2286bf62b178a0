"""The container entry point: program name -> the command `orderlake up` would supervise.

Nothing is exec'ed here: ``resolve`` and ``exec_args`` are what ``run`` hands to os.execvpe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orderlake.errors import UsageError
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import airflow, flume, foreground, platform
from orderlake.stack.supervisor import Program


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", hosts=2, kafka_port=19092, flume_collector_port=19414)


@pytest.fixture
def cluster(tmp_path: Path) -> Settings:
    """The settings of a docker-compose container (see docker-compose.yaml)."""
    return Settings(
        env="cluster",
        home=tmp_path / "home",
        bind_host="0.0.0.0",
        kafka_bootstrap="kafka-1:9092,kafka-2:9092,kafka-3:9092",
        flume_collector_host="flume-collector",
        airflow_host="airflow-api-server",
        airflow_database_url="postgresql+psycopg2://airflow:pw@postgres:5432/airflow",
        spark_master="spark://spark-master:7077",
    )


def test_program_names_are_the_supervised_programs(settings):
    names = foreground.program_names(settings)
    expected = [name for part in platform.components(settings) for name in part.supervised]
    assert names == expected
    for name in (
        "kafka",
        "flume-collector",
        "flume-edge-host-1",
        "flume-edge-host-2",
        "streaming",
        *airflow.program_names(),
    ):
        assert name in names


def test_edge_hosts_follow_the_hosts_setting(tmp_path):
    names = foreground.program_names(Settings(home=tmp_path, hosts=3))
    assert "flume-edge-host-3" in names and "flume-edge-host-4" not in names


def test_unknown_name_is_one_sentence_listing_the_known_names(settings):
    with pytest.raises(UsageError) as caught:
        foreground.resolve(settings, "flume-edge-host-9")
    message = str(caught.value)
    assert message.count(".") == 1 and message.endswith(".")
    assert "'flume-edge-host-9'" in message
    assert "flume-collector" in message and "streaming" in message
    assert foreground.TOPICS in message


def test_unknown_name_exits_2(settings, monkeypatch, capsys):
    monkeypatch.setenv("ORDERLAKE_HOME", str(settings.home))
    assert foreground.main(["no-such-program"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("orderlake: error: No orderlake program is called 'no-such-program'")
    assert len(err.strip().splitlines()) == 1


def test_usage_without_a_name_exits_2(capsys):
    assert foreground.main([]) == 2
    assert "usage: python -m orderlake.stack.foreground PROGRAM" in capsys.readouterr().err


def test_bad_setting_exits_with_the_settings_sentence(monkeypatch, capsys):
    monkeypatch.setenv("ORDERLAKE_REPLICATION_FACTOR", "three")
    assert foreground.main(["streaming"]) == 2
    assert "ORDERLAKE_REPLICATION_FACTOR='three' is not valid" in capsys.readouterr().err


def test_streaming_runs_the_speed_layer_script_with_the_settings(cluster):
    program = foreground.resolve(cluster, "streaming")
    file, argv, env = foreground.exec_args(program, {"PATH": "/usr/bin", "KEEP": "1"})
    assert file == sys.executable
    assert argv == [sys.executable, str(PROJECT_ROOT / "streaming" / "speed_layer.py")]
    assert program.directory == PROJECT_ROOT
    assert env["KEEP"] == "1"  # the container's own variables pass through
    assert env["ORDERLAKE_SPARK_MASTER"] == "spark://spark-master:7077"
    assert env["ORDERLAKE_KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    # the program's PATH wins: the virtualenv's bin first
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_edge_agent_runs_flume_under_its_watchdog_aimed_at_the_collector(cluster):
    program = foreground.resolve(cluster, "flume-edge-host-2")
    file, argv, env = foreground.exec_args(program, {"PATH": "/usr/bin"})
    assert Path(file).name.startswith("python")
    assert argv[1:] == ["-m", "orderlake.stack.edge", "host-2"]  # stack/edge.py
    assert env["ORDERLAKE_FLUME_COLLECTOR_HOST"] == "flume-collector"
    config = cluster.flume_dir / "host-2" / "agent.conf"
    java = flume.command(cluster, "host-2", config)  # what the watchdog runs as its child
    assert Path(java[0]).name == "java" and java[java.index("-n") + 1] == "host_2"
    text = flume.render(cluster, "host-2")
    assert "host_2.sinks.avro.hostname = flume-collector\n" in text
    assert f"{cluster.spool_dir / 'host-2'}/actions" in text


def test_collector_listens_on_the_bind_host_and_writes_to_every_broker(cluster):
    argv = foreground.resolve(cluster, "flume-collector").command
    text = Path(argv[argv.index("-f") + 1]).read_text()
    assert "collector.sources.avro.bind = 0.0.0.0\n" in text
    assert "bootstrap.servers = kafka-1:9092,kafka-2:9092,kafka-3:9092\n" in text


def test_only_the_named_component_builds_its_programs(cluster, monkeypatch):
    """Resolving a Flume agent must not migrate Airflow's DB nor format Kafka storage."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("built a program of another component")

    monkeypatch.setattr(airflow, "prepare", forbidden)
    monkeypatch.setattr(platform.kafka, "prepare", forbidden)
    assert foreground.resolve(cluster, "flume-collector").name == "flume-collector"


@pytest.mark.parametrize("name", airflow.program_names())
def test_airflow_programs_use_the_cluster_database_and_api(cluster, monkeypatch, name):
    prepared: list[Settings] = []
    monkeypatch.setattr(airflow, "prepare", prepared.append)  # `airflow db migrate` + pool
    program = foreground.resolve(cluster, name)
    assert prepared == [cluster]
    assert program.command == [airflow.airflow_bin(), name.removeprefix("airflow-")]
    assert program.directory == cluster.airflow_home
    _, _, env = foreground.exec_args(program, {})
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:pw@postgres:5432/airflow"
    )
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-api-server:8080/execution/"
    )


def test_run_execs_the_program_in_its_directory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(foreground.os, "execvpe", lambda *a: calls.append((Path.cwd(), *a)))
    monkeypatch.setenv("FROM_CONTAINER", "yes")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    program = Program("x", ["/bin/echo", "hi"], directory=tmp_path / "work", environment={"A": "1"})
    foreground.run(program)
    (cwd, file, argv, env) = calls[0]
    assert cwd == tmp_path / "work"
    assert (file, argv) == ("/bin/echo", ["/bin/echo", "hi"])
    assert env["A"] == "1" and env["FROM_CONTAINER"] == "yes"
