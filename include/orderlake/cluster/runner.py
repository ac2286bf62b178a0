"""`orderlake cluster up | down | status | exec`: docker-compose.yaml as namespaces on one machine.

``up``: docker-compose.yaml (compose-go) -> deploy.plan -> the cluster's secrets (Kafka CA and
keystores, SCRAM passwords, Spark's authentication secret, PostgreSQL's password, all 0600 under
``<root>/secrets``) -> one supervisord in the root namespace whose programs are
``ip netns exec <namespace> python -m orderlake.cluster.launch PLAN SERVICE run`` -> the network
(netns.Network, owned by supervisord's pid: if supervisord dies, ``clean_stale`` removes it)
-> programs started in dependency order, honouring compose's conditions (service_healthy: the
service's healthcheck passes inside its host; service_completed_successfully: the one-shot
exited 0) -> every healthcheck passes. ``down`` stops supervisord (its programs stop in reverse
order), removes the namespaces, links and /etc/netns files, and keeps the volumes unless asked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orderlake import connect_auth
from orderlake.cluster import compose, deploy, kafka_acls, kafka_node, netns, tls
from orderlake.cluster.deploy import HostProgram, Layout
from orderlake.errors import OrderlakeError
from orderlake.private import write_private
from orderlake.settings import Settings
from orderlake.stack.supervisor import Program, Supervisor

UP_TIMEOUT_S = 900.0
PROBE_EVERY_S = 3.0
POSTGRES_PASSWORD = "POSTGRES_PASSWORD"  # noqa: S105 -- the variable's name, not a password


def layout_for(settings: Settings) -> Layout:
    """ORDERLAKE_CLUSTER_ROOT, else ``<ORDERLAKE_HOME>/cluster``."""
    return Layout(Path(os.environ.get("ORDERLAKE_CLUSTER_ROOT") or settings.home / "cluster"))


def supervisor_of(layout: Layout) -> Supervisor:
    return Supervisor(Settings(home=layout.root))


def state_file(layout: Layout) -> Path:
    return layout.root / "run" / "cluster.json"


def read_state(layout: Layout) -> dict[str, Any] | None:
    try:
        return json.loads(state_file(layout).read_text())
    except (OSError, ValueError):
        return None


def network_of(layout: Layout) -> netns.Network:
    state = read_state(layout)
    if not state:
        raise OrderlakeError(
            f"No cluster is running under {layout.root}; start one with `orderlake cluster up`."
        )
    return netns.Network.load(state["run_id"])


# --- secrets ------------------------------------------------------------------------------------
def compose_environment(layout: Layout) -> dict[str, str]:
    """The environment compose interpolates: the caller's, plus a generated PostgreSQL password
    unless POSTGRES_PASSWORD is set."""
    env = dict(os.environ)
    if not env.get(POSTGRES_PASSWORD):
        env[POSTGRES_PASSWORD] = tls.secret(layout.secrets / "postgres.password")
    return env


def make_secrets(layout: Layout, programs: Sequence[HostProgram]) -> None:
    """Every secret the cluster needs, made once and reused by later runs."""
    secrets = layout.secrets
    tls.make_ca(secrets)
    tls.truststore(secrets)
    broker = kafka_acls.user_password(secrets, kafka_node.BROKER_USER)
    kafka_acls.user_password(secrets, kafka_node.ADMIN_USER)
    kafka_acls.service_passwords(secrets)

    def keys(p: HostProgram) -> None:
        if p.kind == deploy.KAFKA:
            kafka_node.write_secrets(secrets, p.service, [p.service, *p.aliases], broker)
        else:  # the warm Spark's TLS gate and the token its clients send (connect_auth)
            tls.server_pem(secrets, [p.service, *p.aliases], connect_auth.SERVER)
            tls.secret(secrets / connect_auth.TOKEN_FILE, nbytes=32)

    hosts = [
        p
        for p in programs
        if p.kind == deploy.KAFKA
        or (p.kind == deploy.ORDERLAKE and p.argv[-1:] == [deploy.SPARK_CONNECT_PROGRAM])
    ]
    # side by side: a key store is about five keytool runs, JVMs that mostly start up
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(keys, hosts))  # list(): raises the first failure here
    spark_secret = tls.secret(secrets / "spark.secret")
    write_private(
        layout.spark_conf / "spark-defaults.conf",
        f"spark.authenticate true\nspark.authenticate.secret {spark_secret}\n",
    )


def preflight(programs: Sequence[HostProgram]) -> None:
    """What the image would bring and this machine may lack: one sentence each."""
    kinds = {p.kind for p in programs}
    if deploy.POSTGRES in kinds:
        from orderlake.cluster.launch import postgres_bin

        postgres_bin()
    if any(
        "postgresql+psycopg2" in p.environment.get("ORDERLAKE_AIRFLOW_DATABASE_URL", "")
        for p in programs
    ):
        missing = [m for m in ("psycopg2", "asyncpg") if importlib.util.find_spec(m) is None]
        if missing:
            raise OrderlakeError(
                f"Airflow on PostgreSQL needs {' and '.join(missing)} in this virtualenv (the "
                "Dockerfile installs them): pip install -c constraints.txt "
                "psycopg2-binary==2.9.13 asyncpg==0.32.0."
            )
    if deploy.KAFKA in kinds:
        tls.keytool_executable()
    for tool in ("mount",):
        if shutil.which(tool) is None:
            raise OrderlakeError(f"The `{tool}` command is missing; install util-linux.")


# --- up -----------------------------------------------------------------------------------------
def up(
    layout: Layout,
    *,
    compose_file: Path = compose.COMPOSE_FILE,
    services: Sequence[str] = (),
    progress: Callable[[str], None] = print,
    timeout: float = UP_TIMEOUT_S,
) -> dict[str, Any]:
    """Start the deployment (see the module docstring); returns ``status``."""
    netns.require_tools()
    started = time.monotonic()
    # a SIGTERM (a killed `cluster up`, a test time-out) undoes the half-built cluster as
    # Ctrl-C does; a SIGKILL leaves it to `cluster down` or the next `up` (clean_stale)
    signal.signal(signal.SIGTERM, _interrupt)
    supervisor = supervisor_of(layout)
    if supervisor.is_running():
        raise OrderlakeError(
            f"A cluster is already running under {layout.root}; stop it with "
            "`orderlake cluster down` first."
        )
    for run_id in netns.clean_stale():
        progress(f"removed the leftovers of cluster network {run_id}")
    project = compose.load(compose_file, environment=compose_environment(layout))
    programs = deploy.plan(project, layout, services)
    preflight(programs)
    make_secrets(layout, programs)
    run_id = netns.new_run_id()
    meta = {
        "run_id": run_id,
        "project": project.name,
        "compose_file": str(compose_file),
        "venv_bin": str(Path(sys.executable).parent),
        "python": sys.executable,
        "pythonpath": os.pathsep.join(
            [str(deploy.PROJECT_ROOT / "include"), str(deploy.PROJECT_ROOT)]
        ),
        "project_root": str(deploy.PROJECT_ROOT),
        "java_home": os.environ.get("JAVA_HOME", ""),
        "secrets": str(layout.secrets),
    }
    deploy.write_plan(layout, programs, meta)
    for p in programs:
        for source, _ in p.mounts:
            Path(source).mkdir(parents=True, exist_ok=True)
        Path(p.private_dir).mkdir(parents=True, exist_ok=True)
    supervisor.start_daemon([_supervised(layout, run_id, p) for p in programs])
    try:
        network = netns.Network.create(
            {p.service: p.aliases for p in programs},
            run_id=run_id,
            owner_pid=supervisor.daemon_pid(),
            label=f"compose project {project.name}",
        )
        write_private(state_file(layout), json.dumps({**meta, "subnet": str(network.subnet)}))
        progress(f"network {network.subnet} with {len(programs)} hosts ({run_id})")
        _start_in_order(layout, network, programs, supervisor, progress, timeout)
    except BaseException:
        down(layout)
        raise
    progress(f"cluster up in {time.monotonic() - started:.0f} s")
    return status(layout)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _supervised(layout: Layout, run_id: str, p: HostProgram) -> Program:
    netns_argv = [
        netns._ip_path(),
        "netns",
        "exec",
        netns.namespace_name(run_id, p.service),
    ]
    launch = [sys.executable, "-m", "orderlake.cluster.launch", str(layout.plan_file), p.service]
    return Program(
        p.service,
        [*netns_argv, *launch, "run"],
        directory=layout.root,
        environment={"PYTHONPATH": _pythonpath()},
        startsecs=0 if p.one_shot else 3,
        stopwaitsecs=p.stop_grace_s,
        autorestart=p.restart,
    )


def _pythonpath() -> str:
    return os.pathsep.join([str(deploy.PROJECT_ROOT / "include"), str(deploy.PROJECT_ROOT)])


def health_argv(layout: Layout, network: netns.Network, service: str) -> list[str]:
    launch = [sys.executable, "-m", "orderlake.cluster.launch", str(layout.plan_file), service]
    return network.exec_argv(service, [*launch, "health"])


def _start_in_order(
    layout: Layout,
    network: netns.Network,
    programs: Sequence[HostProgram],
    supervisor: Supervisor,
    progress: Callable[[str], None],
    timeout: float,
) -> None:
    """Start each program once its dependencies' conditions hold; return when every program
    is healthy (or, for a one-shot, exited 0)."""
    deadline = time.monotonic() + timeout
    pending = {p.service: p for p in programs}
    started: set[str] = set()
    healthy: set[str] = set()
    done: set[str] = set()
    probes: dict[str, subprocess.Popen[bytes]] = {}
    last_probe: dict[str, float] = {}
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    begun = time.monotonic()
    while pending or probes or len(healthy | done) < len(programs):
        if time.monotonic() > deadline:
            waiting = sorted({p.service for p in programs} - healthy - done)
            raise OrderlakeError(
                f"The cluster did not come up in {timeout:.0f} s: {', '.join(waiting)} not "
                f"ready; see their logs under {layout.root / 'logs'}."
            )
        info = supervisor.processes()
        for name, p in list(pending.items()):
            if all(_holds(c, d, started, healthy, done) for d, c in p.depends_on.items()):
                with contextlib.suppress(xmlrpc.client.Fault):
                    supervisor.rpc.supervisor.startProcess(name, False)
                started.add(name)
                del pending[name]
                progress(f"{time.monotonic() - begun:5.0f} s  started {name}")
        for name in sorted(started - healthy - done):
            state = info.get(name, {})
            p = next(q for q in programs if q.service == name)
            if p.one_shot:
                if state.get("statename") == "EXITED" and state.get("exitstatus") == 0:
                    done.add(name)
                    progress(f"{time.monotonic() - begun:5.0f} s  {name} completed")
                continue
            if state.get("statename") == "FATAL":
                raise OrderlakeError(
                    f"{name} could not be started; see {layout.root / 'logs' / (name + '.log')}."
                )
            probe = probes.get(name)
            if probe is not None:
                if probe.poll() is None:
                    continue
                del probes[name]
                if probe.returncode == 0:
                    healthy.add(name)
                    progress(f"{time.monotonic() - begun:5.0f} s  {name} healthy")
                    continue
            if state.get("statename") != "RUNNING":
                continue
            if time.monotonic() - last_probe.get(name, 0.0) >= PROBE_EVERY_S:
                last_probe[name] = time.monotonic()
                probes[name] = subprocess.Popen(
                    health_argv(layout, network, name),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        time.sleep(0.5)


def _holds(condition: str, dep: str, started: set[str], healthy: set[str], done: set[str]) -> bool:
    if condition == "service_healthy":
        return dep in healthy
    if condition == "service_completed_successfully":
        return dep in done
    return dep in started


# --- down, status, exec -------------------------------------------------------------------------
def down(layout: Layout, *, volumes: bool = False) -> bool:
    """Stop every program, remove the network; ``volumes`` also deletes the cluster's state.
    Returns whether a cluster was running."""
    state = read_state(layout)
    supervisor = supervisor_of(layout)
    running = supervisor.is_running()
    if running:
        with contextlib.suppress(OrderlakeError):  # no plan: everything at once below
            for wave in stop_waves(deploy.read_plan(layout)[1]):
                stop_all(supervisor, wave)
        stop_all(supervisor)
        supervisor.shutdown(timeout=120)
    if state:
        netns.remove_run(state["run_id"])
    netns.clean_stale()
    state_file(layout).unlink(missing_ok=True)
    if volumes and layout.root.exists():
        # ignore_errors: a file another `down` removed meanwhile; what stays is reported
        shutil.rmtree(layout.root, ignore_errors=True)
        if layout.root.exists():
            raise OrderlakeError(f"Could not delete {layout.root}; remove it by hand.")
    return running or bool(state)


def stop_waves(programs: Mapping[str, HostProgram]) -> list[list[str]]:
    """The services in the order `docker compose down` stops them, dependents before what they
    depend on, as waves stopped at once: Airflow's scheduler waits for its running tasks on
    SIGTERM, and they need the warm Spark and PostgreSQL until they end (stopped all at once,
    PostgreSQL also waited for the scheduler's connections); the brokers leave together (one by
    one, the last would wait out its grace for a quorum already gone)."""
    remaining = {name: set(p.depends_on) for name, p in programs.items()}
    waves = []
    while remaining:
        needed = set().union(*remaining.values()) & remaining.keys()
        wave = sorted(set(remaining) - needed) or sorted(remaining)  # a cycle: all at once
        waves.append(wave)
        for name in wave:
            del remaining[name]
    return waves


def stop_all(
    supervisor: Supervisor, only: Collection[str] | None = None, timeout: float = 120.0
) -> None:
    """Ask every running program (of ``only``, when given) to stop at once (SIGTERM;
    supervisord SIGKILLs after its grace) and wait until none of them runs."""
    busy = {"RUNNING", "STOPPING", "STARTING", "BACKOFF"}

    def ours() -> dict[str, dict]:
        found = supervisor.processes()
        return {n: p for n, p in found.items() if only is None or n in only}

    for name in [n for n, p in ours().items() if p.get("statename") == "RUNNING"]:
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            supervisor.rpc.supervisor.stopProcess(name, False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not {p.get("statename") for p in ours().values()} & busy:
            return
        time.sleep(0.5)


def status(layout: Layout) -> dict[str, Any]:
    """Each host: name, address, namespace, aliases, link, components (name, pid, state)."""
    network = network_of(layout)
    processes = supervisor_of(layout).processes()
    hosts = []
    for host in network.hosts.values():
        info = processes.get(host.name, {})
        hosts.append(
            {
                "name": host.name,
                "aliases": list(host.aliases),
                "address": str(host.address),
                "namespace": host.namespace,
                "link": "up" if network.link_up(host.name) else "down",
                "components": [
                    {
                        "name": host.name,
                        "pid": info.get("pid") or None,
                        "state": info.get("statename", "UNKNOWN"),
                    }
                ],
            }
        )
    return {
        "run_id": network.run_id,
        "subnet": str(network.subnet),
        "root": str(layout.root),
        "hosts": hosts,
    }


def exec_argv(layout: Layout, host: str, command: Sequence[str]) -> list[str]:
    """``command`` on ``host`` with its service's mounts and environment."""
    network = network_of(layout)
    _, programs = deploy.read_plan(layout)
    program = deploy.find_program(programs, host)
    launch = [sys.executable, "-m", "orderlake.cluster.launch", str(layout.plan_file)]
    return network.exec_argv(program.service, [*launch, program.service, "exec", "--", *command])


def run_exec(layout: Layout, host: str, command: Sequence[str]) -> int:
    if not command:
        raise OrderlakeError("Give the command to run after --, e.g. -- orderlake status.")
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    return subprocess.call(exec_argv(layout, host, command), env=env)


def format_status(state: dict[str, Any]) -> str:
    rows = [("HOST", "ADDRESS", "LINK", "STATE", "PID", "NAMESPACE")]
    for h in state["hosts"]:
        for c in h["components"]:
            rows.append(
                (
                    h["name"],
                    h["address"],
                    h["link"],
                    c["state"],
                    str(c["pid"] or "-"),
                    h["namespace"],
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return f"cluster {state['run_id']} on {state['subnet']} ({state['root']})\n" + "\n".join(lines)
