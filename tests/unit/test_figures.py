"""orderlake.figures on literal serving-view rows: label order, shares per status, date range."""

from __future__ import annotations

from datetime import date

import pytest

from orderlake import contracts, figures
from orderlake.serving import referenced_columns

D10, D11, D12 = date(2015, 11, 10), date(2015, 11, 11), date(2015, 11, 12)


def row(day, bracket, gender, orders, status):
    return {
        "event_date": day,
        "age_bracket": bracket,
        "gender": gender,
        "orders": orders,
        "status": status,
    }


ROWS = [
    row(D10, "25-29", "female", 6, "final"),
    row(D10, "unknown", "unknown", 2, "final"),
    row(D11, ">=50", "male", 2, "final"),
    row(D12, "25-29", "male", 3, "provisional"),
    row(D12, "<18", "female", 1, "provisional"),
]


def test_age_brackets_come_in_natural_order_with_empty_brackets_as_zero():
    fig = figures.figures(list(reversed(ROWS)))["age"]
    assert fig["labels"] == ["<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"]
    assert fig["labels"] == list(contracts.AGE_BRACKETS)
    assert fig["orders"]["final"] == [0, 0, 6, 0, 0, 0, 2, 2]
    assert fig["orders"]["provisional"] == [1, 0, 3, 0, 0, 0, 0, 0]
    assert fig["orders"]["all"] == [1, 0, 9, 0, 0, 0, 2, 2]
    assert fig["totals"] == {"final": 10, "provisional": 4, "all": 14}


def test_genders_come_in_natural_order():
    fig = figures.figures(ROWS)["gender"]
    assert fig["labels"] == ["female", "male", "unknown"]
    assert fig["orders"]["all"] == [7, 5, 2]


@pytest.mark.parametrize("name", ["age", "gender"])
def test_shares_sum_to_one_per_status(name):
    fig = figures.figures(ROWS)[name]
    for status in ("final", "provisional", "all"):
        assert sum(fig["shares"][status]) == pytest.approx(1.0)
    assert fig["shares"]["all"][fig["labels"].index("unknown")] == pytest.approx(2 / 14)


def test_a_status_without_orders_has_zero_shares_not_a_division_error():
    fig = figures.figures([r for r in ROWS if r["status"] == "final"])["gender"]
    assert fig["shares"]["provisional"] == [0.0, 0.0, 0.0]
    assert fig["totals"]["provisional"] == 0


def test_a_label_outside_the_contract_is_shown_after_the_known_ones_never_dropped():
    fig = figures.figures([*ROWS, row(D12, "60-69", "other", 1, "provisional")])["age"]
    assert fig["labels"][-1] == "60-69"
    assert fig["totals"]["all"] == 15


def test_date_range_overall_and_per_status():
    span = figures.figures(ROWS)["range"]
    assert span["all"] == {"from": "2015-11-10", "to": "2015-11-12", "days": 3}
    assert span["final"] == {"from": "2015-11-10", "to": "2015-11-11", "days": 2}
    assert span["provisional"] == {"from": "2015-11-12", "to": "2015-11-12", "days": 1}
    assert figures.range_title(span) == (
        "2015-11-10 to 2015-11-12 (final through 2015-11-11, provisional from 2015-11-12)"
    )


def test_no_rows_give_an_empty_range_and_zero_figures():
    data = figures.figures([])
    assert data["range"]["all"] == {"from": None, "to": None, "days": 0}
    assert figures.range_title(data["range"]) == "no data"
    assert data["age"]["orders"]["all"] == [0] * len(contracts.AGE_BRACKETS)


def test_only_the_columns_a_view_mentions_are_loaded():
    columns = ["event_id", "window_start", "event_date", "age_bracket", "gender", "counted_at"]
    sql = "SELECT window_start, event_date, age_bracket, gender, COUNT(*), MAX(counted_at) FROM t"
    assert referenced_columns(columns, [sql]) == columns[1:]
    assert referenced_columns(columns, ["SELECT * FROM t"]) == columns
