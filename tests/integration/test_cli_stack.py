"""`orderlake up/down/status` as a user meets them: clear messages, JSON shape, logs."""

from __future__ import annotations

import socket
import time

import pytest

from orderlake import contracts
from tests.fixtures.stack import ORDERLAKE, isolated_env  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COMPONENTS = {"kafka", "flume-collector", "flume-edge-host-1", "flume-edge-host-2"}


def test_status_json_is_keyed_by_component(platform):
    state = platform.status()
    assert set(state) >= COMPONENTS
    for name in COMPONENTS:
        assert state[name]["state"] == "RUNNING"
        assert isinstance(state[name]["pid"], int)
    assert state["kafka"]["bootstrap"] == platform.settings.bootstrap
    offsets = state["kafka"]["end_offsets"]
    assert set(offsets) == set(contracts.ALL_TOPICS)
    assert set(offsets[contracts.TOPIC_ACTIONS]) == {"0", "1", "2"}  # JSON keys are strings
    for agent in ("flume-collector", "flume-edge-host-1"):
        assert state[agent]["url"].startswith("http://127.0.0.1:")
        assert {"events_in", "events_out"} <= set(state[agent])
    assert "channel_fill_percent" in state["flume-edge-host-1"]  # the collector has no buffer


def test_edge_agents_with_nothing_to_tail_stay_idle_not_restarted(platform):
    """TAILDIR empties its position file while it tails no file; the watchdog once took that
    for damage and restarted the agents every few seconds on a fresh platform. Runs while the
    session's spools are still empty (test_ingest writes to them later)."""
    from orderlake.stack import edge

    settings = platform.settings
    for host in settings.host_names:
        assert not any((settings.spool_dir / host).iterdir()), "the spool is not empty"
        path = edge.position_file(settings, host)
        deadline = time.monotonic() + 60
        while not path.exists():  # TAILDIR writes it (empty) a second after it starts
            assert time.monotonic() < deadline, f"TAILDIR wrote no {path} in 60 s"
            time.sleep(0.2)
        written = path.stat().st_mtime
        # a watchdog check (every 2 s) of the file TAILDIR wrote
        while edge.read_health(settings, host).get("checked_at", 0) <= written:
            assert time.monotonic() < deadline, f"no watchdog check of {path} in 60 s"
            time.sleep(0.2)
        health = edge.read_health(settings, host)
        assert health["restarts"] == 0 and health["state"] == "idle", health


def test_plain_status_is_a_table(platform):
    out = platform.cli("status").stdout
    assert "COMPONENT" in out and "flume-edge-host-2" in out and "tmall.user_actions" in out


def test_second_up_says_it_is_already_running(platform):
    done = platform.cli("up", check=False)
    assert done.returncode == 1
    assert "already running" in done.stderr
    assert "Traceback" not in done.stderr


def test_logs_command_shows_a_component_log(platform):
    out = platform.cli("logs", "kafka", "-n", "5").stdout
    assert "kafka.log" in out


def test_down_with_nothing_running_is_a_clear_no_op(tmp_path):
    from tests.fixtures.stack import Platform, settings_from

    env = isolated_env(tmp_path / "idle")
    done = Platform(env, settings_from(env)).cli("down")
    assert "Nothing to stop" in done.stdout


def test_port_in_use_is_one_clear_sentence(tmp_path):
    from tests.fixtures.stack import Platform, settings_from

    env = isolated_env(tmp_path / "busy")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["ORDERLAKE_KAFKA_PORT"])))
        squatter.listen()
        done = Platform(env, settings_from(env)).cli("up", check=False)
    assert done.returncode == 1
    assert f"Port {env['ORDERLAKE_KAFKA_PORT']} needed by kafka is already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_setting_is_one_clear_sentence(tmp_path):
    from tests.fixtures.stack import Platform, settings_from

    env = isolated_env(tmp_path / "bad")
    platform = Platform(env, settings_from(env))
    platform.env = {**env, "ORDERLAKE_KAFKA_PORT": "ninety"}
    done = platform.cli("status", check=False)
    assert done.returncode == 2
    assert "ORDERLAKE_KAFKA_PORT='ninety' is not valid" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [("sql", "SELECT 1"), ("tables",), ("batch", "silver"), ("reconcile",), ("validate",)],
)
def test_the_spark_server_down_is_one_sentence_naming_the_component(tmp_path, command):
    """Every batch job and query attaches to the warm Spark: without it, one sentence saying
    which component and how to start it, at once (the Connect client itself retries for
    minutes)."""
    from tests.fixtures.stack import Platform, settings_from

    env = isolated_env(tmp_path / "no-spark")  # nothing listens on its Spark Connect port
    done = Platform(env, settings_from(env)).cli(*command, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    port = env["ORDERLAKE_SPARK_CONNECT_PORT"]
    assert done.stderr.startswith(
        f"orderlake: error: The Spark server (component `spark`) does not answer at "
        f"sc://127.0.0.1:{port}"
    ), done.stderr
    assert "`orderlake up`" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_restart_brings_one_component_back_ready(platform):
    before = platform.pid("flume-edge-host-2")
    done = platform.cli("restart", "flume-edge-host-2")
    assert "flume-edge-host-2 restarted and ready" in done.stdout
    after = platform.status()["flume-edge-host-2"]
    assert after["state"] == "RUNNING" and after["pid"] != before
    unknown = platform.cli("restart", "spark", check=False)  # not part of this platform
    assert unknown.returncode == 1 and "No running component is called 'spark'" in unknown.stderr
