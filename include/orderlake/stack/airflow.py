"""Airflow 3 in the embedded default: API server, scheduler, DAG processor and triggerer, each
supervised, sharing one AIRFLOW_HOME under ORDERLAKE_HOME/airflow.

LocalExecutor on a SQLite metadata DB (ORDERLAKE_AIRFLOW_DATABASE_URL: PostgreSQL in
docker-compose), no example DAGs, the DAGs of dags/, parallelism 4 (2 cores), the API server bound
to ORDERLAKE_BIND_HOST (127.0.0.1) and reached at ORDERLAKE_AIRFLOW_HOST. Secrets (Fernet key, JWT
secret, the admin's generated password) are created once and kept in
ORDERLAKE_HOME/airflow/orderlake-secrets.json (mode 0600); `orderlake status` shows the login.
The API and UI require a token: ``token()`` gets one for the admin, ``api()`` uses it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import urlsafe_b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orderlake.errors import OrderlakeError
from orderlake.private import is_private, write_private
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack.supervisor import Program

NAME = "airflow"
ADMIN = "admin"
PROGRAMS = ("api-server", "scheduler", "dag-processor", "triggerer")
# seconds between SIGTERM and SIGKILL. Idle, the scheduler or the DAG processor (one of them,
# run to run) sits out SIGTERM for the whole wait, which held every `orderlake down` for a
# minute; its running tasks are killed with its process group either way, and the next
# scheduler fails or retries them. The API server and the triggerer stop within seconds.
STOP_WAIT_S = 15
NOT_ANSWERING = "not answering"  # the status of an API server that misses its health check
LAKE_POOL = "lake_writer"  # orchestration.LAKE_POOL; not imported: that module imports Airflow


def program_names() -> list[str]:
    return [f"{NAME}-{p}" for p in PROGRAMS]


def url(settings: Settings) -> str:
    """The API server as the other Airflow processes, task runners and tools reach it."""
    return f"http://{settings.airflow_host}:{settings.airflow_port}"


def database_url(settings: Settings) -> str:
    """The metadata DB: ORDERLAKE_AIRFLOW_DATABASE_URL, or the SQLite file in AIRFLOW_HOME."""
    if settings.airflow_database_url is not None:
        return settings.airflow_database_url.get_secret_value()
    return f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def secrets_file(settings: Settings) -> Path:
    return settings.airflow_home / "orderlake-secrets.json"


SECRET_KEYS = ("fernet_key", "jwt_secret", "api_secret_key", "admin_password")


def load_secrets(settings: Settings) -> dict[str, str]:
    """The instance's secrets, generated once and kept (0600) under ORDERLAKE_HOME.

    A file that is there but cannot be read whole is an error, never a reason to generate new
    ones: a new Fernet key would leave every encrypted connection and variable unreadable.
    """
    path = secrets_file(settings)
    if not path.exists():
        values = {
            "fernet_key": urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "admin_password": secrets.token_urlsafe(12),
        }
        write_private(path, json.dumps(values, indent=2))
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict) or not all(
            isinstance(values.get(key), str) and values[key] for key in SECRET_KEYS
        ):
            raise ValueError(f"expected the keys {', '.join(SECRET_KEYS)}")
    except (OSError, ValueError) as exc:
        raise OrderlakeError(
            f"Airflow's secrets file {path} cannot be read ({exc}); restore it from a backup. "
            "New secrets would make the connections encrypted with the old Fernet key "
            "unreadable."
        ) from None
    if not is_private(path):
        path.chmod(0o600)  # copied or restored with a wider mode: others must not read it
    if settings.airflow_admin_password is not None:
        values["admin_password"] = settings.airflow_admin_password.get_secret_value()
    return values


def environment(settings: Settings) -> dict[str, str]:
    """Airflow's configuration as AIRFLOW__* variables (plus the ORDERLAKE_* settings the DAG
    tasks read), for every Airflow process and for `airflow` commands."""
    home = settings.airflow_home
    keys = load_secrets(settings)
    return {
        **settings.to_env(),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        # scheduled DAGs (ingest every 5 minutes, ...) run as soon as the platform is up
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url(settings)}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(settings),
        "AIRFLOW__API__HOST": settings.bind_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": url(settings),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_port),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # new DAG files show up within 30 s instead of 5 minutes
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }


def prepare(settings: Settings) -> None:
    """Create or upgrade the metadata DB, the admin's password file and the lake pool."""
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    write_private(
        home / "passwords.json", json.dumps({ADMIN: load_secrets(settings)["admin_password"]})
    )
    env = environment(settings)
    _airflow(settings, env, "db", "migrate")
    _airflow(settings, env, "pools", "set", LAKE_POOL, "1", "one Delta writer at a time")


def _airflow(settings: Settings, env: dict[str, str], *args: str) -> None:
    log = settings.logs_dir / "airflow-setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ airflow {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [airflow_bin(), *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600
        )
    if done.returncode != 0:
        raise OrderlakeError(
            f"`airflow {' '.join(args)}` failed (exit {done.returncode}); see {log}."
        )


def programs(settings: Settings) -> list[Program]:
    if settings.airflow_prepare_on_start:
        prepare(settings)
    env = environment(settings)
    return [
        Program(
            f"{NAME}-{name}",
            [airflow_bin(), name],
            directory=settings.airflow_home,
            environment=env,
            startsecs=5,
            stopwaitsecs=STOP_WAIT_S,
        )
        for name in PROGRAMS
    ]


def health(settings: Settings, timeout: float = 3.0) -> dict | None:
    """Airflow's public health document, or None when the API server does not answer."""
    try:
        with urllib.request.urlopen(
            f"{url(settings)}/api/v2/monitor/health", timeout=timeout
        ) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def wait_ready(settings: Settings, timeout: float = 240) -> None:
    """Until the API answers and the scheduler, DAG processor and triggerer report healthy."""
    deadline = time.monotonic() + timeout
    doc: dict | None = None
    while time.monotonic() < deadline:
        doc = health(settings)
        if doc and all(
            (doc.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
        ):
            return
        time.sleep(1)
    raise OrderlakeError(
        f"Airflow was not healthy within {timeout:.0f} s (last health: {doc}); see "
        f"{settings.logs_dir}/airflow-*.log."
    )


def address(settings: Settings) -> dict:
    return {
        "url": url(settings),
        "user": ADMIN,
        "password": load_secrets(settings)["admin_password"],
    }


def metrics(settings: Settings) -> dict:
    """``{"health": {part: status}}`` as Airflow's health check reports its parts; an API server
    that does not answer is one more part, so readers see one shape whatever happens."""
    doc = health(settings)
    if doc is None:
        return {"health": {"api-server": NOT_ANSWERING}}
    return {"health": {part: (info or {}).get("status") for part, info in doc.items()}}


def unhealthy_parts(parts: dict) -> list[str]:
    """'scheduler unhealthy', ... for the parts of :func:`metrics` that report a problem (a part
    that reports no status, such as a triggerer this deployment does not run, is not one)."""
    return [f"{part} {status}" for part, status in parts.items() if status not in (None, "healthy")]


# --- the REST API, authenticated ----------------------------------------------------------------
def token(settings: Settings) -> str:
    """A JWT for the admin user (POST /auth/token)."""
    body = json.dumps(
        {"username": ADMIN, "password": load_secrets(settings)["admin_password"]}
    ).encode()
    request = urllib.request.Request(
        f"{url(settings)}/auth/token",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


def api(
    settings: Settings,
    method: str,
    path: str,
    body: dict | None = None,
    bearer: str | None = None,
) -> Any:
    """Call /api/v2<path> as the admin; raise OrderlakeError with Airflow's answer on failure."""
    request = urllib.request.Request(
        f"{url(settings)}/api/v2{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {bearer or token(settings)}",
        },
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise OrderlakeError(f"Airflow API {method} {path} answered {exc.code}: {detail}") from None


# --- DAG runs -----------------------------------------------------------------------------------
FINISHED = ("success", "failed")


def trigger(settings: Settings, dag_id: str, conf: dict | None = None) -> str:
    """Start a run of ``dag_id`` now (unpausing it first); returns its run id."""
    api(settings, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
    run = api(
        settings, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
    )
    return run["dag_run_id"]


def dag_runs(settings: Settings, dag_id: str) -> list[dict]:
    """The DAG's runs, newest first."""
    return api(settings, "GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]


def task_states(settings: Settings, dag_id: str, run_id: str) -> dict[str, dict]:
    """{task_id: {"state", "try_number", "log"}} of one run; ``log`` is the task's log file."""
    found = api(settings, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    return {
        ti["task_id"]: {
            "state": ti["state"],
            "try_number": ti["try_number"],
            "log": str(
                settings.airflow_home
                / "logs"
                / f"dag_id={dag_id}"
                / f"run_id={run_id}"
                / f"task_id={ti['task_id']}"
                / f"attempt={max(ti['try_number'], 1)}.log"
            ),
        }
        for ti in found["task_instances"]
    }


def wait_run(
    settings: Settings,
    dag_id: str,
    run_id: str,
    timeout: float = 1200,
    waiting: Callable[[str], None] | None = None,
) -> dict:
    """Wait until a run ends; returns {"state", "tasks"}. ``waiting(text)`` sees progress."""
    deadline = time.monotonic() + timeout
    while True:
        run = api(settings, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        tasks = task_states(settings, dag_id, run_id)
        if run["state"] in FINISHED:
            return {"state": run["state"], "tasks": tasks}
        if waiting:
            busy = ", ".join(f"{t} {info['state'] or 'scheduled'}" for t, info in tasks.items())
            waiting(f"{dag_id}: {run['state']} ({busy or 'queued'})")
        if time.monotonic() > deadline:
            raise OrderlakeError(
                f"The Airflow run {dag_id}/{run_id} did not finish within {timeout:.0f} s; "
                f"see {url(settings)}/dags/{dag_id}."
            )
        time.sleep(2)


def failure(settings: Settings, dag_id: str, result: dict) -> str:
    """One sentence naming the failed tasks of a finished run and where their logs are."""
    failed = [
        f"{task} (log: {info['log']})"
        for task, info in result["tasks"].items()
        if info["state"] in ("failed", "upstream_failed")
    ]
    return f"The Airflow DAG {dag_id} failed: {'; '.join(failed) or 'no task ran'}."
