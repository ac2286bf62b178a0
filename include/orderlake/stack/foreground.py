"""Run one platform program in the foreground: the entry point of every orderlake container.

    python -m orderlake.stack.foreground flume-collector
    python -m orderlake.stack.foreground kafka-topics      # one-shot: create the topics, exit

Settings.from_env() -> the Program that `orderlake up` would hand to supervisord under that name
(kafka, flume-collector, flume-edge-host-N, streaming, airflow-api-server, ...) -> os.execvpe.
The program replaces this process, so `docker stop`'s SIGTERM reaches it directly and the
container runtime restarts it when it dies, as supervisord does in the embedded default. Only the
named program's component prepares anything (Airflow's `db migrate`, Flume's agent.conf).

``kafka-topics`` is the deployment's one-shot topic step: it waits until the cluster has
ORDERLAKE_REPLICATION_FACTOR brokers and creates the missing topics
(kafka_admin.ensure_topics), which the embedded default does when its broker is ready.
``airflow-init`` is its one-shot Airflow step: the metadata DB migrated, the secrets and the
lake pool in place (airflow.prepare), once, before every Airflow program starts at the same
time (each would run the migration itself otherwise, and two at once fail on PostgreSQL's lock
timeout).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from confluent_kafka import KafkaException

from orderlake import kafka_admin
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings
from orderlake.stack.supervisor import Program

TOPICS = "kafka-topics"  # the one-shot steps, not long-running programs
AIRFLOW_INIT = "airflow-init"
ONE_SHOTS = (TOPICS, AIRFLOW_INIT)
TOPICS_TIMEOUT_S = 180.0


def program_names(settings: Settings) -> list[str]:
    """Every program name a container can run, in the platform's start order."""
    from orderlake.stack import platform

    return [name for part in platform.components(settings) for name in part.supervised]


def resolve(settings: Settings, name: str) -> Program:
    """The supervised Program called ``name``; a UsageError listing the known names otherwise.

    Only the component owning the name builds its programs: building them has side effects
    (Kafka formats its storage, Airflow migrates its metadata DB).
    """
    from orderlake.stack import platform

    for part in platform.components(settings):
        if name in part.supervised:
            for program in part.programs():
                if program.name == name:
                    return program
            raise OrderlakeError(f"Component {part.name} did not build its program {name}.")
    known = ", ".join([*program_names(settings), *ONE_SHOTS])
    raise UsageError(f"No orderlake program is called {name!r}; known: {known}.")


def exec_args(program: Program, base_env: dict[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """(file, argv, environment) for os.execvpe: the program's variables over ``base_env``, as
    supervisord merges a program's ``environment=`` into its own."""
    return program.command[0], list(program.command), {**base_env, **program.environment}


def run(program: Program) -> None:
    """Become ``program`` (never returns)."""
    file, argv, env = exec_args(program, dict(os.environ))
    directory = Path(program.directory) if program.directory else None
    if directory is not None:
        os.chdir(directory)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(file, argv, env)  # noqa: S606 -- becomes the program, as a container entrypoint


def create_topics(settings: Settings, timeout: float = TOPICS_TIMEOUT_S) -> list[str]:
    """Wait for ORDERLAKE_REPLICATION_FACTOR brokers, then create the missing topics; on a
    secured cluster (ORDERLAKE_KAFKA_SECURITY=SASL_SSL, as the admin principal) first the
    service principals and their ACLs (orderlake.cluster.kafka_acls)."""
    auth = settings.kafka_auth()
    kafka_admin.wait_ready(settings.bootstrap, timeout=timeout, auth=auth)
    client = kafka_admin.admin(settings.bootstrap, auth=auth)
    deadline = time.monotonic() + timeout
    brokers = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaException):  # a broker restarting: ask again
            brokers = len(client.list_topics(timeout=10).brokers)
        if brokers >= settings.replication_factor:
            if settings.kafka_security == "SASL_SSL" and settings.kafka_auth_dir:
                secure(settings)
            return kafka_admin.ensure_topics(settings)
        time.sleep(1)
    raise OrderlakeError(
        f"Kafka at {settings.bootstrap} has {brokers} broker(s) after {timeout:.0f} s; topics "
        f"with ORDERLAKE_REPLICATION_FACTOR={settings.replication_factor} need that many."
    )


def secure(settings: Settings) -> None:
    """The platform's SCRAM users (passwords from the cluster's secrets) and their ACLs."""
    from orderlake.cluster import kafka_acls

    if settings.kafka_auth_dir is None:
        raise OrderlakeError(
            "Securing Kafka needs ORDERLAKE_KAFKA_AUTH_DIR, the directory of the cluster's "
            "Kafka secrets."
        )
    auth = settings.kafka_auth()
    admin = kafka_acls.admin_client(settings.bootstrap, auth)
    users = kafka_acls.service_passwords(settings.kafka_auth_dir)
    created = kafka_acls.ensure_users(admin, users, auth=auth, bootstrap=settings.bootstrap)
    kafka_acls.ensure_acls(
        admin, kafka_acls.acl_bindings(), auth=auth, bootstrap=settings.bootstrap
    )
    print(f"kafka users: created {', '.join(created) or 'none (all exist)'}; ACLs in place")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(
            "usage: python -m orderlake.stack.foreground PROGRAM (e.g. flume-collector, "
            f"streaming, airflow-scheduler, or the one-shot {TOPICS} or {AIRFLOW_INIT})",
            file=sys.stderr,
        )
        return 2
    name = args[0]
    try:
        settings = Settings.from_env()
        if name == TOPICS:
            created = create_topics(settings)
            print(f"kafka topics: created {', '.join(created) or 'none (all exist)'}", flush=True)
            return 0
        if name == AIRFLOW_INIT:
            from orderlake.stack import airflow

            airflow.prepare(settings)
            print("airflow: metadata DB migrated, lake pool set", flush=True)
            return 0
        program = resolve(settings, name)
        print(f"orderlake: running {name}: {' '.join(program.command)}", flush=True)
        run(program)
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0  # not reached: run() replaces this process


if __name__ == "__main__":
    sys.exit(main())
