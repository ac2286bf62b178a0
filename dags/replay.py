"""
### replay
Manual only. Re-reads a bounded range of one Kafka topic and rewrites only what it affects
(bronze rows, the silver rows and gold days of that range), idempotently: the same replay twice
leaves identical tables. `from`/`to` are offsets (`0:100,1:100` per partition, or `100` for
every partition) or ISO times (`2026-11-25T10:00:00Z`); `to` is exclusive. The parameters are
checked before any work, and the range is checked against what Kafka still holds; every run
leaves a row in `ops.replays`. By hand: `orderlake replay --topic T --from F --to T`.
"""

from airflow.sdk import Param, dag, task

from orderlake import orchestration as o


@dag(
    schedule=None,
    catchup=False,
    default_args=o.default_args(),
    tags=["orderlake", "batch", "replay"],
    doc_md=__doc__,
    params={
        "topic": Param("tmall.user_actions", type="string", enum=list(o.TOPICS)),
        "from": Param(type="string", minLength=1, description="offsets P:O,.. or ISO time"),
        "to": Param(type="string", minLength=1, description="exclusive; offsets or ISO time"),
        "layers": Param(
            list(o.LAYERS),
            type="array",
            items={"type": "string", "enum": list(o.LAYERS)},
            minItems=1,
        ),
    },
)
def replay():
    @task
    def check_params(params=None) -> list[str]:
        return o.check_replay_params(params)

    @task(pool=o.LAKE_POOL)
    def run_replay(arguments: list[str]) -> dict:
        return o.run_replay(arguments)

    run_replay(check_params())


replay()
