"""docker-compose.yaml and the Dockerfile, checked without a container engine.

The file is read by the compose specification's own loader (tools/compose-config through
orderlake.cluster.compose): interpolation, anchors and merge keys, schema validation and
normalization are Docker Compose's own, not re-implemented here. On top of what the loader
refuses, what a typo would break at `docker compose up` is caught here: ORDERLAKE_* variables that
name no setting or do not validate, programs the foreground runner does not know, broker settings
below DESIGN.md's guarantees, waits that can never end, unused volumes, ports published beyond
the UIs, COPY sources that do not exist. Each check is a function returning its problems, so the
last tests can show that each one fails on a broken file: an override written as YAML into
tmp_path and merged by the same loader (`docker compose -f docker-compose.yaml -f broken.yaml`).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from orderlake import kafka_admin
from orderlake.cluster import compose
from orderlake.cluster.compose import Project, Service
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import foreground

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
KAFKA_IMAGE = "apache/kafka:4.3.1"  # DESIGN.md section 2, jvm/kafka/pom.xml
# the only ports published on the Docker host: service -> container ports (web UIs)
UI_PORTS = {"airflow-api-server": {8080}, "dashboard": {8050}, "spark-master": {8080}}
# programs of the embedded default that compose replaces with something else
NOT_IN_COMPOSE = {"kafka"}  # brokers: the official image (see the comment in the file)
# the variables compose requires (no default in the file): the database password
REQUIRED_ENV = {"POSTGRES_PASSWORD": "test-password"}


# --- reading the file the way `docker compose` does -------------------------------------------
def load(*overrides: Path) -> Project:
    """The file (plus overrides) with every profile, interpolated from its defaults and the one
    variable it requires: this process's environment is not read, so the checks see what a
    fresh checkout deploys."""
    return compose.load(COMPOSE, overrides=overrides, environment=REQUIRED_ENV)


def orderlake_vars(service: Service) -> dict[str, str]:
    return {k: v for k, v in service.environment.items() if k.startswith("ORDERLAKE_")}


def runs_foreground(service: Service) -> bool:
    """The orderlake image with its entry point: `python -m orderlake.stack.foreground CMD`."""
    return service.builds_here and service.entrypoint is None


def long_running(service: Service) -> bool:
    return not service.profiles and service.restart == "unless-stopped"


def settings_of(service: Service) -> Settings:
    """The Settings a container builds from its ORDERLAKE_* variables, and from nothing else:
    this process's own environment is not read (an unused prefix)."""
    fields = {k.removeprefix("ORDERLAKE_").lower(): v for k, v in orderlake_vars(service).items()}
    return Settings.from_env(_env_prefix="ORDERLAKE_COMPOSE_TEST_UNUSED_", **fields)


def brokers(project: Project) -> dict[str, Service]:
    return {n: s for n, s in project.services.items() if (s.image or "").startswith("apache/kafka")}


def named_volumes(service: Service) -> list[tuple[str, str]]:
    """(volume, target) of the service's named-volume mounts."""
    return [(m.source, m.target) for m in service.volumes if m.type == "volume"]


# --- the checks: each returns a list of problems ----------------------------------------------
def unknown_orderlake_variables(project: Project) -> list[str]:
    fields = set(Settings.model_fields)
    return [
        f"{name}: {var} names no Settings field"
        for name, service in project.services.items()
        for var in orderlake_vars(service)
        if var.removeprefix("ORDERLAKE_").lower() not in fields
    ]


def invalid_orderlake_values(project: Project) -> list[str]:
    problems = []
    for name, service in project.services.items():
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


def unknown_programs(project: Project) -> list[str]:
    problems = []
    for name, service in project.services.items():
        if not runs_foreground(service):
            continue
        command = service.command
        if not isinstance(command, list) or len(command) != 1:
            problems.append(f"{name}: command must be one program name, got {command!r}")
            continue
        known = [*foreground.program_names(settings_of(service)), *foreground.ONE_SHOTS]
        if command[0] not in known:
            problems.append(f"{name}: runs {command[0]!r}, not one of {', '.join(known)}")
    return problems


def endless_waits(project: Project) -> list[str]:
    """depends_on conditions that can never be met. The loader itself refuses a target that is
    no service, an unknown condition and a cycle."""
    problems = []
    for name, service in project.services.items():
        for target, condition in service.depends_on.items():
            other = project.services[target]
            if condition == "service_healthy" and not other.healthcheck:
                problems.append(f"{name}: waits for {target} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and long_running(other):
                problems.append(f"{name}: waits for {target} to complete; it never does")
    return problems


def unused_volumes(project: Project) -> list[str]:
    """Declared volumes no service mounts (the loader refuses a mount of an undeclared one)."""
    used = {v for s in project.services.values() for v, _ in named_volumes(s)}
    return [f"volume {v!r} is declared but never used" for v in sorted(set(project.volumes) - used)]


def published_beyond_the_uis(project: Project) -> list[str]:
    problems = []
    for name, service in project.services.items():
        for port in service.ports:
            shown = f"{port.host_ip + ':' if port.host_ip else ''}{port.published}:{port.target}"
            if port.target not in UI_PORTS.get(name, set()):
                problems.append(f"{name}: publishes {shown}, which is not a web UI")
            elif port.host_ip != "127.0.0.1":
                problems.append(f"{name}: publishes {shown} on every interface of the host")
    return problems


def broker_problems(project: Project) -> list[str]:
    problems = []
    nodes = brokers(project)
    if len(nodes) != 3:
        problems.append(f"{len(nodes)} Kafka brokers; DESIGN.md asks for 3")
    voters = {f"{s.environment.get('KAFKA_NODE_ID')}@{n}:9093" for n, s in nodes.items()}
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
        env = service.environment
        if service.image != KAFKA_IMAGE:
            problems.append(f"{name}: image {service.image}, expected {KAFKA_IMAGE}")
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
    if len({s.environment.get("KAFKA_NODE_ID") for s in nodes.values()}) != len(nodes):
        problems.append("two brokers share a KAFKA_NODE_ID")
    # what orderlake's clients are told
    broker_addresses = {f"{n}:9092" for n in nodes}
    for name, service in project.services.items():
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


def unquoted_environment_values(path: Path) -> list[str]:
    """Environment values written as YAML numbers or booleans. This one check reads the source
    text: the loader turns an unquoted `010` into "8" and `1.50` into "1.5" before anything
    can see how the value was written."""
    doc = yaml.safe_load(path.read_text())
    return [
        f"{name}: {key} is not quoted"
        for name, service in (doc.get("services") or {}).items()
        if isinstance(service.get("environment"), dict)
        for key, value in service["environment"].items()
        if not isinstance(value, str)
    ]


# --- the tests --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project() -> Project:
    return load()


def test_every_service_has_this_build_or_a_pinned_image(project):
    for name, service in project.services.items():
        if service.dockerfile is not None:
            assert service.builds_here, f"{name}: built from {service.dockerfile.parent}"
            assert service.dockerfile.is_file(), f"{name}: no {service.dockerfile}"
            assert service.image == "orderlake:local", name
            # tini as PID 1: reaps orphans, signals the program's process group on stop
            assert service.init is True, name
        else:
            image = service.image or ""
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest" and "/" not in tag, (
                f"{name}: image {image!r} is not pinned to a version"
            )


def test_orderlake_variables_name_settings_fields(project):
    assert unknown_orderlake_variables(project) == []


def test_orderlake_variables_validate_and_read_back(project):
    assert invalid_orderlake_values(project) == []


def test_every_service_with_settings_is_a_cluster(project):
    for name, service in project.services.items():
        if orderlake_vars(service):
            settings = settings_of(service)
            assert settings.env == "cluster", name
            assert settings.home == Path("/var/lib/orderlake"), name


def test_foreground_programs_exist(project):
    assert unknown_programs(project) == []


def test_each_program_of_the_platform_runs_in_exactly_one_container(project):
    """Every supervised program has its container; one streaming job and one scheduler only
    (one writer of speed.*; one pool serialising the batch writers)."""
    running = [
        s.command[0]
        for s in project.services.values()
        if runs_foreground(s) and long_running(s) and s.command
    ]
    settings = settings_of(project.services["streaming"])
    wanted = [p for p in foreground.program_names(settings) if p not in NOT_IN_COMPOSE]
    assert sorted(running) == sorted(wanted)
    assert settings.host_names == ["host-1", "host-2"]


def test_brokers_replicate_three_times_with_two_in_sync(project):
    assert broker_problems(project) == []


def test_topics_are_created_with_the_cluster_guarantees(project):
    settings = settings_of(project.services["kafka-topics"])
    specs = kafka_admin.topic_specs(settings)
    assert {t.replication_factor for t in specs} == {3}
    assert {t.config.get("min.insync.replicas") for t in specs} == {"2"}


def test_depends_on_conditions_can_be_met(project):
    assert endless_waits(project) == []


def test_airflow_is_migrated_once_before_its_containers_start_side_by_side(project):
    """Two `airflow db migrate` at once fail on PostgreSQL's lock timeout: the one-shot
    airflow-init migrates, and no Airflow container migrates again or waits for another's
    health."""
    services = project.services
    init = services["airflow-init"]
    assert init.command == ["airflow-init"] and init.restart == "on-failure"
    assert init.depends_on == {"postgres": "service_healthy"}
    airflow = [n for n in services if n.startswith("airflow-") and n != "airflow-init"]
    assert len(airflow) == 4
    for name in airflow:
        depends = services[name].depends_on
        assert depends["airflow-init"] == "service_completed_successfully", name
        assert all(c != "service_healthy" for d, c in depends.items() if d in airflow), name
        assert not settings_of(services[name]).airflow_prepare_on_start, name


def test_orderlake_services_start_after_kafka_topics_where_they_use_kafka(project):
    # Spark drivers wait for a worker to run on; Airflow's batch tasks for the warm Spark
    needs_spark = {"streaming": "spark-worker", "spark-connect": "spark-worker",
                   "airflow-scheduler": "spark-connect"}  # fmt: skip
    for name in ("flume-collector", *needs_spark):
        depends = project.services[name].depends_on
        assert depends.get("kafka-topics") == "service_completed_successfully", name
        if name in needs_spark:
            assert depends.get(needs_spark[name]) == "service_healthy", name


def test_services_start_in_dependency_order(project):
    order = [s.name for s in compose.dependency_order(project)]
    assert sorted(order) == sorted(project.services)
    for position, name in enumerate(order):
        assert set(project.services[name].depends_on) <= set(order[:position]), name
    assert order.index("kafka-topics") > max(order.index(f"kafka-{i}") for i in (1, 2, 3))


def test_long_running_services_restart_are_checked_and_limited(project):
    for name, service in project.services.items():
        if service.profiles or name in foreground.ONE_SHOTS:
            continue
        assert service.restart == "unless-stopped", name
        assert service.healthcheck, name
        assert service.cpus and service.memory, name


def test_healthcheck_snippets_are_valid_python(project):
    for name, service in project.services.items():
        test = service.healthcheck or []
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"<{name} healthcheck>", "exec")


def test_volumes_are_declared_and_used(project):
    assert unused_volumes(project) == []


def test_each_edge_host_has_its_own_spool_and_channel(project):
    for host in ("host-1", "host-2"):
        edge = project.services[f"flume-edge-{host}"]
        mounts = dict(named_volumes(edge))
        assert mounts[f"{host}-spool"] == f"/var/lib/orderlake/spool/{host}"
        assert mounts[f"{host}-flume"] == f"/var/lib/orderlake/flume/{host}"
        # no other long-running container sees this host's disk (the loadgen tool writes logs)
        for other, service in project.services.items():
            if other != f"flume-edge-{host}" and long_running(service):
                assert not {v for v, _ in named_volumes(service)} & set(mounts), other


def test_the_lake_is_shared_at_the_same_path_by_drivers_and_executors(project):
    services = project.services
    users = {n for n, s in services.items() if "lakehouse" in dict(named_volumes(s))}
    assert {"streaming", "spark-worker", "airflow-scheduler", "dashboard"} <= users
    for name in users:
        assert dict(named_volumes(services[name]))["lakehouse"] == "/var/lib/orderlake", name
    # the streaming job alone writes speed.*: no second container runs it
    assert [n for n, s in services.items() if s.command == ["streaming"]] == ["streaming"]


def test_only_the_web_uis_are_published_and_on_loopback(project):
    assert published_beyond_the_uis(project) == []


def test_spark_executors_reach_the_master_the_drivers_use(project):
    services = project.services
    master = services["spark-master"].command or []
    port = master[master.index("--port") + 1]
    url = f"spark://spark-master:{port}"
    assert url in (services["spark-worker"].command or [])
    for name in ("streaming", "airflow-scheduler", "airflow-api-server"):
        assert settings_of(services[name]).spark_master == url, name


def test_tool_services_run_valid_orderlake_commands(project):
    from orderlake.cli import build_parser

    tools = [s for s in project.services.values() if s.entrypoint == ["orderlake"]]
    assert tools, "no tool service (loadgen) was loaded"
    for service in tools:
        build_parser().parse_args(service.command)  # SystemExit(2) on a bad option
        assert service.profiles and service.restart == "no", service.name


def test_airflow_runs_on_postgres(project):
    services = project.services
    pg = services["postgres"].environment
    for name in (n for n in services if n.startswith("airflow-")):
        settings = settings_of(services[name])
        url = settings.airflow_database_url
        assert isinstance(url, SecretStr), name
        assert url.get_secret_value() == (
            f"postgresql+psycopg2://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{pg['POSTGRES_DB']}"
        )
        assert settings.airflow_host == "airflow-api-server"
    # only Airflow's containers hold the database password
    for name, service in services.items():
        if not name.startswith("airflow-"):
            assert "ORDERLAKE_AIRFLOW_DATABASE_URL" not in orderlake_vars(service), name


def test_docker_compose_itself_accepts_the_file():
    """Compose's own loader and schema, with the default profiles and with `--profile tools`,
    as `docker compose config --quiet` would check them, and without a warning."""
    for profiles, loadgen in (((), False), (("tools",), True)):
        doc, warnings = compose.config_json(COMPOSE, profiles=profiles, environment=REQUIRED_ENV)
        assert warnings == [], profiles
        assert ("loadgen" in doc["services"]) is loadgen, profiles
        assert "kafka-1" in doc["services"], profiles


def test_the_password_comes_from_the_environment_or_a_dot_env(tmp_path):
    """Compose's interpolation: the process environment first, then a .env beside the file;
    there is no default password, so without either the file is refused in one sentence."""
    (tmp_path / "docker-compose.yaml").write_text(COMPOSE.read_text())
    with pytest.raises(OrderlakeError, match="set POSTGRES_PASSWORD in .env"):
        compose.load(tmp_path / "docker-compose.yaml", environment={})
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=from-dot-env\n")
    from_dot_env = compose.load(tmp_path / "docker-compose.yaml", environment={})
    from_env = compose.load(
        tmp_path / "docker-compose.yaml", environment={"POSTGRES_PASSWORD": "from-env"}
    )
    for project, password in ((from_dot_env, "from-dot-env"),):
        assert project.services["postgres"].environment["POSTGRES_PASSWORD"] == password
        url = settings_of(project.services["airflow-scheduler"]).airflow_database_url
        assert url is not None and f":{password}@postgres" in url.get_secret_value()
    assert from_env.services["postgres"].environment["POSTGRES_PASSWORD"] == "from-env"


def test_environment_values_are_strings():
    # compose accepts numbers and booleans, but YAML turns `false`, `no` or `010` into something
    # else before compose sees it: every value is quoted
    assert unquoted_environment_values(COMPOSE) == []


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
            # excluded first: a checkout without .venv/ still reports a COPY of it as excluded
            if any(fnmatch.fnmatch(source, pattern) for pattern in ignored):
                problems.append(f"COPY source {source} is excluded by .dockerignore")
            elif not (PROJECT_ROOT / source).exists():
                problems.append(f"COPY source {source} does not exist")
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
def broken(tmp_path: Path, override: str) -> Project:
    """docker-compose.yaml merged with ``override`` (YAML), as `docker compose -f ... -f ...`."""
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent(override))
    return load(path)


def test_a_misspelt_variable_is_reported(tmp_path):
    bad = broken(
        tmp_path,
        """
        services:
          streaming:
            environment:
              ORDERLAKE_SPARK_MASTR: "spark://spark-master:7077"
        """,
    )
    assert unknown_orderlake_variables(bad) == [
        "streaming: ORDERLAKE_SPARK_MASTR names no Settings field"
    ]


@pytest.mark.parametrize(
    "variable, value",
    [
        ("ORDERLAKE_REPLICATION_FACTOR", "three"),
        ("ORDERLAKE_MIN_INSYNC_REPLICAS", "4"),  # more than the 3 replicas
        ("ORDERLAKE_ENV", "production"),
    ],
)
def test_a_bad_value_is_reported(tmp_path, variable, value):
    bad = broken(
        tmp_path,
        f"""
        services:
          streaming:
            environment:
              {variable}: "{value}"
        """,
    )
    problems = invalid_orderlake_values(bad)
    assert len(problems) == 1
    assert problems[0].startswith(f"streaming: {variable}={value!r} is not valid")


def test_a_bad_value_is_the_settings_sentence(monkeypatch):
    monkeypatch.setenv("ORDERLAKE_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(UsageError, match="ORDERLAKE_MIN_INSYNC_REPLICAS='4' is not valid"):
        Settings.from_env()


def test_an_unknown_program_is_reported(tmp_path):
    bad = broken(
        tmp_path,
        """
        services:
          flume-edge-host-2:
            command: ["flume-edge-host-3"]
        """,
    )
    problems = unknown_programs(bad)
    assert len(problems) == 1 and problems[0].startswith(
        "flume-edge-host-2: runs 'flume-edge-host-3'"
    )


def test_weakened_brokers_are_reported(tmp_path):
    bad = broken(
        tmp_path,
        """
        services:
          kafka-2:
            environment:
              KAFKA_MIN_INSYNC_REPLICAS: "1"
              KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE: "true"
        """,
    )
    assert broker_problems(bad) == [
        "kafka-2: KAFKA_MIN_INSYNC_REPLICAS='1', expected '2'",
        "kafka-2: KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE='true', expected 'false'",
    ]
    lower = broken(
        tmp_path,
        """
        services:
          kafka-topics:
            environment:
              ORDERLAKE_REPLICATION_FACTOR: "1"
              ORDERLAKE_MIN_INSYNC_REPLICAS: "1"
        """,
    )
    assert broker_problems(lower) == [
        "kafka-topics: topics get 1 replicas, 1 in sync; expected 3 and 2"
    ]


def test_endless_waits_unused_volumes_and_open_ports_are_reported(tmp_path):
    bad = broken(
        tmp_path,
        """
        services:
          dashboard:
            depends_on:
              kafka-topics: {condition: service_healthy}
              spark-master: {condition: service_completed_successfully}
            ports: !override ["8050:8050"]
          streaming:
            ports: ["4040:4040"]
        volumes:
          speed-cache: {}
        """,
    )
    assert endless_waits(bad) == [
        "dashboard: waits for kafka-topics to be healthy; it has no healthcheck",
        "dashboard: waits for spark-master to complete; it never does",
    ]
    assert unused_volumes(bad) == ["volume 'speed-cache' is declared but never used"]
    assert published_beyond_the_uis(bad) == [
        "dashboard: publishes 8050:8050 on every interface of the host",
        "streaming: publishes 4040:4040, which is not a web UI",
    ]


@pytest.mark.parametrize(
    "override, message",
    [
        pytest.param(
            "services:\n  streaming:\n    depends_on:\n      kafka-4: {condition: service_healthy}",
            'service "streaming" depends on undefined service "kafka-4"',
            id="a dependency on no service",
        ),
        pytest.param(
            "services:\n  streaming:\n    volumes: ['speed-cache:/tmp/cache']",
            'service "streaming" refers to undefined volume speed-cache',
            id="a mount of an undeclared volume",
        ),
        pytest.param(
            "services:\n  streaming:\n    depends_on:\n      kafka-1: {condition: started}",
            "services.streaming.depends_on.kafka-1.condition value must be one of",
            id="an unknown condition",
        ),
        pytest.param(
            "services:\n  kafka-1:\n    depends_on: [streaming]",
            "dependency cycle detected",
            id="two services waiting for each other",
        ),
    ],
)
def test_the_loader_refuses_what_compose_refuses(tmp_path, override, message):
    with pytest.raises(OrderlakeError, match="is not a valid compose file: ") as refused:
        broken(tmp_path, override)
    assert message in str(refused.value)


def test_a_missing_copy_source_is_reported():
    instructions = [*dockerfile_instructions(), ("COPY", "notebooks notebooks")]
    assert missing_copy_sources(instructions) == ["COPY source notebooks does not exist"]
    assert missing_copy_sources([("COPY", ".venv /opt/venv")]) == [
        "COPY source .venv is excluded by .dockerignore"
    ]


def test_an_unquoted_value_is_reported(tmp_path):
    path = tmp_path / "docker-compose.yaml"
    path.write_text(COMPOSE.read_text().replace('KAFKA_NODE_ID: "2"', "KAFKA_NODE_ID: 010", 1))
    # why the check reads the source: compose's loader reads the unquoted value as octal
    assert (
        compose.load(path, environment=REQUIRED_ENV)
        .services["kafka-2"]
        .environment["KAFKA_NODE_ID"]
        == "8"
    )
    assert unquoted_environment_values(path) == ["kafka-2: KAFKA_NODE_ID is not quoted"]


# --- the loader's own contract ----------------------------------------------------------------
def test_a_missing_loader_says_to_run_make_setup(tmp_path):
    with pytest.raises(OrderlakeError, match=r"missing; run `make setup`"):
        compose.load(COMPOSE, binary=tmp_path / "compose-config")


def test_dependency_order_names_a_cycle():
    # the loader refuses cycles itself; the helper guards projects built by hand
    doc = {
        "name": "loop",
        "services": {
            "a": {"image": "x:1", "depends_on": {"b": {"condition": "service_started"}}},
            "b": {"image": "x:1", "depends_on": {"c": {"condition": "service_healthy"}}},
            "c": {"image": "x:1", "depends_on": {"b": {"condition": "service_started"}}},
            "d": {"image": "x:1"},
        },
    }
    project = compose.parse_project(doc, Path("/nowhere"))
    with pytest.raises(OrderlakeError, match="in a cycle: b -> c -> b;"):
        compose.dependency_order(project)
    del doc["services"]["c"]["depends_on"]
    order = compose.dependency_order(compose.parse_project(doc, Path("/nowhere")))
    assert [s.name for s in order] == ["c", "d", "b", "a"]
