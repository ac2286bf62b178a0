"""Data quality: the lake's Delta tables -> Great Expectations suites -> ops.dq_results + Data Docs.

    orderlake validate [--suite NAME ...]      (or batch/validate.py, or the validate_quality DAG)

Each suite in expectations/ (suites are code) validates the current version of its tables, read
with lake.read. GX keeps its file context in ORDERLAKE_HOME/gx (suites, validation results: the
history the Data Docs list) and writes the Data Docs site to ORDERLAKE_HOME/reports/data_docs/.
Every expectation result becomes one row of ops.dq_results with the Delta version it checked;
a suite whose table does not exist fails with one `table_exists` row. After the rows are
written, any failed suite raises CheckFailed (an OrderlakeError, exit code 3: orchestration
fails the task at once, since re-running cannot change the data): it never only logs.

Example::

    summaries = list(validate(spark, Settings.from_env(), suites=["silver_users"]))
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final

# GX's import logs an INFO line per function it registers (hundreds, in every Airflow task log)
logging.getLogger("great_expectations").setLevel(logging.ERROR)

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
from pyspark.sql import DataFrame, SparkSession

from orderlake import lake, locks, schemas
from orderlake.errors import CheckFailed, OrderlakeError, UsageError
from orderlake.settings import PROJECT_ROOT, Settings

NAME = "validate"
SITE = "orderlake"
DATA_SOURCE = "lake"
# counts and up to 20 unexpected values: enough to see what is wrong; SUMMARY's per-value counts
# cost one more Spark job per expectation
RESULT_FORMAT: Final = "BASIC"
# the Data Docs index opens every result it lists: keep it to the latest runs (ops.dq_results
# keeps the whole history)
DOCS_INDEX_LIMIT = 250


# --- suites -------------------------------------------------------------------------------------
def suite_names() -> tuple[str, ...]:
    return _expectations().SUITES


def suite_module(name: str) -> ModuleType:
    """The module of one suite in expectations/ (NAME, TABLES, build, select)."""
    return importlib.import_module(f"{_expectations().__name__}.{name}")


def _expectations() -> ModuleType:
    # expectations/ is a top-level folder of the project, beside include/ (which the installed
    # package puts on sys.path); the CLI and Airflow tasks may start in any directory, even one
    # with its own expectations/ folder (ORDERLAKE_HOME/gx has one): the project's comes first
    if sys.path[:1] != [str(PROJECT_ROOT)]:
        sys.path.insert(0, str(PROJECT_ROOT))
    return importlib.import_module("expectations")


def check_suites(names: Iterable[str] | None) -> list[str]:
    """The suites to run, in their declared order (all by default); unknown names fail early."""
    known = suite_names()
    if not names:
        return list(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UsageError(f"Unknown suite {', '.join(unknown)}; choose from {', '.join(known)}.")
    return [name for name in known if name in set(names)]


def data_docs_dir(settings: Settings) -> Path:
    return settings.reports_dir / "data_docs"


# --- Great Expectations -------------------------------------------------------------------------
def _quiet(context: Any) -> Any:
    """No progress bars, no INFO chatter: the terminal belongs to the command's answer."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def gx_context(settings: Settings) -> Any:
    """The file context in ORDERLAKE_HOME/gx, with one Data Docs site in reports/data_docs."""
    context = _quiet(gx.get_context(mode="file", project_root_dir=settings.home))
    wanted = {
        "class_name": "SiteBuilder",
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": DOCS_INDEX_LIMIT,
        },
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(data_docs_dir(settings)),
        },
    }
    # replace GX's default site (inside gx/uncommitted) and any site of a moved ORDERLAKE_HOME
    for site in context.get_site_names():
        context.delete_data_docs_site(site)
    context.add_data_docs_site(SITE, wanted)
    context.variables.save()
    return context


def validate_frame(df: DataFrame, suite: gx.ExpectationSuite) -> ExpectationSuiteValidationResult:
    """Validate one DataFrame with an in-memory context: nothing stored (tests, notebooks).

    >>> failed_expectations(validate_frame(df, silver_users.build(settings)))
    ['expect_column_values_to_be_unique(user_id)']
    """
    context = _quiet(gx.get_context(mode="ephemeral"))
    asset = context.data_sources.add_spark(name=DATA_SOURCE).add_dataframe_asset(name=suite.name)
    batch = asset.add_batch_definition_whole_dataframe(suite.name).get_batch(
        batch_parameters={"dataframe": df}
    )
    try:
        return batch.validate(suite, result_format=RESULT_FORMAT)
    finally:
        df.unpersist()  # GX caches the batch; free it once every metric is computed


def _columns(config: Any) -> str | None:
    """The column, or the columns joined by commas, an expectation looks at."""
    return config.kwargs.get("column") or ",".join(config.kwargs.get("column_list") or []) or None


def label(config: Any) -> str:
    """'expect_column_values_to_be_unique(event_id)': the type and what it looked at."""
    target = _columns(config) or config.description
    return f"{config.type}({target})" if target else config.type


def failed_expectations(result: ExpectationSuiteValidationResult) -> list[str]:
    return [label(r.expectation_config) for r in result.results if not r.success]


def _checkpoint(context: Any, source: Any, suite: gx.ExpectationSuite) -> Any:
    """suite + a DataFrame asset -> a stored Checkpoint (its results name their Data Docs page;
    the pages are built once for the whole run)."""
    batch = source.add_dataframe_asset(name=suite.name).add_batch_definition_whole_dataframe(
        suite.name
    )
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=[definition],
            result_format=RESULT_FORMAT,
        )
    )


# --- one suite ----------------------------------------------------------------------------------
def _version(settings: Settings, name: str) -> int:
    version = lake.latest_version(settings, name)
    if version is None:  # validated tables exist, so they have at least their creating commit
        raise OrderlakeError(f"{name} has no Delta commit to validate; run its batch job first.")
    return version


def _run_suite(
    spark: SparkSession,
    settings: Settings,
    context: Any,
    source: Any,
    module: ModuleType,
    run: RunIdentifier,
) -> tuple[dict, list[dict], Any]:
    """Validate one suite against the lake: (summary, ops.dq_results rows, GX result id)."""
    started = time.time()
    missing = [name for name in module.TABLES if not lake.exists(settings, name)]
    if missing:
        reason = (
            f"table {missing[0]} does not exist in {settings.lake_dir} "
            "(run `orderlake batch all` first)"
        )
        row = {"suite": module.NAME, "table_name": module.TABLES[0], "expectation": "table_exists"}
        row |= {"success": False, "observed": json.dumps({"error": reason})}
        return _summary(module.NAME, {}, [row], [reason], started, None), [row], None

    # the version before the read: a commit in between makes the data newer than the version
    # recorded, never older (batch writers rarely run during a validation)
    versions = {name: _version(settings, name) for name in module.TABLES}
    df = module.select({name: lake.read(spark, settings, name) for name in module.TABLES})
    checkpoint = _checkpoint(context, source, module.build(settings))
    try:
        outcome = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run)
    finally:
        df.unpersist()  # GX caches the batch; free it once every metric is computed
    (identifier, result), *_ = outcome.run_results.items()
    page = _page(context, identifier)
    rows = [_row(module, versions, item, page) for item in result.results]
    failed = failed_expectations(result)
    return _summary(module.NAME, versions, rows, failed, started, page), rows, identifier


def _row(module: ModuleType, versions: dict[str, int], item: Any, page: str | None) -> dict:
    """One expectation result -> one ops.dq_results row (without run_id and validated_at)."""
    config = item.expectation_config
    result = dict(item.result or {})
    observed = {**result, "table_versions": versions}
    if config.description:
        observed["description"] = config.description
    if (item.exception_info or {}).get("raised_exception"):
        observed["exception"] = item.exception_info.get("exception_message")
    unexpected = result.get("unexpected_count")
    if unexpected is None and config.type == "unexpected_rows_expectation":
        unexpected = result.get("observed_value")  # the number of rows the query returned
    table = module.TABLES[0]
    return {
        "suite": module.NAME,
        "table_name": table,
        "table_version": versions[table],
        "expectation": config.type,
        "column": _columns(config),
        "success": bool(item.success),
        "element_count": result.get("element_count"),
        "unexpected_count": unexpected,
        "observed": json.dumps(observed, default=str),
        "data_docs": page,
    }


def _page(context: Any, identifier: Any) -> str | None:
    """Where the Data Docs page of this result will be (built at the end of the run)."""
    urls = context.get_docs_sites_urls(
        resource_identifier=identifier, site_name=SITE, only_if_exists=False
    )
    url = urls[0].get("site_url") if urls else None
    return url.removeprefix("file://") if url else None


def _summary(
    suite: str,
    versions: dict[str, int],
    rows: list[dict],
    failed: list[str],
    started: float,
    page: str | None,
) -> dict:
    return {
        "suite": suite,
        "success": not failed,
        "expectations": len(rows),
        "failed": failed,
        "table_versions": versions,
        "seconds": round(time.time() - started, 2),
        "data_docs": page,
    }


# --- the run ------------------------------------------------------------------------------------
def validate(
    spark: SparkSession, settings: Settings, suites: Iterable[str] | None = None
) -> Iterator[dict]:
    """Run the suites (default: all) against the current tables; yields each suite's summary
    as it finishes.

    Writes one ops.dq_results row per expectation result and builds the Data Docs once every
    suite ran, then raises CheckFailed naming the failed suites and expectations if any failed.
    """
    names = check_suites(suites)
    run_id = str(uuid.uuid4())
    validated_at = datetime.now(UTC)
    summaries: list[dict] = []
    rows: list[dict] = []
    # one validation at a time: the GX context in ORDERLAKE_HOME/gx is a set of plain files
    with locks.exclusive(settings, "validate"):
        context = gx_context(settings)
        source = context.data_sources.add_or_update_spark(name=DATA_SOURCE)
        run = RunIdentifier(run_name=run_id, run_time=validated_at)
        pages: list[Any] = []
        for name in names:
            summary, suite_rows, identifier = _run_suite(
                spark, settings, context, source, suite_module(name), run
            )
            summaries.append({"run_id": run_id, **summary})
            rows += [
                {**dict.fromkeys(schemas.DQ_RESULTS.fieldNames()), **row}
                | {"run_id": run_id, "validated_at": validated_at}
                for row in suite_rows
            ]
            pages += [ExpectationSuiteIdentifier(name=name), identifier] if identifier else []
            yield summaries[-1]
        # this run's pages and the index, once; older runs' pages are already there
        context.build_data_docs(site_names=[SITE], resource_identifiers=pages or None)
        index = data_docs_dir(settings) / "index.html"
        # the batch writers of the lake are serialised by this lock; wait for a running one
        with locks.exclusive(settings, locks.BATCH, wait=True):
            lake.ensure_tables(spark, settings, [schemas.DQ_RESULTS_TABLE])
            lake.append(
                spark.createDataFrame(rows, schemas.DQ_RESULTS),
                settings,
                schemas.DQ_RESULTS_TABLE.name,
            )
    failed = [s for s in summaries if not s["success"]]
    if failed:
        what = "; ".join(f"{s['suite']} ({', '.join(s['failed'])})" for s in failed)
        raise CheckFailed(
            f"Data quality failed for {what}; the results are in ops.dq_results (run {run_id}) "
            f"and the Data Docs at {index}."
        )


# --- the job: `orderlake validate`, batch/validate.py, the validate_quality DAG (jobs/runner.py) -
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite", action="append", metavar="NAME", help="only this suite (repeatable)"
    )


def check(settings: Settings, args: argparse.Namespace) -> None:
    """A bad suite name fails before any Spark work."""
    check_suites(args.suite)


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> Iterator[dict]:
    """Each suite's summary as it finishes; CheckFailed after the last when any failed."""
    yield from validate(spark, settings, check_suites(args.suite))


def main(argv: list[str] | None = None) -> int:
    """`orderlake validate ...` as a program of its own (batch/validate.py)."""
    from orderlake.jobs import runner

    return runner.main(sys.modules[__name__], argv)
