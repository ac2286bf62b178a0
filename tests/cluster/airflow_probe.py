"""Airflow on the cluster, from inside its API server's host, for tests/cluster (prints JSON).

    orderlake cluster exec airflow-api-server -- python tests/cluster/airflow_probe.py COMMAND

    health                 the API server's health document, one status per part
    trigger DAG            a manual run; prints its run_id
    tasks DAG RUN          the run's task states
    wait DAG RUN           until the run ends
    running DAG TASK       until some run of DAG has TASK running; prints that run's run_id

Runs with the host's environment: the API server by its service name, the admin's password
from the shared home's secrets, as every orderlake tool of the cluster reaches Airflow.
"""

from __future__ import annotations

import json
import sys
import time

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack import airflow


def running(settings: Settings, dag_id: str, task_id: str, timeout: float = 300) -> dict:
    """The first run of ``dag_id`` seen with ``task_id`` running: polled here, four times a
    second, since a load with little to do runs for a few seconds only (a poll from outside the
    host, a process start each time, missed them)."""
    path = f"/dags/{dag_id}/dagRuns/~/taskInstances?task_id={task_id}&state=running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = airflow.api(settings, "GET", path)["task_instances"]
        if found:
            return {"run_id": found[0]["dag_run_id"]}
        time.sleep(0.25)
    return {"error": f"no run of {dag_id} had {task_id} running within {timeout:.0f} s"}


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    try:
        if argv[:1] == ["health"]:
            doc = airflow.health(settings) or {}
            result = {part: (doc.get(part) or {}).get("status") for part in doc}
        elif argv[:1] == ["trigger"]:
            result = {"run_id": airflow.trigger(settings, argv[1])}
        elif argv[:1] == ["tasks"]:
            result = airflow.task_states(settings, argv[1], argv[2])
        elif argv[:1] == ["running"]:
            result = running(settings, argv[1], argv[2])
        elif argv[:1] == ["wait"]:
            result = airflow.wait_run(settings, argv[1], argv[2], timeout=900)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OrderlakeError, OSError) as exc:  # while its database restarts: the test retries
        result = {"error": str(exc)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
