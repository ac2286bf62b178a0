"""`orderlake`: the one command line of the platform (one parser per command and its dispatch,
so every command's flags are read in one place; the work lives in the modules it calls).

    orderlake up [--only C,..] | down | restart COMPONENT | status [--json] | logs COMPONENT
    orderlake batch bronze|silver|gold|all [--full] [--close-through DATE]
    orderlake replay --topic T --from TIME|OFFSETS --to TIME|OFFSETS [--layers ...]
    orderlake reconcile [--date DATE] | maintain [--optimize] [--vacuum]
    orderlake sql "QUERY" [--format table|csv|json] | tables
    orderlake cluster up [--service S] | down [--volumes] | status [--json] | exec HOST -- CMD
    orderlake generate --events N [--rate R] [--hosts H] [--seed S]
    orderlake replay-tianchi --user-info FILE --user-log FILE [--rate R] [--hosts H]

Every command reads Settings from ORDERLAKE_* variables. Expected failures print one sentence
on stderr and exit non-zero; see orderlake.errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from orderlake.arguments import non_negative_float, positive_int
from orderlake.entry import run_command
from orderlake.errors import UsageError
from orderlake.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]


# --- platform ---------------------------------------------------------------------------------
def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.stack import platform

    only = set(args.only.split(",")) if args.only else None
    state = platform.up(settings, progress=lambda msg: print(f"  {msg}", flush=True), only=only)
    print(f"orderlake is up (ORDERLAKE_HOME={settings.home})")
    print(format_status(state))
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.stack import platform

    if platform.down(settings):
        print(f"orderlake stopped (ORDERLAKE_HOME={settings.home})")
    else:
        print(f"Nothing to stop: orderlake is not running under ORDERLAKE_HOME={settings.home}.")
    return 0


def cmd_restart(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.stack import platform

    platform.restart(settings, args.component)
    print(f"{args.component} restarted and ready")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.stack import platform

    state = platform.status(settings)
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True, default=str))
    else:
        print(f"ORDERLAKE_HOME={settings.home}")
        print(format_status(state))
    return 0


def format_status(state: dict) -> str:
    """A readable table of `status --json`: one row per component, then Kafka offsets."""
    from orderlake.stack import airflow

    rows = [("COMPONENT", "STATE", "PID", "ADDRESS", "DETAIL")]
    for name, info in state.items():
        address = info.get("bootstrap") or info.get("url") or ""
        detail = ""
        if "channel_fill_percent" in info:  # a Flume agent with a file channel (the edges)
            fill = info["channel_fill_percent"]
            detail = f"channel {info['channel_size']} events ({fill:.2f}% full), "
        if "events_in" in info:  # every Flume agent
            detail += f"in {info['events_in']}, out {info['events_out']}"
        health = info.get("health") or {}
        if name == airflow.NAME:  # its parts, by Airflow's own health check
            detail = ", ".join(airflow.unhealthy_parts(health))
        elif health.get("state"):  # an edge agent's watchdog
            restarts = health.get("restarts") or 0
            detail += f"; {health['state']}" + (f", restarted {restarts}x" if restarts else "")
            if health.get("last_reason"):
                detail += f" (last: {health['last_reason']})"
        rows.append((name, info.get("state", ""), str(info.get("pid") or "-"), address, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    for warning in warnings(state):
        lines += ["", f"WARNING: {warning}"]
    offsets = state.get("kafka", {}).get("end_offsets")
    if isinstance(offsets, dict) and offsets and "error" not in offsets:
        lines.append("")
        lines.append("Kafka end offsets (topic: partition=offset ... total)")
        for topic, parts in offsets.items():
            cells = " ".join(f"{p}={o}" for p, o in parts.items())
            lines.append(f"  {topic}: {cells}  total={sum(parts.values())}")
    return "\n".join(line.rstrip() for line in lines)


def warnings(state: dict) -> list[str]:
    """What `status` must say out loud: free space running low, bronze lagging towards Kafka's
    retention, an edge agent its watchdog restarted."""
    found = []
    for info in state.values():
        found += [d["warning"] for d in info.get("disk", []) if d.get("warning")]
    found += (state.get("kafka", {}).get("bronze_retention") or {}).get("warnings", [])
    return list(dict.fromkeys(found))  # components sharing a filesystem: said once


def cmd_logs(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.logs_dir / f"{args.component}.log"
    if not path.exists():
        known = sorted(p.stem for p in settings.logs_dir.glob("*.log"))
        raise UsageError(
            f"No log for {args.component!r} in {settings.logs_dir}; "
            f"known: {', '.join(known) or 'none'}."
        )
    lines = path.read_text(errors="replace").splitlines()[-args.lines :]
    print(f"==> {path} <==")
    print("\n".join(lines))
    return 0


# --- analysts ---------------------------------------------------------------------------------
def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake import locks, query
    from orderlake.spark import connect

    statement = query.classify(args.statement, settings)
    query.check_allowed(statement, settings, args.write)
    writer = (
        locks.exclusive(settings, locks.BATCH) if statement.writes else contextlib.nullcontext()
    )
    with writer, connect(settings, "orderlake-sql") as spark:
        columns, rows = query.run_sql(spark, args.statement, limit=args.limit)
    print(query.render(columns, rows, args.format))
    return 0


def cmd_tables(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake import query
    from orderlake.spark import connect

    with connect(settings, "orderlake-tables") as spark:
        columns, rows = query.list_tables(spark, settings)
    print(query.render(columns, rows, args.format))
    return 0


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake import report

    date_from = report.parse_date(args.date_from, "--from")
    date_to = report.parse_date(args.date_to, "--to")
    for path in report.write_report(settings, date_from, date_to):
        print(path)
    return 0


def cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.dashboard import server

    server.serve(settings)
    return 0


# --- batch jobs (the same code as batch/*.py and the Airflow tasks: orderlake.jobs.runner) -------
def _job_handler(name: str) -> Handler:
    def handler(settings: Settings, args: argparse.Namespace) -> int:
        from orderlake.jobs import batch_job, runner

        job = batch_job(name)
        runner.execute(job, settings, args, lambda s: print(runner.dumps(s), flush=True))
        return 0

    return handler


# --- cluster mode on one machine (orderlake.cluster.runner) -----------------------------------
def cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.cluster import runner

    layout = runner.layout_for(settings)
    if args.action == "up":
        state = runner.up(
            layout,
            compose_file=args.compose_file,
            services=args.service or (),
            progress=lambda msg: print(f"  {msg}", flush=True),
        )
        print(runner.format_status(state))
    elif args.action == "down":
        stopped = runner.down(layout, volumes=args.volumes)
        print("cluster stopped" if stopped else f"No cluster was running under {layout.root}.")
    elif args.action == "status":
        state = runner.status(layout)
        print(json.dumps(state, indent=2) if args.json else runner.format_status(state))
    else:
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return runner.run_exec(layout, args.host, command)
    return 0


# --- producers --------------------------------------------------------------------------------
def _hosts(settings: Settings, count: int | None, named: list[str] | None = None) -> list[str]:
    """The spool hosts to write: ``--host`` names (one host's own logs, as on a real host or
    in `orderlake cluster exec host-1 -- ...`), else host-1..host-<count>."""
    if named:
        return list(dict.fromkeys(named))
    if count is None and settings.env == "cluster":
        import socket

        # on an edge host of the cluster (`cluster exec host-1 -- orderlake generate`), only its
        # own spool is mounted: write that one, as the host's own web servers would
        if (own := socket.gethostname()) in settings.host_names:
            return [own]
    return [f"host-{i}" for i in range(1, (count or settings.hosts) + 1)]


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.workload.generator import generate_to_spool

    manifest, path = generate_to_spool(
        settings.spool_dir,
        events=args.events,
        rate=args.rate,
        hosts=_hosts(settings, args.hosts, args.host),
        seed=args.seed,
        manifest_path=args.manifest,
        rotate_bytes=int(args.rotate_mb * 1024 * 1024) if args.rotate_mb else None,
        live=args.live,
    )
    purchases = manifest["action_types"].get("2", 0)
    print(
        f"generated {manifest['events']} actions ({purchases} purchases) and "
        f"{manifest['profiles']} profiles over {len(manifest['hosts'])} hosts into "
        f"{settings.spool_dir}"
    )
    print(f"manifest: {path}")
    return 0


def cmd_replay_tianchi(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.workload.tianchi import replay_tianchi_to_spool

    summary = replay_tianchi_to_spool(
        settings.spool_dir,
        user_info=args.user_info,
        user_log=args.user_log,
        rate=args.rate,
        hosts=_hosts(settings, args.hosts, args.host),
        reject_path=args.rejects,
    )
    rejected = summary["rejected"]
    total_rejected = sum(rejected.values())
    print(
        f"replayed {summary['profiles']} profiles and {summary['actions']} actions "
        f"({summary['purchases']} purchases, {summary['purchases_without_profile']} of them "
        f"by users without a profile: counted under unknown) into {settings.spool_dir}"
    )
    if total_rejected:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(rejected.items()))
        print(f"rejected {total_rejected} rows ({reasons}); see {summary['reject_path']}")
    else:
        print("rejected 0 rows")
    return 0


# --- parser -----------------------------------------------------------------------------------
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; only the batch job named ``command`` (if any) is imported to
    declare its flags, so `orderlake sql` does not load every job's libraries."""
    from orderlake.jobs import BATCH_JOBS, batch_job

    parser = argparse.ArgumentParser(
        prog="orderlake",
        description="Lambda data platform for shop order streams "
        "(Flume, Kafka, Spark, Delta, Airflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("up", cmd_up, "Start the embedded platform (Kafka, Flume, ...) under supervision.")
    p.add_argument("--only", help="start only these components, e.g. kafka or kafka,flume")
    add("down", cmd_down, "Stop every orderlake process of this ORDERLAKE_HOME.")
    p = add("restart", cmd_restart, "Restart one component and wait until it is ready.")
    p.add_argument("component", help="e.g. spark, streaming, flume-edge-host-1")
    p = add("status", cmd_status, "Show each component's state, address and key numbers.")
    p.add_argument("--json", action="store_true", help="one JSON object keyed by component")
    p = add("logs", cmd_logs, "Print the end of one component's log.")
    p.add_argument("component", help="e.g. kafka, flume-collector, flume-edge-host-1")
    p.add_argument("-n", "--lines", type=positive_int, default=50)

    for name, (_, help_text) in BATCH_JOBS.items():
        p = add(name, _job_handler(name), help_text)
        if name == command:
            batch_job(name).add_arguments(p)
    p = add("sql", cmd_sql, "Run Spark SQL over the lake's tables (database.table names).")
    p.add_argument("statement", help='e.g. "SELECT * FROM speed.orders_by_age_gender_1m"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--limit", type=positive_int, default=None, help="at most this many rows")
    p.add_argument(
        "--write", action="store_true", help="allow a statement that writes (under the lock)"
    )
    p = add("tables", cmd_tables, "List the lake's tables with row counts and Delta versions.")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p = add("report", cmd_report, "Write the age and gender figures as PNG under reports/.")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first event date")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last event date")
    add("dashboard", cmd_dashboard, "Serve the read-only dashboard in the foreground.")

    p = add("cluster", cmd_cluster, "Run docker-compose.yaml as hosts in network namespaces.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("up", help="start every service (or --service and its dependencies)")
    c.add_argument("--service", action="append", metavar="NAME", help="only this (repeatable)")
    c.add_argument("--compose-file", type=Path, default=_compose_file(), help=argparse.SUPPRESS)
    c = actions.add_parser("down", help="stop the cluster and remove its network")
    c.add_argument("--volumes", action="store_true", help="also delete its volumes and secrets")
    c = actions.add_parser("status", help="each host's address, namespace and programs")
    c.add_argument("--json", action="store_true")
    c = actions.add_parser("exec", help="run a command on a host: exec HOST -- CMD ...")
    c.add_argument("host", help="a service name or hostname, e.g. host-1, airflow-api-server")
    c.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")

    p = add("generate", cmd_generate, "Append Tianchi-shaped order logs to the spool dirs.")
    p.add_argument("--events", type=positive_int, required=True, help="user actions to write")
    p.add_argument("--rate", type=non_negative_float, default=0, help="lines/s, 0 = unthrottled")
    p.add_argument("--hosts", type=positive_int, default=None, help="default ORDERLAKE_HOSTS")
    p.add_argument("--host", action="append", metavar="NAME", help="only this host (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--manifest", type=Path, default=None, help="manifest path (default: spool)")
    p.add_argument("--rotate-mb", type=non_negative_float, default=256, help="0 = never")
    p.add_argument("--live", action="store_true", help="stamp events with the wall clock")

    p = add("replay-tianchi", cmd_replay_tianchi, "Feed real Tianchi data_format1 CSVs.")
    p.add_argument("--user-info", type=Path, required=True)
    p.add_argument("--user-log", type=Path, required=True)
    p.add_argument("--rate", type=non_negative_float, default=0, help="lines/s, 0 = unthrottled")
    p.add_argument("--hosts", type=positive_int, default=None)
    p.add_argument("--host", action="append", metavar="NAME", help="only this host (repeatable)")
    p.add_argument("--rejects", type=Path, default=None, help="reject file (default: spool)")
    return parser


def _compose_file() -> Path:
    from orderlake.settings import PROJECT_ROOT

    return PROJECT_ROOT / "docker-compose.yaml"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return run_command(args.command, lambda settings: args.handler(settings, args))


if __name__ == "__main__":
    sys.exit(main())
