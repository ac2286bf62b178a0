"""
### delta_maintenance
Daily at 02:00 UTC: OPTIMIZE (compacts the small files incremental loads leave) then a guarded
VACUUM of the batch tables. The guard refuses a retention below ORDERLAKE_VACUUM_MIN_HOURS, a
VACUUM while a batch job or replay runs, and one that would delete versions a recent
reconciliation compared. `speed.*` tables belong to the streaming job and are never touched.
By hand: `orderlake maintain`.
"""

from airflow.sdk import dag, task

from orderlake import orchestration as o


@dag(
    schedule=o.cron("0 2 * * *"),
    catchup=False,
    max_active_runs=1,
    default_args=o.default_args(),
    tags=["orderlake", "maintenance"],
    doc_md=__doc__,
)
def delta_maintenance():
    @task(pool=o.LAKE_POOL)
    def optimize() -> dict:
        return o.optimize()

    @task(pool=o.LAKE_POOL)
    def vacuum() -> dict:
        return o.vacuum()

    optimize() >> vacuum()


delta_maintenance()
