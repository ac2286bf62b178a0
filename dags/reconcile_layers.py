"""
### reconcile_layers
Hourly, or triggered for one event date (param `date`, YYYY-MM-DD): proves that nothing was lost
and that the layers agree, into `ops.reconciliation` (expected, actual, difference, status):
Kafka end offsets vs bronze rows per partition; bronze vs silver + quarantine + removed
duplicates; speed vs gold per closed day x age bracket x gender, with legitimate differences
(late profiles, in-flight records) explained and counted. An unexplained difference fails the
task and names what differs. By hand: `orderlake reconcile [--date D]`.
"""

from airflow.sdk import Param, dag, task

from orderlake import orchestration as o


@dag(
    schedule=o.cron("0 * * * *"),
    catchup=False,
    max_active_runs=1,
    default_args=o.default_args(),
    tags=["orderlake", "quality", "reconciliation"],
    doc_md=__doc__,
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="event date to compare speed vs batch for (empty: every closed day)",
        )
    },
)
def reconcile_layers():
    @task(pool=o.LAKE_POOL)
    def reconcile(params=None) -> dict:
        return o.reconcile(params.get("date"))

    reconcile()


reconcile_layers()
