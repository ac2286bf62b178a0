"""docker-compose.yaml -> one ``HostProgram`` per service: what `orderlake cluster up` runs where.

Pure planning, no side effects: ``plan(project, layout)`` turns the compose project (read by
compose-go, orderlake.cluster.compose) into, per service, the argv, environment, mounts,
readiness check and start conditions of the one program its host (a network namespace named
after the service, orderlake.cluster.netns) runs. orderlake.cluster.launch carries a program out
inside its namespace; orderlake.cluster.runner starts them under supervisord in dependency order.

How each image's equivalent is started (no container engine here):

- ``build: .`` (the orderlake image): the image's ENTRYPOINT
  ``python -m orderlake.stack.foreground`` with the service's ``command``, or the service's own
  ``entrypoint`` (``spark-class`` from pyspark's distribution for spark-master and the workers),
  from this project's virtualenv (``PYTHONPATH`` = the project's ``include/``) with the
  service's environment, as the image would run it.
- ``apache/kafka``: orderlake's Maven-resolved broker jars (jvm/kafka) with a server.properties
  rendered from the service's ``KAFKA_*`` environment by the image's own rule
  (orderlake.cluster.kafka_node), put behind SASL_SSL: the compose file's ``PLAINTEXT``
  listener becomes ``SASL_SSL`` and ``kafka_node.secured_environment`` is laid over its
  environment (SCRAM-SHA-512 over TLS, ACLs, no unauthenticated listener). The image's
  healthcheck script (``kafka-broker-api-versions.sh``) does not exist here: the broker is
  healthy once it answers a metadata request as the admin principal and lists itself.
- ``postgres``: Debian's PostgreSQL server (``/usr/lib/postgresql/<v>/bin``), run as the
  ``postgres`` user on the volume's directory; initialised on first start as the image does
  (``POSTGRES_USER`` superuser with ``POSTGRES_PASSWORD``, scram-sha-256 over TCP, database
  ``POSTGRES_DB``). The compose healthcheck (``pg_isready``) runs as written.

Mounts: ``ip netns exec`` gives each program a mount namespace of its own, so a service's
volumes are bind-mounted at exactly the compose paths inside it (``/var/lib/orderlake``...):
named volumes are directories under ``<root>/volumes``, and an orderlake service without a
volume at ``/var/lib/orderlake`` gets a private directory there (the container's own layer).
The mounts die with the namespace's processes; only empty mount-point directories stay on the
machine. Every host sees the same secrets directory at its real path (``<root>/secrets``).

Security in cluster mode (laid over the compose environment here, see ``overlay``): every
orderlake service gets ``ORDERLAKE_KAFKA_SECURITY=SASL_SSL`` and the secrets directory, and
connects as its service's principal (``ORDERLAKE_KAFKA_USER``); Spark's master, workers and
drivers share ``SPARK_CONF_DIR`` whose spark-defaults.conf (0600) sets ``spark.authenticate``
and the cluster's generated secret; the warm Spark server and its clients get
``ORDERLAKE_SPARK_CONNECT_AUTH_DIR`` (TLS and a bearer token, orderlake.connect_auth).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orderlake.cluster import compose, kafka_node
from orderlake.cluster.compose import Project, Service
from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT

ORDERLAKE = "orderlake"
KAFKA = "kafka"
POSTGRES = "postgres"
KINDS = (ORDERLAKE, KAFKA, POSTGRES)
SPARK_CONNECT_PROGRAM = "spark"  # the orderlake program of the warm Spark (stack/spark_server)
ENTRYPOINT = ["python", "-m", "orderlake.stack.foreground"]  # the Dockerfile's ENTRYPOINT
CONTAINER_HOME = "/var/lib/orderlake"
POSTGRES_RUN = "/var/run/postgresql"
KAFKA_PORT = 9092
# compose restart policies -> supervisord's autorestart
RESTART = {None: "false", "no": "false", "on-failure": "unexpected"}
# which Kafka principal an orderlake service is, unless its environment names one
DEFAULT_PRINCIPALS = {
    "kafka-topics": kafka_node.ADMIN_USER,
    "flume-collector": "collector",
    "streaming": "speed",
}
BATCH_PRINCIPAL = "batch"


@dataclass(frozen=True)
class Layout:
    """Where one cluster keeps its state on the machine: ``root`` holds ``volumes/<name>``,
    ``hosts/<service>`` (each host's own files), ``secrets/`` and supervisord's ``run/``,
    ``logs/``."""

    root: Path

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def spark_conf(self) -> Path:
        return self.secrets / "spark-conf"

    @property
    def plan_file(self) -> Path:
        return self.root / "run" / "plan.json"

    def volume(self, name: str) -> Path:
        return self.volumes / name

    def private(self, service: str) -> Path:
        return self.root / "hosts" / service


@dataclass(frozen=True)
class HostProgram:
    """One service as its host runs it."""

    service: str
    kind: str  # orderlake, kafka, postgres
    aliases: list[str]  # other names the host answers to (compose hostname, aliases)
    argv: list[str]
    environment: dict[str, str]
    mounts: list[tuple[str, str]]  # (directory on the machine, path inside the host), in order
    health: list[str] | None  # argv run inside the host; None: started = healthy
    depends_on: dict[str, str]  # service -> compose condition
    restart: str  # supervisord autorestart: true, false, unexpected
    one_shot: bool  # compose restart on-failure/no: done once it exits 0
    stop_grace_s: int = 30
    private_dir: str = ""  # the host's own files (Kafka's config, Postgres' socket dir)
    volumes: dict[str, str] = field(default_factory=dict)  # compose target -> machine dir

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HostProgram:
        return cls(**{**doc, "mounts": [tuple(m) for m in doc["mounts"]]})


def kind_of(service: Service) -> str:
    """Which equivalent runs the service: the orderlake image, Kafka's or PostgreSQL's."""
    if service.builds_here:
        return ORDERLAKE
    image = (service.image or "").split("@")[0]
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if repository in ("apache/kafka", "docker.io/apache/kafka"):
        return KAFKA
    if repository in ("postgres", "library/postgres", "docker.io/library/postgres"):
        return POSTGRES
    raise OrderlakeError(
        f"Service {service.name} uses the image {service.image!r}, which `orderlake cluster` "
        "cannot run without Docker; it runs the orderlake image, apache/kafka and postgres only."
    )


def selected(project: Project, names: Sequence[str] = ()) -> list[Service]:
    """The services `up` starts, in dependency order: every service outside a profile, or
    ``names`` and everything they depend on."""
    services = {n: s for n, s in project.services.items() if not s.profiles}
    if names:
        unknown = [n for n in names if n not in services]
        if unknown:
            raise OrderlakeError(
                f"No service {', '.join(unknown)} in {project.name or 'the compose project'}; "
                f"known: {', '.join(sorted(services))}."
            )
        wanted: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo += [d for d in services[name].depends_on if d in services]
        services = {n: s for n, s in services.items() if n in wanted}
    ordered = compose.dependency_order(Project(project.name, services, {}, {}))
    return ordered


def plan(
    project: Project,
    layout: Layout,
    names: Sequence[str] = (),
    *,
    python: str = sys.executable,
    project_root: Path = PROJECT_ROOT,
) -> list[HostProgram]:
    """Every selected service as a HostProgram (see the module docstring), dependency order."""
    services = selected(project, names)
    chosen = {s.name for s in services}
    return [
        _program(
            s, layout, python, project_root, {d: c for d, c in s.depends_on.items() if d in chosen}
        )
        for s in services
    ]


def _program(
    service: Service,
    layout: Layout,
    python: str,
    project_root: Path,
    depends_on: dict[str, str],
) -> HostProgram:
    kind = kind_of(service)
    env = overlay(service, kind, layout)
    mounts = mounts_of(service, kind, layout)
    health = healthcheck(service.healthcheck)
    if kind == ORDERLAKE:
        argv = [*(service.entrypoint or ENTRYPOINT), *(service.command or [])]
        if argv[0] == "python":
            argv[0] = python  # the virtualenv's interpreter is the image's python
    elif kind == KAFKA:
        argv = []  # launch renders, formats and runs the broker (kafka_node)
        health = None  # launch's own check (see the module docstring)
    else:
        argv = []  # launch initialises and runs the server
    restart = RESTART.get(service.restart, "true")
    return HostProgram(
        service=service.name,
        kind=kind,
        aliases=[n for n in service.host_names if n != service.name],
        argv=argv,
        environment=env,
        mounts=mounts,
        health=health,
        depends_on=depends_on,
        restart=restart,
        one_shot=restart != "true",
        stop_grace_s=60 if kind == KAFKA else 30,
        private_dir=str(layout.private(service.name)),
        volumes={
            m.target: str(layout.volume(m.source)) for m in service.volumes if m.type == "volume"
        },
    )


def healthcheck(test: Sequence[str] | None) -> list[str] | None:
    """compose's healthcheck test -> an argv (``CMD`` as is, ``CMD-SHELL`` through sh)."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return ["/bin/sh", "-c", " ".join(test)]  # the string form


def mounts_of(service: Service, kind: str, layout: Layout) -> list[tuple[str, str]]:
    """(machine directory, path inside the host) pairs, shallowest target first."""
    found: list[tuple[str, str]] = []
    for mount in service.volumes:
        if mount.type == "volume":
            source = str(layout.volume(mount.source))
        elif mount.type == "bind":
            source = mount.source
        else:  # tmpfs and the like: a private directory
            source = str(layout.private(service.name) / "tmpfs" / mount.target.strip("/"))
        found.append((source, mount.target))
    targets = {target for _, target in found}
    if kind == ORDERLAKE and CONTAINER_HOME not in targets:
        found.append((str(layout.private(service.name) / "home"), CONTAINER_HOME))
    if kind == POSTGRES:
        found.append((str(layout.private(service.name) / "run"), POSTGRES_RUN))
    if kind == KAFKA:
        return []  # kafka_node takes the machine's directories (data, secrets) directly
    return sorted(found, key=lambda m: m[1].rstrip("/").count("/"))


def overlay(service: Service, kind: str, layout: Layout) -> dict[str, str]:
    """The service's compose environment with the cluster's security laid over it."""
    env = dict(service.environment)
    if kind == KAFKA:
        env = {
            **env,
            **kafka_node.secured_environment(service.name),
            "KAFKA_LISTENERS": _secured_listeners(env.get("KAFKA_LISTENERS", "")),
            "KAFKA_ADVERTISED_LISTENERS": _secured_listeners(
                env.get("KAFKA_ADVERTISED_LISTENERS", "")
            ),
        }
        env.pop("KAFKA_SECURITY_PROTOCOL_MAP", None)
        return env
    if kind == ORDERLAKE:
        if env.get("ORDERLAKE_KAFKA_BOOTSTRAP") or service.name == "kafka-topics":
            env.setdefault("ORDERLAKE_KAFKA_SECURITY", "SASL_SSL")
            env.setdefault("ORDERLAKE_KAFKA_AUTH_DIR", str(layout.secrets))
            env.setdefault(
                "ORDERLAKE_KAFKA_USER", DEFAULT_PRINCIPALS.get(service.name, BATCH_PRINCIPAL)
            )
        if env.get("ORDERLAKE_SPARK_CONNECT_HOST"):
            # the warm Spark behind TLS and a token: its gate and every client (connect_auth)
            env.setdefault("ORDERLAKE_SPARK_CONNECT_AUTH_DIR", str(layout.secrets))
        env["SPARK_CONF_DIR"] = str(layout.spark_conf)
    return env


def _secured_listeners(value: str) -> str:
    """``PLAINTEXT://:9092,CONTROLLER://:9093`` -> ``SASL_SSL://:9092,CONTROLLER://:9093``."""
    listeners = [item.strip() for item in value.split(",") if item.strip()]
    return ",".join(
        kafka_node.LISTENER + item[len("PLAINTEXT") :] if item.startswith("PLAINTEXT://") else item
        for item in listeners
    )


def bootstrap_of(programs: Sequence[HostProgram]) -> str:
    """Every broker's advertised address, as clients dial it."""
    return ",".join(f"{p.service}:{KAFKA_PORT}" for p in programs if p.kind == KAFKA)


def write_plan(layout: Layout, programs: Sequence[HostProgram], meta: Mapping[str, Any]) -> None:
    """The plan as launch and status read it (0600: environments carry database URLs)."""
    from orderlake.private import write_private

    doc = {**meta, "programs": [p.to_json() for p in programs]}
    write_private(layout.plan_file, json.dumps(doc, indent=2) + "\n")


def read_plan(layout: Layout) -> tuple[dict[str, Any], dict[str, HostProgram]]:
    try:
        doc = json.loads(layout.plan_file.read_text())
    except FileNotFoundError:
        raise OrderlakeError(
            f"No cluster is recorded under {layout.root}; start one with `orderlake cluster up`."
        ) from None
    programs = {p["service"]: HostProgram.from_json(p) for p in doc.pop("programs")}
    return doc, programs


def find_program(programs: Mapping[str, HostProgram], host: str) -> HostProgram:
    """A service by its name, compose hostname or alias (``host-1`` -> flume-edge-host-1)."""
    for program in programs.values():
        if host == program.service or host in program.aliases:
            return program
    raise OrderlakeError(f"No host {host!r} in the cluster; hosts: {', '.join(sorted(programs))}.")


def describe(program: HostProgram) -> str:
    """One line for logs: what the host runs."""
    return f"{program.service} ({program.kind}): {shlex.join(program.argv) or 'built in'}"
