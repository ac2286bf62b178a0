"""`orderlake`: the one command line of the platform.

    orderlake up [--only C,..] | down | status [--json] | logs COMPONENT
    orderlake batch bronze|silver|gold|all [--full] [--close-through DATE]
    orderlake replay --topic T --from TIME|OFFSETS --to TIME|OFFSETS [--layers ...]
    orderlake reconcile [--date DATE] | maintain [--optimize] [--vacuum]
    orderlake sql "QUERY" [--format table|csv|json] | tables
    orderlake generate --events N [--rate R] [--hosts H] [--seed S]
    orderlake replay-tianchi --user-info FILE --user-log FILE [--rate R] [--hosts H]

Every command reads Settings from ORDERLAKE_* variables. Expected failures print one sentence
on stderr and exit non-zero; see orderlake.errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD, got {text!r}") from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


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
    rows = [("COMPONENT", "STATE", "PID", "ADDRESS", "DETAIL")]
    for name, info in state.items():
        address = info.get("bootstrap") or info.get("url") or ""
        detail = ""
        if "channel_fill_percent" in info:
            detail = (
                f"channel {info['channel_size']} events ({info['channel_fill_percent']:.2f}% full),"
                f" in {info['events_in']}, out {info['events_out']}"
            )
        rows.append((name, info.get("state", ""), str(info.get("pid") or "-"), address, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    offsets = state.get("kafka", {}).get("end_offsets")
    if isinstance(offsets, dict) and offsets and "error" not in offsets:
        lines.append("")
        lines.append("Kafka end offsets (topic: partition=offset ... total)")
        for topic, parts in offsets.items():
            cells = " ".join(f"{p}={o}" for p, o in parts.items())
            lines.append(f"  {topic}: {cells}  total={sum(parts.values())}")
    return "\n".join(line.rstrip() for line in lines)


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
    from orderlake import query
    from orderlake.spark import get_spark

    spark = get_spark(settings, "orderlake-sql", quiet=True)
    columns, rows = query.run_sql(spark, args.statement, limit=args.limit)
    print(query.render(columns, rows, args.format))
    return 0


def cmd_tables(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake import query
    from orderlake.spark import get_spark

    spark = get_spark(settings, "orderlake-tables", quiet=True)
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


# --- batch layer (also the batch/*.py entry points Airflow runs) --------------------------------
def _batch_spark(settings: Settings, app: str):
    from orderlake.spark import get_spark

    conf = {"spark.driver.memory": settings.batch_driver_memory}
    return get_spark(settings, f"orderlake-{app}", conf=conf, quiet=True)


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str), flush=True)


def cmd_batch(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.jobs import batch

    layers = batch.LAYERS if args.layer == "all" else (args.layer,)
    if layers == ("bronze",) and batch.bronze_is_current(settings):
        # the scheduled load's usual case, answered without starting Spark
        _print_json({"layer": "bronze", "records": 0, "spark": False})
        return 0
    spark = _batch_spark(settings, f"batch-{args.layer}")
    for summary in batch.run(spark, settings, layers, args.full, args.close_through):
        _print_json(summary)
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.jobs import replay

    request = replay.ReplayRequest(
        args.topic, args.range_from, args.range_to, replay.parse_layers(args.layers)
    )
    replay.validate(request)  # bad parameters fail before a Spark session starts
    _print_json(replay.replay(_batch_spark(settings, "replay"), settings, request))
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.jobs import reconcile

    _print_json(reconcile.reconcile(_batch_spark(settings, "reconcile"), settings, args.date))
    return 0


def cmd_maintain(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.jobs import maintenance

    spark = _batch_spark(settings, "maintain")
    both = not (args.optimize or args.vacuum)
    if args.optimize or both:
        _print_json({"optimize": maintenance.optimize(spark, settings)})
    if args.vacuum or both:
        _print_json({"vacuum": maintenance.vacuum(spark, settings, args.retain_hours)})
    return 0


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake import quality

    names = quality.check_suites(args.suite)  # a bad name fails before a Spark session starts
    quality.validate(_batch_spark(settings, "validate"), settings, names, report=_print_json)
    return 0


# --- producers --------------------------------------------------------------------------------
def _hosts(settings: Settings, count: int | None) -> list[str]:
    return [f"host-{i}" for i in range(1, (count or settings.hosts) + 1)]


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from orderlake.workload.generator import generate_to_spool

    manifest, path = generate_to_spool(
        settings.spool_dir,
        events=args.events,
        rate=args.rate,
        hosts=_hosts(settings, args.hosts),
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
        hosts=_hosts(settings, args.hosts),
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
def build_parser() -> argparse.ArgumentParser:
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
    p = add("status", cmd_status, "Show each component's state, address and key numbers.")
    p.add_argument("--json", action="store_true", help="one JSON object keyed by component")
    p = add("logs", cmd_logs, "Print the end of one component's log.")
    p.add_argument("component", help="e.g. kafka, flume-collector, flume-edge-host-1")
    p.add_argument("-n", "--lines", type=_positive_int, default=50)

    p = add("batch", cmd_batch, "Run the batch layer: Kafka -> bronze -> silver -> gold.")
    p.add_argument("layer", choices=("bronze", "silver", "gold", "all"))
    p.add_argument("--full", action="store_true", help="rebuild from all of bronze")
    p.add_argument(
        "--close-through", type=_date, metavar="YYYY-MM-DD", help="mark days up to this final"
    )
    p = add("replay", cmd_replay, "Re-read a range of a topic and rewrite what it affects.")
    p.add_argument("--topic", required=True, help="e.g. tmall.user_actions")
    p.add_argument("--from", dest="range_from", required=True, help="offsets P:O,.. or ISO time")
    p.add_argument("--to", dest="range_to", required=True, help="exclusive; offsets or ISO time")
    p.add_argument("--layers", default="bronze,silver,gold", help="default bronze,silver,gold")
    p = add("validate", cmd_validate, "Run the data-quality suites (expectations/) on the lake.")
    p.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable)")
    p = add("reconcile", cmd_reconcile, "Check Kafka vs bronze vs silver, and speed vs batch.")
    p.add_argument(
        "--date", type=_date, metavar="YYYY-MM-DD", help="speed vs batch for this day only"
    )
    p = add("maintain", cmd_maintain, "OPTIMIZE and guarded VACUUM of the batch tables.")
    p.add_argument("--optimize", action="store_true", help="compact small files only")
    p.add_argument("--vacuum", action="store_true", help="VACUUM only")
    p.add_argument("--retain-hours", type=_non_negative_float, default=None)
    p = add("sql", cmd_sql, "Run Spark SQL over the lake's tables (database.table names).")
    p.add_argument("statement", help='e.g. "SELECT * FROM speed.orders_by_age_gender_1m"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--limit", type=_positive_int, default=None, help="at most this many rows")
    p = add("tables", cmd_tables, "List the lake's tables with row counts and Delta versions.")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p = add("report", cmd_report, "Write the age and gender figures as PNG under reports/.")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first event date")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last event date")
    add("dashboard", cmd_dashboard, "Serve the read-only dashboard in the foreground.")

    p = add("generate", cmd_generate, "Append Tianchi-shaped order logs to the spool dirs.")
    p.add_argument("--events", type=_positive_int, required=True, help="user actions to write")
    p.add_argument("--rate", type=_non_negative_float, default=0, help="lines/s, 0 = unthrottled")
    p.add_argument("--hosts", type=_positive_int, default=None, help="default ORDERLAKE_HOSTS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--manifest", type=Path, default=None, help="manifest path (default: spool)")
    p.add_argument("--rotate-mb", type=_non_negative_float, default=256, help="0 = never")
    p.add_argument("--live", action="store_true", help="stamp events with the wall clock")

    p = add("replay-tianchi", cmd_replay_tianchi, "Feed real Tianchi data_format1 CSVs.")
    p.add_argument("--user-info", type=Path, required=True)
    p.add_argument("--user-log", type=Path, required=True)
    p.add_argument("--rate", type=_non_negative_float, default=0, help="lines/s, 0 = unthrottled")
    p.add_argument("--hosts", type=_positive_int, default=None)
    p.add_argument("--rejects", type=Path, default=None, help="reject file (default: spool)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        return args.handler(settings, args)
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orderlake: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one sentence here, the trace in a log
        where = log_trace(settings, args.command)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"orderlake: error: {args.command} failed unexpectedly ({type(exc).__name__}: "
            f"{first}); the full trace is in {where}.",
            file=sys.stderr,
        )
        return 1


def log_trace(settings: Settings | None, command: str) -> Path:
    """Append the current exception's trace to ORDERLAKE_HOME/logs/cli-errors.log."""
    import traceback
    from datetime import UTC, datetime

    logs = settings.logs_dir if settings else Path.cwd()
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "cli-errors.log"
    with path.open("a") as out:
        out.write(f"--- {datetime.now(UTC).isoformat()} orderlake {command}\n")
        out.write(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
