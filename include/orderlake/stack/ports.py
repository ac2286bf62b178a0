"""Port checks for the embedded stack (all services bind 127.0.0.1)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from orderlake.errors import OrderlakeError


def in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_free(ports: dict[str, tuple[int, str]]) -> None:
    """Raise one clear sentence for the first port in use: {what: (port, env var to change it)}."""
    for what, (port, variable) in ports.items():
        if in_use(port):
            raise OrderlakeError(
                f"Port {port} needed by {what} is already in use on 127.0.0.1; stop the process "
                f"using it or choose another port with {variable}."
            )


# ports handed out by free_port in this process: several are picked before any is bound
_handed_out: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The range the OS takes local ports of outgoing connections from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port free right now, for tests and benchmarks, outside the ephemeral range.

    A port from bind(0) lies inside that range, where any outgoing connection (Kafka clients,
    Spark, Airflow) may take it as its local port before the service binds it; that happened
    once to Flume's Avro source ("Address already in use") in a full test run.
    """
    low, high = ephemeral_range()
    # below the range as Linux sets it by default; above it if it was moved down
    span = (15000, low) if low > 16000 else (high + 1, 65536)
    while True:
        port = random.randrange(*span)  # noqa: S311 -- spreads test ports, guards nothing
        if port not in _handed_out and not in_use(port):
            _handed_out.add(port)
            return port
