"""The warm Spark behind a TLS gate: the `spark` program when ORDERLAKE_SPARK_CONNECT_AUTH_DIR is
set (cluster mode).

    python -m orderlake.stack.connect_gate

Starts Spark's Connect server (stack/spark_server.py's command) as a child bound to
127.0.0.1:<port + 1>, demanding the bearer token of orderlake.connect_auth (handed over in
SPARK_CONNECT_AUTHENTICATE_TOKEN, never on a command line another user could read), and serves
ORDERLAKE_BIND_HOST:ORDERLAKE_SPARK_CONNECT_PORT with TLS (the certificate the cluster's CA
signed for the server's host names; ALPN h2, which gRPC clients insist on), copying bytes both
ways between each client and the server. The token is checked by Spark itself; the gate only
keeps it, and everything else a client sends, off the wire in clear.

One program, so supervisord (or the container runtime) watches one process: the gate listens
once the server answers, exits with the server's status when the server dies, and stops the
server on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

from orderlake import connect_auth
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings

log = logging.getLogger("orderlake.connect_gate")
CHUNK = 256 * 1024
STOP_TIMEOUT_S = 60.0


def internal_port(settings: Settings) -> int:
    return settings.spark_connect_port + connect_auth.INTERNAL_PORT_OFFSET


def tls_context(directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / connect_auth.CERT_FILE, directory / connect_auth.KEY_FILE)
    context.set_alpn_protocols(["h2"])
    return context


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass  # the other side went away: close ours too
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def serve(
    settings: Settings,
    auth_dir: Path,
    server: subprocess.Popen[bytes],
    stop_on: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Gate connections to the server until it exits (its status) or one of ``stop_on``
    arrives (0; signals reach only an event loop in the main thread)."""
    upstream = internal_port(settings)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:  # the server has just died: the client retries, supervisord restarts
            client_w.close()
            return
        await asyncio.gather(_copy(client_r, server_w), _copy(server_r, client_w))

    loop = asyncio.get_running_loop()
    # a client that does not speak TLS fails its handshake: one line, not a stack trace
    loop.set_exception_handler(lambda _, ctx: log.warning("gate: %s", ctx.get("message")))
    stop = asyncio.Event()
    for sig in stop_on:
        loop.add_signal_handler(sig, stop.set)
    # the public port opens once the server answers: a health check (compose's, a TCP connect)
    # then means what it meant without the gate
    while server.poll() is None and not stop.is_set() and not await _accepts(upstream):
        await asyncio.sleep(0.5)
    if server.poll() is not None:
        return server.returncode
    gate = await asyncio.start_server(
        handle,
        settings.bind_host,
        settings.spark_connect_port,
        ssl=tls_context(auth_dir),
        ssl_handshake_timeout=10,
    )
    exited = loop.run_in_executor(None, server.wait)
    exited.add_done_callback(lambda _: stop.set())
    await stop.wait()  # SIGTERM, or the server exited
    gate.close()
    stopped_by_server = exited.done()
    if server.poll() is None:
        server.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_TIMEOUT_S)
        except TimeoutError:
            server.kill()
            server.wait()
    return server.returncode if stopped_by_server else 0


def start_server(settings: Settings, auth_dir: Path) -> subprocess.Popen[bytes]:
    from orderlake.stack import spark_server

    env = {
        **os.environ,
        **spark_server.environment(settings),
        connect_auth.TOKEN_ENV: connect_auth.token(auth_dir),
    }
    argv = spark_server.command(settings, bind=("127.0.0.1", internal_port(settings)))
    return subprocess.Popen(argv, env=env)  # noqa: S603 - spark-submit of pyspark's own Spark


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
        auth_dir = settings.spark_connect_auth_dir
        if auth_dir is None:
            raise OrderlakeError(
                "The TLS gate needs ORDERLAKE_SPARK_CONNECT_AUTH_DIR (the server's certificate, "
                "key and token)."
            )
        tls_context(auth_dir)  # fails before the server starts
        server = start_server(settings, auth_dir)
    except (OrderlakeError, OSError, ssl.SSLError) as exc:
        print(f"orderlake: {exc}", file=sys.stderr)
        return 1
    log.info(
        "gate: TLS on %s:%s -> the Spark Connect server on 127.0.0.1:%s",
        settings.bind_host,
        settings.spark_connect_port,
        internal_port(settings),
    )
    return asyncio.run(serve(settings, auth_dir, server))


if __name__ == "__main__":
    raise SystemExit(main())
