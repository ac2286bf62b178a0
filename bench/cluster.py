"""Cluster benchmark: the namespace deployment's start time, ingest rate, freshness at a fixed
rate next to the embedded platform, and the recovery after each fault.

Output: ``bench/results/cluster.json`` and ``bench/results/cluster.md`` (also printed).

On a cluster of its own (``orderlake cluster up`` of the data path: three SASL_SSL brokers, the
collector, host-1 and host-2, Spark master and two workers, the speed layer), under a temporary
ORDERLAKE_CLUSTER_ROOT, stopped with ``cluster down --volumes`` at the end, also on failure:

1. start: wall time of ``cluster up`` until every program is healthy;
2. ingest: ``--events`` generated at once on each of host-1 and host-2 (unthrottled, in
   parallel) -> the seconds until every event id is in tmall.user_actions (read as the admin
   from inside the cluster), and until the speed layer has counted every purchase;
3. freshness: ``--fresh-rate`` live lines/s for ``--fresh-seconds``, half on each host ->
   append -> counted (the purchase's event time, stamped when the line was written, to the
   counted_at of the micro-batch that counted it) p50/p95/max, the rates the generators and
   Kafka reached, and how long the speed layer needed after the last line;
4. faults, each while a host writes live lines, each judged by the speed layer's purchases
   (rows and distinct event ids equal to every purchase written so far): SIGKILL of the
   partition leader of tmall.user_actions/0, then of the active controller, then of a third
   broker (each with the longest gap between records around it, and the time until it is back
   in every ISR), host-2's link cut for 30 s, the Spark hosts cut from the brokers for 30 s.
   Recovery is the time from the end of the fault (the last line written, or the link
   restored, whichever is later) to exact counts.

Then, in the same run once the cluster is down, the embedded platform (`orderlake up --only
kafka,flume,streaming` in a temporary home): the same ingest (until counted), then the same
freshness step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from bench import common
from bench.stack import running_platform
from orderlake import lake
from orderlake.cluster import kafka_node, netns

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVICES = ("streaming", "flume-edge-host-1", "flume-edge-host-2")
HOSTS = ("host-1", "host-2")
BROKERS = (1, 2, 3)
ROLES = {
    "leader": "leader of tmall.user_actions/0",
    "controller": "the active controller",
    "follower": "neither that leader nor the controller",
}
CUT_S = 30  # how long a link stays cut, as in tests/cluster
SETTLE_TIMEOUT_S = 900  # a wait for Kafka or the speed layer gives up after this


# --- what the speed layer counted, on either deployment ------------------------------------------
def counted(purchases: Path) -> tuple[int, int]:
    """(rows, distinct event ids) of speed.purchases at ``purchases`` (0, 0 before its first
    commit)."""
    try:
        rows_read = DeltaTable(str(purchases)).to_pyarrow_table(columns=["event_id"])  # noqa: F841
    except TableNotFoundError:
        return 0, 0
    query = "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM rows_read"
    ((rows, distinct),) = duckdb.sql(query).fetchall()
    return int(rows), int(distinct)


def wait_exact(purchases: Path, expected: int, timeout: float = SETTLE_TIMEOUT_S) -> float | None:
    """Seconds until speed.purchases holds exactly ``expected`` purchases, once each; None when
    it did not within ``timeout`` (or counted one twice)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        rows, distinct = counted(purchases)
        if rows == distinct == expected:
            return round(time.monotonic() - started, 1)
        if rows > distinct:
            return None
        time.sleep(1)
    return None


def freshness(purchases: Path, manifests: list[dict]) -> dict:
    """Append -> counted of the purchases the ``manifests`` wrote: counted_at of the micro-batch
    that counted each minus its event time (the wall clock when the line was written, --live)."""
    ranges = [
        (host, info["first_seq"], info["last_seq"])
        for manifest in manifests
        for host, info in manifest["hosts"].items()
        if info["first_seq"] is not None
    ]
    wanted = " OR ".join(
        f"(split_part(event_id, ':', 1) = '{host}' AND "
        f"CAST(split_part(event_id, ':', 3) AS BIGINT) BETWEEN {first} AND {last})"
        for host, first, last in ranges
    )
    rows_read = DeltaTable(str(purchases)).to_pyarrow_table(  # noqa: F841 - read by duckdb
        columns=["event_id", "event_time", "counted_at"]
    )
    ((p50, p95, p99, worst, n),) = duckdb.sql(
        "SELECT quantile_cont(s, 0.5), quantile_cont(s, 0.95), quantile_cont(s, 0.99), "
        "max(s), count(*) FROM (SELECT (epoch_ms(counted_at) - epoch_ms(event_time)) / 1000.0 "
        f"AS s FROM rows_read WHERE {wanted or 'false'})"
    ).fetchall()
    return {
        "p50_s": _r(p50),
        "p95_s": _r(p95),
        "p99_s": _r(p99),
        "max_s": _r(worst),
        "purchases_measured": int(n),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def live_step(
    write: Callable[[int, int], list[dict]],
    purchases: Path,
    expected_before: int,
    rate: int,
    seconds: int,
) -> dict:
    """``write(rate, events)`` appends live lines and returns its manifests; the rates reached
    and the freshness of what it wrote, once the speed layer has counted all of it."""
    started = time.monotonic()
    manifests = write(rate, rate * seconds)
    written_s = time.monotonic() - started
    events = sum(m["events"] for m in manifests)
    purchases_written = sum(int(m["action_types"].get("2", 0)) for m in manifests)
    drained = wait_exact(purchases, expected_before + purchases_written)
    return {
        "offered_lines_per_s": rate,
        "seconds": seconds,
        "events": events,
        "generated_lines_per_s": round(sum(_lines(m) for m in manifests) / written_s),
        "purchases": purchases_written,
        "counted_s_after_last_line": drained,
        "exact": drained is not None,
        "freshness": freshness(purchases, manifests),
    }


def _lines(manifest: dict) -> int:
    return int(manifest["events"]) + int(manifest.get("profiles", 0))


# --- the namespace cluster ----------------------------------------------------------------------
class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "ORDERLAKE_CLUSTER_ROOT": str(root),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
        }
        self.purchases = root / "volumes" / "lakehouse" / "lake" / "speed" / "purchases"
        self.written = 0  # purchases generated so far, every host
        self.seed = 11

    def cli(self, *args: str, timeout: float = 900) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "orderlake.cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"orderlake {' '.join(args)} failed: {done.stderr[-1500:]}")
        return done.stdout

    def exec(self, host: str, *command: str) -> str:
        return self.cli("cluster", "exec", host, "--", *command)

    def probe(self, *args: str) -> dict:
        out = self.exec("kafka-topics", "python", "tests/cluster/probe.py", *args)
        return json.loads(out.strip().splitlines()[-1])

    def generate(self, host: str, events: int, rate: int = 0) -> subprocess.Popen:
        """`orderlake generate` on ``host`` (live-stamped when throttled); a new seed each time."""
        self.seed += 1
        command = ["orderlake", "generate", "--events", str(events), "--seed", str(self.seed)]
        if rate:
            command += ["--live", "--rate", str(rate)]
        return subprocess.Popen(
            [sys.executable, "-m", "orderlake.cli", "cluster", "exec", host, "--", *command],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def finish(self, writers: dict[str, subprocess.Popen]) -> list[dict]:
        """Wait for the generators; their manifests (counted into ``written``)."""
        manifests = []
        for host, writer in writers.items():
            out, _ = writer.communicate()
            if writer.returncode != 0:
                raise SystemExit(f"orderlake generate on {host} failed")
            inside = Path(out.strip().splitlines()[-1].removeprefix("manifest: "))
            home = self.root / "hosts" / f"flume-edge-{host}" / "home"
            manifest = json.loads((home / inside.relative_to("/var/lib/orderlake")).read_text())
            self.written += int(manifest["action_types"].get("2", 0))
            manifests.append(manifest)
        return manifests

    def write_both(self, rate: int, events: int) -> list[dict]:
        return self.finish({h: self.generate(h, events // 2, rate // 2) for h in HOSTS})

    def in_kafka(self) -> int:
        return self.probe("count", "tmall.user_actions")["distinct_event_ids"]

    def pid(self, host: str) -> int:
        state = json.loads(self.cli("cluster", "status", "--json"))
        return next(h for h in state["hosts"] if h["name"] == host)["components"][0]["pid"]

    def rejoined(self, node: int, victim: int, timeout: float = 300) -> float | None:
        """Seconds from now until broker ``node`` runs again (a new pid) and is in every
        partition's ISR; None if not within ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            topics = self.probe("topics")["topics"]
            isrs = [p["isrs"] for t in topics.values() for p in t["partitions"].values()]
            if self.pid(f"kafka-{node}") not in (None, victim) and all(node in i for i in isrs):
                return round(time.monotonic() - started, 1)
            time.sleep(3)
        return None

    def network(self) -> netns.Network:
        return netns.Network.load(json.loads(self.cli("cluster", "status", "--json"))["run_id"])


def ingest(bench: Bench, events: int) -> dict:
    """``events`` per host, unthrottled, on both hosts at once: seconds to Kafka, to counted."""
    t0 = time.monotonic()
    manifests = bench.finish({h: bench.generate(h, events) for h in HOSTS})
    written = time.monotonic() - t0
    total = sum(m["events"] for m in manifests)
    while bench.in_kafka() < total and time.monotonic() - t0 < SETTLE_TIMEOUT_S:
        time.sleep(1)
    in_kafka = time.monotonic() - t0
    # the speed layer's count is exact only once every event reached Kafka
    exact = wait_exact(bench.purchases, bench.written) is not None
    return {
        "events": total,
        "generate_s": round(written, 1),
        "all_in_kafka_s": round(in_kafka, 1),
        "events_per_s_to_kafka": round(total / in_kafka),
        "all_purchases_counted_s": round(time.monotonic() - t0, 1),
        "purchases": sum(int(m["action_types"].get("2", 0)) for m in manifests),
        "exact": exact,
    }


def broker_killed(bench: Bench, rate: int, seconds: int, role: str) -> dict:
    """host-1 writes ``rate`` live lines/s; after 10 s the broker in ``role`` is SIGKILLed
    (supervisord restarts it): "leader" of tmall.user_actions/0, the active "controller", or a
    "follower" that is neither. Before the next fault the broker is back in every ISR."""
    since_ms = int(time.time() * 1000)
    writer = bench.generate("host-1", rate * seconds, rate)
    time.sleep(10)
    leader = bench.probe("topics")["topics"]["tmall.user_actions"]["partitions"]["0"]["leader"]
    volumes = bench.root / "volumes"
    controller = kafka_node.active_controller({n: volumes / f"kafka-{n}-data" for n in BROKERS})
    node = {
        "leader": leader,
        "controller": controller,
        "follower": next(n for n in BROKERS if n not in (leader, controller)),
    }[role]
    victim = bench.pid(f"kafka-{node}")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    (manifest,) = bench.finish({"host-1": writer})
    recovered = wait_exact(bench.purchases, bench.written)
    gap = bench.probe("gap", "tmall.user_actions", str(since_ms))
    rejoined = bench.rejoined(node, victim)
    return {
        "fault": f"SIGKILL of kafka-{node}, {ROLES[role]}",
        "rate": rate,
        "killed_after_s": round(killed_at - since_ms / 1000, 1),
        "max_gap_between_records_ms": gap["max_gap_ms"],
        "events": manifest["events"],
        "exact_after_s": recovered,
        "rejoined_every_isr_s": rejoined,
    }


def link_cut(bench: Bench, rate: int, name: str, cut: Callable, heal: Callable) -> dict:
    """host-2 writes ``rate`` live lines/s for CUT_S seconds while ``cut()`` holds; ``heal()``
    then; seconds from the heal to exact counts."""
    cut()
    cut_at = time.monotonic()
    try:
        (manifest,) = bench.finish({"host-2": bench.generate("host-2", rate * CUT_S, rate)})
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
    finally:
        heal()
    healed = time.monotonic()
    return {
        "fault": name,
        "rate": rate,
        "events": manifest["events"],
        "cut_s": round(healed - cut_at, 1),
        "exact_after_s": wait_exact(bench.purchases, bench.written),
    }


def on_cluster(args: argparse.Namespace, result: dict) -> None:
    root = Path(tempfile.mkdtemp(prefix="orderlake-bench-cluster-"))
    bench = Bench(root)
    started = time.monotonic()
    try:
        bench.cli("cluster", "up", *(f"--service={s}" for s in SERVICES))
        result["start_s"] = round(time.monotonic() - started, 1)
        print(f"cluster up in {result['start_s']} s", flush=True)
        result["ingest"] = ingest(bench, args.events)
        print(json.dumps(result["ingest"]), flush=True)
        result["freshness"] = {
            "cluster": live_step(
                bench.write_both,
                bench.purchases,
                bench.written,
                args.fresh_rate,
                args.fresh_seconds,
            )
        }
        print(json.dumps(result["freshness"]), flush=True)
        network = bench.network()
        spark = [h for h in network.hosts if h.startswith("spark") or h == "streaming"]
        brokers = [f"kafka-{n}" for n in BROKERS]
        result["faults"] = [
            *(broker_killed(bench, args.rate, args.seconds, role) for role in ROLES),
            link_cut(
                bench,
                args.rate,
                "host-2's link cut for 30 s",
                lambda: network.cut("flume-edge-host-2"),
                lambda: network.restore("flume-edge-host-2"),
            ),
            link_cut(
                bench,
                args.rate,
                "the Spark hosts cut from the brokers for 30 s",
                lambda: network.partition(spark, brokers),
                lambda: network.heal(spark, brokers),
            ),
        ]
        for fault in result["faults"]:
            print(json.dumps(fault), flush=True)
    finally:
        subprocess.run(
            [sys.executable, "-m", "orderlake.cli", "cluster", "down", "--volumes"],
            env=bench.env,
            check=False,
            timeout=300,
        )


# --- the embedded platform, the same freshness step ---------------------------------------------
def on_embedded(args: argparse.Namespace, result: dict) -> None:
    with running_platform(only="kafka,flume,streaming") as embedded:
        purchases = lake.table_path(embedded.settings, "speed.purchases")

        def write(rate: int, events: int, seed: int = 21) -> list[dict]:
            """Over both hosts; live-stamped when throttled, as on the cluster."""
            live = ["--live"] if rate else []
            out = embedded.cli("generate", *live, "--rate", str(rate), "--events", str(events),
                               "--seed", str(seed), timeout=3600)  # fmt: skip
            path = out.strip().splitlines()[-1].removeprefix("manifest: ")
            return [json.loads(Path(path).read_text())]

        # the cluster's ingest step first, as on the cluster: the freshness step then meets a
        # speed layer past its first, slow micro-batches on both deployments
        t0 = time.monotonic()
        (manifest,) = write(0, 2 * args.events, seed=11)
        before = int(manifest["action_types"].get("2", 0))
        exact = wait_exact(purchases, before) is not None
        result["ingest"]["embedded_all_purchases_counted_s"] = round(time.monotonic() - t0, 1)
        result["ingest"]["embedded_exact"] = exact
        result["freshness"]["embedded"] = live_step(
            write,
            purchases,
            before,
            args.fresh_rate,
            args.fresh_seconds,
        )
        print(json.dumps(result["freshness"]["embedded"]), flush=True)


def run(args: argparse.Namespace) -> dict:
    result = common.provenance("cluster", datetime.now(UTC), common.load_average())
    result["machine"].update(cpus=os.cpu_count(), python=platform.python_version())
    on_cluster(args, result)
    on_embedded(args, result)
    # at the end: what ran beside it, and the files changed while it ran
    result["load_average_after"] = common.load_average()
    result["git_modified_files"] = common.git("diff", "--name-only", "HEAD").splitlines()
    return result


def markdown(result: dict) -> str:
    ingest, fresh = result["ingest"], result["freshness"]
    lines = [
        "# Cluster mode on one machine (bench/cluster.py)",
        "",
        f"{result['timestamp']} at {result['git_commit']}; {result['machine']['cpus']} cores, "
        f"load average (1/5/15 min) {common.format_loads(result['load_average_before'])} at "
        f"start, {common.format_loads(result['load_average_after'])} at the end. Data path in "
        "network namespaces: 3 SASL_SSL KRaft brokers, collector, host-1 and host-2, Spark master, "
        "2 workers, speed layer; then the embedded platform (Kafka, Flume, speed layer) in "
        "the same run.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `cluster up` until every program is healthy | {result['start_s']} s |",
        f"| {ingest['events']} events generated on 2 hosts -> all in Kafka | "
        f"{ingest['all_in_kafka_s']} s ({ingest['events_per_s_to_kafka']} events/s) |",
        f"| ... and all {ingest['purchases']} purchases counted by the speed layer | "
        f"{ingest['all_purchases_counted_s']} s{_unless_exact(ingest.get('exact'))} |",
        f"| the same on the embedded platform: all purchases counted | "
        f"{ingest.get('embedded_all_purchases_counted_s')} s"
        f"{_unless_exact(ingest.get('embedded_exact'))} |",
        "",
        "Freshness, after the ingest step on each: live lines offered for the step's seconds "
        "(half on each host), append -> counted (counted_at of the counting micro-batch minus "
        "the line's write time).",
        "",
        "| deployment | offered lines/s | generated lines/s | purchases | p50 s | p95 s | "
        "p99 s | max s | counted after the last line s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, step in fresh.items():
        f = step["freshness"]
        lines.append(
            f"| {name} | {step['offered_lines_per_s']} | {step['generated_lines_per_s']} | "
            f"{step['purchases']} | {f['p50_s']} | {f['p95_s']} | {f['p99_s']} | "
            f"{f['max_s']} | {_or_not_exact(step['counted_s_after_last_line'])} |"
        )
    lines += [
        "",
        "Faults, each while a host writes live lines; exact = the speed layer holds every "
        "purchase written so far, once; measured from the end of the fault (the last line "
        "written, or the link restored).",
        "",
        "| fault | lines/s | events | counts exact after s | longest write pause ms | "
        "broker back in every ISR after s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for fault in result["faults"]:
        lines.append(
            f"| {fault['fault']} | {fault['rate']} | {fault['events']} | "
            f"{_or_not_exact(fault['exact_after_s'])} | "
            f"{fault.get('max_gap_between_records_ms', '')} | "
            f"{fault.get('rejoined_every_isr_s', '')} |"
        )
    return "\n".join([*lines, ""])


def _or_not_exact(seconds: float | None) -> str:
    return "NOT EXACT" if seconds is None else str(seconds)


def _unless_exact(exact: bool | None) -> str:
    """A figure's warning when its counts never became exact (runs before the flag: none)."""
    return " (NOT EXACT)" if exact is False else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="per host, for the ingest")
    parser.add_argument("--rate", type=int, default=500, help="lines/s during the failover")
    parser.add_argument("--seconds", type=int, default=40, help="length of the failover write")
    parser.add_argument("--fresh-rate", type=int, default=5000, help="lines/s, freshness step")
    parser.add_argument("--fresh-seconds", type=int, default=60, help="length of that step")
    result = run(parser.parse_args())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "cluster.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
