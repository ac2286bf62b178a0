"""
### streaming_supervisor
Every 2 minutes: checks the speed layer (the always-on Spark Structured Streaming job). Down, or
no heartbeat for a minute: restarted (embedded default; on a cluster the task fails and says
so). Kafka lag larger at each of the last 3 checks and above 10,000 records: the task fails
visibly, because the job is falling behind its input. By hand: `orderlake status`.
"""

from datetime import timedelta

from airflow.sdk import dag, task

from orderlake import orchestration as o


@dag(
    schedule=timedelta(minutes=2),
    catchup=False,
    max_active_runs=1,
    default_args={**o.default_args(), "retry_delay": timedelta(seconds=20)},
    dagrun_timeout=timedelta(minutes=5),
    tags=["orderlake", "streaming", "operations"],
    doc_md=__doc__,
)
def streaming_supervisor():
    @task
    def check_speed_layer() -> dict:
        return o.supervise_streaming()

    check_speed_layer()


streaming_supervisor()
