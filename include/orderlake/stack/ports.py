"""Port checks for the embedded stack (all services bind 127.0.0.1)."""

from __future__ import annotations

import socket

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


def free_port() -> int:
    """A port the OS considers free right now (tests and benchmarks pick ports this way)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
