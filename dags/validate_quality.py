"""
### validate_quality
After every gold update (asset schedule) and daily at 03:00 UTC: the Great Expectations suites
of `expectations/` against bronze, silver, gold and the quarantine rate. Results go to
`ops.dq_results` and the Data Docs site (path in `orderlake status`); a failed suite fails the
task at once (no retry: the data will not change by itself). By hand: `orderlake validate`.
"""

from airflow.sdk import AssetOrTimeSchedule, dag, task

from orderlake import orchestration as o


@dag(
    schedule=AssetOrTimeSchedule(timetable=o.cron("0 3 * * *"), assets=o.GOLD),
    catchup=False,
    max_active_runs=1,
    default_args=o.default_args(),
    tags=["orderlake", "quality"],
    doc_md=__doc__,
)
def validate_quality():
    @task(pool=o.LAKE_POOL)
    def run_suites() -> list[dict]:
        return o.validate_quality()

    run_suites()


validate_quality()
