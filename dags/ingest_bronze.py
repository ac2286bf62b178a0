"""
### ingest_bronze
Every 5 minutes: the Kafka records that bronze does not hold yet -> `bronze.kafka_records`
(exactly once: a load resumes from the highest offset bronze holds per partition).

When new records were loaded, the task updates the asset `bronze.kafka_records`, which
schedules `build_silver_gold`; with nothing new the task is skipped and no asset event is sent.
By hand: `orderlake batch bronze`.
"""

from airflow.sdk import dag, task

from orderlake import orchestration as o


@dag(
    schedule=o.cron("*/5 * * * *"),
    catchup=False,
    max_active_runs=1,
    default_args=o.default_args(),
    tags=["orderlake", "batch", "bronze"],
    doc_md=__doc__,
)
def ingest_bronze():
    @task(outlets=[o.BRONZE], pool=o.LAKE_POOL)
    def load_bronze() -> dict:
        return o.load_bronze()

    load_bronze()


ingest_bronze()
