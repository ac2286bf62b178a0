"""The speed benchmark's Markdown report (bench/results/speed.md) and its one-line progress
messages, from the result document alone: a report can be rendered again from speed.json.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import format_loads, write_results
from bench.speed.monitor import STEP_NAMES


def one_line(r: dict) -> str:
    f, b, lag = r["freshness"], r["batches"], r["lag"]
    text = (
        f"freshness p50/p95/max {f.get('p50_s')}/{f.get('p95_s')}/{f.get('max_s')} s over "
        f"{f['purchases_measured']} purchases; batch p50 {b['duration_ms_p50']} ms, "
        f"{b['input_rows_p50']} rows; lag at end {lag['at_end']}, growth "
        f"{lag['growth_per_s']}/s; kept up {'yes' if r['kept_up'] else 'NO'}, sustained "
        f"{'yes' if r['sustained'] else 'no, limited by the ' + str(r['limited_by'])}"
    )
    if r["restarted_components"]:
        text += f"; RESTARTED: {', '.join(r['restarted_components'])}"
    return text


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    dirty = result["git_modified_files"]
    lines = [
        f"Speed layer, append -> counted in speed.purchases (Flume -> Kafka -> Structured "
        f"Streaming -> Delta); {result['timestamp']}, commit {result['git_commit']}"
        f"{' + uncommitted changes' if dirty else ''}, {m['cpu_count']} cores, "
        f"{m['ram_total_gib']} GiB RAM, load average (1/5/15 min) "
        f"{format_loads(result['load_average_before'])} before, "
        f"{format_loads(result['load_average_after'])} after; {s['seconds']:g} s measured per "
        f"rate after {s['warmup']:g} s warm-up (and {s['job_warmup'].get('events', 0):,} "
        "unmeasured events before the first step); streaming "
        f"driver heap {s['speed_driver_memory']}, "
        f"maxOffsetsPerTrigger {s['max_offsets_per_trigger']:,}.",
    ]
    if dirty:
        lines.append(f"Working tree differed from the commit in: {', '.join(dirty)}.")
    if result["error"]:
        lines.append(f"The run stopped early: {result['error']}")
    steps = result["steps"]
    if steps:
        lines += ["", "Freshness and lag:", "", *_freshness_table(steps), "", *_lag_traces(steps)]
        lines += ["", "Where a micro-batch's time goes (medians, ms):", "", *_steps_table(steps)]
        lines += ["", "Resources (CPU % of one core, mean / max; RSS max):", "", *_resources(steps)]
    if s["find_max"]:
        lines += ["", find_max_line(result)]
    if result.get("peer"):
        lines += ["", "Peer, the same backlog from offset 0:", "", *_peer_table(result["peer"])]
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def find_max_line(result: dict) -> str:
    steps = result["steps"]
    kept = [x for x in steps if x["kept_up"]]
    best = max(kept, key=lambda x: x["offered_lines_per_s"], default=None)
    failed = sorted((x for x in steps if not x["kept_up"]), key=lambda x: x["offered_lines_per_s"])
    text = "Find-max: "
    if best:
        text += (
            f"the highest rate the job kept up with: {best['offered_lines_per_s']:,} lines/s "
            f"offered ({_num(best['kafka_actions_per_s'])} actions/s reached Kafka; "
            f"{'sustained' if best['sustained'] else 'limited by the ' + best['limited_by']})"
        )
    else:
        text += "the job kept up with none of the rates offered"
    above = [
        x for x in failed if best is None or x["offered_lines_per_s"] > best["offered_lines_per_s"]
    ]
    if above:
        text += f"; its lag grew at {above[0]['offered_lines_per_s']:,} lines/s"
    sustained = result["max_sustained_lines_per_s"]
    text += f". Highest sustained (>= 95% delivered): {f'{sustained:,}' if sustained else 'none'}."
    return text


NOTES = (
    "Freshness = committed_at of the micro-batch that counted a purchase - its event_time (the "
    "append time), for the purchases appended after each step's warm-up; ingest = Kafka time "
    "stamp - event_time, speed = committed_at - Kafka time stamp. Lag = Kafka end offsets - "
    "offsets the job processed (both topics), sampled every 2 s; 'after commit' = the lag right "
    "after each commit (the low points of the saw-tooth), whose slope over the second half of "
    "the step decides 'kept up' (<= 5% of the offered rate; over the whole window when the "
    "second half holds < 3 commits; (*) = on the 2 s samples when even that is too few), with "
    "catching up within the drain time after the step. Sustained = kept up and the generator "
    "and Kafka received >= 95% of the offered rate (the Python generator shares the 2 cores and "
    "falls short on a busy machine). Machine CPU is in % of one core (200% = both cores); 'not "
    "ours' = used by other tenants' processes."
)


def _freshness_table(steps: list[dict]) -> list[str]:
    head = [
        "offered lines/s",
        "generator actions/s",
        "into Kafka/s",
        "purchases measured",
        "counted without profile",
        "p50 s",
        "p95 s",
        "max s",
        "ingest p50 s",
        "speed p50 s",
        "batch p50 / p95 ms",
        "rows/batch p50",
        "lag at end",
        "lag max",
        "lag growth /s",
        "kept up / sustained",
    ]
    lines = _head(head)
    for r in steps:
        f, b, lag = r["freshness"], r["batches"], r["lag"]
        cells = [
            f"{r['offered_lines_per_s']:,}",
            f"{r['generator_actions_per_s']:,.0f}",
            _num(r["kafka_actions_per_s"]),
            f"{f['purchases_measured']:,} of {r['purchases_written']:,}",
            f"{r['purchases_without_profile']:,}",
            _sec(f.get("p50_s")),
            _sec(f.get("p95_s")),
            _sec(f.get("max_s")),
            _sec(f.get("ingest_p50_s")),
            _sec(f.get("speed_p50_s")),
            f"{_num(b['duration_ms_p50'])} / {_num(b['duration_ms_p95'])}",
            _num(b["input_rows_p50"]),
            _num(lag["at_end"]),
            _num(lag["max"]),
            _num(lag["growth_per_s"]) + ("" if lag["growth_basis"].startswith("after") else " (*)"),
            ("yes" if r["kept_up"] else "**no**")
            + " / "
            + ("yes" if r["sustained"] else f"no ({r['limited_by']})"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _lag_traces(steps: list[dict]) -> list[str]:
    """The lag right after each commit in the measured window, in thousands of records."""
    lines = ["Lag right after each commit in the measured window (thousand records):", ""]
    for r in steps:
        trace = " ".join(f"{lag / 1000:,.0f}" for _, lag in r["lag"]["after_commit"])
        lines.append(f"- {r['offered_lines_per_s']:,} lines/s: {trace or '-'}")
    return lines


def _steps_table(steps: list[dict]) -> list[str]:
    head = ["offered lines/s", "batches", "batch", "addBatch", *STEP_NAMES, "other Spark phases"]
    lines = _head(head)
    for r in steps:
        b = r["batches"]
        phases = b["spark_duration_ms_median"]
        other = sum(v or 0 for k, v in phases.items() if k != "addBatch")
        cells = [
            f"{r['offered_lines_per_s']:,}",
            str(b["count"]),
            _num(b["duration_ms_p50"]),
            _num(phases.get("addBatch")),
            *(_step_cell(b, name) for name in STEP_NAMES),
            _num(other),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _step_cell(batches: dict, name: str) -> str:
    value, present = batches["steps_ms_median"][name], batches["steps_present_in"][name]
    if value is None:
        return "-"
    return _num(value) + ("" if present == batches["count"] else f" ({present} batches)")


def _resources(steps: list[dict]) -> list[str]:
    head = [
        "offered lines/s",
        "machine (not ours)",
        "streaming JVM",
        "heap used max / old max MiB",
        "GC s (young / full)",
        "kafka",
        "collector",
        "edges",
        "generator",
    ]
    lines = _head(head)
    for r in steps:
        p, jvm = r["processes"], r["streaming_jvm"]
        machine = p.get("machine", {})
        cells = [
            f"{r['offered_lines_per_s']:,}",
            f"{machine.get('cpu_busy_percent_mean', 0):.0f}% "
            f"({machine.get('not_ours_cpu_percent_mean', 0):.0f}%)",
            _proc(p.get("streaming-jvm")),
            f"{_num(jvm.get('heap_used_mib_max'))} / {_num(jvm.get('old_used_mib_max'))}",
            f"{jvm.get('gc_s', '-')} ({jvm.get('young_gcs', '-')} / {jvm.get('full_gcs', '-')})",
            _proc(p.get("kafka")),
            _proc(p.get("flume-collector")),
            " + ".join(_proc(v) for k, v in sorted(p.items()) if k.startswith("flume-edge")),
            _proc(p.get("generator")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _peer_table(peer: dict) -> list[str]:
    plain, once = peer["plain_consumer"], peer["speed_layer_once"]
    lines = _head(
        [
            "",
            "records",
            "wall s from process start",
            "records/s",
            "CPU s",
            "CPU s per million records",
            "RSS max MiB",
        ]
    )
    for name, side in (
        ("plain consumer (1 Python thread)", plain),
        ("speed_layer.py --once", once),
    ):
        lines.append(
            f"| {name} | {side['records']:,} | {side['wall_s']:.1f} | "
            f"{side['records_per_s']:,.0f} | {side['cpu_s']:.1f} | "
            f"{_sec(side.get('cpu_s_per_million_records'))} | {_num(side.get('rss_mib_max'))} |"
        )
    same = "the same" if peer.get("same_records") else "**not the same**"
    cpu_ratio = peer.get("cpu_per_million_ratio_speed_over_plain")
    lines += [
        "",
        f"Speed layer / plain consumer over {same} records (both topics from offset 0, profiles "
        f"included), both timed from process start: {peer['ratio_speed_over_plain']:.3f} of the "
        f"records/s, {'-' if cpu_ratio is None else f'{cpu_ratio:.2f}'} times the CPU per "
        "million records. Without either side's start-up (the speed layer from its first "
        "trigger to its last commit, after "
        f"{once['startup_s']:.1f} s of Spark start and profile preload; the plain consumer "
        f"from its first poll): {peer['ratio_speed_processing_over_plain']:.3f} "
        f"({once['batches']} micro-batches of {_num(once['input_rows_p50'])} rows p50, "
        f"{_num(once['batch_duration_ms_p50'])} ms p50). CPU: the speed layer's process tree "
        "(driver, JVM) sampled every 0.5 s; the plain consumer's own rusage.",
    ]
    c, live = peer["counts_vs_once_lake"], peer["counts_vs_live_lake"]
    lines += [
        f"Counts: plain {c['plain_total']:,} purchases vs --once lake {c['speed_total']:,} "
        f"(totals {'match' if c['totals_match'] else '**differ**'}); "
        f"{c['buckets_differing']} of {c['buckets']} (minute, age, gender) buckets differ by "
        f"{c['abs_difference_sum']:,} in total; counted without a profile: plain "
        f"{c['plain_without_profile']:,}, speed {c['speed_without_profile']:,}. "
        f"Live lake: {live['speed_total']:,} "
        f"({'matches' if live['totals_match'] else '**differs**'}), "
        f"{live['buckets_differing']} buckets differ by {live['abs_difference_sum']:,}, "
        f"{live['speed_without_profile']:,} counted without a profile.",
    ]
    if peer["code_state"] != peer.get("code_state_at_start", peer["code_state"]):
        lines.append(
            "Note: include/ or streaming/ changed during the run (other engineers' work): the "
            "--once run used newer code than the live job."
        )
    return lines


def _head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]


def _num(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _sec(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _proc(stats: dict | None) -> str:
    if not stats:
        return "-"
    return (
        f"{stats['cpu_percent_mean']:.0f} / {stats['cpu_percent_max']:.0f}% "
        f"{stats['rss_mib_max']:.0f} MiB"
    )


def write(result: dict, out: Path) -> tuple[Path, Path]:
    """bench/results/speed.json and speed.md."""
    return write_results(out, "speed", result, markdown(result))
