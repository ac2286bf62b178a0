"""docs/PERFORMANCE.md from bench/results/*.json: one current table per benchmark.

    .venv/bin/python -m bench.perf_doc [--check]

Each benchmark writes its own JSON shape; a small reader per benchmark picks its headline rows
(what was measured, the figure, the aim or peer it is compared with). Every table says which
results file it comes from, when and on what machine it was measured and the load around it, so
a figure in the README can be traced to one file. The output depends on the results files only
(no clock, no git), so regenerating from the same results gives no diff; ``--check`` exits 1 when
the checked-in document is stale (tests/unit/test_perf_doc.py runs it). History stays in git.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderlake.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
DOC = PROJECT_ROOT / "docs" / "PERFORMANCE.md"

Doc = Mapping[str, Any]
Row = tuple[str, ...]


@dataclass
class Table:
    title: str
    source: str
    what: str
    head: Row
    rows: list[Row] = field(default_factory=list)


def num(x: Any, digits: int = 1, unit: str = "") -> str:
    """A figure as the tables print it: thousands separated, '-' when missing."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    if isinstance(x, float):
        return f"{x:,.{digits}f}{unit}"
    return f"{x}{unit}"


def ratio(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}x"


def pick(doc: Doc, path: str) -> Any:
    """``doc["a"]["b"]`` for "a.b"; None where a key is missing."""
    for key in path.split("."):
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    return doc


def rate_steps(d: Doc, columns: tuple[tuple[str, int], ...]) -> list[Row]:
    """One row per offered rate of a rate-stepping benchmark: (dotted path, digits) per column."""
    return [
        (num(s["offered_lines_per_s"]), *(num(pick(s, path), digits) for path, digits in columns))
        for s in d["steps"]
    ]


# --- one reader per benchmark ------------------------------------------------------------------
def ingest(d: Doc) -> Table:
    burst = d.get("burst") or {}
    ceiling = (
        f"; {num(burst['lines'])} lines at once: the generator alone "
        f"{num(burst['generator_lines_per_s'])} lines/s, through Flume to Kafka "
        f"{num(burst['flume_lines_per_s'])} lines/s, one plain confluent-kafka producer "
        f"{num(burst['producer_lines_per_s'])} lines/s"
        if burst
        else ""
    )
    t = Table(
        "Ingest: append -> Kafka through the edge agents and the collector",
        "ingest.json",
        f"{d['settings']['hosts']} edge hosts, {d['settings']['seconds']} s per rate; "
        f"most lines/s sustained: {num(d.get('max_sustained_lines_per_s'))}{ceiling}",
        ("offered lines/s", "reached Kafka /s", "p50 ms", "p99 ms", "sustained"),
    )
    t.rows = rate_steps(
        d,
        (("achieved_actions_per_s", 0), ("latency_ms.p50", 0), ("latency_ms.p99", 0),
         ("sustained", 0)),
    )  # fmt: skip
    return t


def speed(d: Doc) -> Table:
    peer = d.get("peer") or {}
    t = Table(
        "Speed layer: append -> counted in speed.purchases",
        "speed.json",
        "freshness of each purchase from its append to the commit that counted it; peer: one "
        "plain confluent-kafka consumer computing the same buckets over the same backlog "
        f"({peer_ratios(peer)})",
        ("offered lines/s", "p50 s", "p95 s", "p99 s", "kept up"),
    )
    t.rows = rate_steps(
        d,
        (("freshness.p50_s", 2), ("freshness.p95_s", 2), ("freshness.p99_s", 2),
         ("kept_up", 0)),
    )  # fmt: skip
    return t


def peer_ratios(peer: Doc) -> str:
    """The speed bench's peer ratios as the run that wrote them measured them: runs before the
    CPU figures timed the speed layer's processing without Spark's start, the plain consumer
    with its own."""
    whole, processing = (
        peer.get("ratio_speed_over_plain"),
        peer.get("ratio_speed_processing_over_plain"),
    )
    if "cpu_per_million_ratio_speed_over_plain" not in peer:
        return (
            f"speed / plain records/s: {ratio(whole)} from process start, {ratio(processing)} "
            "without Spark's start"
        )
    return (
        f"speed / plain records/s: {ratio(whole)} with both timed from process start, "
        f"{ratio(processing)} from each side's first record; CPU-seconds per million records, "
        f"speed / plain: {ratio(peer.get('cpu_per_million_ratio_speed_over_plain'))}"
    )


def batch(d: Doc) -> Table:
    t = Table(
        "Batch layer: bronze load, silver+gold rebuild, one new day",
        "batch.json",
        "peer: the same aggregate query through DuckDB over the table's files",
        ("events", "bronze records/s", "rebuild s", "one new day s", "Spark / DuckDB query"),
    )
    for s in d["sizes"]:
        t.rows.append(
            (
                num(s["events"]),
                num((s.get("bronze") or {}).get("records_per_s")),
                num((s.get("rebuild") or {}).get("total_wall_s")),
                num((s.get("one_new_day") or {}).get("wall_s")),
                ratio((s.get("peer") or {}).get("spark_over_duckdb")),
            )
        )
    return t


def airflow(d: Doc) -> Table:
    rounds = d["rounds"]
    t = Table(
        "Airflow: bronze asset updated -> gold updated",
        "airflow.json",
        f"{num(d.get('events'))} events, {len(rounds)} rounds; median of the rounds",
        ("measure", "median s"),
    )
    for key, label in (
        ("bronze_asset_to_gold_s", "bronze asset -> gold updated"),
        ("bronze_asset_to_task_start_s", "bronze asset -> first task starts"),
        ("task_to_task_gap_s", "gap between tasks"),
    ):
        t.rows.append((label, num(median(r.get(key) for r in rounds))))
    for task in rounds[0].get("durations_s") or {}:
        values = (r.get("durations_s", {}).get(task) for r in rounds)
        t.rows.append((f"task {task}", num(median(values))))
    return t


def warm_spark(d: Doc) -> Table:
    t = Table(
        "Warm Spark: each command as a whole process, a JVM of its own (cold) vs the server (warm)",
        "warm-spark.json",
        f"{num(d.get('events'))} events in the lake, {d.get('rounds')} interleaved rounds, "
        f"medians; the cold side runs revision {d.get('base')}, from before the server; the "
        "peer of the query is the same count through DuckDB in a fresh process",
        ("command", "cold s", "warm s", "cold / warm", "DuckDB s"),
    )
    for name, med in d["medians"].items():
        cold, warm = med.get("cold"), med.get("warm")
        t.rows.append(
            (
                name,
                num(cold, 2),
                num(warm, 2),
                ratio(cold / warm if cold and warm else None),
                num(med.get("duckdb"), 2),
            )
        )
    return t


def soak(d: Doc) -> Table:
    t = Table(
        "Faults at soak counts: every event accounted for",
        "soak.json",
        f"the fault battery (tests/faults) at its soak counts x{d.get('scale')}, one live lake, "
        f"{d.get('minutes')} min",
        ("fault", "injected", "events", "purchases (lake)", "lost speed / gold",
         "twice speed / gold", "recovery s (max)", "exact"),
    )  # fmt: skip
    for c in d["cases"]:
        t.rows.append(
            (
                c["case"],
                num(c.get("faults_injected")),
                num(c.get("events_sent")),
                num(c.get("purchases_expected")),
                f"{c.get('speed_lost')} / {c.get('gold_lost')}",
                f"{c.get('speed_doubled')} / {c.get('gold_doubled')}",
                num(max(c.get("recovery_s") or [0])),
                num(c.get("exact")),
            )
        )
    return t


def startup(d: Doc) -> Table:
    t = Table(
        "Platform start: `orderlake up` of every component",
        "startup.json",
        f"fresh home each time, this checkout against {d.get('base')}, interleaved",
        ("round", "base s", "this s"),
    )
    for i, r in enumerate(d.get("rounds") or [], 1):
        t.rows.append((str(i), num(r.get("base")), num(r.get("this"))))
    med = d.get("median_s") or {}
    t.rows.append(("median", num(med.get("base")), num(med.get("this"))))
    return t


def cluster(d: Doc) -> Table:
    ingest, fresh = d.get("ingest") or {}, d.get("freshness") or {}
    t = Table(
        "Cluster mode on one machine: the data path in network namespaces",
        "cluster.json",
        "three secured brokers, the collector and two edge hosts, Spark master, worker and the "
        "speed layer, each in its own namespace (`orderlake cluster up`); the embedded "
        "platform's freshness in the same run",
        ("measure", "figure"),
    )
    t.rows = [
        ("`cluster up` of the data path", num(d.get("start_s"), unit=" s")),
        (
            f"{num(ingest.get('events'))} events from both edge hosts in Kafka",
            f"{num(ingest.get('all_in_kafka_s'), unit=' s')} "
            f"({num(ingest.get('events_per_s_to_kafka'))} events/s)",
        ),
        (
            f"all {num(ingest.get('purchases'))} purchases counted by the speed layer",
            num(ingest.get("all_purchases_counted_s"), unit=" s"),
        ),
    ]
    for name, step in fresh.items():
        f = step.get("freshness") or {}
        t.rows.append(
            (
                f"{name}: append -> counted p50 / p95 at {num(step.get('offered_lines_per_s'))} "
                f"lines/s offered ({num(step.get('generated_lines_per_s'))} written)",
                f"{num(f.get('p50_s'), 1)} / {num(f.get('p95_s'), 1)} s",
            )
        )
    for fault in d.get("faults") or []:
        figure = num(fault.get("exact_after_s"), unit=" s")
        if fault.get("max_gap_between_records_ms") is not None:
            figure += f" (longest write pause {num(fault['max_gap_between_records_ms'])} ms)"
        t.rows.append((f"{fault.get('fault')}: counts exact after", figure))
    return t


def ab(title: str, source: str) -> Callable[[Doc], Table]:
    """An interleaved A/B run of the speed layer: base revision vs the change, medians."""

    def read(d: Doc) -> Table:
        t = Table(
            title,
            source,
            f"base {d['base'].get('revision', '?')} vs work, interleaved; work / base",
            ("measure", "base", "work", "work / base"),
        )
        summary, ratios = d.get("summary") or {}, d.get("work_over_base") or {}
        for key, value in ratios.items():
            if isinstance(value, int | float):
                base = (summary.get("base") or {}).get(key)
                work = (summary.get("work") or {}).get(key)
                t.rows.append((key, num(base), num(work), ratio(value)))
        return t

    return read


def median(values: Iterable[Any]) -> float | None:
    xs = sorted(v for v in values if isinstance(v, int | float))
    if not xs:
        return None
    mid = len(xs) // 2
    return float(xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2)


# results file -> its reader, in the order the document shows them
def scale(d: Doc) -> Table:
    t = Table(
        "The whole pipeline at growing volume",
        "scale.json",
        "seconds from the first line appended (generate -> Kafka through Flume -> speed layer "
        "caught up; `batch all` once Kafka holds every line), a fresh platform per volume, each "
        "measured at the date and commit shown (volumes of an earlier run are kept by "
        "`--keep-others`); fitted exponents against events (1.0 = linear): "
        + (", ".join(f"{k} {v}" for k, v in (d.get("growth") or {}).items()) or "-"),
        ("events", "in Kafka s", "gold final s", "speed caught up s", "events/s end to end",
         "reconciled", "peak RSS GiB", "measured"),
    )  # fmt: skip
    for r in d["runs"]:
        at = r["seconds_from_first_line"]
        when = r.get("measured") or {"timestamp": d["timestamp"], "git_commit": d["git_commit"]}
        t.rows.append(
            (
                num(r["events"]),
                num(at["kafka"]),
                num(at["batch"]),
                num(at["speed"]),
                num(r["rates"]["end_to_end_events_per_s"]),
                "exact" if r["reconcile_exact"] else "gaps",
                num(r["peak_rss_gib"], 2),
                f"{when['timestamp'][:16].replace('T', ' ')} at {when['git_commit']}",
            )
        )
    return t


READERS: dict[str, Callable[[Doc], Table]] = {
    "ingest.json": ingest,
    "speed.json": speed,
    "batch.json": batch,
    "airflow.json": airflow,
    "warm-spark.json": warm_spark,
    "startup.json": startup,
    "soak.json": soak,
    "cluster.json": cluster,
    "scale.json": scale,
    "speed-ab.json": ab("Speed layer A/B", "speed-ab.json"),
}


# --- the document ------------------------------------------------------------------------------
def provenance(d: Doc) -> str:
    machine = d.get("machine") or {}
    when = d.get("measured_at") or d.get("timestamp") or d.get("at")
    commit = d.get("commit") or d.get("git_commit") or (d.get("work") or {}).get("commit")
    load = (
        d.get("load_before")
        or d.get("load_average_before")
        or machine.get("load_average_at_start")
        or []
    )
    loads = "/".join(f"{x:.1f}" for x in load[:3]) or "-"
    cores = machine.get("cpu_count") or machine.get("cpus") or "?"
    where = f"on {cores} cores"
    if machine.get("cpu_model"):
        where += f" ({machine['cpu_model']}, {machine.get('ram_total_gib', '?')} GiB)"
    return (
        f"Measured {when or '(date not recorded)'}"
        f"{f' at {str(commit)[:7]}' if commit else ''} {where}; load average before: {loads}."
    )


def render_table(t: Table, d: Doc) -> list[str]:
    lines = [f"## {t.title}", "", f"From [`bench/results/{t.source}`](../bench/results/{t.source})"]
    lines += [f"({provenance(d)}) {t.what}.", ""]
    lines.append("| " + " | ".join(t.head) + " |")
    lines.append("|" + "|".join("---" for _ in t.head) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in t.rows]
    return [*lines, ""]


def render(results: Path = RESULTS_DIR) -> str:
    lines = [
        "# orderlake performance",
        "",
        "Generated by `make perf-doc` from `bench/results/*.json`; do not edit by hand. Each",
        "table is the latest run of one benchmark (`make bench-*`); how each is measured is in",
        "its module's docstring under `bench/`. Earlier figures are in git history.",
        "",
    ]
    for name, read in READERS.items():
        path = results / name
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        try:
            table = read(doc)
        except (KeyError, TypeError, AttributeError) as exc:
            raise SystemExit(
                f"{path} does not have the shape bench.perf_doc reads ({exc!r})."
            ) from None
        lines += render_table(table, doc)
    others = sorted(
        p.relative_to(results).as_posix()
        for p in results.rglob("*.md")
        if p.with_suffix(".json").name not in READERS or p.parent != results
    )
    if others:
        lines += ["## Other results", "", "Experiments kept with their own write-ups:", ""]
        lines += [f"- [`{o}`](../bench/results/{o})" for o in others]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when docs/PERFORMANCE.md is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run `make perf-doc`.", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
