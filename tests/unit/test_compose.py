"""docker-compose.yaml and the Dockerfile, checked without a container engine.

What a typo would break at `docker compose up` is caught here: ORDERLAKE_* variables that name
no setting or do not validate, programs the foreground runner does not know, broker settings
below DESIGN.md's guarantees, dangling depends_on, undeclared volumes, ports published beyond
the UIs, COPY sources that do not exist. Each check is a function returning its problems, so
the last tests can show that each one fails on a broken file.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from orderlake.errors import UsageError
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import foreground, kafka

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
KAFKA_IMAGE = "apache/kafka:4.3.1"  # DESIGN.md section 2, jvm/kafka/pom.xml
# the only ports published on the Docker host: service -> container ports (web UIs)
UI_PORTS = {"airflow-api-server": {8080}, "dashboard": {8050}, "spark-master": {8080}}
# programs of the embedded default that compose replaces with something else
NOT_IN_COMPOSE = {"kafka"}  # brokers: the official image (see the comment in the file)


# --- reading the file the way `docker compose` does -------------------------------------------
def load(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and $$."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        if op in (":-", "-"):
            present = name in env and (op == "-" or env[name] != "")
            return env[name] if present else arg
        if op in (":?", "?"):
            if name not in env or (op == ":?" and not env[name]):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return env[name]
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def services(doc: dict) -> dict[str, dict]:
    return doc.get("services") or {}


def environment(service: dict, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's variables after interpolation (defaults only unless ``env`` is given)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: interpolate(str(v), env or {}) for k, v in raw.items()}


def orderlake_vars(service: dict) -> dict[str, str]:
    return {k: v for k, v in environment(service).items() if k.startswith("ORDERLAKE_")}


def runs_foreground(service: dict) -> bool:
    """The orderlake image with its entry point: `python -m orderlake.stack.foreground CMD`."""
    return "build" in service and "entrypoint" not in service


def long_running(service: dict) -> bool:
    return not service.get("profiles") and service.get("restart") == "unless-stopped"


def settings_of(service: dict) -> Settings:
    """The Settings a container builds from its ORDERLAKE_* variables, and from nothing else:
    this process's own environment is not read (an unused prefix)."""
    fields = {k.removeprefix("ORDERLAKE_").lower(): v for k, v in orderlake_vars(service).items()}
    return Settings.from_env(_env_prefix="ORDERLAKE_COMPOSE_TEST_UNUSED_", **fields)


def brokers(doc: dict) -> dict[str, dict]:
    return {
        n: s for n, s in services(doc).items() if str(s.get("image", "")).startswith("apache/kafka")
    }


def named_volumes(service: dict) -> list[tuple[str, str]]:
    """(volume, target) of the service's named-volume mounts (short or long syntax)."""
    out = []
    for mount in service.get("volumes") or []:
        if isinstance(mount, dict):
            if mount.get("type", "volume") == "volume":
                out.append((mount["source"], mount["target"]))
            continue
        source, _, rest = mount.partition(":")
        if source and not source.startswith((".", "/", "~")):
            out.append((source, rest.split(":")[0]))
    return out


# --- the checks: each returns a list of problems ----------------------------------------------
def unknown_orderlake_variables(doc: dict) -> list[str]:
    fields = set(Settings.model_fields)
    return [
        f"{name}: {var} names no Settings field"
        for name, service in services(doc).items()
        for var in orderlake_vars(service)
        if var.removeprefix("ORDERLAKE_").lower() not in fields
    ]


def invalid_orderlake_values(doc: dict) -> list[str]:
    problems = []
    for name, service in services(doc).items():
        values = orderlake_vars(service)
        if not values:
            continue
        try:
            built = settings_of(service)
        except UsageError as exc:  # one sentence naming the variable
            problems.append(f"{name}: {exc}")
            continue
        dumped = built.to_env()
        for var, value in values.items():
            if dumped.get(var) != value:  # e.g. a value pydantic silently coerced
                problems.append(f"{name}: {var}={value!r} reads back as {dumped.get(var)!r}")
    return problems


def unknown_programs(doc: dict) -> list[str]:
    problems = []
    for name, service in services(doc).items():
        if not runs_foreground(service):
            continue
        command = service.get("command")
        if not isinstance(command, list) or len(command) != 1:
            problems.append(f"{name}: command must be one program name, got {command!r}")
            continue
        known = [*foreground.program_names(settings_of(service)), foreground.TOPICS]
        if command[0] not in known:
            problems.append(f"{name}: runs {command[0]!r}, not one of {', '.join(known)}")
    return problems


def dangling_dependencies(doc: dict) -> list[str]:
    problems = []
    all_services = services(doc)
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, spec in depends.items():
            condition = (spec or {}).get("condition", "service_started")
            if target not in all_services:
                problems.append(f"{name}: depends on {target!r}, which is no service")
            elif condition not in conditions:
                problems.append(f"{name}: unknown condition {condition!r} on {target}")
            elif condition == "service_healthy" and "healthcheck" not in all_services[target]:
                problems.append(f"{name}: waits for {target} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and long_running(
                all_services[target]
            ):
                problems.append(f"{name}: waits for {target} to complete; it never does")
    return problems


def undeclared_volumes(doc: dict) -> list[str]:
    declared = set(doc.get("volumes") or {})
    used = {v for s in services(doc).values() for v, _ in named_volumes(s)}
    return [f"volume {v!r} is used but not declared" for v in sorted(used - declared)] + [
        f"volume {v!r} is declared but never used" for v in sorted(declared - used)
    ]


def published_beyond_the_uis(doc: dict) -> list[str]:
    problems = []
    for name, service in services(doc).items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip, target = port.get("host_ip", ""), int(port["target"])
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
                target = int(parts[-1].split("/")[0])
            if target not in UI_PORTS.get(name, set()):
                problems.append(f"{name}: publishes {port}, which is not a web UI")
            elif host_ip != "127.0.0.1":
                problems.append(f"{name}: publishes {port} on every interface of the host")
    return problems


def broker_problems(doc: dict) -> list[str]:
    problems = []
    nodes = brokers(doc)
    if len(nodes) != 3:
        problems.append(f"{len(nodes)} Kafka brokers; DESIGN.md asks for 3")
    voters = {f"{environment(s).get('KAFKA_NODE_ID')}@{n}:9093" for n, s in nodes.items()}
    expected = {
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    cluster_ids = set()
    for name, service in nodes.items():
        env = environment(service)
        if service.get("image") != KAFKA_IMAGE:
            problems.append(f"{name}: image {service.get('image')}, expected {KAFKA_IMAGE}")
        for key, value in expected.items():
            if env.get(key) != value:
                problems.append(f"{name}: {key}={env.get(key)!r}, expected {value!r}")
        if set(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(",")) != voters:
            problems.append(f"{name}: the quorum voters are not exactly the three brokers")
        if env.get("KAFKA_ADVERTISED_LISTENERS") != f"PLAINTEXT://{name}:9092":
            problems.append(f"{name}: advertises {env.get('KAFKA_ADVERTISED_LISTENERS')!r}")
        if not any(t == "/var/lib/kafka/data" for _, t in named_volumes(service)):
            problems.append(f"{name}: its log dir is not on a volume")
        cluster_ids.add(env.get("CLUSTER_ID"))
    # one id for the whole quorum, shaped like kafka.new_cluster_id(): 22 base64url characters
    kraft_id = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}")
    if len(cluster_ids) != 1 or not all(kraft_id.fullmatch(str(i)) for i in cluster_ids):
        problems.append(f"the brokers' CLUSTER_ID values {cluster_ids} are not one KRaft id")
    if len({environment(s).get("KAFKA_NODE_ID") for s in nodes.values()}) != len(nodes):
        problems.append("two brokers share a KAFKA_NODE_ID")
    # what orderlake's clients are told
    broker_addresses = {f"{n}:9092" for n in nodes}
    for name, service in services(doc).items():
        values = orderlake_vars(service)
        if "ORDERLAKE_KAFKA_BOOTSTRAP" not in values:
            continue
        if set(values["ORDERLAKE_KAFKA_BOOTSTRAP"].split(",")) != broker_addresses:
            problems.append(f"{name}: ORDERLAKE_KAFKA_BOOTSTRAP does not list every broker")
        settings = settings_of(service)
        if (settings.replication_factor, settings.min_insync_replicas) != (3, 2):
            problems.append(
                f"{name}: topics get {settings.replication_factor} replicas, "
                f"{settings.min_insync_replicas} in sync; expected 3 and 2"
            )
    return problems


# --- the tests --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc() -> dict:
    return load()


def test_every_service_has_this_build_or_a_pinned_image(doc):
    for name, service in services(doc).items():
        if "build" in service:
            build = service["build"]
            context = PROJECT_ROOT / (build if isinstance(build, str) else build["context"])
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
            assert service.get("image") == "orderlake:local", name
            # tini as PID 1: reaps orphans, signals the program's process group on stop
            assert service.get("init") is True, name
        else:
            image = service.get("image", "")
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest" and "/" not in tag, (
                f"{name}: image {image!r} is not pinned to a version"
            )


def test_orderlake_variables_name_settings_fields(doc):
    assert unknown_orderlake_variables(doc) == []


def test_orderlake_variables_validate_and_read_back(doc):
    assert invalid_orderlake_values(doc) == []


def test_every_service_with_settings_is_a_cluster(doc):
    for name, service in services(doc).items():
        if orderlake_vars(service):
            settings = settings_of(service)
            assert settings.env == "cluster", name
            assert settings.home == Path("/var/lib/orderlake"), name


def test_foreground_programs_exist(doc):
    assert unknown_programs(doc) == []


def test_each_program_of_the_platform_runs_in_exactly_one_container(doc):
    """Every supervised program has its container; one streaming job and one scheduler only
    (one writer of speed.*; one pool serialising the batch writers)."""
    running = [
        s["command"][0] for s in services(doc).values() if runs_foreground(s) and long_running(s)
    ]
    settings = settings_of(services(doc)["streaming"])
    wanted = [p for p in foreground.program_names(settings) if p not in NOT_IN_COMPOSE]
    assert sorted(running) == sorted(wanted)
    assert settings.host_names == ["host-1", "host-2"]


def test_brokers_replicate_three_times_with_two_in_sync(doc):
    assert broker_problems(doc) == []


def test_topics_are_created_with_the_cluster_guarantees(doc):
    settings = settings_of(services(doc)["kafka-topics"])
    specs = kafka.topic_specs(settings)
    assert {t.replication_factor for t in specs} == {3}
    assert {t.config.get("min.insync.replicas") for t in specs} == {"2"}


def test_depends_on_targets_exist(doc):
    assert dangling_dependencies(doc) == []


def test_airflow_containers_start_one_after_the_other(doc):
    """Each runs `airflow db migrate` first; two at once fail on PostgreSQL's lock timeout."""
    chain = [f"airflow-{p}" for p in ("api-server", "scheduler", "dag-processor", "triggerer")]
    all_services = services(doc)
    assert all_services[chain[0]]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for before, after in zip(chain, chain[1:], strict=False):
        depends = all_services[after]["depends_on"]
        assert depends[before] == {"condition": "service_healthy"}, after
        assert not set(depends) & set(chain) - {before}, after


def test_orderlake_services_start_after_kafka_topics_where_they_use_kafka(doc):
    for name in ("flume-collector", "streaming", "airflow-scheduler"):
        depends = services(doc)[name]["depends_on"]
        waits = {"kafka-topics": "service_completed_successfully"}
        flume = name.startswith("flume")
        assert depends.get("kafka-topics", {}).get("condition") == waits["kafka-topics"], name
        assert flume or depends.get("spark-worker", {}).get("condition") == "service_healthy"


def test_long_running_services_restart_are_checked_and_limited(doc):
    for name, service in services(doc).items():
        if service.get("profiles") or name == "kafka-topics":
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), name


def test_healthcheck_snippets_are_valid_python(doc):
    for name, service in services(doc).items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"<{name} healthcheck>", "exec")


def test_volumes_are_declared_and_used(doc):
    assert undeclared_volumes(doc) == []


def test_each_edge_host_has_its_own_spool_and_channel(doc):
    all_services = services(doc)
    for host in ("host-1", "host-2"):
        edge = all_services[f"flume-edge-{host}"]
        mounts = dict(named_volumes(edge))
        assert mounts[f"{host}-spool"] == f"/var/lib/orderlake/spool/{host}"
        assert mounts[f"{host}-flume"] == f"/var/lib/orderlake/flume/{host}"
        # no other long-running container sees this host's disk (the loadgen tool writes logs)
        for other, service in all_services.items():
            if other != f"flume-edge-{host}" and long_running(service):
                assert not {v for v, _ in named_volumes(service)} & set(mounts), other


def test_the_lake_is_shared_at_the_same_path_by_drivers_and_executors(doc):
    all_services = services(doc)
    users = {n for n, s in all_services.items() if "lakehouse" in dict(named_volumes(s))}
    assert {"streaming", "spark-worker", "airflow-scheduler", "dashboard"} <= users
    for name in users:
        assert dict(named_volumes(all_services[name]))["lakehouse"] == "/var/lib/orderlake", name
    # the streaming job alone writes speed.*: no second container runs it
    assert [n for n, s in all_services.items() if s.get("command") == ["streaming"]] == [
        "streaming"
    ]


def test_only_the_web_uis_are_published_and_on_loopback(doc):
    assert published_beyond_the_uis(doc) == []


def test_spark_executors_reach_the_master_the_drivers_use(doc):
    all_services = services(doc)
    master = all_services["spark-master"]["command"]
    port = master[master.index("--port") + 1]
    url = f"spark://spark-master:{port}"
    assert url in all_services["spark-worker"]["command"]
    for name in ("streaming", "airflow-scheduler", "airflow-api-server"):
        assert settings_of(all_services[name]).spark_master == url, name


def test_tool_services_run_valid_orderlake_commands(doc):
    from orderlake.cli import build_parser

    for name, service in services(doc).items():
        if service.get("entrypoint") == ["orderlake"]:
            build_parser().parse_args(service["command"])  # SystemExit(2) on a bad option
            assert service.get("profiles") and service.get("restart") == "no", name


def test_airflow_runs_on_postgres(doc):
    all_services = services(doc)
    pg = environment(all_services["postgres"])
    for name in (n for n in all_services if n.startswith("airflow-")):
        settings = settings_of(all_services[name])
        url = settings.airflow_database_url
        assert isinstance(url, SecretStr), name
        assert url.get_secret_value() == (
            f"postgresql+psycopg2://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{pg['POSTGRES_DB']}"
        )
        assert settings.airflow_host == "airflow-api-server"
    # only Airflow's containers hold the database password
    for name, service in all_services.items():
        if not name.startswith("airflow-"):
            assert "ORDERLAKE_AIRFLOW_DATABASE_URL" not in orderlake_vars(service), name


def compose_command() -> list[str] | None:
    """`docker compose` (plugin) or `docker-compose` (v2 binary), when this machine has one."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_itself_accepts_the_file():
    """Compose's own parser and schema (no engine needed), where Compose is installed."""
    command = compose_command()
    if command is None:
        pytest.skip("no `docker compose` or `docker-compose` on this machine")
    for profile in ([], ["--profile", "tools"]):
        done = subprocess.run(
            [*command, "-f", str(COMPOSE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


# --- the Dockerfile -------------------------------------------------------------------------
def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def missing_copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    problems = []
    ignored = dockerignore_patterns()
    for word, args in instructions:
        if word not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        if any(p.startswith("--from") for p in shlex.split(args)):
            continue
        for source in parts[:-1]:
            if not (PROJECT_ROOT / source).exists():
                problems.append(f"COPY source {source} does not exist")
            elif any(fnmatch.fnmatch(source, pattern) for pattern in ignored):
                problems.append(f"COPY source {source} is excluded by .dockerignore")
    return problems


def test_dockerfile_copy_sources_exist():
    assert missing_copy_sources(dockerfile_instructions()) == []


def test_dockerfile_builds_what_make_setup_builds():
    instructions = dockerfile_instructions()
    base = [args for word, args in instructions if word == "FROM"]
    assert base == ["python:3.11-slim-bookworm"]
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "openjdk-17-jdk-headless" in runs and "maven" in runs
    assert "pip install -c constraints.txt -e ." in runs
    # the Makefile's Maven line, to the letter, for each of the three JVM programs
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    maven = re.search(r"\$\(MVN\) (package dependency:copy-dependencies[^\n]*)", makefile)
    assert maven, "the Makefile no longer resolves the jars with mvn package ..."
    assert f"mvn -q -B {maven.group(1)}" in re.sub(r"\s+", " ", runs)
    assert "for program in kafka flume spark" in runs
    envs = " ".join(args for word, args in instructions if word == "ENV")
    assert "TINI_KILL_PROCESS_GROUP=1" in envs  # stop as supervisord's stopasgroup does
    entry = [args for word, args in instructions if word == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "orderlake.stack.foreground"]']


def test_dockerignore_keeps_local_state_out_of_the_image():
    patterns = dockerignore_patterns()
    for needed in (".venv", ".orderlake", "jvm/*/target", ".git"):
        assert needed in patterns


# --- the checks fail on broken files ----------------------------------------------------------
def broken(doc: dict, service: str, **environment_changes: str | None) -> dict:
    changed = copy.deepcopy(doc)
    env = changed["services"][service].setdefault("environment", {})
    env = changed["services"][service]["environment"] = dict(env)  # unshare the YAML anchor
    for key, value in environment_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return changed


def test_a_misspelt_variable_is_reported(doc):
    bad = broken(doc, "streaming", ORDERLAKE_SPARK_MASTR="spark://spark-master:7077")
    assert unknown_orderlake_variables(bad) == [
        "streaming: ORDERLAKE_SPARK_MASTR names no Settings field"
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"ORDERLAKE_REPLICATION_FACTOR": "three"},
        {"ORDERLAKE_MIN_INSYNC_REPLICAS": "4"},  # more than the 3 replicas
        {"ORDERLAKE_ENV": "production"},
    ],
)
def test_a_bad_value_is_reported(doc, changes):
    problems = invalid_orderlake_values(broken(doc, "streaming", **changes))
    (variable,) = changes
    assert len(problems) == 1
    assert problems[0].startswith(f"streaming: {variable}={changes[variable]!r} is not valid")


def test_a_bad_value_is_the_settings_sentence(monkeypatch):
    monkeypatch.setenv("ORDERLAKE_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(UsageError, match="ORDERLAKE_MIN_INSYNC_REPLICAS='4' is not valid"):
        Settings.from_env()


def test_an_unknown_program_is_reported(doc):
    bad = copy.deepcopy(doc)
    bad["services"]["flume-edge-host-2"]["command"] = ["flume-edge-host-3"]
    new = [p for p in unknown_programs(bad) if p not in unknown_programs(doc)]
    assert len(new) == 1 and new[0].startswith("flume-edge-host-2: runs 'flume-edge-host-3'")


def test_weakened_brokers_are_reported(doc):
    bad = copy.deepcopy(doc)
    bad["services"]["kafka-2"]["environment"] = {
        **environment(bad["services"]["kafka-2"]),
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
        "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "true",
    }
    assert len(broker_problems(bad)) == 2
    lower = broken(doc, "kafka-topics", ORDERLAKE_REPLICATION_FACTOR="1")
    lower = broken(lower, "kafka-topics", ORDERLAKE_MIN_INSYNC_REPLICAS="1")
    assert broker_problems(lower) == [
        "kafka-topics: topics get 1 replicas, 1 in sync; expected 3 and 2"
    ]


def test_dangling_dependencies_undeclared_volumes_and_open_ports_are_reported(doc):
    bad = copy.deepcopy(doc)
    bad["services"]["streaming"]["depends_on"]["kafka-4"] = {"condition": "service_healthy"}
    bad["services"]["streaming"]["volumes"].append("speed-cache:/tmp/cache")
    bad["services"]["streaming"]["ports"] = ["4040:4040"]
    bad["services"]["dashboard"]["ports"] = ["8050:8050"]
    assert dangling_dependencies(bad) == ["streaming: depends on 'kafka-4', which is no service"]
    assert undeclared_volumes(bad) == ["volume 'speed-cache' is used but not declared"]
    assert len(published_beyond_the_uis(bad)) == 2


def test_a_missing_copy_source_is_reported():
    instructions = [*dockerfile_instructions(), ("COPY", "notebooks notebooks")]
    assert missing_copy_sources(instructions) == ["COPY source notebooks does not exist"]
    assert missing_copy_sources([("COPY", ".venv /opt/venv")]) == [
        "COPY source .venv is excluded by .dockerignore"
    ]


def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|$$HOME", env) == "x|d||d|$HOME"
    with pytest.raises(ValueError, match="required"):
        interpolate("${UNSET:?set it}", env)


def test_environment_values_are_strings(doc: dict[str, Any]):
    # compose accepts numbers and booleans, but YAML turns `false`, `no` or `010` into something
    # else before compose sees it: every value is quoted
    for name, service in services(doc).items():
        raw = service.get("environment") or {}
        assert all(isinstance(v, str) for v in raw.values()), name
