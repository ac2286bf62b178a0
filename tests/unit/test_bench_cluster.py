"""The cluster benchmark's readings of speed.purchases (bench/cluster.py): which purchases a
step wrote, how fresh they were counted, and when counts are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import write_deltalake

from bench.cluster import counted, freshness, wait_exact

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def purchases(path, rows: list[tuple[str, float]]) -> None:
    """speed.purchases rows (event id, seconds from write to counted), appended."""
    write_deltalake(
        str(path),
        pa.table(
            {
                "event_id": [event_id for event_id, _ in rows],
                "event_time": pa.array([T0] * len(rows), pa.timestamp("us", "UTC")),
                "counted_at": pa.array(
                    [T0 + timedelta(seconds=s) for _, s in rows], pa.timestamp("us", "UTC")
                ),
            }
        ),
        mode="append",
    )


def manifest(**hosts: tuple[int, int] | None) -> dict:
    return {
        "hosts": {
            host: {"first_seq": span[0] if span else None, "last_seq": span[1] if span else None}
            for host, span in hosts.items()
        }
    }


def test_freshness_reads_only_the_purchases_of_the_steps_manifests(tmp_path):
    purchases(
        tmp_path,
        [
            ("host-1:actions.log:5", 1.0),
            ("host-1:actions.log:6", 3.0),
            ("host-2:actions.log:1", 2.0),
            ("host-1:actions.log:4", 100.0),  # an earlier step's
            ("host-2:actions.log:9", 100.0),  # a later step's
        ],
    )
    got = freshness(tmp_path, [manifest(**{"host-1": (5, 6)}), manifest(**{"host-2": (1, 2)})])
    assert got["purchases_measured"] == 3
    assert (got["p50_s"], got["max_s"]) == (2.0, 3.0)
    assert freshness(tmp_path, [manifest(**{"host-1": None})])["purchases_measured"] == 0


def test_counts_are_exact_only_with_every_purchase_once(tmp_path):
    table = tmp_path / "purchases"
    assert counted(table) == (0, 0)  # before the speed layer's first commit
    purchases(table, [("host-1:actions.log:1", 1.0), ("host-1:actions.log:2", 1.0)])
    assert wait_exact(table, 2, timeout=5) is not None
    assert wait_exact(table, 3, timeout=1) is None  # one missing
    purchases(table, [("host-1:actions.log:2", 1.0), ("host-1:actions.log:3", 1.0)])
    assert counted(table) == (4, 3)
    assert wait_exact(table, 3, timeout=5) is None  # one counted twice is never exact
