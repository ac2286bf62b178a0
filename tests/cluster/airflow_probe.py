"""Airflow on the cluster, from inside its API server's host, for tests/cluster (prints JSON).

    orderlake cluster exec airflow-api-server -- python tests/cluster/airflow_probe.py health
    orderlake cluster exec airflow-api-server -- python tests/cluster/airflow_probe.py trigger DAG
    orderlake cluster exec airflow-api-server -- python tests/cluster/airflow_probe.py tasks DAG RUN
    orderlake cluster exec airflow-api-server -- python tests/cluster/airflow_probe.py wait DAG RUN

Runs with the host's environment: the API server by its service name, the admin's password
from the shared home's secrets, as every orderlake tool of the cluster reaches Airflow.
"""

from __future__ import annotations

import json
import sys

from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack import airflow


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
