"""Spark Connect behind TLS and a bearer token (cluster mode): what the server's gate and every
client read from ORDERLAKE_SPARK_CONNECT_AUTH_DIR.

The directory holds ``ca.pem`` (the cluster's CA, orderlake.cluster.tls), ``spark-connect.token``
(the token the server demands on every call) and the server's certificate and key as PEM, all
0600; `orderlake cluster up` makes them. Spark's Connect server checks a pre-shared token
(SPARK_CONNECT_AUTHENTICATE_TOKEN) but speaks no TLS, and pyspark sends a token only over TLS to
any host but "localhost": so the `spark` program binds the server to loopback and puts a TLS
gate in front of it (orderlake.stack.connect_gate), and clients dial the gate with a channel
that trusts the cluster's CA, not the system's roots (``channel_builder``).

Example::

    session = RemoteSparkSession.builder.channelBuilder(
        channel_builder(settings.spark_connect_url, settings.spark_connect_auth_dir)
    ).create()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from pyspark.sql.connect.client.core import DefaultChannelBuilder

from orderlake.errors import OrderlakeError

CA_FILE = "ca.pem"
SERVER = "spark-connect"  # the names of the server's files (tls.server_pem makes the PEM pair)
TOKEN_FILE = f"{SERVER}.token"
CERT_FILE = f"{SERVER}.crt.pem"
KEY_FILE = f"{SERVER}.key.pem"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # noqa: S105 - what Spark's server reads
# the Connect server's own port behind the gate, on the gate host's loopback
INTERNAL_PORT_OFFSET = 1


def read(directory: Path, name: str) -> bytes:
    """A file of the auth directory; one sentence naming it when it is missing."""
    path = Path(directory) / name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OrderlakeError(
            f"The Spark server's TLS and token material is incomplete: {path} cannot be read "
            f"({exc.strerror}); `orderlake cluster up` makes it."
        ) from None


def token(directory: Path) -> str:
    return read(directory, TOKEN_FILE).decode().strip()


class TrustedChannelBuilder(DefaultChannelBuilder):
    """pyspark's channel builder, with TLS trusting only the cluster's CA and the token sent as
    ``authorization: Bearer`` on every call (pyspark's own TLS trusts the system's roots)."""

    def __init__(self, url: str, ca_pem: bytes, bearer: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._ca_pem = ca_pem
        self._bearer = bearer

    def toChannel(self) -> grpc.Channel:  # noqa: N802 - pyspark's name
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=self._ca_pem),
            grpc.access_token_call_credentials(self._bearer),
        )
        return self._secure_channel(self.endpoint, credentials)


def channel_builder(url: str, directory: Path) -> TrustedChannelBuilder:
    return TrustedChannelBuilder(url, read(directory, CA_FILE), token(directory))
