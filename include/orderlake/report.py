"""gold.orders_by_age_gender -> the paper's Fig. 5 and Fig. 6 as PNG files under
ORDERLAKE_HOME/reports/.

Backs `orderlake report [--from YYYY-MM-DD --to YYYY-MM-DD]`. Reads the serving view without a
JVM (orderlake.serving), so the numbers are those `orderlake sql` and the dashboard show. Bars
stack the batch-final and the speed-provisional orders; each bar is annotated with its share of
all orders in the range, and each figure is titled with the data's date range.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orderlake import figures, serving
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings

COLOURS = {"final": "#2b6cb0", "provisional": "#90cdf4"}
TITLES = {
    "age": "Orders by customer age bracket (Fig. 5)",
    "gender": "Orders by gender: shares (Fig. 6)",
}
DPI = 110


def parse_date(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date; use YYYY-MM-DD.") from None


def write_report(
    settings: Settings, date_from: date | None = None, date_to: date | None = None
) -> list[Path]:
    """Write both figures as PNG files; returns their paths.

    Raises OrderlakeError (one sentence) when there is no gold table or no order in the range.
    """
    if date_from and date_to and date_from > date_to:
        raise UsageError(f"--from {date_from} is after --to {date_to}.")
    with serving.LakeReader(settings) as reader:
        try:
            rows = serving.serving_rows(reader, date_from, date_to)
        except serving.NoData as exc:
            raise OrderlakeError(str(exc)) from None
    if not rows:
        raise OrderlakeError(f"{serving.SERVING_VIEW} has no orders {_asked(date_from, date_to)}.")
    data = figures.figures(rows)
    span = data["range"][figures.ALL]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{span['from']}_{span['to']}"
    paths = []
    for name, label in (("age", "age_bracket"), ("gender", "gender")):
        path = settings.reports_dir / f"orders_by_{label}_{stem}.png"
        render(data[name], data["range"], name, path)
        paths.append(path)
    return paths


def _asked(date_from: date | None, date_to: date | None) -> str:
    if date_from and date_to:
        return f"between {date_from} and {date_to}"
    if date_from:
        return f"from {date_from}"
    return f"up to {date_to}" if date_to else "yet; run `orderlake batch all` first"


def render(fig_data: dict, span: dict, name: str, path: Path) -> None:
    """Draw one figure: bars per label stacked by status, annotated with the share of all.

    Age: bar height = orders. Gender: bar height = share of all orders (in %).
    """
    labels = fig_data["labels"]
    total = fig_data["totals"][figures.ALL]
    as_share = name == "gender"
    fig = Figure(figsize=(9, 5.5) if not as_share else (8, 5.5), dpi=DPI)
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot global state
    ax = fig.add_subplot()
    bottom = [0.0] * len(labels)
    for status in figures.STATUSES:
        orders = fig_data["orders"][status]
        if not any(orders):
            continue
        heights = [100 * o / total if as_share else o for o in orders]
        ax.bar(labels, heights, bottom=bottom, color=COLOURS[status], label=status)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, (top, share, orders) in enumerate(
        zip(bottom, fig_data["shares"][figures.ALL], fig_data["orders"][figures.ALL], strict=True)
    ):
        ax.annotate(
            f"{100 * share:.1f}%\n({orders:,})",
            (x, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("share of orders (%)" if as_share else "orders")
    ax.set_xlabel("age bracket" if name == "age" else "gender")
    ax.set_ylim(0, max(bottom) * 1.18 or 1)
    ax.legend(title="status", fontsize=8, title_fontsize=8)
    ax.set_title(f"{TITLES[name]}\n{figures.range_title(span)}\n{total:,} orders", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
