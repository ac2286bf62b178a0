"""Batch-layer benchmark: event counts -> bronze load rate, rebuild times, one-day update, peer.

Input: sizes (``--sizes 1000000,10000000`` generated user actions). Output:
``bench/results/batch.json`` and ``bench/results/batch.md`` (also printed).

For each size, on an isolated platform (own temp ORDERLAKE_HOME, free ports, `orderlake up
--only kafka`), with every job run through the real CLI as its own process:

1. the generator's lines are produced straight to Kafka (profiles first);
2. `orderlake batch bronze`: wall time (with Spark start) and records/s of the load itself;
3. `orderlake batch silver --full` then `orderlake batch gold --full`: the rebuild;
4. one new day: a copy of 2015-11-10's actions moved to 2015-11-12 with new event ids is
   produced, then `orderlake batch all` (incremental bronze + silver + gold, Spark start
   included) is timed;
5. peer: the daily age x gender order aggregation of gold, over the same silver files, by a
   warm Spark session (the gold transform, collected) and by DuckDB (the Delta table's current
   Parquet files, listed by delta-rs); best of 3 each, and their ratio.

The machine is shared: core count and load averages are recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from bench.common import (
    RESULTS_DIR,
    git,
    load_average,
    machine_info,
    produce_lines,
    spool_files,
    write_results,
)
from bench.stack import ORDERLAKE, Platform, running_platform
from orderlake import contracts, lake
from orderlake.workload.generator import generate_to_spool

NEW_DAY, SOURCE_DAY = "2015-11-12", "2015-11-10"


def timed_cli(platform: Platform, *args: str) -> tuple[float, list[dict]]:
    started = time.monotonic()
    done = subprocess.run(
        [*ORDERLAKE, *args], env=platform.env, capture_output=True, text=True, timeout=7200
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"orderlake {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return round(wall, 1), [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]


def new_day(line: bytes) -> bytes | None:
    """One of SOURCE_DAY's actions moved to NEW_DAY under a new event id; others dropped."""
    if f'"event_time":"{SOURCE_DAY}'.encode() not in line:
        return None
    return line.replace(SOURCE_DAY.encode(), NEW_DAY.encode()).replace(
        b'"event_id":"', b'"event_id":"day2-'
    )


PEER_SQL = """
    SELECT a.event_date,
           COALESCE(u.age_bracket, 'unknown') AS age_bracket,
           COALESCE(u.gender_label, 'unknown') AS gender,
           COUNT(*) AS orders
    FROM actions a LEFT JOIN users u USING (user_id)
    WHERE a.action_type = 2
    GROUP BY 1, 2, 3"""


def parquet_files(table: Path) -> list[str]:
    """The Parquet files of a Delta table's current version (delta-rs reads the log)."""
    return [uri.removeprefix("file://") for uri in DeltaTable(table).file_uris()]


def peer(platform: Platform) -> dict:
    """The gold aggregation over the same silver data: warm Spark vs DuckDB, best of 3."""
    from orderlake.spark import get_spark
    from orderlake.transforms import gold

    settings = platform.settings
    actions_path = lake.table_path(settings, "silver.user_actions")
    users_path = lake.table_path(settings, "silver.users")
    spark = get_spark(settings, "orderlake-bench-peer", conf={"spark.driver.memory": "2g"})
    actions = lake.read(spark, settings, "silver.user_actions")
    users = lake.read(spark, settings, "silver.users")
    spark_runs, duck_runs = [], []
    spark_rows = duck_rows = 0
    for _ in range(3):
        started = time.perf_counter()
        spark_rows = len(gold.daily_orders(actions, users, None).collect())
        spark_runs.append(time.perf_counter() - started)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    files = {
        "actions": parquet_files(actions_path),
        "users": parquet_files(users_path),
    }
    for _ in range(3):
        started = time.perf_counter()
        for name, paths in files.items():
            listed = ", ".join(f"'{p}'" for p in paths)
            con.execute(
                f"CREATE OR REPLACE VIEW {name} AS "
                f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true)"
            )
        duck_rows = len(con.execute(PEER_SQL).fetchall())
        duck_runs.append(time.perf_counter() - started)
    spark.stop()
    best_spark, best_duck = min(spark_runs), min(duck_runs)
    return {
        "spark_warm_s": round(best_spark, 3),
        "duckdb_s": round(best_duck, 3),
        "spark_over_duckdb": round(best_spark / best_duck, 1),
        "rows": {"spark": spark_rows, "duckdb": duck_rows},
    }


def bench_size(events: int) -> dict:
    with running_platform(only="kafka,spark") as platform:
        settings = platform.settings
        spool = Path(tempfile.mkdtemp(prefix="orderlake-bench-spool-"))
        started = time.monotonic()
        manifest, _ = generate_to_spool(
            spool, events=events, rate=0, hosts=["host-1", "host-2"], seed=5
        )
        generated_s = time.monotonic() - started
        started = time.monotonic()
        profiles = produce_lines(
            settings.bootstrap,
            contracts.TOPIC_PROFILES,
            spool_files(spool, contracts.PROFILES_FILE),
        )
        actions = produce_lines(
            settings.bootstrap, contracts.TOPIC_ACTIONS, spool_files(spool, contracts.ACTIONS_FILE)
        )
        produced_s = time.monotonic() - started
        result: dict = {
            "events": events,
            "records": profiles + actions,
            "purchases": manifest["action_types"]["2"],
            "generate_s": round(generated_s, 1),
            "produce_s": round(produced_s, 1),
        }
        wall, (bronze,) = timed_cli(platform, "batch", "bronze")
        result["bronze"] = {
            "wall_s": wall,
            "load_s": bronze["seconds"],
            "records_per_s": bronze["records_per_s"],
            "wall_records_per_s": round(bronze["records"] / wall),
        }
        silver_wall, (silver,) = timed_cli(platform, "batch", "silver", "--full")
        gold_wall, (gold,) = timed_cli(platform, "batch", "gold", "--full")
        result["rebuild"] = {
            "silver_wall_s": silver_wall,
            "gold_wall_s": gold_wall,
            "total_wall_s": round(silver_wall + gold_wall, 1),
            "silver_rows": silver["rows_out"],
            "gold_dates": len(gold["affected_dates"]),
        }
        day = produce_lines(
            settings.bootstrap,
            contracts.TOPIC_ACTIONS,
            spool_files(spool, contracts.ACTIONS_FILE),
            rewrite=new_day,
        )
        day_wall, summaries = timed_cli(platform, "batch", "all")
        result["one_new_day"] = {
            "records": day,
            "wall_s": day_wall,
            "gold_dates": summaries[-1]["affected_dates"],
        }
        result["peer"] = peer(platform)
        for path in spool.glob("**/*"):
            if path.is_file():
                path.unlink()
        return result


def render(doc: dict) -> str:
    lines = [
        f"Batch layer, Kafka -> bronze -> silver -> gold through the CLI; {doc['measured_at']}, "
        f"commit {doc['commit']}, {doc['machine']['cpu_count']} cores, "
        f"{doc['machine']['ram_total_gib']} GiB RAM, load average {doc['load_before']} before, "
        f"{doc['load_after']} after.",
        "",
        "| events | Kafka records | bronze wall s | bronze load records/s | silver+gold rebuild s "
        "| one new day (all layers, Spark start incl.) s | gold agg: warm Spark s | DuckDB s "
        "| Spark/DuckDB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["sizes"]:
        lines.append(
            f"| {r['events']:,} | {r['records']:,} | {r['bronze']['wall_s']} "
            f"| {r['bronze']['records_per_s']:,} | {r['rebuild']['total_wall_s']} "
            f"| {r['one_new_day']['wall_s']} | {r['peer']['spark_warm_s']} "
            f"| {r['peer']['duckdb_s']} | {r['peer']['spark_over_duckdb']} |"
        )
    lines += [
        "",
        "Bronze load records/s is the load itself (its summary's seconds: Kafka read + Delta "
        "commit), wall s includes the Spark start. Rebuild = `batch silver --full` + `batch "
        "gold --full`, each a fresh process. One new day: a copy of 2015-11-10's actions moved "
        "to 2015-11-12, then `batch all`. The peer runs gold's daily age x gender aggregation "
        "over the same silver Parquet files: Spark warm (best of 3, session already started) "
        "vs DuckDB (best of 3, 2 threads).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    args = parser.parse_args()
    doc: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": machine_info(),
        "load_before": load_average(),
        "sizes": [],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"batch benchmark: {size:,} events ...", flush=True)
        doc["sizes"].append(bench_size(size))
        print(json.dumps(doc["sizes"][-1]), flush=True)
    doc["load_after"] = load_average()
    text = render(doc)
    write_results(RESULTS_DIR, "batch", doc, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
