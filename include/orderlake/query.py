"""SQL for analysts: run a statement over the lake's tables and format the answer.

Backs `orderlake sql "QUERY" [--format table|csv|json] [--write]` and `orderlake tables`. Any
Spark SQL that reads works, including Delta time travel (``SELECT ... FROM speed.purchases
VERSION AS OF 3``). A statement that writes (DELETE, MERGE, INSERT, UPDATE, RESTORE, CREATE,
DROP, ALTER, ...) runs only with ``--write``, under the lake's writer lock, and never on the
speed layer's tables while it runs (one writer per table); OPTIMIZE and VACUUM go through
`orderlake maintain` and its guard. A bad statement becomes one readable line (Spark's error
class and message), never a stack trace.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from orderlake import lake
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings

FORMATS = ("table", "csv", "json")
# statements whose first keyword says they only read, when the parser cannot say more
# (Spark-only syntax such as DESCRIBE DETAIL)
READ_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "FROM", "SHOW", "DESCRIBE",
                           "DESC", "EXPLAIN", "LIST"})  # fmt: skip
MAINTENANCE = frozenset({"OPTIMIZE", "VACUUM"})


@dataclass(frozen=True)
class Statement:
    """What one SQL statement does to the lake, as far as running it is concerned."""

    keyword: str  # its first word, upper case
    writes: bool
    touches_speed: bool  # names a speed.* table (or its directory)


def classify(statement: str, settings: Settings) -> Statement:
    """Whether ``statement`` writes and whether it names the speed layer's tables, from
    sqlglot's Spark-SQL parse (strings and comments are never mistaken for keywords). A
    statement the parser does not know writes unless its first keyword only reads; several
    statements at once are refused."""
    import logging

    import sqlglot
    from sqlglot import exp
    from sqlglot.dialects.spark import Spark
    from sqlglot.errors import ParseError, TokenError

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its fallback notes are not for users
    try:
        tokens = Spark().tokenize(statement)
    except TokenError as exc:
        raise UsageError(f"The statement cannot be read: {exc}.") from None
    if not tokens:
        raise UsageError("The statement is empty; pass one SQL statement in quotes.")
    keyword = tokens[0].text.upper()
    speed_dir = str(settings.lake_dir / "speed") + "/"
    touches_speed = any(
        (t.text.lower() == "speed" and i + 1 < len(tokens) and tokens[i + 1].text == ".")
        or speed_dir in t.text
        for i, t in enumerate(tokens)
    )
    try:
        parsed = [p for p in sqlglot.parse(statement, read="spark") if p is not None]
    except ParseError:
        return Statement(keyword, keyword not in READ_KEYWORDS, touches_speed)
    if len(parsed) != 1:
        raise UsageError(f"Pass one SQL statement at a time; this holds {len(parsed)}.")
    (tree,) = parsed
    if isinstance(tree, exp.Command):
        reads = str(tree.this).upper() in READ_KEYWORDS
    else:
        reads = isinstance(tree, exp.Query | exp.Describe) and not any(
            tree.find_all(exp.Insert, exp.Merge, exp.Delete, exp.Update, exp.Create, exp.Drop)
        )
    return Statement(keyword, not reads, touches_speed)


def check_allowed(statement: Statement, settings: Settings, write: bool) -> None:
    """Refuse, in one sentence, what `orderlake sql` must not run as asked."""
    from orderlake import locks

    if statement.keyword in MAINTENANCE:
        raise UsageError(
            f"{statement.keyword} runs through `orderlake maintain`, which keeps the VACUUM "
            "guard and the one-writer rule; it is not run from `orderlake sql`."
        )
    if statement.writes and not write:
        raise UsageError(
            f"This {statement.keyword} statement writes to the lake; `orderlake sql` only reads "
            "unless you add --write (it then waits for no batch job and takes the lake's "
            "writer lock)."
        )
    if statement.writes and statement.touches_speed and locks.is_held(settings, locks.SPEED):
        raise OrderlakeError(
            "The speed layer is running and is the only writer of speed.* tables; stop it "
            "(`orderlake down` or supervisorctl) before writing to them."
        )


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
