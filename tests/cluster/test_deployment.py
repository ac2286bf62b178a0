"""docker-compose.yaml's data path running for real as hosts in network namespaces.

One cluster for the module, started by the CLI (`orderlake cluster up --service streaming
--service spark-connect --service airflow-dag-processor --service flume-edge-host-1 --service
flume-edge-host-2`: three secured KRaft brokers, the topic step, the Flume collector and two
edge hosts, a Spark master with two workers, the speed layer's driver, the warm Spark server and
Airflow on PostgreSQL, each on its own host). Orders
are generated on host-1 and host-2 with `orderlake cluster exec`; Kafka is read from inside the
cluster as the admin principal (tests/cluster/probe.py), Airflow through its API from its host
(tests/cluster/airflow_probe.py); the speed layer's, bronze's and gold's Delta tables are read
from the shared volume. Then: a partition leader, the active KRaft controller and a follower
SIGKILLed while a host writes (each restarted by supervisord), an edge host unplugged while it
writes, the Spark hosts cut from the brokers for 30 s, a Spark
worker killed while `orderlake batch all` builds on the warm Spark server, a Spark client with
the wrong token, PostgreSQL crashed under an idle Airflow and restarted during a DAG run. Every
count is exact against the generator's manifests; `cluster down` must leave nothing behind.
Security as a user meets it: every listener SASL_SSL, secrets 0600, users and ACLs idempotent,
and each refusal (no credentials, a wrong password, a principal outside its ACLs) one sentence.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import psutil
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from orderlake.cluster import kafka_node, netns
from tests.fixtures.errors import one_sentence

from .conftest import PACKAGE_ROOT, leftovers

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

SERVICES = (
    "streaming",
    "spark-connect",
    "airflow-dag-processor",  # brings the scheduler, the API server and PostgreSQL
    "flume-edge-host-1",
    "flume-edge-host-2",
)
AIRFLOW_HOSTS = ("postgres", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
ONE_SHOTS = ("kafka-topics", "airflow-init")  # done once they exited 0
EVENTS = 3000
SEED = 7  # every run the same seed: the same users with the same profiles on every host
UP_TIMEOUT_S = 1200  # Airflow migrates its database on PostgreSQL first


class Cluster:
    """The CLI against one cluster root, plus the readings the tests compare."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "ORDERLAKE_CLUSTER_ROOT": str(root),
            "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, str(Path(PACKAGE_ROOT).parent)]),
        }
        self.manifests: list[dict] = []
        self.up_seconds = 0.0

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orderlake.cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def exec(self, host: str, *command: str, timeout: float = 300) -> str:
        done = self.cli("cluster", "exec", host, "--", *command, timeout=timeout)
        assert done.returncode == 0, f"{host}: {command}: {done.stderr[-2000:]}"
        return done.stdout

    def probe(self, *args: str) -> dict:
        out = self.exec("kafka-topics", "python", "tests/cluster/probe.py", *args)
        return json.loads(out.strip().splitlines()[-1])

    def status(self) -> dict:
        done = self.cli("cluster", "status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def host(self, name: str) -> dict:
        return next(h for h in self.status()["hosts"] if h["name"] == name)

    def generate(self, host: str) -> dict:
        """EVENTS orders on ``host``; returns the generator's manifest."""
        out = self.exec(host, "orderlake", "generate", "--events", str(EVENTS), "--seed", str(SEED))
        path = out.strip().splitlines()[-1].removeprefix("manifest: ")
        service = f"flume-edge-{host}"
        inside = Path(path).relative_to("/var/lib/orderlake")  # the host's own directory
        manifest = json.loads((self.root / "hosts" / service / "home" / inside).read_text())
        assert list(manifest["hosts"]) == [host]  # its own spool only
        self.manifests.append(manifest)
        return manifest

    def expected_events(self) -> int:
        return sum(m["events"] for m in self.manifests)

    def expected_buckets(self) -> Counter:
        found: Counter = Counter()
        for manifest in self.manifests:
            for bracket, genders in manifest["purchases_by_age_gender"].items():
                for gender, n in genders.items():
                    if n:
                        found[(bracket, gender)] += n
        return found

    def speed_buckets(self) -> Counter:
        path = self.root / "volumes" / "lakehouse" / "lake" / "speed" / "purchases"
        try:
            purchases = DeltaTable(str(path)).to_pyarrow_table()  # noqa: F841 - read by duckdb
        except TableNotFoundError:  # no commit yet
            return Counter()
        rows = duckdb.sql(
            "SELECT age_bracket, gender, COUNT(*) FROM purchases GROUP BY ALL"
        ).fetchall()
        return Counter({(b, g): n for b, g, n in rows})

    def wait_for_kafka(self, timeout: float = 240) -> dict:
        """Until every generated event is in tmall.user_actions (duplicates allowed)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.probe("count", "tmall.user_actions")
            if seen["distinct_event_ids"] >= self.expected_events() or time.monotonic() > deadline:
                return seen
            time.sleep(3)

    def wait_for_speed(self, timeout: float = 300) -> Counter:
        deadline = time.monotonic() + timeout
        while True:
            counted = self.speed_buckets()
            if counted == self.expected_buckets() or time.monotonic() > deadline:
                return counted
            time.sleep(5)

    def logs(self, *names: str) -> str:
        out = []
        for name in names:
            path = self.root / "logs" / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    try:
        netns.require_tools()
    except Exception as exc:  # noqa: BLE001 - not root or no iproute2: the tier cannot run
        pytest.skip(str(exc))
    state = Cluster(tmp_path_factory.mktemp("cluster"))
    args = ["cluster", "up", *(f"--service={s}" for s in SERVICES)]
    started = time.monotonic()
    try:
        done = state.cli(*args, timeout=UP_TIMEOUT_S)
        state.up_seconds = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield state
    finally:
        state.cli("cluster", "down", "--volumes", timeout=300)


def test_status_lists_every_host_with_address_namespace_and_program(cluster):
    hosts = {h["name"]: h for h in cluster.status()["hosts"]}
    assert set(hosts) == {
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "kafka-topics",
        "flume-collector",
        "flume-edge-host-1",
        "flume-edge-host-2",
        "spark-master",
        "spark-worker",
        "spark-worker-2",
        "spark-connect",
        *AIRFLOW_HOSTS,
        "airflow-init",
        "streaming",
    }
    assert hosts["flume-edge-host-1"]["aliases"] == ["host-1"]
    for name, host in hosts.items():
        assert host["namespace"].endswith(f"-{name}") and host["address"].startswith(
            ("10.", "172.", "192.")
        )
        (component,) = host["components"]
        expected = "EXITED" if name in ONE_SHOTS else "RUNNING"
        assert component["state"] == expected, name
        assert name in ONE_SHOTS or component["pid"] > 0


def test_topics_have_three_replicas_and_need_two_in_sync(cluster):
    found = cluster.probe("topics")
    assert found["brokers"] == [1, 2, 3]
    for name, topic in found["topics"].items():
        assert topic["min_insync_replicas"] == 2, name
        for partition in topic["partitions"].values():
            assert sorted(partition["replicas"]) == [1, 2, 3], name


def test_clients_without_credentials_or_acl_are_refused_in_one_sentence(cluster):
    refused = cluster.probe("refused")
    assert "a client without credentials" in one_sentence(refused["anonymous"])
    assert "require SASL_SSL" in refused["anonymous"]
    assert "refused the credentials of Kafka principal 'speed'" in one_sentence(
        refused["wrong_password"]
    )
    # a reader writing: refused an idempotent producer id
    assert refused["speed_produce_refused"], refused
    assert "'speed' is not authorized on topic tmall.user_actions" in one_sentence(
        refused["speed_produce"]
    )
    # the writer reading in a reader's group; a reader outside its groups, or outside tmall.*
    assert "Kafka principal 'collector' is not authorized to use consumer group" in one_sentence(
        refused["collector_reads"]
    )
    assert "'speed' is not authorized to use consumer group adhoc" in one_sentence(
        refused["speed_other_group"]
    )
    assert "'speed' is not authorized on topic audit.private" in one_sentence(
        refused["speed_private_topic"]
    )


def test_every_listener_is_sasl_ssl_secrets_are_private_and_users_acls_idempotent(cluster):
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        config = cluster.root / "hosts" / broker / "server.properties"
        props = dict(
            line.split("=", 1)
            for line in config.read_text().splitlines()
            if line and not line.startswith("#")
        )
        protocol = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
        for listener in props["listeners"].split(","):
            assert protocol[listener.split("://")[0]] == "SASL_SSL", (broker, listener)
        assert config.stat().st_mode & 0o077 == 0, config  # it carries the keystore password
    secrets = [p for p in (cluster.root / "secrets").rglob("*") if p.is_file()]
    assert {p.name for p in secrets} >= {"ca.p12", "ca.pem", "truststore.p12"}
    assert [p for p in secrets if p.stat().st_mode & 0o077] == [], "secrets readable by others"
    # the topic step's users and ACLs, applied again by the admin, change nothing
    assert cluster.probe("reapply") == {"users_changed": [], "acls_added": []}


# a session of the cluster's own client (spark.connect), without registering the lake's tables
ANSWER_WITH_THE_TOKEN = (
    "from orderlake.settings import Settings; from orderlake.spark import connect\n"
    "with connect(Settings.from_env(), 'orderlake-probe', register=False) as spark:\n"
    "    print(spark.sql('SELECT 41 + 1').collect()[0][0])"
)


def test_the_warm_spark_answers_its_token_and_refuses_another_in_one_sentence(cluster):
    """The warm Spark demands the cluster's token, over TLS (its gate): a client of the cluster
    gets an answer; one trusting the CA but holding another token gets one sentence, at once."""
    answer = cluster.exec("spark-connect", "python", "-c", ANSWER_WITH_THE_TOKEN)
    assert answer.strip().splitlines()[-1] == "42"
    wrong = cluster.root / "wrong-token"
    wrong.mkdir(mode=0o700, exist_ok=True)
    (wrong / "ca.pem").write_bytes((cluster.root / "secrets" / "ca.pem").read_bytes())
    (wrong / "spark-connect.token").write_text("not-the-token\n")
    done = cluster.cli(
        "cluster", "exec", "spark-connect", "--", "env",
        f"ORDERLAKE_SPARK_CONNECT_AUTH_DIR={wrong}", "orderlake", "sql", "SELECT 1",
    )  # fmt: skip
    assert done.returncode != 0
    assert "refused this client's token" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_orders_from_both_hosts_reach_kafka_and_the_speed_layer(cluster):
    for host in ("host-1", "host-2"):
        cluster.generate(host)
    seen = cluster.wait_for_kafka()
    assert seen["distinct_event_ids"] == cluster.expected_events() == 2 * EVENTS, seen
    assert seen["by_host"].keys() == {"host-1", "host-2"}
    counted = cluster.wait_for_speed()
    assert counted == cluster.expected_buckets(), cluster.logs("streaming")


def kill_while_writing(cluster: Cluster, node: int, host: str) -> None:
    """SIGKILL broker ``node`` and write on ``host`` at once; every event must reach Kafka and
    the broker come back (supervisord) into every ISR. The speed layer's exact count is checked
    once, after the third kill of the stream: a purchase lost or counted twice stays so."""
    victim = cluster.host(f"kafka-{node}")["components"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    cluster.generate(host)  # the collector writes with acks=all to the two left
    seen = cluster.wait_for_kafka()
    assert seen["distinct_event_ids"] == cluster.expected_events(), seen
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        component = cluster.host(f"kafka-{node}")["components"][0]
        topics = cluster.probe("topics")["topics"]
        isrs = [p["isrs"] for t in topics.values() for p in t["partitions"].values()]
        if component["pid"] not in (None, victim) and all(len(i) == 3 for i in isrs):
            break
        time.sleep(5)
    else:
        pytest.fail(f"kafka-{node} did not rejoin: {cluster.logs(f'kafka-{node}')}")


def active_controller(cluster: Cluster) -> int:
    volumes = cluster.root / "volumes"
    leader = kafka_node.active_controller({n: volumes / f"kafka-{n}-data" for n in (1, 2, 3)})
    assert leader in (1, 2, 3), "no voter knows the quorum's leader"
    return leader


def test_a_partition_leader_killed_while_a_host_writes_loses_nothing(cluster):
    leader = cluster.probe("topics")["topics"]["tmall.user_actions"]["partitions"]["0"]["leader"]
    kill_while_writing(cluster, leader, "host-1")


def test_the_active_controller_killed_while_a_host_writes_loses_nothing(cluster):
    kill_while_writing(cluster, active_controller(cluster), "host-2")


def test_a_follower_broker_killed_while_a_host_writes_loses_nothing(cluster):
    """The third kill of the stream: a broker that is neither partition 0's leader nor the
    controller (it still leads other partitions, and every partition has it in its ISR)."""
    leader = cluster.probe("topics")["topics"]["tmall.user_actions"]["partitions"]["0"]["leader"]
    controller = active_controller(cluster)
    follower = next(node for node in (1, 2, 3) if node not in (leader, controller))
    kill_while_writing(cluster, follower, "host-1")
    assert cluster.wait_for_speed() == cluster.expected_buckets(), cluster.logs("streaming")


def test_an_edge_host_unplugged_while_it_writes_catches_up_once_restored(cluster):
    network = netns.Network.load(cluster.status()["run_id"])
    before = cluster.probe("count", "tmall.user_actions")["by_host"].get("host-2", 0)
    network.cut("flume-edge-host-2")
    try:
        assert not network.link_up("flume-edge-host-2")
        cluster.generate("host-2")  # lands in host-2's spool and file channel only
        time.sleep(10)
        during = cluster.probe("count", "tmall.user_actions")["by_host"].get("host-2", 0)
        assert during == before, "host-2 reached Kafka while unplugged"
    finally:
        network.restore("flume-edge-host-2")
    seen = cluster.wait_for_kafka()
    assert seen["distinct_event_ids"] == cluster.expected_events(), seen
    assert cluster.wait_for_speed() == cluster.expected_buckets(), cluster.logs("streaming")


CUT_S = 30


def test_the_spark_hosts_cut_from_the_kafka_hosts_for_30_s_recover_by_themselves(cluster):
    """The Spark master, workers and the speed layer's driver lose the brokers (frames dropped,
    as across a failed switch) while host-2 writes; Kafka takes every event, the speed layer
    counts none of them until the link is back, then all of them, exactly once."""
    network = netns.Network.load(cluster.status()["run_id"])
    spark = [h for h in network.hosts if h.startswith("spark") or h == "streaming"]
    brokers = ["kafka-1", "kafka-2", "kafka-3"]
    before = cluster.speed_buckets()
    network.partition(spark, brokers)
    cut_at = time.monotonic()
    try:
        cluster.generate("host-2")
        seen = cluster.wait_for_kafka()
        assert seen["distinct_event_ids"] == cluster.expected_events(), seen
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        assert cluster.speed_buckets() == before, "the speed layer read Kafka through the cut"
    finally:
        network.heal(spark, brokers)
    assert cluster.wait_for_speed(timeout=600) == cluster.expected_buckets(), cluster.logs(
        "streaming", "spark-worker", "spark-worker-2"
    )


BATCH_TIMEOUT_S = 600


def connect_app_worker(cluster: Cluster) -> str:
    """The worker host running the warm Spark server's executor (each worker has one core: the
    speed layer's executor runs on the other), from the workers' own status pages."""
    read = (
        "import json, urllib.request as u; "
        "print(json.dumps(json.load(u.urlopen('http://127.0.0.1:8081/json/', timeout=5))))"
    )
    for worker in ("spark-worker", "spark-worker-2"):
        page = json.loads(cluster.exec(worker, "python", "-c", read).strip().splitlines()[-1])
        names = {e["appdesc"]["name"] for e in page.get("executors", [])}
        if "orderlake-spark" in names:
            return worker
    pytest.fail("no worker runs the Spark server's executor")


def kill_host_programs(cluster: Cluster, host: str) -> None:
    """SIGKILL a host's program and everything it started (a worker and its executors), as a
    machine that loses power; supervisord starts the program again."""
    root = psutil.Process(cluster.host(host)["components"][0]["pid"])
    for proc in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def gold_by_day_and_bucket(cluster: Cluster) -> Counter:
    path = cluster.root / "volumes" / "lakehouse" / "lake" / "gold" / "orders_by_age_gender_daily"
    gold = DeltaTable(str(path)).to_pyarrow_table()  # noqa: F841 - read by duckdb
    rows = duckdb.sql(
        "SELECT CAST(event_date AS VARCHAR), age_bracket, gender, orders FROM gold"
    ).fetchall()
    return Counter({(day, b, g): n for day, b, g, n in rows if n})


def test_a_spark_worker_killed_during_the_batch_build_still_gives_exact_gold(cluster):
    """`orderlake batch all` on the warm Spark server, whose executor runs on a worker host; once
    bronze has its first files (silver and gold are still to build), that worker and its
    executor are SIGKILLed. Spark retries the lost tasks on the worker once supervisord
    restarted it (or the run fails with one sentence and its retry, as Airflow's, succeeds);
    gold holds every generated purchase exactly once, per day, age bracket and gender."""
    expected: Counter = Counter()
    for manifest in cluster.manifests:
        for day, brackets in manifest["purchases_by_day_age_gender"].items():
            for bracket, genders in brackets.items():
                for gender, n in genders.items():
                    expected[(day, bracket, gender)] += n
    assert cluster.wait_for_kafka()["distinct_event_ids"] == cluster.expected_events()
    worker = connect_app_worker(cluster)
    bronze = cluster.root / "volumes" / "lakehouse" / "lake" / "bronze" / "kafka_records"
    command = ["cluster", "exec", "spark-connect", "--", "orderlake", "batch", "all"]
    build = subprocess.Popen(
        [sys.executable, "-m", "orderlake.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        while not next(bronze.rglob("*.parquet"), None) and build.poll() is None:
            assert time.monotonic() < deadline, "bronze was never written"
            time.sleep(0.5)
        assert build.poll() is None, f"the build ended before the kill: {build.communicate()}"
        kill_host_programs(cluster, worker)
        _, err = build.communicate(timeout=BATCH_TIMEOUT_S)
    finally:
        if build.poll() is None:
            build.kill()
    if build.returncode != 0:  # failed loudly: one sentence, then the retry Airflow would make
        assert "Traceback" not in err and err.strip(), err
        done = cluster.cli(*command, timeout=BATCH_TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-3000:]
    assert gold_by_day_and_bucket(cluster) == expected, cluster.logs("spark-connect", worker)


def airflow(cluster: Cluster, *args: str) -> dict:
    out = cluster.exec("airflow-api-server", "python", "tests/cluster/airflow_probe.py", *args,
                       timeout=960)  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def wait_airflow_healthy(cluster: Cluster, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (health := airflow(cluster, "health")).get("metadatabase") != "healthy" or health.get(
        "scheduler"
    ) != "healthy":
        assert time.monotonic() < deadline, f"Airflow did not recover: {health}"
        time.sleep(5)


def restart_postgres(cluster: Cluster, how: signal.Signals) -> None:
    """``how`` to PostgreSQL's server (SIGKILL: a crash; SIGINT: an admin's fast restart);
    supervisord starts it again, as compose's restart policy would."""
    victim = cluster.host("postgres")["components"][0]["pid"]
    os.kill(victim, how)
    deadline = time.monotonic() + 180
    while (now := cluster.host("postgres")["components"][0])["pid"] in (None, victim) or now[
        "state"
    ] != "RUNNING":
        assert time.monotonic() < deadline, cluster.logs("postgres")
        time.sleep(2)


def bronze_offsets(cluster: Cluster) -> dict[str, list[int]]:
    """{"topic/partition": [rows, distinct offsets]} of bronze, read from the shared volume."""
    path = cluster.root / "volumes" / "lakehouse" / "lake" / "bronze" / "kafka_records"
    bronze = DeltaTable(str(path)).to_pyarrow_table()  # noqa: F841 - read by duckdb
    rows = duckdb.sql(
        'SELECT topic, "partition", COUNT(*), COUNT(DISTINCT "offset") FROM bronze GROUP BY ALL'
    ).fetchall()
    return {f"{t}/{p}": [n, d] for t, p, n, d in rows}


def test_airflow_survives_postgres_restarts_idle_and_during_a_dag_run(cluster):
    """PostgreSQL crashes (SIGKILL) under an idle Airflow: the scheduler and the API server find
    the database again by themselves. Then it restarts (fast shutdown) while an ingest_bronze
    load runs with new orders to load: the run completes, or fails loudly and its retry
    succeeds; bronze then holds every Kafka record exactly once."""
    wait_airflow_healthy(cluster)
    restart_postgres(cluster, signal.SIGKILL)
    wait_airflow_healthy(cluster)
    # records bronze does not hold yet: a load with nothing new is skipped within a second
    cluster.generate("host-1")
    assert cluster.wait_for_kafka()["distinct_event_ids"] == cluster.expected_events()
    mine = airflow(cluster, "trigger", "ingest_bronze")["run_id"]
    # ours, or a scheduled run that came first (one run at a time): whichever loads them
    loading = airflow(cluster, "running", "ingest_bronze", "load_bronze")
    assert "run_id" in loading, (loading, cluster.logs("airflow-scheduler"))
    restart_postgres(cluster, signal.SIGINT)
    for run in dict.fromkeys((loading["run_id"], mine)):
        result = airflow(cluster, "wait", "ingest_bronze", run)
        if result.get("state") != "success":  # loudly: a failed run Airflow shows, then a retry
            assert result.get("state") == "failed", result
            wait_airflow_healthy(cluster)
            retry = airflow(cluster, "trigger", "ingest_bronze")["run_id"]
            result = airflow(cluster, "wait", "ingest_bronze", retry)
            assert result.get("state") == "success", (result, cluster.logs("airflow-scheduler"))
    held = bronze_offsets(cluster)
    for partition, (earliest, end) in cluster.probe("watermarks").items():
        assert held.get(partition, [0, 0]) == [end - earliest] * 2, partition


def test_down_leaves_no_namespace_link_or_process(cluster):
    run_id = cluster.status()["run_id"]
    done = cluster.cli("cluster", "down", timeout=300)
    assert done.returncode == 0, done.stderr
    assert leftovers(run_id) == []
    again = cluster.cli("cluster", "status")
    assert again.returncode != 0 and "No cluster is running" in again.stderr
    assert "Traceback" not in again.stderr
