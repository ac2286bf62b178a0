"""The lake read without a JVM: Delta tables (delta-rs) -> DuckDB -> the serving view's rows.

A Spark session costs seconds and a GB; the dashboard asks every few seconds. ``LakeReader``
reads each Delta table with the ``deltalake`` package (delta-rs: it follows the Delta log,
checkpoints, removed files and deletion vectors) as Arrow, loads it into an in-memory DuckDB
database under the same ``database.table`` name, and creates the views of
``orderlake.lake.VIEWS`` from the very SQL text every Spark session registers. So the dashboard,
`orderlake report` and `orderlake sql` run the same statements and cannot disagree.

A table is re-read only when its Delta version changed. Only the columns its views mention are
loaded (speed.purchases keeps 5 of its 13 columns), which keeps the process small.

Example::

    with LakeReader(Settings.from_env()) as reader:
        rows = serving_rows(reader)          # rows of gold.orders_by_age_gender
        figures.figures(rows)["age"]["shares"]["all"]
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import duckdb
from deltalake import DeltaTable

from orderlake import lake
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

SERVING_VIEW = "gold.orders_by_age_gender"
GOLD_DAILY = "gold.orders_by_age_gender_daily"
RECONCILIATION = "ops.reconciliation"
DQ_RESULTS = "ops.dq_results"
MAX_CACHED_ANSWERS = 64  # distinct statements (date ranges) remembered; then start afresh


class NoData(OrderlakeError):
    """A table the answer needs is not in the lake yet (or could not be read right now)."""


def view_tables() -> list[str]:
    """Every base table some view of lake.VIEWS reads."""
    names: list[str] = []
    for alternatives in lake.VIEWS.values():
        for needs, _ in alternatives:
            names += [n for n in needs if n not in lake.VIEWS and n not in names]
    return names


def referenced_columns(columns: Sequence[str], statements: Iterable[str]) -> list[str]:
    """The columns whose name appears as a word in one of the SQL statements (all of them when a
    statement selects ``*`` other than COUNT(*), which could need any column)."""
    text = "\n".join(statements)
    if re.search(r"(?<!\()\*", text):
        return list(columns)
    return [c for c in columns if re.search(rf"\b{re.escape(c)}\b", text)]


def _sql_reading(name: str) -> list[str]:
    return [sql for alts in lake.VIEWS.values() for needs, sql in alts if name in needs]


class LakeReader:
    """An in-memory DuckDB copy of some of the lake's tables, refreshed by Delta version.

    Thread-safe: one lock serialises refreshes and queries (DuckDB connections are not meant to
    be shared between threads, and the answers here take milliseconds).
    """

    def __init__(self, settings: Settings, threads: int = 1):
        self.settings = settings
        self.con = duckdb.connect(":memory:")
        # the lake's time stamps are UTC (Spark sessions run with spark.sql.session.timeZone=UTC)
        self.con.execute("SET TimeZone = 'UTC'")
        # a shared 2-core machine: the answers are small, the Spark jobs need the cores
        self.con.execute(f"SET threads = {threads}")
        self._tables: dict[str, DeltaTable] = {}
        self._loaded: dict[str, int] = {}  # name -> Delta version in DuckDB
        self.stale: dict[str, str] = {}  # name -> why the last refresh kept the older copy
        self._answers: dict[tuple, tuple] = {}  # (statement, params) -> (versions, answer)
        self._lock = threading.RLock()

    def __enter__(self) -> LakeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # --- loading ----------------------------------------------------------------------------
    def refresh(self, names: Iterable[str]) -> dict[str, int]:
        """Bring these tables up to their latest Delta version (absent ones are dropped), then
        re-create the views whose tables are loaded. Returns {table: version} of what is loaded.
        """
        with self._lock:
            for name in names:
                if lake.exists(self.settings, name):
                    self._load(name)
                else:
                    self._drop(name)
            self._register_views()
            return dict(self._loaded)

    def _load(self, name: str) -> None:
        try:
            table = self._open(name)
            if self._loaded.get(name) != table.version():
                self._copy(name, table)
            self.stale.pop(name, None)
        except Exception as exc:  # noqa: BLE001 - delta-rs and DuckDB raise many types
            self._tables.pop(name, None)  # open it afresh next time (it may have been re-created)
            reason = f"{name} could not be read ({_first_line(exc)})"
            if name not in self._loaded:
                raise NoData(reason + ".") from exc
            # a read racing a writer or a clean-up: keep answering from the copy already loaded
            self.stale[name] = reason

    def _open(self, name: str) -> DeltaTable:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = DeltaTable(lake.table_path(self.settings, name))
        else:
            table.update_incremental()
        return table

    def _copy(self, name: str, table: DeltaTable) -> None:
        """Copy the table's current version into DuckDB (only the columns its views use)."""
        version = table.version()
        columns = [f.name for f in table.schema().fields]
        statements = _sql_reading(name)
        wanted = referenced_columns(columns, statements) if statements else columns
        database, short = name.split(".")
        self.con.register("_incoming", table.scan(columns=wanted))
        try:
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            self.con.execute(
                f'CREATE OR REPLACE TABLE "{database}"."{short}" AS '
                f"SELECT {_spark_typed(self.con, '_incoming')} FROM _incoming"
            )
        finally:
            self.con.unregister("_incoming")
        self._loaded[name] = version

    def _drop(self, name: str) -> None:
        database, short = name.split(".")
        self.con.execute(f'DROP TABLE IF EXISTS "{database}"."{short}"')
        self._loaded.pop(name, None)
        self._tables.pop(name, None)
        self.stale.pop(name, None)

    def _register_views(self) -> None:
        # the same choice as lake.register_views: the first alternative whose tables are there
        for view, alternatives in lake.VIEWS.items():
            chosen = next(
                (sql for needs, sql in alternatives if set(needs) <= set(self._loaded)), None
            )
            database = view.split(".")[0]
            if chosen is None:
                self.con.execute(f"DROP VIEW IF EXISTS {view}")
                continue
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            try:
                self.con.execute(f"CREATE OR REPLACE VIEW {view} AS {chosen}")
            except duckdb.Error as exc:
                # lake.VIEWS is Spark SQL: a construct DuckDB lacks must be said, not hidden
                raise NoData(f"{view} cannot run in DuckDB ({_first_line(exc)}).") from exc

    # --- querying ---------------------------------------------------------------------------
    def query(
        self, statement: str, params: Sequence[Any] = (), tables: Iterable[str] = ()
    ) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of a DuckDB statement after refreshing ``tables``.

        The answer is reused while no loaded table changed version: the page polls every few
        seconds, and the serving view over a million purchases takes most of a second.
        """
        with self._lock:
            tables = list(tables)
            loaded = self.refresh(tables)
            versions = tuple((name, loaded.get(name)) for name in tables)
            key = (statement, tuple(params))
            cached = self._answers.get(key)
            if cached and cached[0] == versions:
                return cached[1]
            try:
                cursor = self.con.execute(statement, list(params))
            except duckdb.CatalogException as exc:
                raise NoData(f"Not in the lake yet: {_first_line(exc)}.") from exc
            answer = [d[0] for d in cursor.description or []], cursor.fetchall()
            if len(self._answers) >= MAX_CACHED_ANSWERS:
                self._answers.clear()
            self._answers[key] = (versions, answer)
            return answer

    def records(
        self, statement: str, params: Sequence[Any] = (), tables: Iterable[str] = ()
    ) -> list[dict]:
        columns, rows = self.query(statement, params, tables)
        return [dict(zip(columns, row, strict=True)) for row in rows]


def _spark_typed(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """Select list that turns Arrow's UTC-zoned time stamps into plain TIMESTAMPs (UTC wall
    clock): Spark's TIMESTAMP in a UTC session, so values and their text match `orderlake sql`."""
    described = con.execute(f"DESCRIBE {relation}").fetchall()
    zoned = [
        f'CAST("{c}" AS TIMESTAMP) AS "{c}"' for c, kind, *_ in described if "TIME ZONE" in kind
    ]
    return f"* REPLACE ({', '.join(zoned)})" if zoned else "*"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__).rstrip(". ")


# --- answers --------------------------------------------------------------------------------
def serving_rows(
    reader: LakeReader, date_from: date | None = None, date_to: date | None = None
) -> list[dict]:
    """Rows of gold.orders_by_age_gender (event_date, age_bracket, gender, orders, status),
    optionally between two event dates (inclusive). Raises NoData without a gold table."""
    if not lake.exists(reader.settings, GOLD_DAILY):
        raise NoData(
            f"There is no gold table yet ({GOLD_DAILY} under {reader.settings.lake_dir}); "
            "run `orderlake batch all` first."
        )
    where, params = _date_filter(date_from, date_to)
    return reader.records(
        f"SELECT event_date, age_bracket, gender, orders, status FROM {SERVING_VIEW}{where}",
        params,
        tables=view_tables(),
    )


def _date_filter(date_from: date | None, date_to: date | None) -> tuple[str, list[date]]:
    clauses, params = [], []
    if date_from is not None:
        clauses.append("event_date >= ?")
        params.append(date_from)
    if date_to is not None:
        clauses.append("event_date <= ?")
        params.append(date_to)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def latest_reconciliation(reader: LakeReader) -> dict:
    """The latest run of ops.reconciliation summarised per check: status, scopes per status and
    the summed counts. Raises NoData while the table is absent or empty."""
    rows = _latest_run(reader, RECONCILIATION, "checked_at")
    checks: dict[str, dict] = {}
    for r in rows:
        c = checks.setdefault(
            r["check"],
            {"check": r["check"], "scopes": 0, "ok": 0, "explained": 0, "failed": 0}
            | dict.fromkeys(("expected", "actual", "difference", "explained_rows"), 0),
        )
        c["scopes"] += 1
        status = r["status"] if r["status"] in ("ok", "explained") else "failed"
        c[status] += 1
        for key in ("expected", "actual", "difference"):
            c[key] += int(r[key] or 0)
        c["explained_rows"] += int(r["explained"] or 0)
    for c in checks.values():
        c["status"] = "failed" if c["failed"] else "explained" if c["explained"] else "ok"
    return {
        "run_id": rows[0]["run_id"],
        "checked_at": _iso(rows[0]["checked_at"]),
        "status": "failed" if any(c["failed"] for c in checks.values()) else "ok",
        "checks": sorted(checks.values(), key=lambda c: c["check"]),
    }


def latest_validation(reader: LakeReader) -> dict:
    """The latest run of ops.dq_results summarised per suite: expectations, failures, its Data
    Docs page. Raises NoData while the table is absent or empty."""
    rows = _latest_run(reader, DQ_RESULTS, "validated_at")
    suites: dict[tuple, dict] = {}
    for r in rows:
        s = suites.setdefault(
            (r["suite"], r["table_name"]),
            {
                "suite": r["suite"],
                "table_name": r["table_name"],
                "table_version": r["table_version"],
                "expectations": 0,
                "failed": 0,
                "failed_expectations": [],
                "data_docs": r["data_docs"],
            },
        )
        s["expectations"] += 1
        if not r["success"]:
            s["failed"] += 1
            s["failed_expectations"].append(
                r["expectation"] + (f"({r['column']})" if r["column"] else "")
            )
        s["data_docs"] = s["data_docs"] or r["data_docs"]
    for s in suites.values():
        s["success"] = s["failed"] == 0
    return {
        "run_id": rows[0]["run_id"],
        "validated_at": _iso(rows[0]["validated_at"]),
        "success": all(s["success"] for s in suites.values()),
        "suites": sorted(suites.values(), key=lambda s: (s["suite"], s["table_name"])),
    }


def _latest_run(reader: LakeReader, table: str, time_column: str) -> list[dict]:
    if not lake.exists(reader.settings, table):
        raise NoData(f"{table} is not in the lake yet.")
    rows = reader.records(
        f"""SELECT * FROM {table}
            WHERE run_id = (SELECT run_id FROM {table} ORDER BY {time_column} DESC LIMIT 1)""",
        tables=[table],
    )
    if not rows:
        raise NoData(f"{table} has no run yet.")
    return rows


def _iso(value: object) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None  # type: ignore[union-attr]
