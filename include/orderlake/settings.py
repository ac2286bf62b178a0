"""One settings object for every orderlake process, read from ORDERLAKE_* environment variables.

Built when a command or job starts (``Settings.from_env()``), never at import time; tests build
one from a dict (``Settings(home=tmp_path, kafka_port=...)``). ``env`` is the single switch
between the embedded default (``local``: one machine, everything under ORDERLAKE_HOME) and a
``cluster`` deployment (external Kafka, Spark master and Airflow given by configuration).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderlake import contracts
from orderlake.errors import UsageError

if TYPE_CHECKING:
    from orderlake.kafka_client import KafkaAuth

# include/orderlake/settings.py -> the repository root (holds jvm/, flume_conf/, dags/, ...)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Typed configuration; each field is read from ORDERLAKE_<FIELD>, e.g. ORDERLAKE_KAFKA_PORT."""

    model_config = SettingsConfigDict(env_prefix="ORDERLAKE_", extra="ignore")

    env: Literal["local", "cluster"] = "local"
    home: Path = Field(default=PROJECT_ROOT / ".orderlake")
    # address the servers orderlake starts listen on (Flume collector's Avro source, Airflow's
    # API server); a container sets 0.0.0.0 so other hosts reach them
    bind_host: str = "127.0.0.1"

    # Kafka (embedded KRaft broker in local mode)
    kafka_bootstrap: str | None = None  # cluster mode: external brokers; local: derived from port
    kafka_port: int = 9092
    # how clients authenticate: PLAINTEXT on the embedded broker; SASL_SSL (SCRAM-SHA-512 over
    # TLS) as ORDERLAKE_KAFKA_USER, whose password and the cluster's CA are in
    # ORDERLAKE_KAFKA_AUTH_DIR (orderlake.cluster: `orderlake cluster up` makes them)
    kafka_security: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_user: str | None = None
    kafka_auth_dir: Path | None = None
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    actions_partitions: int = 3
    # replicas of each topic and the in-sync replicas an acks=all write needs (1 and 1 on the
    # embedded single broker; 3 and 2 on docker-compose's three brokers)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    retention_days: float = 30.0
    # `status` warns, and the reconciliation fails, once the oldest record bronze has not
    # loaded is this share of the retention old: before Kafka deletes it
    retention_warn_share: float = Field(default=0.5, gt=0, le=1)
    # Largest line the Flume edge forwards as-is; bigger lines go to tmall.rejects as an envelope.
    # Below the broker's message.max.bytes (1 MiB) minus record overhead.
    max_line_bytes: int = 1_000_000

    # Flume: edge agents (one per simulated host) and one collector
    hosts: int = 2
    flume_collector_host: str = "127.0.0.1"  # where edge agents send (compose: its service name)
    flume_collector_port: int = 41414
    flume_monitor_port: int = 34545  # collector; edge host-N uses this + N
    flume_heap: str = "256m"
    # an edge agent whose source reads nothing for this long while its spool holds unread lines
    # is restarted by its watchdog (stack/edge.py)
    edge_stall_s: float = Field(default=30.0, gt=0)

    # Spark: the warm Spark Connect server every batch job and query attaches to (the `spark`
    # component), and the master its driver and the speed layer's run on
    spark_master: str = "local[2]"
    spark_connect_host: str = "127.0.0.1"  # where clients reach it (compose: its service name)
    spark_connect_port: int = 15002
    # cluster mode: clients reach the server over TLS with a bearer token (the cluster's CA,
    # the token and the server's certificate are in this directory; `orderlake cluster up`
    # makes them); None: plaintext without a token, as on the embedded loopback
    spark_connect_auth_dir: Path | None = None
    # the server's driver heap: every batch job's data passes through it (a full rebuild
    # de-duplicates every event at once)
    spark_server_memory: str = "2g"
    # a warm Spark that does not answer this long after it was (re)started is failing: `up`
    # gives up on it, and a job that came while it started stops waiting and fails
    spark_startup_limit_s: float = Field(default=180, gt=0)
    spark_driver_memory: str = "1g"  # an in-process session of a tool or test
    # HotSpot's -XX:CompileThresholdScaling for every Spark JVM (the warm Spark, the speed
    # layer, executors, in-process sessions): a method is compiled by the optimising JIT only
    # after this many times the default calls. Each new query shape is new generated code;
    # at the default the JIT compilers took about half of the warm Spark's CPU on
    # test-sized jobs, on two cores where it competes with the work (bench/results/jit.md).
    # 1 is HotSpot's default
    spark_jit_scaling: float = Field(default=4.0, gt=0)
    speed_driver_memory: str = "1536m"  # the always-on streaming job caches each micro-batch
    # Kafka records a speed-layer micro-batch reads at most per topic: bounds its time and the
    # driver's memory while catching up on a backlog. A micro-batch has a fixed cost, so
    # bigger ones catch up faster (bench/results/speed-ab-max-offsets-400k); a live stream's
    # micro-batches stay small
    speed_max_offsets_per_trigger: int = Field(default=400_000, ge=1)
    # how long the always-on speed layer waits before asking Kafka again after finding nothing
    # new: Spark's 10 ms default made an idle platform ask 100 times a second, which kept the
    # speed layer's JVM and the broker busy (a fifth of a core each) doing nothing; a line that
    # arrives while the layer waits is counted up to this much later
    speed_idle_poll_ms: int = Field(default=250, ge=10)
    # keys of counted purchases the speed layer keeps in its driver's Python memory for
    # de-duplication (about 230 bytes each; 500,000 is ~14 minutes of purchases at 10,000
    # events/s, 6% of them purchases); older duplicates are looked up in speed.purchases
    speed_counted_keys: int = Field(default=500_000, ge=2)
    # a speed layer reporting itself starting (JVM, profile preload after an outage) for longer
    # than this is hung: the supervisor DAG restarts it and `orderlake up` stops waiting
    speed_startup_limit_s: float = Field(default=15 * 60, gt=0)

    # Batch layer: a day is final once the data has moved this far past its end
    lateness_minutes: int = 10
    vacuum_min_hours: float = 168.0  # VACUUM never keeps less history than this
    pin_days: int = 7  # versions compared by a reconciliation stay readable this long
    # Airflow tasks: seconds before a failed task's retry (two retries)
    task_retry_delay_s: float = Field(default=60.0, gt=0)
    # data quality: the largest share of bronze records silver may quarantine before it fails
    dq_max_quarantine_rate: float = Field(default=0.01, ge=0, le=1)

    # `status` and the dashboard warn when a data directory's filesystem has less free space
    min_free_gb: float = Field(default=2.0, ge=0)

    # Web parts
    airflow_host: str = "127.0.0.1"  # where tasks and tools reach the Airflow API server
    airflow_port: int = 8080
    airflow_worker_log_port: int = 8793  # LocalExecutor's log server
    airflow_trigger_log_port: int = 8794  # the triggerer's log server
    # each Airflow program first migrates the metadata DB and sets the lake pool; a deployment
    # that runs one `airflow-init` step before them all (docker-compose.yaml) turns this off
    airflow_prepare_on_start: bool = True
    dashboard_port: int = 8050
    airflow_admin_password: SecretStr | None = None
    # Airflow's metadata DB as an SQLAlchemy URL (docker-compose: PostgreSQL); None = the
    # embedded SQLite file under ORDERLAKE_HOME/airflow
    airflow_database_url: SecretStr | None = None

    java_home: Path | None = None

    @field_validator("min_insync_replicas")
    @classmethod
    def _isr_within_replicas(cls, value: int, info: ValidationInfo) -> int:
        replicas = info.data.get("replication_factor", 1)
        if value > replicas:
            # more in-sync replicas than replicas: every acks=all write would be refused
            raise ValueError(f"must not exceed ORDERLAKE_REPLICATION_FACTOR ({replicas})")
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read ORDERLAKE_* variables; keyword arguments win over the environment."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise UsageError(
                f"ORDERLAKE_{field.upper()}={first.get('input')!r} is not valid: {first['msg']}."
            ) from None

    def to_env(self) -> dict[str, str]:
        """These settings as ORDERLAKE_* variables, for the processes `orderlake up` starts."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"ORDERLAKE_{name.upper()}"] = str(value)
        return env

    # --- derived locations under ORDERLAKE_HOME ------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def kafka_auth(self) -> KafkaAuth:
        """How this process's Kafka clients authenticate (orderlake.kafka_client.KafkaAuth)."""
        from orderlake.kafka_client import PLAINTEXT, KafkaAuth

        if self.kafka_security == "PLAINTEXT":
            return PLAINTEXT
        if not (self.kafka_user and self.kafka_auth_dir):
            raise UsageError(
                "ORDERLAKE_KAFKA_SECURITY=SASL_SSL needs ORDERLAKE_KAFKA_USER (the principal) and "
                "ORDERLAKE_KAFKA_AUTH_DIR (the directory with its password and the cluster's CA)."
            )
        return KafkaAuth.scram(self.kafka_auth_dir, self.kafka_user)

    @property
    def spark_connect_url(self) -> str:
        return f"sc://{self.spark_connect_host}:{self.spark_connect_port}"

    @property
    def host_names(self) -> list[str]:
        return [f"host-{i}" for i in range(1, self.hosts + 1)]

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    def spool_file(self, host: str, name: str = contracts.ACTIONS_FILE) -> Path:
        return self.spool_dir / host / name

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def flume_dir(self) -> Path:
        return self.home / "flume"

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 24 * 3600 * 1000)

    def flume_monitor_port_for(self, agent: str) -> int:
        """HTTP monitoring port: the collector gets the base port, edge host-N base + N."""
        if agent == "collector":
            return self.flume_monitor_port
        return self.flume_monitor_port + int(agent.rsplit("-", 1)[1])
