"""The Airflow task bodies' own logic: the speed-layer watchdog's decisions and the replay DAG's
parameter check (which must fail before any work)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from orderlake import orchestration as o


@pytest.mark.parametrize(
    ("state", "age", "lags", "action", "words"),
    [
        ("RUNNING", 3.0, [100, 50, 80], "ok", "healthy"),
        ("STOPPED", None, [], "restart", "STOPPED"),
        ("FATAL", 1.0, [], "restart", "FATAL"),
        ("RUNNING", 600.0, [0], "restart", "600 s ago"),
        ("RUNNING", None, [0], "restart", "never"),
        # supervisord's start-up window (before its startsecs): a restart would start it again
        ("STARTING", None, [], "ok", "starting"),
        # growing at each of the last 3 checks and above the floor: falling behind
        ("RUNNING", 2.0, [20_000, 30_000, 40_000, 50_000], "fail", "kept growing"),
        # growing but small: lag comes and goes
        ("RUNNING", 2.0, [1, 2, 3, 4], "ok", "healthy"),
        # large but shrinking once: catching up
        ("RUNNING", 2.0, [20_000, 30_000, 25_000, 50_000], "ok", "healthy"),
    ],
)
def test_speed_layer_verdicts(state, age, lags, action, words):
    verdict = o.assess_speed_layer(state, age, lags, stale_after_s=60)
    assert verdict.action == action
    assert words in verdict.reason


def test_valid_replay_params_become_cli_arguments():
    args = o.check_replay_params(
        {"topic": "tmall.user_actions", "from": "0:10", "to": "0:20", "layers": ["gold", "bronze"]}
    )
    assert args == [
        "--topic", "tmall.user_actions", "--from", "0:10", "--to", "0:20",
        "--layers", "bronze,gold",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"topic": "tmall.nope", "from": "0", "to": "5"}, "--topic must be one of"),
        ({"topic": "tmall.user_actions", "from": "last week", "to": "5"}, "--from must be"),
        ({"topic": "tmall.user_actions", "from": "0", "to": ""}, "--to must be"),
        (
            {"topic": "tmall.user_actions", "from": "0", "to": "5", "layers": ["platinum"]},
            "--layers must be",
        ),
    ],
)
def test_bad_replay_params_fail_the_task_without_retry(params, message):
    with pytest.raises(AirflowFailException, match=message):
        o.check_replay_params(params)


def test_a_task_runs_its_batch_job_in_process_and_maps_failures(tmp_path, monkeypatch):
    """A bad parameter fails the task without retry; the warm Spark being down is an error
    Airflow retries, with the sentence naming the component."""
    from orderlake.errors import OrderlakeError
    from orderlake.stack.ports import free_port

    monkeypatch.setenv("ORDERLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORDERLAKE_SPARK_CONNECT_PORT", str(free_port()))
    with pytest.raises(AirflowFailException, match="Unknown suite nope"):
        o.run_job("validate", "--suite", "nope")
    with pytest.raises(OrderlakeError, match=r"Spark server \(component `spark`\)") as raised:
        o.run_job("reconcile")
    assert not isinstance(raised.value, AirflowFailException)


def test_a_starting_speed_layer_is_left_alone_until_the_start_up_limit():
    """After an outage the JVM start and the profile preload take minutes while the previous
    run's heartbeat is stale: a job reporting itself starting (fresh heartbeat) is not restarted
    in a loop, only once it has been starting for longer than the limit."""
    verdict = o.assess_speed_layer("RUNNING", 3.0, [9_000_000], 60, starting_for_s=400)
    assert (verdict.action, verdict.reason) == ("ok", "starting for 400 s")
    verdict = o.assess_speed_layer("RUNNING", 3.0, [], 60, starting_for_s=901, startup_limit_s=900)
    assert verdict.action == "restart" and "has been starting for" in verdict.reason
    # a start that stopped beating is hung, whatever it said before
    assert o.assess_speed_layer("RUNNING", 90.0, [], 60, starting_for_s=30).action == "restart"
