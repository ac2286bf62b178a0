"""A job that comes while the warm Spark is starting waits for it; one that comes while it is
stopped fails at once (spark._wait_while_starting, with the server's state given literally)."""

from __future__ import annotations

import pytest

from orderlake import spark
from orderlake.settings import Settings
from orderlake.stack import spark_server


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def server(monkeypatch):
    """Scripted answers: supervisord's view (seconds starting, or None) and the port's."""
    script = {"starting": [], "reachable": []}
    monkeypatch.setattr(spark, "_starting_for", lambda _s: script["starting"].pop(0))
    monkeypatch.setattr(spark, "_reachable", lambda _s: script["reachable"].pop(0))
    monkeypatch.setattr(spark.time, "sleep", lambda _s: None)
    return script


def test_a_starting_server_is_waited_for_until_it_answers(server, settings):
    server["starting"] = [3.0, 4.0, 5.0]
    server["reachable"] = ["Connection refused", "Connection refused", None]
    assert spark._wait_while_starting(settings, "Connection refused") is None
    assert server["starting"] == []  # asked once per second, until the port answered


def test_a_stopped_server_fails_at_once(server, settings):
    server["starting"] = [None]
    assert spark._wait_while_starting(settings, "Connection refused") == "Connection refused"


def test_a_server_that_stops_while_starting_fails_with_the_last_reason(server, settings):
    server["starting"] = [3.0, None]
    server["reachable"] = ["Connection reset"]
    assert spark._wait_while_starting(settings, "Connection refused") == "Connection reset"


def test_a_server_starting_longer_than_its_limit_is_not_waited_for(monkeypatch, tmp_path):
    """supervisord's view -> seconds starting, within ORDERLAKE_SPARK_STARTUP_LIMIT_S only."""
    info = {"spark": {"statename": "RUNNING", "start": 1_000.0, "now": 1_200.0}}
    monkeypatch.setattr(spark.supervised, "processes", lambda _s: info)
    assert spark._starting_for(Settings(home=tmp_path)) is None  # 200 s > the default 180 s
    patient = Settings(home=tmp_path, spark_startup_limit_s=300)
    assert spark._starting_for(patient) == 200.0
    info["spark"]["statename"] = "FATAL"
    assert spark._starting_for(patient) is None


def test_the_server_component_is_the_one_jobs_ask_supervisord_about():
    assert spark_server.NAME == spark.SERVER_COMPONENT


def test_a_secured_server_listens_on_loopback_behind_its_gate_and_its_token_stays_off_argv(
    tmp_path,
):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "spark-connect.token").write_text("t0ken-value\n")
    secured = Settings(
        home=tmp_path / "home",
        bind_host="0.0.0.0",
        spark_connect_auth_dir=secrets,  # noqa: S104
    )
    program = spark_server.program(secured)
    assert program.command[1:] == ["-m", "orderlake.stack.connect_gate"]
    inner = spark_server.command(secured, bind=("127.0.0.1", secured.spark_connect_port + 1))
    assert "spark.connect.grpc.binding.address=127.0.0.1" in inner
    assert f"spark.connect.grpc.binding.port={secured.spark_connect_port + 1}" in inner
    assert not any("t0ken-value" in part for part in [*program.command, *inner])
    assert "t0ken-value" not in str(program.environment)
    # the embedded default: the server itself on the public address, no gate
    plain = spark_server.program(Settings(home=tmp_path / "home"))
    assert plain.command[0].endswith("spark-submit")
