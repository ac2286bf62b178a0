"""Rows of the serving view gold.orders_by_age_gender -> the paper's two figures as plain data.

Fig. 5 is orders per customer age bracket, Fig. 6 orders per gender. Each figure holds, per
status (``final`` days from the batch layer, ``provisional`` days from the speed layer, and
``all``), the orders and the share of that status's orders for every label, labels in their
natural order. Pure functions over dicts: `orderlake report` draws them with matplotlib, the
dashboard serves them as JSON and draws them in the browser.

Example::

    rows = [{"event_date": date(2015, 11, 11), "age_bracket": "25-29", "gender": "female",
             "orders": 3, "status": "final"}]
    figures(rows)["age"]["orders"]["final"]  # [0, 0, 3, 0, 0, 0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from orderlake import contracts

STATUSES = ("final", "provisional")
ALL = "all"
DIMENSIONS = {
    "age": ("age_bracket", contracts.AGE_BRACKETS),
    "gender": ("gender", contracts.GENDERS),
}


def ordered_labels(natural: Iterable[str], found: Iterable[str]) -> list[str]:
    """The natural labels first (all of them, so an empty bracket still shows as 0), then any
    other label found in the data, sorted: a label the contract does not know is shown, never
    dropped."""
    natural = list(natural)
    return natural + sorted(set(found) - set(natural))


def figure(rows: Iterable[Mapping], column: str, natural: Iterable[str]) -> dict:
    """Orders and shares per label of ``column`` and per status (plus ``all``).

    Shares are of the status's own orders, so each status's shares sum to 1 when it has orders
    (and are all 0 when it has none).
    """
    rows = list(rows)
    labels = ordered_labels(natural, (r[column] for r in rows))
    statuses = [*STATUSES, *sorted({r["status"] for r in rows} - set(STATUSES))]
    orders = {s: dict.fromkeys(labels, 0) for s in [*statuses, ALL]}
    for r in rows:
        orders[r["status"]][r[column]] += int(r["orders"])
        orders[ALL][r[column]] += int(r["orders"])
    totals = {s: sum(per_label.values()) for s, per_label in orders.items()}
    return {
        "column": column,
        "labels": labels,
        "statuses": statuses,
        "orders": {s: [orders[s][label] for label in labels] for s in orders},
        "shares": {
            s: [orders[s][label] / totals[s] if totals[s] else 0.0 for label in labels]
            for s in orders
        },
        "totals": totals,
    }


def date_range(rows: Iterable[Mapping]) -> dict:
    """First and last event date of the rows, overall and per status, with day counts."""
    days: dict[str, set[date]] = {s: set() for s in [*STATUSES, ALL]}
    for r in rows:
        days.setdefault(r["status"], set()).add(r["event_date"])
        days[ALL].add(r["event_date"])
    return {s: _span(d) for s, d in days.items()}


def _span(days: set[date]) -> dict:
    if not days:
        return {"from": None, "to": None, "days": 0}
    return {"from": min(days).isoformat(), "to": max(days).isoformat(), "days": len(days)}


def figures(rows: Iterable[Mapping]) -> dict:
    """Both figures and the data's date range from rows of the serving view (event_date,
    age_bracket, gender, orders, status)."""
    rows = list(rows)
    out: dict = {"range": date_range(rows)}
    for name, (column, natural) in DIMENSIONS.items():
        out[name] = figure(rows, column, natural)
    return out


def range_title(span: Mapping) -> str:
    """'2015-11-01 to 2015-11-11 (final through 2015-11-10, provisional from 2015-11-11)'."""
    overall = span[ALL]
    if not overall["days"]:
        return "no data"
    text = (
        overall["from"]
        if overall["from"] == overall["to"]
        else f"{overall['from']} to {overall['to']}"
    )
    parts = []
    if span["final"]["days"]:
        parts.append(f"final through {span['final']['to']}")
    if span["provisional"]["days"]:
        parts.append(f"provisional from {span['provisional']['from']}")
    return f"{text} ({', '.join(parts)})" if parts else text
