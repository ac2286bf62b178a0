"""Maintenance's pure parts: the versions recent reconciliations pinned."""

from __future__ import annotations

from orderlake.jobs.maintenance import oldest_pins


def test_the_oldest_version_each_reconciliation_compared_is_the_pin():
    docs = ['{"gold.x": 7, "silver.y": 3}', None, '{"gold.x": 5, "silver.y": null}', "{}"]
    assert oldest_pins(docs) == {"gold.x": 5, "silver.y": 3}
    assert oldest_pins([]) == {}
