"""The warm Spark's TLS gate (orderlake.stack.connect_gate) with real gRPC on both sides.

Behind the gate, a plaintext gRPC server stands in for Spark's Connect server (the gate copies
bytes; what Spark does with the token is the cluster tier's: tests/cluster/test_deployment.py
runs the batch layer through the gate). In front, the channel every orderlake client builds
(orderlake.connect_auth): TLS trusting the cluster's CA, the token on every call. The
certificate and key come from orderlake.cluster.tls, as `orderlake cluster up` makes them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from orderlake import connect_auth
from orderlake.cluster import tls
from orderlake.settings import Settings
from orderlake.stack import connect_gate
from orderlake.stack.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# a plaintext gRPC server answering /test.Echo/Who with the authorization header it received
UPSTREAM = """\
import sys, time
from concurrent import futures
import grpc

def who(request, context):
    return dict(context.invocation_metadata()).get("authorization", "").encode()

server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
    "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)})])
server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
server.start()
print("ready", flush=True)
server.wait_for_termination()
"""


class Gate:
    def __init__(self, settings: Settings, auth_dir: Path, upstream: subprocess.Popen[bytes]):
        self.upstream = upstream
        self.status: int | None = None
        self.thread = threading.Thread(
            target=lambda: setattr(
                self,
                "status",
                asyncio.run(connect_gate.serve(settings, auth_dir, upstream, stop_on=())),
            ),
            daemon=True,
        )
        self.thread.start()


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    """Made once for the module: each keytool run starts a JVM."""
    directory = tmp_path_factory.mktemp("gate") / "secrets"
    tls.server_pem(directory, ["127.0.0.1"], "spark-connect")
    tls.secret(directory / connect_auth.TOKEN_FILE)
    return directory


@pytest.fixture
def gate(tmp_path, secrets):
    port = free_port()
    settings = Settings(
        home=tmp_path, bind_host="127.0.0.1", spark_connect_host="127.0.0.1",
        spark_connect_port=port, spark_connect_auth_dir=secrets,
    )  # fmt: skip
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(connect_gate.internal_port(settings))],
        stdout=subprocess.PIPE,
    )
    assert upstream.stdout is not None and upstream.stdout.readline() == b"ready\n"
    running = Gate(settings, secrets, upstream)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket_to(port):
                break
        except OSError:
            time.sleep(0.1)
    yield settings, running
    if upstream.poll() is None:
        upstream.kill()
    running.thread.join(timeout=70)


def socket_to(port: int):
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=1)


def who(channel: grpc.Channel, timeout: float = 10) -> str:
    call = channel.unary_unary("/test.Echo/Who")
    return call(b"", timeout=timeout).decode()


def test_a_client_with_the_cluster_ca_and_token_gets_through_with_its_token(gate):
    settings, _ = gate
    assert settings.spark_connect_auth_dir is not None
    url = f"{settings.spark_connect_url}/;user_agent=test"
    builder = connect_auth.channel_builder(url, settings.spark_connect_auth_dir)
    with builder.toChannel() as channel:
        token = connect_auth.token(settings.spark_connect_auth_dir)
        assert who(channel) == f"Bearer {token}"


def test_a_plaintext_client_or_one_not_trusting_the_ca_gets_nothing(gate, tmp_path):
    settings, _ = gate
    plaintext = grpc.insecure_channel(f"127.0.0.1:{settings.spark_connect_port}")
    with plaintext as channel, pytest.raises(grpc.RpcError) as plain:
        who(channel, timeout=3)
    assert plain.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    other = tls.make_ca(tmp_path / "other-ca", name="another CA")
    url = f"{settings.spark_connect_url}/;user_agent=test"
    builder = connect_auth.TrustedChannelBuilder(url, other.pem.read_bytes(), "t")
    with builder.toChannel() as channel, pytest.raises(grpc.RpcError) as untrusted:
        who(channel, timeout=3)
    assert untrusted.value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


def test_the_key_and_token_are_private(gate):
    settings, _ = gate
    assert settings.spark_connect_auth_dir is not None
    for name in (connect_auth.KEY_FILE, connect_auth.CERT_FILE, connect_auth.TOKEN_FILE):
        assert (settings.spark_connect_auth_dir / name).stat().st_mode & 0o077 == 0, name


def test_the_gate_exits_with_the_server(gate):
    _, running = gate
    running.upstream.kill()
    running.thread.join(timeout=30)
    assert not running.thread.is_alive()
    assert running.status == -9  # the server's status: supervisord restarts the pair
