"""Ingest benchmark: offered event rates -> throughput, latency and CPU/RSS of every process.

Input: offered rates (``--rates 5000,10000``, lines/s), the length of each step (``--seconds``),
a warm-up (``--warmup``) and optionally ``--find-max``. Output: ``bench/results/ingest.json``
(machine, settings and per-rate results) and ``bench/results/ingest.md`` (a Markdown table, also
printed).

The path measured is the real one, on an isolated platform started with `orderlake up` (own temp
ORDERLAKE_HOME, free ports) and stopped with `orderlake down` at the end, also on failure or
Ctrl-C:

    orderlake generate --live --rate R  ->  <spool>/host-N/actions.log  ->  2 Flume edge agents
    (TAILDIR -> file channel -> Avro)  ->  Flume collector (a Kafka channel per topic)  ->  Kafka

For each rate R one generator run writes R lines/s for warm-up + seconds; every action carries
its wall-clock write time as ``event_time``. A consumer assigned to all partitions of
tmall.user_actions from their end offsets (taken just before the run) stamps each message with
its receive time; latency = receive time - event_time; achieved = the rate at which the
measured actions arrived (least-squares slope; received / (last - first receive) is kept too,
but the sinks' back-off on an empty channel can swing it). The first ``--warmup`` seconds of
events are not measured (an idle pipeline's source and sinks poll every 0.5 s, so it starts
slowly). A step is *sustained* when the generator wrote >= 95% of the
offered rate, the achieved rate is >= 95% of it too, and the backlog (written minus received)
does not grow during the second half. The generator is Python on the same cores: its rate
limiter falls behind when the machine is busy, which is reported, never hidden.

Before the steps, the ceiling (``--burst N``, on the fresh platform): N lines generated at
once (the generator alone: its spool writes), the time until Kafka holds all of them through
Flume, and the same lines produced straight to a scratch topic of the same broker by one
confluent-kafka producer (idempotent, so acks=all; lz4). Flume's rate is reported as a share of
that producer's.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.common import (
    RESULTS_DIR,
    format_loads,
    kafka_holds,
    load_average,
    produce_lines,
    provenance,
    spool_files,
    write_results,
)
from bench.stack import Platform, running_platform
from orderlake import contracts, kafka_admin
from orderlake.stack import flume
from orderlake.workload.generator import generate_to_spool

SUSTAINED_SHARE = 0.95  # achieved / offered
BACKLOG_GROWTH_SHARE = 0.05  # backlog slope (events/s) in the second half / offered rate
DRAIN_IDLE_S = 30.0  # after the generator ends: give up when nothing arrives for this long
DRAIN_MAX_S = 240.0  # ... or after this long in total
FIND_MAX_STEP = 5_000
FIND_MAX_LIMIT = 200_000
BURST_MAX_S = 1800.0  # give up on Flume delivering the burst after this long
CEILING_TOPIC = "bench.ceiling"


# --- command line -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.splitlines()[0])
    p.add_argument(
        "--rates",
        type=lambda s: [int(r) for r in s.split(",")],
        default=[5_000, 10_000, 20_000, 30_000],
        help="offered rates in lines/s, comma separated (default 5000,10000,20000,30000)",
    )
    p.add_argument("--seconds", type=float, default=40, help="measured seconds per rate")
    p.add_argument("--warmup", type=float, default=10, help="unmeasured seconds before each step")
    p.add_argument(
        "--find-max",
        action="store_true",
        help=f"then step up from the highest sustained rate by +{FIND_MAX_STEP}/s until not",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=1_000_000,
        help="lines for the ceiling comparison before the steps (0: none; default 1000000)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--keep-home", action="store_true", help="keep the temp ORDERLAKE_HOME")
    return p.parse_args(argv)


# --- machine ------------------------------------------------------------------------------------
# --- per-second samples of the processes and the Flume channels ---------------------------------
class Sampler(threading.Thread):
    """Every second: CPU% (of one core) and RSS of each named process with its children,
    whole-machine CPU and iowait, and each Flume agent's channel size. Samples are kept with
    their wall-clock time."""

    def __init__(self, pids: dict[str, int], platform: Platform, interval: float = 1.0):
        super().__init__(name="sampler", daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.platform = platform
        self.interval = interval
        self.samples: list[dict] = []
        self._done = threading.Event()
        self._seen: dict[int, psutil.Process] = {}
        for name in self.procs:
            self._tree(name)  # starts every process's CPU measurement
        psutil.cpu_times_percent(None)

    def _tree(self, name: str) -> list[psutil.Process]:
        """A component's process and its descendants (an edge agent's Flume JVM runs under its
        watchdog), each kept across samples so its CPU % is measured between two of them; a
        process seen for the first time has no interval yet and is left out of this sample.
        This process's own children (the generator) are sampled under their own name."""
        root = self.procs[name]
        children = root.children(recursive=True) if root.pid != os.getpid() else []
        tree = []
        for proc in (root, *children):
            if proc.pid in self._seen:
                tree.append(self._seen[proc.pid])
            else:
                self._seen[proc.pid] = proc
                proc.cpu_percent(None)
        return tree

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.samples.append(self._sample())

    def stop(self) -> list[dict]:
        self._done.set()
        self.join()
        return self.samples

    def _sample(self) -> dict:
        procs = {}
        for name in self.procs:
            cpu = rss = 0.0
            try:
                for proc in self._tree(name):
                    with proc.oneshot():
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss / 2**20
            except psutil.Error:  # the generator has exited, or a process of the tree just did
                continue
            procs[name] = (cpu, rss)
        cpu = psutil.cpu_times_percent(None)
        channels = {}
        for agent in flume.agent_names(self.platform.settings):
            raw = flume.metrics(self.platform.settings, agent, timeout=0.5)
            if raw:
                channels[flume.component_name(agent)] = flume.summarize(raw).get("channel_size", 0)
        return {
            "t": time.time(),
            "procs": procs,
            "system_busy": 100.0 - cpu.idle - cpu.iowait,
            "iowait": cpu.iowait,
            "channels": channels,
        }


# --- the consumer -------------------------------------------------------------------------------
class Receiver:
    """Reads tmall.user_actions from the current end offsets; keeps (event time, receive time)."""

    def __init__(self, bootstrap: str):
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"orderlake-bench-{time.time_ns()}",
                "enable.auto.commit": False,
                "fetch.min.bytes": 1,
                "fetch.wait.max.ms": 50,
            }
        )
        topic = contracts.TOPIC_ACTIONS
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = []
        for p in sorted(partitions):
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self.event_times: list[float] = []
        self.receive_times: list[float] = []
        self._epoch_of_second: dict[str, float] = {}

    def poll(self, timeout: float = 0.2) -> int:
        """Receive what is there; return how many messages arrived."""
        batch = self.consumer.consume(10_000, timeout=timeout)
        received = time.time()
        n = 0
        for msg in batch:
            if msg.error() is not None:
                continue
            self.event_times.append(self._epoch(json.loads(msg.value())["event_time"]))
            self.receive_times.append(received)
            n += 1
        return n

    def _epoch(self, event_time: str) -> float:
        """'2026-11-25T15:50:00.123Z' -> seconds since the epoch (one strptime per second)."""
        second = event_time[:19]
        base = self._epoch_of_second.get(second)
        if base is None:
            base = calendar.timegm(time.strptime(second, "%Y-%m-%dT%H:%M:%S"))
            self._epoch_of_second[second] = base
        return base + int(event_time[20:23]) / 1000

    def close(self) -> None:
        self.consumer.close()


# --- one rate step ------------------------------------------------------------------------------
def run_step(platform: Platform, rate: int, seconds: float, warmup: float, seed: int) -> dict:
    """Offer ``rate`` lines/s for warm-up + seconds; measure until everything arrived."""
    events = int(rate * (warmup + seconds))
    manifest_path = platform.settings.home / "bench" / f"generate-{seed}-{rate}.json"
    pids = platform.pids()
    with ExitStack() as cleanup:  # on any exit: stop sampling, stop the generator, close
        receiver = Receiver(platform.settings.bootstrap)
        cleanup.callback(receiver.close)
        launched = time.time()
        # --rotate-mb 0: a rotation by rename re-sends the whole rotated file (README), which
        # would count as throughput; the spool is deleted with the temp home anyway.
        gen = platform.popen(
            *("generate", "--live", "--rate", str(rate), "--events", str(events)),
            *("--seed", str(seed), "--rotate-mb", "0", "--manifest", str(manifest_path)),
            stdout=subprocess.DEVNULL,
        )
        cleanup.callback(_kill, gen)
        sampler = Sampler({**pids, "generator": gen.pid, "bench-consumer": os.getpid()}, platform)
        sampler.start()
        cleanup.callback(sampler.stop)
        manifest = _receive_until_done(receiver, gen, manifest_path, events)
    result = summarize_step(rate, warmup, launched, manifest, receiver, sampler.samples)
    # supervisord restarts a process that died: its numbers above are then partial
    now = platform.pids()
    result["restarted_components"] = sorted(n for n, pid in pids.items() if now.get(n) != pid)
    return result


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _receive_until_done(
    receiver: Receiver, gen: subprocess.Popen, manifest_path: Path, events: int
) -> dict:
    """Poll Kafka while the generator runs, then until all its events arrived (or give up)."""
    manifest: dict | None = None
    gen_ended = last_arrival = 0.0
    received = 0
    while True:
        n = receiver.poll()
        received += n
        now = time.time()
        if n:
            last_arrival = now
        if manifest is None and gen.poll() is not None:
            if gen.returncode != 0:
                raise RuntimeError(f"orderlake generate exited {gen.returncode}")
            manifest = json.loads(manifest_path.read_text())
            gen_ended = last_arrival = now
        if manifest is not None and (
            received >= manifest["events"]
            or now - last_arrival > DRAIN_IDLE_S
            or now - gen_ended > DRAIN_MAX_S
        ):
            return manifest


def summarize_step(
    rate: int,
    warmup: float,
    launched: float,
    manifest: dict,
    receiver: Receiver,
    samples: list[dict],
) -> dict:
    et = np.asarray(receiver.event_times)
    rt = np.asarray(receiver.receive_times)
    # events of this run only (a late message of an earlier step was written before `launched`)
    run = et >= launched - 1.0
    et, rt = et[run], rt[run]
    expected = manifest["events"]
    # Offered = the generator's line rate. Its lines include each user's profile before the
    # user's first action (~0.8% of lines, mostly in the warm-up), so this is slightly strict.
    offered = float(rate)
    start, end = et.min() + warmup, et.max()
    measured = et >= start
    n = int(measured.sum())
    if n < 2:
        raise RuntimeError(f"only {n} measured events arrived in Kafka at {rate} lines/s")
    latency_ms = (rt[measured] - et[measured]) * 1000
    achieved = fitted_rate(rt[measured])
    first_to_last = n / (rt[measured].max() - rt[measured].min())
    generated = n / (end - start)
    growth = backlog_growth(et, rt, start, end)
    # A rate the generator did not manage to write was not tested, whatever arrived: after a
    # backlog drains, received / (last - first receive) can exceed what was written.
    generator_kept_up = generated >= SUSTAINED_SHARE * offered
    pipeline_kept_up = (
        growth <= BACKLOG_GROWTH_SHARE * offered
        and len(et) >= expected
        and (achieved >= SUSTAINED_SHARE * offered or not generator_kept_up)
    )
    sustained = generator_kept_up and pipeline_kept_up
    limited_by = None if sustained else "generator" if pipeline_kept_up else "pipeline"
    return {
        "offered_lines_per_s": rate,
        "generator_actions_per_s": round(generated, 1),
        "generator_kept_up": bool(generator_kept_up),
        "achieved_actions_per_s": round(achieved, 1),
        "received_per_first_to_last_receive_s": round(first_to_last, 1),
        "sustained": bool(sustained),
        "limited_by": limited_by,
        "latency_ms": {f"p{q}": round(float(np.percentile(latency_ms, q)), 1) for q in (50, 95, 99)}
        | {"max": round(float(latency_ms.max()), 1), "mean": round(float(latency_ms.mean()), 1)},
        "backlog_growth_second_half_per_s": round(growth, 1),
        "events_expected": expected,
        "events_received": int(len(et)),
        "events_measured": n,
        "profiles_written": manifest["profiles"],
        "measured_window_s": round(end - start, 2),
        "drain_after_generator_s": round(float(rt.max() - end), 2),
        "processes": process_stats(samples, start, end),
        "system": system_stats(samples, start, end),
        "flume_channel_size_max": channel_stats(samples, start, end),
        "load_average_after_step": load_average(),
    }


def fitted_rate(times: np.ndarray) -> float:
    """Events/s as the least-squares slope of the cumulative count over time. Unlike
    n / (last - first), it is not swung by where the sinks' back-off happens to put the first
    and the last event (+-5% with Flume's own 1 s back-off)."""
    t = np.sort(times)
    return float(np.polyfit(t - t[0], np.arange(1, len(t) + 1), 1)[0])


def backlog_growth(et: np.ndarray, rt: np.ndarray, start: float, end: float) -> float:
    """Slope (events/s) of written-minus-received over the second half of [start, end]."""
    ts = np.arange((start + end) / 2, end, 0.5)
    if len(ts) < 4:
        return 0.0
    backlog = np.searchsorted(np.sort(et), ts, "right") - np.searchsorted(np.sort(rt), ts, "right")
    return float(np.polyfit(ts - ts[0], backlog, 1)[0])


def _window(samples: list[dict], start: float, end: float) -> list[dict]:
    inside = [s for s in samples if start <= s["t"] <= end + 0.5]
    return inside or samples


def process_stats(samples: list[dict], start: float, end: float) -> dict:
    stats: dict[str, dict] = {}
    window = _window(samples, start, end)
    for name in sorted({name for s in window for name in s["procs"]}):
        cpu = [s["procs"][name][0] for s in window if name in s["procs"]]
        rss = [s["procs"][name][1] for s in window if name in s["procs"]]
        stats[name] = {
            "cpu_percent_mean": round(float(np.mean(cpu)), 1),
            "cpu_percent_max": round(float(np.max(cpu)), 1),
            "rss_mib_max": round(float(np.max(rss)), 1),
        }
    return stats


def system_stats(samples: list[dict], start: float, end: float) -> dict:
    """Whole-machine CPU in % of one core (up to 100 x cores), and the part not ours."""
    window = _window(samples, start, end)
    cores = os.cpu_count() or 1
    busy = [s["system_busy"] * cores for s in window]
    ours = [sum(cpu for cpu, _ in s["procs"].values()) for s in window]
    return {
        "cpu_busy_percent_mean": round(float(np.mean(busy)), 1),
        "other_processes_cpu_percent_mean": round(max(0.0, np.mean(busy) - np.mean(ours)), 1),
        "iowait_percent_mean": round(float(np.mean([s["iowait"] for s in window])), 1),
    }


def channel_stats(samples: list[dict], start: float, end: float) -> dict:
    window = _window(samples, start, end)
    names = sorted({name for s in window for name in s["channels"]})
    return {name: max(s["channels"].get(name, 0) for s in window) for name in names}


# --- the run ------------------------------------------------------------------------------------
def keep_ingest_only(platform: Platform) -> list[str]:
    """Stop what `orderlake up` started beyond Kafka and the Flume agents (a CLI without
    `up --only` starts the speed layer too): it would compete with the ingest path for the
    cores. Returns the names stopped."""
    extra = [
        name
        for name, info in platform.status().items()
        if info.get("pid") and name != "kafka" and not name.startswith("flume-")
    ]
    for name in extra:
        platform.supervisorctl("stop", name)
    return extra


def run_rates(platform: Platform, args: argparse.Namespace, steps: list[dict]) -> None:
    """The fixed steps, then (--find-max) +5,000/s from the highest sustained rate (0 when none
    was) until one is not sustained. Each result is appended to ``steps`` as soon as it is known.
    """

    def step(rate: int) -> dict:
        print(
            f"offering {rate} lines/s for {args.warmup:g} s warm-up + {args.seconds:g} s ...",
            flush=True,
        )
        result = run_step(platform, rate, args.seconds, args.warmup, seed=len(steps) + 1)
        steps.append(result)
        print("  " + one_line(result), flush=True)
        return result

    for rate in args.rates:
        step(rate)
    if args.find_max:
        done = {s["offered_lines_per_s"]: s for s in steps}
        rate = max_sustained(steps) or 0
        while rate + FIND_MAX_STEP <= FIND_MAX_LIMIT:
            rate += FIND_MAX_STEP
            result = done.get(rate) or step(rate)
            if not result["sustained"]:
                break


def run_burst(platform: Platform, lines: int) -> dict:
    """Flume against the ceilings next to it, on one platform in one run: the generator alone,
    then Flume (first line appended -> Kafka holds every line), then one plain producer."""
    settings = platform.settings
    started = time.monotonic()
    manifest, _ = generate_to_spool(
        settings.spool_dir, events=lines, rate=0, hosts=settings.host_names, seed=0
    )
    generate_s = time.monotonic() - started
    expected = manifest["topics"]
    while not kafka_holds(settings.bootstrap, expected):
        if time.monotonic() - started > BURST_MAX_S:
            raise RuntimeError(f"Flume did not deliver the burst of {lines:,} in {BURST_MAX_S} s")
        time.sleep(0.5)
    flume_s = time.monotonic() - started
    admin = kafka_admin.admin(settings.bootstrap)
    created = admin.create_topics(
        [NewTopic(CEILING_TOPIC, num_partitions=settings.actions_partitions, replication_factor=1)]
    )
    created[CEILING_TOPIC].result(60)
    files = [
        *spool_files(settings.spool_dir, contracts.ACTIONS_FILE),
        *spool_files(settings.spool_dir, contracts.PROFILES_FILE),
    ]
    started = time.monotonic()
    produced = produce_lines(settings.bootstrap, CEILING_TOPIC, files)
    producer_s = time.monotonic() - started
    admin.delete_topics([CEILING_TOPIC])[CEILING_TOPIC].result(60)
    total = sum(expected.values())
    return {
        "lines": total,
        "generator_s": round(generate_s, 2),
        "flume_s": round(flume_s, 2),
        "producer_s": round(producer_s, 2),
        "producer_lines": produced,
        "generator_lines_per_s": round(total / generate_s),
        "flume_lines_per_s": round(total / flume_s),
        "producer_lines_per_s": round(produced / producer_s),
        "flume_share_of_producer": round((total / flume_s) / (produced / producer_s), 3),
    }


def burst_lines(burst: dict | None) -> list[str]:
    if not burst:
        return []
    return [
        "",
        f"Ceiling, {burst['lines']:,} lines generated at once on the fresh platform: the "
        f"generator alone wrote them in {burst['generator_s']:g} s "
        f"({burst['generator_lines_per_s']:,} lines/s); Flume delivered every one to Kafka "
        f"{burst['flume_s']:g} s after the first was appended ({burst['flume_lines_per_s']:,} "
        f"lines/s); one confluent-kafka producer sent the same lines to the same broker in "
        f"{burst['producer_s']:g} s ({burst['producer_lines_per_s']:,} lines/s). Flume: "
        f"{burst['flume_share_of_producer']:.0%} of the plain producer.",
    ]


def max_sustained(steps: list[dict]) -> int | None:
    return max((s["offered_lines_per_s"] for s in steps if s["sustained"]), default=None)


def one_line(r: dict) -> str:
    lat = r["latency_ms"]
    text = (
        f"achieved {r['achieved_actions_per_s']:.0f}/s of {r['offered_lines_per_s']}/s "
        f"(generator {r['generator_actions_per_s']:.0f}/s), p50/p95/p99 "
        f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} ms, "
        f"sustained {'yes' if r['sustained'] else 'no, limited by the ' + r['limited_by']}"
    )
    if r["restarted_components"]:
        text += f"; RESTARTED during the step: {', '.join(r['restarted_components'])}"
    return text


# --- the report ---------------------------------------------------------------------------------
PROCESS_LABELS = {  # table order; any other component `orderlake up` started comes after them
    "kafka": "kafka",
    "flume-collector": "collector",
    "flume-edge-host-1": "edge host-1",
    "flume-edge-host-2": "edge host-2",
    "generator": "generator",
    "bench-consumer": "bench consumer",
}


def process_columns(steps: list[dict]) -> list[str]:
    seen = {name for s in steps for name in s["processes"]}
    known = [name for name in PROCESS_LABELS if name in seen]
    return known + sorted(seen - set(known))


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    columns = process_columns(result["steps"])
    head = [
        "offered lines/s",
        "generator actions/s",
        "achieved actions/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "sustained",
        f"all CPU (of {m['cpu_count'] * 100}%)",
        *(PROCESS_LABELS.get(name, name) for name in columns),
    ]
    lines = [
        f"Ingest, append -> visible in Kafka through {s['hosts']} Flume edge agents and the "
        f"collector (edge file channels, collector Kafka channels); {result['timestamp']}, "
        f"commit {result['git_commit']}, "
        f"{m['cpu_count']} cores, {m['ram_total_gib']} GiB RAM, load average (1/5/15 min) "
        f"{format_loads(result['load_average_before'])} before, "
        f"{format_loads(result['load_average_after'])} after; {s['seconds']:g} s measured per rate "
        f"after {s['warmup']:g} s warm-up.",
        *_caveats(result),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" for _ in head) + "|",
    ]
    for r in result["steps"]:
        lat = r["latency_ms"]
        cells = [
            f"{r['offered_lines_per_s']:,}",
            f"{r['generator_actions_per_s']:,.0f}" + ("" if r["generator_kept_up"] else " (!)"),
            f"{r['achieved_actions_per_s']:,.0f}",
            f"{lat['p50']:,.0f}",
            f"{lat['p95']:,.0f}",
            f"{lat['p99']:,.0f}",
            "yes" if r["sustained"] else f"**no** ({r['limited_by']})",
            _system_cell(r["system"]),
            *(_process_cell(r["processes"].get(name)) for name in columns),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    best = result["max_sustained_lines_per_s"]
    lines += [
        "",
        "Process cells: CPU % of one core, mean / max of 1 s samples over the measured window, "
        "then max RSS; all CPU = the whole machine, of which 'not ours' ran other tenants' "
        "processes (CI, other engineers' platforms). Achieved = the least-squares rate of the "
        "measured actions' arrivals (received / (last - first receive) is in the JSON); "
        "profile lines "
        f"(~{_profile_share(result):.1%} of all lines, mostly in the warm-up) count as offered. "
        f"Sustained = achieved >= {SUSTAINED_SHARE:.0%} of offered, the backlog (written - "
        "received) not growing in the second half and the generator writing >= "
        f"{SUSTAINED_SHARE:.0%} of the offered rate; (generator) = it did not ((!) in its "
        "column) but the pipeline kept up with what it wrote, (pipeline) = the pipeline fell "
        "behind. "
        f"Highest sustained rate measured: {f'{best:,} lines/s' if best else 'none'}.",
        *burst_lines(result.get("burst")),
    ]
    return "\n".join(lines) + "\n"


def _caveats(result: dict) -> list[str]:
    lines = []
    if result["settings"]["components_stopped_before_measuring"]:
        names = ", ".join(result["settings"]["components_stopped_before_measuring"])
        lines.append(f"Stopped before measuring (not part of the ingest path): {names}.")
    if result["git_modified_files"]:
        files = ", ".join(result["git_modified_files"])
        lines.append(f"Working tree differed from the commit in: {files}.")
    if result["error"]:
        lines.append(f"The run stopped early: {result['error']}")
    return lines


def _process_cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    return (
        f"{stats['cpu_percent_mean']:.0f} / {stats['cpu_percent_max']:.0f}% "
        f"{stats['rss_mib_max']:.0f} MiB"
    )


def _system_cell(system: dict) -> str:
    return (
        f"{system['cpu_busy_percent_mean']:.0f}% "
        f"(not ours {system['other_processes_cpu_percent_mean']:.0f}%)"
    )


def _profile_share(result: dict) -> float:
    steps = result["steps"]
    profiles = sum(s["profiles_written"] for s in steps)
    return profiles / max(1, profiles + sum(s["events_expected"] for s in steps))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the platform is stopped in both cases.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = datetime.now(UTC)
    load_before = load_average()
    steps: list[dict] = []
    burst = None
    error = None
    with running_platform(keep_home=args.keep_home, only="kafka,flume") as platform:
        print(f"platform up (ORDERLAKE_HOME={platform.settings.home})", flush=True)
        stopped = keep_ingest_only(platform)
        if stopped:
            print(f"stopped {', '.join(stopped)}: this benchmark measures the ingest path only")
        components = sorted(platform.pids())
        try:
            if args.burst:
                print(f"ceiling: {args.burst:,} lines at once ...", flush=True)
                burst = run_burst(platform, args.burst)
                print("  " + burst_lines(burst)[1], flush=True)
            run_rates(platform, args, steps)
        except Exception as exc:  # noqa: BLE001 - keep the steps measured so far
            error = f"{type(exc).__name__}: {exc}"
            print(f"benchmark failed: {error}", file=sys.stderr)
            platform.keep_home = True  # for its logs
    result = {
        **provenance("ingest", started, load_before),
        "settings": {
            "rates": args.rates,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "find_max": args.find_max,
            "burst": args.burst,
            "hosts": platform.settings.hosts,
            "components_running": components,
            "components_stopped_before_measuring": stopped,
            "flume_heap": platform.settings.flume_heap,
            "kafka_heap": platform.settings.kafka_heap,
            "actions_partitions": platform.settings.actions_partitions,
            "sustained_share": SUSTAINED_SHARE,
            "backlog_growth_share": BACKLOG_GROWTH_SHARE,
        },
        "steps": steps,
        "burst": burst,
        "max_sustained_lines_per_s": max_sustained(steps),
        "error": error,
    }
    json_path, md_path = write_results(args.out, "ingest", result, markdown(result))
    print()
    print(markdown(result))
    print(f"results: {json_path}, {md_path}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
