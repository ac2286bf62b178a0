"""Hosts as network namespaces, for real: names resolve through each namespace's hosts file,
a cut link fails connections and a restored one carries them again, teardown and clean_stale
leave nothing behind (even after the owner was SIGKILLed)."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time

import pytest

from orderlake import procs
from orderlake.cluster import netns
from tests.cluster.conftest import Harness, leftovers, python, python_env

pytestmark = pytest.mark.cluster

# a TCP server answering each connection with the address it came from
SERVER = python(
    "import socket, sys",
    "with socket.create_server(('0.0.0.0', int(sys.argv[1]))) as server:",
    "    print('listening', flush=True)",
    "    while True:",
    "        conn, (peer, _) = server.accept()",
    "        with conn:",
    "            conn.sendall(peer.encode())",
)
# a client: NAME PORT TIMEOUT -> "<address NAME resolved to> <the server's reply>", exit 1 on error
CLIENT = python(
    "import socket, sys",
    "name, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])",
    "try:",
    "    address = socket.gethostbyname(name)",
    "    with socket.create_connection((name, port), timeout=timeout) as conn:",
    "        reply = conn.recv(64).decode()",
    "except OSError as exc:",
    "    sys.exit(f'failed: {exc!r}')",
    "print(address, reply)",
)


def serve(harness: Harness, network: netns.Network, host: str, port: int) -> None:
    server = harness.start(network.exec_argv(host, [*SERVER, str(port)]))
    assert readline(server, timeout=20) == "listening", server.stderr


def connect(
    network: netns.Network, host: str, name: str, port: int, timeout: float = 3.0
) -> subprocess.CompletedProcess[str]:
    """CLIENT run inside ``host``, connecting to ``name``."""
    return subprocess.run(
        network.exec_argv(host, [*CLIENT, name, str(port), str(timeout)]),
        capture_output=True,
        text=True,
        timeout=timeout + 20,
        check=False,
    )


def readline(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of the process's stdout, "" if none comes within ``timeout`` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


def alive(pid: int) -> bool:
    return procs.process_start(pid) is not None


def test_hosts_reach_each_other_by_name(harness):
    network = harness.network(
        {"kafka-1": [], "flume-edge-host-1": ["host-1"], "spark-master": ["spark"]}
    )
    kafka, edge = network.hosts["kafka-1"], network.hosts["flume-edge-host-1"]
    serve(harness, network, "kafka-1", 9092)
    serve(harness, network, "flume-edge-host-1", 41414)

    done = connect(network, "flume-edge-host-1", "kafka-1", 9092)
    assert done.returncode == 0, done.stderr
    # the name resolved to kafka-1's address, and the server saw the edge host's own address
    assert done.stdout.split() == [str(kafka.address), str(edge.address)]

    done = connect(network, "spark-master", "host-1", 41414)  # an alias, from a third host
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(edge.address), str(network.hosts["spark-master"].address)]

    # each host has its own loopback: kafka-1's server is not on the edge host's 127.0.0.1
    done = connect(network, "flume-edge-host-1", "localhost", 9092)
    assert done.returncode == 1 and "ConnectionRefusedError" in done.stderr
    # the root namespace (the CLI) reaches a host through the bridge's own address
    with socket.create_connection((str(kafka.address), 9092), timeout=5) as conn:
        assert conn.recv(64).decode() == str(network.gateway)


def test_a_cut_host_is_unreachable_until_restored(harness):
    network = harness.network(["kafka-1", "kafka-2", "host-1"])
    for broker in ("kafka-1", "kafka-2"):
        serve(harness, network, broker, 9092)
    assert connect(network, "host-1", "kafka-1", 9092).returncode == 0

    network.cut("kafka-1")
    assert not network.link_up("kafka-1")
    started = time.monotonic()
    done = connect(network, "host-1", "kafka-1", 9092, timeout=3.0)
    assert done.returncode == 1, done.stdout
    assert "failed:" in done.stderr
    assert time.monotonic() - started < 10
    # only the cut host is off the network
    assert connect(network, "host-1", "kafka-2", 9092).returncode == 0
    done = connect(network, "kafka-1", "kafka-2", 9092, timeout=2.0)  # and it cannot get out
    assert done.returncode == 1, done.stdout

    network.restore("kafka-1")
    assert network.link_up("kafka-1")
    deadline = time.monotonic() + 15
    while (done := connect(network, "host-1", "kafka-1", 9092)).returncode != 0:
        assert time.monotonic() < deadline, f"still unreachable after restore: {done.stderr}"
        time.sleep(0.5)
    assert done.stdout.split()[0] == str(network.hosts["kafka-1"].address)


def test_a_partition_drops_traffic_between_its_sides_only_until_healed(harness):
    """The Spark side cut from the Kafka side: connections across time out (nothing answers,
    as across a failed switch), each side still reaches itself and the rest, and healing
    carries traffic again."""
    network = harness.network(["kafka-1", "kafka-2", "spark-worker-1", "host-1"])
    for host in ("kafka-1", "kafka-2", "spark-worker-1"):
        serve(harness, network, host, 9092)
    network.partition(["spark-worker-1"], ["kafka-1", "kafka-2"])
    started = time.monotonic()
    done = connect(network, "spark-worker-1", "kafka-1", 9092, timeout=2.0)
    assert done.returncode == 1 and "TimeoutError" in done.stderr, done.stderr
    assert time.monotonic() - started >= 2.0  # dropped, not refused
    assert connect(network, "kafka-2", "spark-worker-1", 9092, timeout=2.0).returncode == 1
    assert connect(network, "kafka-1", "kafka-2", 9092).returncode == 0  # a side stays whole
    assert connect(network, "host-1", "kafka-1", 9092).returncode == 0  # others are not cut
    assert connect(network, "host-1", "spark-worker-1", 9092).returncode == 0

    network.heal(["spark-worker-1"], ["kafka-1", "kafka-2"])
    deadline = time.monotonic() + 15
    while (done := connect(network, "spark-worker-1", "kafka-1", 9092)).returncode != 0:
        assert time.monotonic() < deadline, f"still cut after heal: {done.stderr}"
        time.sleep(0.5)
    assert connect(network, "kafka-2", "spark-worker-1", 9092).returncode == 0


def test_teardown_leaves_nothing_of_the_run(harness):
    network = harness.network(["kafka-1", "host-1"])
    sleeper = harness.start(network.exec_argv("host-1", ["sleep", "300"]))
    deadline = time.monotonic() + 10
    while sleeper.pid not in network.pids("host-1"):
        assert time.monotonic() < deadline, "sleep never showed up in host-1"
        time.sleep(0.1)
    before = leftovers(network.run_id)
    assert len(before) == 2 + 3 + 2 + 1, before  # namespaces, bridge + veths, etc dirs, state

    network.teardown()
    assert sleeper.wait(timeout=15) is not None  # the process left in host-1 was stopped
    assert leftovers(network.run_id) == []
    network.teardown()  # idempotent
    assert leftovers(network.run_id) == []


OWNER = python(
    "import subprocess, time",
    "from orderlake.cluster import netns",
    "net = netns.Network.create(['kafka-1', 'host-1'], label='tests/cluster owner')",
    "sleeper = subprocess.Popen(net.exec_argv('host-1', ['sleep', '300']))",
    "print(net.run_id, sleeper.pid, flush=True)",
    "time.sleep(300)",
)


def test_clean_stale_removes_the_run_of_a_killed_owner(harness):
    owner = subprocess.Popen(
        OWNER, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env()
    )
    run_id = ""
    try:
        line = readline(owner, timeout=60)
        assert line, f"the owner did not create its network: {owner.stderr}"
        run_id, sleeper = line.split()[0], int(line.split()[1])
        live = harness.network(["kafka-1"])  # owned by this process: must survive
        assert len(leftovers(run_id)) == 2 + 3 + 2 + 1

        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        assert alive(sleeper), "the orphan in host-1 should outlive its owner"
        removed = netns.clean_stale()

        assert run_id in removed and live.run_id not in removed
        assert leftovers(run_id) == []
        deadline = time.monotonic() + 10
        while alive(sleeper):
            assert time.monotonic() < deadline, f"process {sleeper} survived clean_stale"
            time.sleep(0.1)
        assert len(leftovers(live.run_id)) == 1 + 2 + 1 + 1
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.wait(timeout=10)
        for stream in (owner.stdout, owner.stderr):
            if stream:
                stream.close()
        if run_id:
            netns.remove_run(run_id)


def test_clean_stale_removes_leftovers_no_run_claims(harness):
    network = harness.network(["kafka-1"])
    network.state_file.unlink()  # as if the record were lost: nothing claims these any more
    assert leftovers(network.run_id)
    assert network.run_id in netns.clean_stale()
    assert leftovers(network.run_id) == []
