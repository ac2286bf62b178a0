"""Inside one cluster host: bind its volumes, then become its program, check it, or run a command.

    ip netns exec ol-<run>-<service> python -m orderlake.cluster.launch PLAN SERVICE run
    ... launch PLAN SERVICE health            # exit 0 when the service is healthy
    ... launch PLAN SERVICE exec -- CMD ...    # like `docker compose exec SERVICE CMD`

PLAN is the cluster's plan.json (orderlake.cluster.deploy). ``ip netns exec`` already runs this
in a mount namespace of its own (with the host's /etc/hosts), so the bind mounts made here are
seen by this process and its children only, and vanish with them. ``run`` replaces this process
(``execvpe``): supervisord's pid of the program is the program's own.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from orderlake.cluster import deploy
from orderlake.cluster.deploy import HostProgram, Layout
from orderlake.errors import OrderlakeError, UsageError

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PGDATA = "/var/lib/postgresql/data"  # the postgres image's default
HEALTH_TIMEOUT_S = 60.0
CLONE_NEWUTS = 0x04000000


def base_environment(meta: Mapping[str, object], program: HostProgram) -> dict[str, str]:
    """What the image gives every process: PATH (the virtualenv first), the package, a home."""
    env = {
        "PATH": f"{meta['venv_bin']}:{SYSTEM_PATH}",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(meta["pythonpath"]),
        "PYTHONUNBUFFERED": "1",
        "HOSTNAME": (program.aliases or [program.service])[0],
    }
    if meta.get("java_home"):
        env["JAVA_HOME"] = str(meta["java_home"])
    return {**env, **program.environment}


def set_hostname(name: str) -> None:
    """Give this process (and its children) a UTS namespace whose host name is the container's:
    Spark, Kafka and Airflow resolve their own name, which the host's /etc/hosts holds."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0:
        raise OrderlakeError(f"unshare(CLONE_NEWUTS) failed: {os.strerror(ctypes.get_errno())}.")
    socket.sethostname(name)


def bind_mounts(mounts: Sequence[tuple[str, str]]) -> None:
    """Bind each machine directory at its path inside the host (in this mount namespace)."""
    for source, target in mounts:
        Path(source).mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "--bind", source, target], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise OrderlakeError(
                f"Mounting {source} at {target} failed: {done.stderr.strip()}; is this running "
                "inside `ip netns exec` as root?"
            )


def run(meta: Mapping[str, object], program: HostProgram, layout: Layout) -> None:
    """Become the service's program (never returns)."""
    env = base_environment(meta, program)
    if program.kind == deploy.KAFKA:
        argv = kafka_argv(program, env, layout)
    elif program.kind == deploy.POSTGRES:
        argv = postgres_prepare(program, env)
        _become("postgres")
    else:
        argv = program.argv
        os.chdir(str(meta["project_root"]))
    print(f"orderlake cluster: {program.service}: {' '.join(argv)[:300]}", flush=True)
    os.execvpe(argv[0], argv, env)  # noqa: S606 -- becomes the service's program


def kafka_argv(program: HostProgram, env: dict[str, str], layout: Layout) -> list[str]:
    """Render and format the broker (kafka_node), return its JVM command line."""
    from orderlake.cluster import kafka_acls, kafka_node

    data_dir = Path(
        program.volumes.get("/var/lib/kafka/data") or Path(program.private_dir) / "data"
    )
    scram = {
        user: kafka_acls.user_password(layout.secrets, user)
        for user in (kafka_node.BROKER_USER, kafka_node.ADMIN_USER)
    }
    config = kafka_node.prepare(
        env,
        data_dir,
        scram,
        secrets_dir=layout.secrets,
        config=Path(program.private_dir) / "server.properties",
    )
    return kafka_node.command(env, config, secrets_dir=layout.secrets)


def kafka_healthy(program: HostProgram, layout: Layout) -> bool:
    """The broker answers a metadata request as the admin principal and lists itself."""
    from confluent_kafka import KafkaException

    from orderlake.cluster import kafka_acls
    from orderlake.kafka_client import KafkaAuth

    auth = KafkaAuth.scram(layout.secrets, "admin")
    admin = kafka_acls.admin_client(f"{program.service}:{deploy.KAFKA_PORT}", auth, errors=[])
    try:
        brokers = admin.list_topics(timeout=8).brokers
    except KafkaException:
        return False
    return int(program.environment.get("KAFKA_NODE_ID", "-1")) in brokers


def postgres_bin() -> Path:
    """Debian's newest PostgreSQL server directory (postgresql-<v>)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if not found:
        raise OrderlakeError(
            "PostgreSQL's server is not installed; install it with `apt-get install -y "
            "postgresql` (the cluster's postgres host runs Debian's server)."
        )
    return found[-1].parent


def postgres_prepare(program: HostProgram, env: dict[str, str]) -> list[str]:
    """Initialise the data directory once as the image does; return the server's argv."""
    bindir = postgres_bin()
    data = Path(env.get("PGDATA", PGDATA))
    user = env.get("POSTGRES_USER", "postgres")
    password = env.get("POSTGRES_PASSWORD", "")
    database = env.get("POSTGRES_DB", user)
    if not password:
        raise OrderlakeError("POSTGRES_PASSWORD is empty; the postgres host needs a password.")
    owner = pwd.getpwnam("postgres")
    for path in (data, Path(deploy.POSTGRES_RUN)):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        # in the server's own run directory: the postgres user may not traverse the cluster
        # root's parents (pytest's temporary directories, a home directory, are 0700)
        pwfile = Path(deploy.POSTGRES_RUN) / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, password.encode() + b"\n")
        os.close(fd)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        try:
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}"]
                + ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all all scram-sha-256\n")
        if database != "postgres":
            _as_postgres(
                [str(bindir / "postgres"), "--single", "-D", str(data), "postgres"],
                stdin=f'CREATE DATABASE "{database}" OWNER "{user}";\n',
            )
    return [str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=*"]


def _as_postgres(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=False, preexec_fn=_postgres_user
    )
    if done.returncode != 0:
        raise OrderlakeError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-300:]}")


def _postgres_user() -> None:
    _become("postgres")


def _become(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir


def health(meta: Mapping[str, object], program: HostProgram, layout: Layout) -> int:
    """0 when healthy: the service's compose healthcheck, or launch's own for Kafka."""
    if program.kind == deploy.KAFKA:
        return 0 if kafka_healthy(program, layout) else 1
    if program.health is None:
        return 0
    try:
        done = subprocess.run(
            program.health,
            env=base_environment(meta, program),
            cwd=str(meta["project_root"]),
            capture_output=True,
            timeout=HEALTH_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 1
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[2] not in ("run", "health", "exec"):
        print("usage: python -m orderlake.cluster.launch PLAN SERVICE run|health|exec -- CMD")
        return 2
    plan_file, service, mode, *rest = args
    layout = Layout(Path(plan_file).resolve().parents[1])
    try:
        meta, programs = deploy.read_plan(layout)
        program = deploy.find_program(programs, service)
        set_hostname((program.aliases or [program.service])[0])
        bind_mounts(program.mounts)
        if mode == "run":
            run(meta, program, layout)
        if mode == "health":
            return health(meta, program, layout)
        command = rest[1:] if rest[:1] == ["--"] else rest
        if not command:
            raise UsageError("Give the command to run after --, e.g. -- orderlake status.")
        env = base_environment(meta, program)
        env.update({k: v for k, v in os.environ.items() if k == "TERM"})
        os.chdir(str(meta["project_root"]))
        try:
            os.execvpe(command[0], command, env)  # noqa: S606 -- becomes the command
        except FileNotFoundError:
            raise UsageError(f"No command {command[0]!r} on {program.service}.") from None
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
