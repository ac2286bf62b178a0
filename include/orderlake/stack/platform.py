"""The embedded platform: `orderlake up`, `down` and `status` over supervised components.

A component knows its supervised programs, the ports it needs, how to prepare its files, how to
tell it is ready, what `status` shows about it and which components it needs. ``up`` starts each
component as soon as those it needs are ready: Kafka, the warm Spark and the dashboard at once;
the Flume collector and the speed layer once Kafka (with its topics) is ready; the edge agents
after the collector; Airflow, whose schedules start batch jobs and watch the speed layer, last.
``down`` stops them in the reverse order, the components of one step side by side.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from orderlake import kafka_admin, speed_progress
from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack import dashboard, disk, flume, kafka, ports
from orderlake.stack.component import Component, venv_path
from orderlake.stack.supervisor import Program, Supervisor


def kafka_component(settings: Settings) -> Component:
    def programs() -> list[Program]:
        config = kafka.prepare(settings)
        return [Program("kafka", kafka.command(settings, config), stopwaitsecs=60)]

    def ready() -> None:
        kafka_admin.wait_ready(settings.bootstrap)
        kafka_admin.ensure_topics(settings)

    def metrics() -> dict:
        from orderlake import kafka_log

        try:
            found = {"end_offsets": kafka_admin.end_offsets(settings.bootstrap)}
        except Exception as exc:  # noqa: BLE001 - status must render even when Kafka is down
            return {"end_offsets": {"error": str(exc)}}
        try:
            headroom = kafka_log.retention_headroom(settings)
        except Exception as exc:  # noqa: BLE001 - a partition moving between brokers
            return {**found, "bronze_retention": {"error": str(exc)}}
        warnings = [w for h in headroom if (w := h.warning(settings))]
        oldest = max(headroom, key=lambda h: h.share, default=None)
        return {
            **found,
            "bronze_retention": {
                "oldest_unloaded_share": round(oldest.share, 3) if oldest else 0.0,
                "warnings": warnings,
            },
        }

    return Component(
        "kafka",
        programs,
        ports={
            "kafka": (settings.kafka_port, "ORDERLAKE_KAFKA_PORT"),
            "the kafka controller": (
                settings.kafka_controller_port,
                "ORDERLAKE_KAFKA_CONTROLLER_PORT",
            ),
        },
        ready=ready,
        address=lambda: {"bootstrap": settings.bootstrap},
        metrics=metrics,
        data_dirs=[settings.kafka_dir],
    )


def flume_component(settings: Settings, agent: str) -> Component:
    name = flume.component_name(agent)
    monitor = settings.flume_monitor_port_for(agent)

    def programs() -> list[Program]:
        if agent == flume.COLLECTOR:
            config = flume.write_config(settings, agent)
            return [Program(name, flume.command(settings, agent, config), stopwaitsecs=30)]
        # an edge agent runs under its watchdog (stack/edge.py): healthy only while it reads
        env = {**settings.to_env(), "PATH": venv_path(), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "orderlake.stack.edge", agent]
        return [Program(name, command, environment=env, stopwaitsecs=30)]

    def ready() -> None:
        deadline = time.monotonic() + 60
        while flume.metrics(settings, agent) is None:
            if time.monotonic() > deadline:
                raise OrderlakeError(
                    f"{name} did not serve its monitoring page within 60 s; "
                    f"see {settings.logs_dir / (name + '.log')}."
                )
            time.sleep(0.5)

    def address() -> dict:
        info = {"url": f"http://127.0.0.1:{monitor}/metrics"}
        if agent == flume.COLLECTOR:
            info["avro"] = f"127.0.0.1:{settings.flume_collector_port}"
        else:
            info["spool"] = str(settings.spool_dir / agent)
        return info

    needed = {f"{name} monitoring": (monitor, "ORDERLAKE_FLUME_MONITOR_PORT")}
    if agent == flume.COLLECTOR:
        needed["the flume collector"] = (
            settings.flume_collector_port,
            "ORDERLAKE_FLUME_COLLECTOR_PORT",
        )
    data = [settings.flume_dir / agent]
    if agent != flume.COLLECTOR:
        data.append(settings.spool_dir / agent)
    return Component(
        name,
        programs,
        ports=needed,
        needs=("kafka",) if agent == flume.COLLECTOR else (flume.component_name(flume.COLLECTOR),),
        ready=ready,
        address=address,
        data_dirs=data,
        metrics=lambda: {
            **flume.summarize(flume.metrics(settings, agent)),
            **({} if agent == flume.COLLECTOR else {"health": edge_health(settings, agent)}),
        },
    )


def edge_health(settings: Settings, agent: str) -> dict:
    """What the edge agent's watchdog last saw: reading, idle, back-pressure, restarting, and
    why it last restarted the agent."""
    from orderlake.stack import edge

    health = edge.read_health(settings, agent)
    return {k: health.get(k) for k in ("state", "restarts", "last_reason", "unread_bytes")}


def spark_component(settings: Settings) -> Component:
    """The warm Spark Connect server batch jobs and queries attach to (stack/spark_server.py)."""
    from orderlake.stack import spark_server

    return Component(
        spark_server.NAME,
        lambda: [spark_server.program(settings)],
        ports={
            "the Spark Connect server": (
                settings.spark_connect_port,
                "ORDERLAKE_SPARK_CONNECT_PORT",
            )
        },
        ready=lambda: spark_server.wait_ready(settings),
        address=lambda: spark_server.address(settings),
        data_dirs=[settings.lake_dir],
    )


def streaming_component(settings: Settings) -> Component:
    """The speed layer's Spark Structured Streaming job (streaming/speed_layer.py)."""
    from orderlake.stack import streaming

    def programs() -> list[Program]:
        env = {**settings.to_env(), "PATH": venv_path(), "PYTHONUNBUFFERED": "1"}
        return [
            Program(
                streaming.NAME,
                [sys.executable, str(PROJECT_ROOT / "streaming" / "speed_layer.py")],
                directory=PROJECT_ROOT,
                environment=env,
                startsecs=10,
                stopwaitsecs=60,
            )
        ]

    return Component(
        streaming.NAME,
        programs,
        needs=("kafka",),
        ready=lambda: streaming.wait_ready(settings),
        address=lambda: {"progress": str(speed_progress.path(settings))},
        metrics=lambda: streaming.metrics(settings),
    )


def airflow_component(settings: Settings) -> Component:
    """Airflow 3: API server, scheduler, DAG processor and triggerer (orderlake.stack.airflow)."""
    from orderlake.stack import airflow, spark_server, streaming

    return Component(
        airflow.NAME,
        lambda: airflow.programs(settings),
        ports={
            "the Airflow API server": (settings.airflow_port, "ORDERLAKE_AIRFLOW_PORT"),
            "Airflow's task log server": (
                settings.airflow_worker_log_port,
                "ORDERLAKE_AIRFLOW_WORKER_LOG_PORT",
            ),
            "Airflow's triggerer log server": (
                settings.airflow_trigger_log_port,
                "ORDERLAKE_AIRFLOW_TRIGGER_LOG_PORT",
            ),
        },
        # its DAGs run batch jobs on the warm Spark and restart a speed layer without heartbeat
        needs=(spark_server.NAME, streaming.NAME),
        ready=lambda: airflow.wait_ready(settings),
        address=lambda: airflow.address(settings),
        metrics=lambda: airflow.metrics(settings),
        program_names=airflow.program_names(),
    )


def components(settings: Settings) -> list[Component]:
    """Every component of the embedded platform, in start order."""
    return [
        kafka_component(settings),
        *(flume_component(settings, agent) for agent in flume.agent_names(settings)),
        spark_component(settings),
        streaming_component(settings),
        airflow_component(settings),
        dashboard.component(settings),
    ]


def up(
    settings: Settings,
    progress: Callable[[str], None] = print,
    only: set[str] | None = None,
) -> dict:
    """Start the platform under supervisord; return `status` once every component is ready.

    ``only`` starts a subset (by component name; `flume` means every Flume agent).
    """
    if settings.env != "local":
        raise OrderlakeError(
            "`orderlake up` runs the embedded default only (ORDERLAKE_ENV=local); a cluster "
            "deployment is started with docker-compose.yaml."
        )
    sup = Supervisor(settings)
    if sup.is_running():
        raise OrderlakeError(
            f"orderlake is already running under ORDERLAKE_HOME={settings.home}; "
            "`orderlake status` shows it and `orderlake down` stops it."
        )
    parts = [p for p in components(settings) if _selected(p.name, only)]
    if only and not parts:
        known = ", ".join(p.name for p in components(settings))
        raise OrderlakeError(f"--only {','.join(sorted(only))} names no component; known: {known}.")
    for part in parts:
        ports.require_free(part.ports)
    settings.home.mkdir(parents=True, exist_ok=True)
    planned = [(part, part.programs()) for part in parts]
    programs = [program for _, progs in planned for program in progs]
    progress(f"starting supervisord ({len(programs)} programs, logs in {settings.logs_dir})")
    sup.start_daemon(programs)
    try:
        start_when_needed(sup, planned, progress)
    except BaseException:
        progress("start failed; stopping what was started")
        sup.shutdown()
        raise
    return status(settings)


def start_when_needed(
    sup: Supervisor,
    planned: list[tuple[Component, list[Program]]],
    progress: Callable[[str], None],
) -> None:
    """Start every component whose needs are ready (needs outside ``planned`` count as met),
    all of them together, and wait for their readiness side by side; each component that
    becomes ready may let others start. The first readiness that fails is raised."""
    selected = {part.name for part, _ in planned}
    ready: set[str] = set()
    waiting = {part.name: (part, progs) for part, progs in planned}
    outcomes: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()
    pending = 0
    while waiting or pending:
        now = [name for name, (part, _) in waiting.items() if set(part.needs) & selected <= ready]
        parts, programs = [], []
        for name in now:
            part, progs = waiting.pop(name)
            progress(f"starting {name} ...")
            parts.append(part)
            programs += [program.name for program in progs]
        if programs:  # each start waits its program's startsecs: overlap them
            with ThreadPoolExecutor(max_workers=len(programs)) as pool:
                list(pool.map(sup.start, programs))
        for part in parts:
            # daemon threads: a failed `up` does not wait for the others' readiness timeouts
            threading.Thread(target=_ready, args=(part, outcomes), daemon=True).start()
            pending += 1
        if not pending:
            raise OrderlakeError(f"{', '.join(waiting)} need components that never start.")
        name, error = outcomes.get()
        pending -= 1
        if error is not None:
            raise error
        ready.add(name)


def _ready(part: Component, outcomes: queue.Queue[tuple[str, BaseException | None]]) -> None:
    try:
        part.ready()
    except BaseException as exc:  # noqa: BLE001 - handed to the thread that runs `up`
        outcomes.put((part.name, exc))
    else:
        outcomes.put((part.name, None))


def _selected(name: str, only: set[str] | None) -> bool:
    return only is None or name in only or ("flume" in only and name.startswith("flume-"))


def down(settings: Settings) -> bool:
    """Stop every process and supervisord. False when nothing was running.

    Each component stops before those it needs (Airflow and its running tasks before Kafka and
    Spark, each Flume agent before the hop it sends to), the components of one step side by
    side: supervisord's own shutdown stops one program at a time."""
    sup = Supervisor(settings)
    if not sup.is_running():
        return False
    known = sup.processes()
    for step in reversed(start_steps(components(settings))):
        programs = [name for part in step for name in part.supervised if name in known]
        if programs:
            sup.stop_together(programs)
    sup.shutdown()  # supervisord itself, and anything a failed stop left
    return True


def start_steps(parts: list[Component]) -> list[list[Component]]:
    """The components by start step: those needing nothing first, then each one a step after
    the last of its needs (needs outside ``parts`` count as met)."""
    names = {part.name for part in parts}
    step: dict[str, int] = {}
    while len(step) < len(parts):
        placed = len(step)
        for part in parts:
            needs = [n for n in part.needs if n in names]
            if part.name not in step and all(n in step for n in needs):
                step[part.name] = 1 + max((step[n] for n in needs), default=-1)
        if len(step) == placed:
            raise OrderlakeError(f"{', '.join(names - set(step))} need each other: no start order.")
    last = max(step.values(), default=-1)
    return [[part for part in parts if step[part.name] == i] for i in range(last + 1)]


def restart(settings: Settings, name: str) -> None:
    """Stop and start one component's programs (the warm Spark after a heap change, an agent
    after a configuration change) and wait until it is ready again."""
    sup = Supervisor(settings)
    if not sup.is_running():
        raise OrderlakeError(
            f"orderlake is not running under ORDERLAKE_HOME={settings.home}; `orderlake up` "
            "starts it."
        )
    part = next((p for p in components(settings) if p.name == name), None)
    known = sup.processes()
    if part is None or not set(part.supervised) <= set(known):
        names = ", ".join(p.name for p in components(settings) if set(p.supervised) <= set(known))
        raise OrderlakeError(f"No running component is called {name!r}; known: {names}.")
    for program in reversed(part.supervised):
        sup.stop(program)
    for program in part.supervised:
        sup.start(program)
    part.ready()


def status(settings: Settings) -> dict:
    """{component: {state, pid, address fields, metrics, log}} for every known component."""
    sup = Supervisor(settings)
    procs = sup.processes()
    result: dict[str, dict] = {}
    for part in components(settings):
        infos = [procs.get(name, {}) for name in part.supervised]
        states = [i.get("statename", "NOT STARTED" if procs else "NOT RUNNING") for i in infos]
        # a component of several programs is RUNNING only when all of them are
        state = next((s for s in states if s != "RUNNING"), "RUNNING")
        info = infos[0]
        entry: dict = {"state": state, "pid": info.get("pid") or None}
        if len(infos) > 1:
            entry["programs"] = {
                name: {"state": s, "pid": i.get("pid") or None}
                for name, s, i in zip(part.supervised, states, infos, strict=True)
            }
        if state == "RUNNING":
            entry["uptime_s"] = int(info.get("now", 0) - info.get("start", 0))
        entry.update(part.address())
        if state == "RUNNING":
            entry.update(part.metrics())
        entry["log"] = str(settings.logs_dir / f"{part.supervised[0]}.log")
        if part.data_dirs:
            entry["disk"] = [disk.free_space(settings, path) for path in part.data_dirs]
        result[part.name] = entry
    return result


def is_up(settings: Settings) -> bool:
    return Supervisor(settings).is_running()
