"""Cluster benchmark: the namespace deployment's start time, ingest rate and broker failover pause.

Output: ``bench/results/cluster.json`` and ``bench/results/cluster.md`` (also printed).

On a cluster of its own (``orderlake cluster up`` of the data path: three SASL_SSL brokers, the
collector, host-1 and host-2, Spark master and two workers, the speed layer), under a temporary
ORDERLAKE_CLUSTER_ROOT, stopped with ``cluster down --volumes`` at the end, also on failure:

1. start: wall time of ``cluster up`` until every program is healthy;
2. ingest: ``--events`` generated at once on each of host-1 and host-2 (unthrottled, in
   parallel) -> the seconds until every event id is in tmall.user_actions (read as the admin
   from inside the cluster), and until the speed layer has counted every purchase;
3. failover: host-1 writes ``--rate`` live lines/s; after 10 s the leader of partition 0 is
   SIGKILLed; the pause is the longest gap between consecutive records' broker time stamps
   while it writes (acks=all: a write waits for the new leader), and nothing may be missing.
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
from datetime import UTC, datetime
from pathlib import Path

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from bench import common

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVICES = ("streaming", "flume-edge-host-1", "flume-edge-host-2")


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "ORDERLAKE_CLUSTER_ROOT": str(root),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
        }

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

    def manifest(self, out: str, host: str) -> dict:
        inside = Path(out.strip().splitlines()[-1].removeprefix("manifest: "))
        path = self.root / "hosts" / f"flume-edge-{host}" / "home"
        return json.loads((path / inside.relative_to("/var/lib/orderlake")).read_text())

    def speed_rows(self) -> int:
        path = self.root / "volumes" / "lakehouse" / "lake" / "speed" / "purchases"
        try:
            return DeltaTable(str(path)).to_pyarrow_table().num_rows
        except TableNotFoundError:
            return 0

    def pid(self, host: str) -> int:
        state = json.loads(self.cli("cluster", "status", "--json"))
        return next(h for h in state["hosts"] if h["name"] == host)["components"][0]["pid"]


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="orderlake-bench-cluster-"))
    bench = Bench(root)
    result: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": common.git("rev-parse", "--short", "HEAD"),
        "machine": {
            **common.machine_info(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # the machine is shared: its load says how much of it the cluster had
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        },
    }
    started = time.monotonic()
    try:
        bench.cli("cluster", "up", *(f"--service={s}" for s in SERVICES))
        result["start_s"] = round(time.monotonic() - started, 1)
        print(f"cluster up in {result['start_s']} s", flush=True)

        # --- ingest --------------------------------------------------------------------------
        t0 = time.monotonic()
        gens = [
            subprocess.Popen(
                [sys.executable, "-m", "orderlake.cli", "cluster", "exec", host, "--"]
                + ["orderlake", "generate", "--events", str(args.events), "--seed", "11"],
                stdout=subprocess.PIPE,
                text=True,
                env=bench.env,
            )
            for host in ("host-1", "host-2")
        ]
        manifests = [
            bench.manifest(g.communicate()[0], h)
            for g, h in zip(gens, ("host-1", "host-2"), strict=True)
        ]
        written = time.monotonic() - t0
        events = sum(m["events"] for m in manifests)
        purchases = sum(m["action_types"].get("2", 0) for m in manifests)
        while bench.probe("count", "tmall.user_actions")["distinct_event_ids"] < events:
            time.sleep(1)
        in_kafka = time.monotonic() - t0
        while bench.speed_rows() < purchases:
            time.sleep(2)
        counted = time.monotonic() - t0
        result["ingest"] = {
            "events": events,
            "generate_s": round(written, 1),
            "all_in_kafka_s": round(in_kafka, 1),
            "events_per_s_to_kafka": round(events / in_kafka),
            "all_purchases_counted_s": round(counted, 1),
            "purchases": purchases,
        }
        print(json.dumps(result["ingest"]), flush=True)

        # --- failover ------------------------------------------------------------------------
        before = bench.probe("count", "tmall.user_actions")["distinct_event_ids"]
        since_ms = int(time.time() * 1000)
        live = subprocess.Popen(
            [sys.executable, "-m", "orderlake.cli", "cluster", "exec", "host-1", "--"]
            + ["orderlake", "generate", "--live", "--rate", str(args.rate)]
            + ["--events", str(args.rate * args.seconds), "--seed", "12"],
            stdout=subprocess.PIPE,
            text=True,
            env=bench.env,
        )
        time.sleep(10)
        topics = bench.probe("topics")["topics"]
        leader = topics["tmall.user_actions"]["partitions"]["0"]["leader"]
        os.kill(bench.pid(f"kafka-{leader}"), signal.SIGKILL)
        killed_at = time.time()
        live_manifest = bench.manifest(live.communicate()[0], "host-1")
        expected = before + live_manifest["events"]
        deadline = time.monotonic() + 300
        seen = 0
        while time.monotonic() < deadline:
            seen = bench.probe("count", "tmall.user_actions")["distinct_event_ids"]
            if seen >= expected:
                break
            time.sleep(2)
        gap = bench.probe("gap", "tmall.user_actions", str(since_ms))
        result["failover"] = {
            "rate": args.rate,
            "killed": f"kafka-{leader} (leader of tmall.user_actions/0)",
            "killed_after_s": round(killed_at - since_ms / 1000, 1),
            "max_gap_between_records_ms": gap["max_gap_ms"],
            "events": live_manifest["events"],
            "missing": expected - seen,
        }
        print(json.dumps(result["failover"]), flush=True)
        result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        subprocess.run(
            [sys.executable, "-m", "orderlake.cli", "cluster", "down", "--volumes"],
            env=bench.env,
            check=False,
            timeout=300,
        )
    return result


def markdown(result: dict) -> str:
    ingest, failover = result["ingest"], result["failover"]
    return "\n".join(
        [
            "# Cluster mode on one machine (bench/cluster.py)",
            "",
            f"Machine: {result['machine']['cpus']} cores, load average (1/5/15 min) "
            f"{result['machine']['load_average_at_start']} at start and "
            f"{result['machine'].get('load_average_at_end')} at the end (a shared machine: "
            "other processes ran too). Data path in network namespaces: 3 SASL_SSL KRaft "
            "brokers, collector, host-1 and host-2, Spark master, 2 workers, speed layer.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| `cluster up` until every program is healthy | {result['start_s']} s |",
            f"| {ingest['events']} events generated on 2 hosts -> all in Kafka | "
            f"{ingest['all_in_kafka_s']} s ({ingest['events_per_s_to_kafka']} events/s) |",
            f"| ... and all {ingest['purchases']} purchases counted by the speed layer | "
            f"{ingest['all_purchases_counted_s']} s |",
            f"| longest write pause around SIGKILL of {failover['killed']} at "
            f"{failover['rate']} lines/s | {failover['max_gap_between_records_ms']} ms |",
            f"| events missing after the failover | {failover['missing']} of "
            f"{failover['events']} |",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="per host, for the ingest")
    parser.add_argument("--rate", type=int, default=500, help="lines/s during the failover")
    parser.add_argument("--seconds", type=int, default=40, help="length of the failover write")
    result = run(parser.parse_args())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "cluster.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
