"""SQL for analysts: run a statement over the lake's tables and format the answer.

Backs `orderlake sql "QUERY" [--format table|csv|json]` and `orderlake tables`. Any Spark SQL
works, including Delta time travel (``SELECT ... FROM speed.purchases VERSION AS OF 3``). A bad
statement becomes one readable line (Spark's error class and message), never a stack trace.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from orderlake import lake
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

FORMATS = ("table", "csv", "json")


def run_sql(spark: SparkSession, statement: str, limit: int | None = None) -> tuple[list, list]:
    """(column names, rows as tuples) of one statement; at most ``limit`` rows."""
    try:
        df = spark.sql(statement)
        rows = df.limit(limit).collect() if limit else df.collect()
    except PySparkException as exc:
        raise OrderlakeError(one_line(exc)) from None
    return df.columns, [tuple(r) for r in rows]


def one_line(exc: Exception) -> str:
    """Spark's error as one line: '[ERROR_CLASS] message' without the plan and stack."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first.split(" SQLSTATE:")[0].rstrip(". ") + "."


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return value


def render(columns: list[str], rows: list[tuple], fmt: str = "table") -> str:
    if fmt == "json":
        return "\n".join(
            json.dumps({c: _plain(v) for c, v in zip(columns, row, strict=True)}) for row in rows
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
        return out.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [
        ["NULL" if v is None else str(_plain(v)) for v in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def list_tables(spark: SparkSession, settings: Settings) -> tuple[list, list]:
    """Every table and view: name, kind, rows, Delta version, location."""
    rows: list[tuple] = []
    for name in lake.discovered_tables(settings):
        history = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
        count = spark.table(name).count()
        rows.append(
            (
                name,
                "table",
                count,
                history["version"] if history else None,
                str(lake.table_path(settings, name)),
            )
        )
    for view in sorted(lake.VIEWS):
        if spark.catalog.tableExists(view):
            rows.append((view, "view", spark.table(view).count(), None, None))
    return ["table", "kind", "rows", "version", "location"], rows
