"""docker-compose.yaml -> a typed ``Project``, read by the compose specification's own loader.

``tools/compose-config`` (Go, github.com/compose-spec/compose-go/v2, built by ``make setup``)
loads the file as Docker Compose does: interpolation from the environment and a ``.env``
beside the file, YAML anchors and ``<<:`` merge keys, override files, validation against the
schema, normalization. It prints the project as JSON (``docker compose config --format json``);
this module turns that into frozen dataclasses, so nothing here re-implements a compose rule.

Example::

    project = load()  # ./docker-compose.yaml, every profile
    for service in dependency_order(project):
        print(service.name, service.command)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
BINARY = PROJECT_ROOT / "tools" / "compose-config" / "compose-config"
LOAD_TIMEOUT_S = 60.0


class Mount(NamedTuple):
    """One entry of a service's ``volumes``: ``type`` is volume, bind or tmpfs; ``source`` is the
    project's volume key for a named volume, an absolute host path for a bind mount."""

    type: str
    source: str
    target: str
    read_only: bool = False


class Port(NamedTuple):
    """One published port; ``host_ip`` "" means every interface of the host."""

    target: int
    published: str
    host_ip: str
    protocol: str


@dataclass(frozen=True)
class Service:
    """One service after compose's normalization (anchors merged, variables interpolated)."""

    name: str
    hostname: str | None
    image: str | None
    builds_here: bool  # built from this project's own directory (the orderlake image)
    dockerfile: Path | None  # absolute, when the service has a build section
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    depends_on: dict[str, str]  # service -> condition (service_started, _healthy, ...)
    volumes: list[Mount]
    ports: list[Port]
    healthcheck: list[str] | None  # the test, e.g. ["CMD", "python", "-c", "..."]
    restart: str | None
    profiles: list[str] = field(default_factory=list)
    init: bool = False
    cpus: float | None = None  # deploy.resources.limits
    memory: int | None = None  # bytes
    aliases: list[str] = field(default_factory=list)  # network aliases

    @property
    def host_names(self) -> list[str]:
        """Every name other services reach this one by: service name, hostname, aliases."""
        names = [self.name, *([self.hostname] if self.hostname else []), *self.aliases]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Project:
    """A loaded compose project; ``volumes``/``networks`` map the file's keys to real names."""

    name: str
    services: dict[str, Service]
    volumes: dict[str, str]
    networks: dict[str, str]
    warnings: list[str] = field(default_factory=list)  # the loader's, e.g. an unset variable


def load(
    path: Path = COMPOSE_FILE,
    *,
    overrides: Sequence[Path] = (),
    environment: Mapping[str, str] | None = None,
    profiles: Sequence[str] = ("*",),
    binary: Path = BINARY,
) -> Project:
    """Load ``path`` (plus ``overrides``, merged in order as ``docker compose -f a -f b``).

    ``environment`` replaces the process environment for interpolation (a ``.env`` beside
    ``path`` is still read, as compose does); ``profiles`` ``("*",)`` keeps every service, ``()``
    falls back to COMPOSE_PROFILES. Volumes and networks no service uses are kept, so a check
    can see them.
    """
    doc, warnings = config_json(
        path,
        overrides=overrides,
        environment=environment,
        profiles=profiles,
        binary=binary,
        all_resources=True,
    )
    return replace(parse_project(doc, path.resolve().parent), warnings=warnings)


def config_json(
    path: Path = COMPOSE_FILE,
    *,
    overrides: Sequence[Path] = (),
    environment: Mapping[str, str] | None = None,
    profiles: Sequence[str] = ("*",),
    binary: Path = BINARY,
    all_resources: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """The normalized project as ``docker compose config --format json`` prints it, and the
    loader's warnings. Raises ``OrderlakeError`` with the loader's message on an invalid file."""
    if not os.access(binary, os.X_OK):
        raise OrderlakeError(
            f"The compose loader {binary} is missing; run `make setup` to build it (needs Go)."
        )
    argv = [str(binary)]
    for file in (path, *overrides):
        argv += ["-f", str(file)]
    for profile in profiles:
        argv += ["--profile", profile]
    if all_resources:
        argv.append("--all-resources")
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=dict(os.environ if environment is None else environment),
        timeout=LOAD_TIMEOUT_S,
        check=False,
    )
    lines = done.stderr.splitlines()
    warnings = [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")]
    if done.returncode != 0:
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        message = errors[-1] if errors else (done.stderr.strip() or f"exit {done.returncode}")
        raise OrderlakeError(f"{path} is not a valid compose file: {message}")
    return json.loads(done.stdout), warnings


def parse_project(doc: Mapping[str, Any], project_dir: Path) -> Project:
    """The typed model of the loader's JSON; ``project_dir`` tells which builds are ours."""
    services = doc.get("services") or {}
    return Project(
        name=doc.get("name", ""),
        services={name: _service(name, spec, project_dir) for name, spec in services.items()},
        volumes={k: (v or {}).get("name", k) for k, v in (doc.get("volumes") or {}).items()},
        networks={k: (v or {}).get("name", k) for k, v in (doc.get("networks") or {}).items()},
    )


def _service(name: str, spec: Mapping[str, Any], project_dir: Path) -> Service:
    build = spec.get("build") or {}
    context = Path(build["context"]) if build else None
    limits = ((spec.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    health = spec.get("healthcheck") or {}
    return Service(
        name=name,
        hostname=spec.get("hostname"),
        image=spec.get("image"),
        builds_here=context is not None and context.resolve() == project_dir.resolve(),
        dockerfile=context / build.get("dockerfile", "Dockerfile") if context else None,
        entrypoint=spec.get("entrypoint"),
        command=spec.get("command"),
        # a variable listed without a value and unset at load time stays unset (None)
        environment={k: v for k, v in (spec.get("environment") or {}).items() if v is not None},
        depends_on={
            target: (dep or {}).get("condition", "service_started")
            for target, dep in (spec.get("depends_on") or {}).items()
        },
        volumes=[
            Mount(m["type"], m.get("source", ""), m["target"], bool(m.get("read_only")))
            for m in spec.get("volumes") or []
        ],
        ports=[
            Port(int(p["target"]), str(p.get("published", "")), p.get("host_ip", ""), p["protocol"])
            for p in spec.get("ports") or []
        ],
        healthcheck=health.get("test"),
        restart=spec.get("restart"),
        profiles=list(spec.get("profiles") or []),
        init=bool(spec.get("init")),
        cpus=float(limits["cpus"]) if limits.get("cpus") is not None else None,
        memory=int(limits["memory"]) if limits.get("memory") is not None else None,
        aliases=[
            alias
            for network in (spec.get("networks") or {}).values()
            for alias in (network or {}).get("aliases") or []
        ],
    )


def dependency_order(project: Project) -> list[Service]:
    """Services so that each comes after everything it ``depends_on`` (ties by name).

    A dependency on a service the project does not hold (a disabled profile) is ignored; a cycle
    is an ``OrderlakeError`` naming it. The loader already refuses cycles, so this guards models
    built by hand.
    """
    waiting = {
        name: {d for d in service.depends_on if d in project.services}
        for name, service in project.services.items()
    }
    ordered: list[Service] = []
    while waiting:
        ready = sorted(name for name, deps in waiting.items() if not deps)
        if not ready:
            raise OrderlakeError(
                f"Services of {project.name or 'the project'} depend on each other in a cycle: "
                f"{' -> '.join(_cycle(waiting))}; remove one of these depends_on."
            )
        for name in ready:
            ordered.append(project.services[name])
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    return ordered


def _cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    """One cycle among services that all still wait for something: walk until a name repeats."""
    path = [min(waiting)]
    while True:
        following = min(waiting[path[-1]])
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)
