"""Every fault the platform claims to survive, injected once on a live stream (malformed lines,
the component kills in turn and rotations on one stream), with exact accounting against the
spool (tests/faults/battery.py; `make soak` repeats each kind apart)."""

from __future__ import annotations

import pytest

from tests.faults.battery import TEST_CASES

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("case", list(TEST_CASES))
def test_nothing_is_lost_or_counted_twice(battery, case):
    outcome = TEST_CASES[case](battery, 1)
    assert outcome.faults_injected >= 1, outcome
    assert outcome.purchases_expected > 0, outcome
    assert (outcome.speed_lost, outcome.speed_doubled) == (0, 0), outcome
    assert (outcome.gold_lost, outcome.gold_doubled) == (0, 0), outcome
    assert outcome.quarantine_exact, outcome
    assert outcome.exact
