"""
### build_silver_gold
Runs when `bronze.kafka_records` has new records (asset schedule): new bronze records ->
`silver.user_actions` (one row per event_id), `silver.users`, `quarantine.records`; then the
affected event dates -> `gold.orders_by_age_gender_daily`, which updates the gold asset that
schedules `validate_quality`. By hand: `orderlake batch silver` then `orderlake batch gold`.
"""

from airflow.sdk import dag, task

from orderlake import orchestration as o


@dag(
    schedule=[o.BRONZE],
    catchup=False,
    max_active_runs=1,
    default_args=o.default_args(),
    tags=["orderlake", "batch", "silver", "gold"],
    doc_md=__doc__,
)
def build_silver_gold():
    @task(pool=o.LAKE_POOL)
    def build_silver() -> dict:
        return o.build_silver()

    @task(outlets=[o.GOLD], pool=o.LAKE_POOL)
    def build_gold() -> dict:
        return o.build_gold()

    build_silver() >> build_gold()


build_silver_gold()
