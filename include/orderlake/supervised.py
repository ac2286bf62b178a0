"""Questions to this home's supervisord that runtime code asks (is the warm Spark starting?),
without the launcher: stack/supervisor.py writes supervisord's configuration and starts and
stops programs through the same socket.
"""

from __future__ import annotations

import hashlib
import tempfile
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from orderlake.settings import Settings


def socket_path(settings: Settings) -> Path:
    """Unix socket of supervisord; moved to the temp dir when the home path is too long for
    AF_UNIX (about 107 bytes)."""
    path = settings.run_dir / "supervisor.sock"
    if len(str(path)) < 100:
        return path
    home = str(settings.home.resolve()).encode()
    digest = hashlib.sha1(home, usedforsecurity=False).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"orderlake-{digest}.sock"


def proxy(sock: Path) -> Any:  # XML-RPC proxies are dynamically typed
    transport = SupervisorTransport(None, None, serverurl=f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def processes(settings: Settings) -> dict[str, dict]:
    """{name: supervisord's process info} (statename, pid, start, now, spawnerr, ...); empty
    when no supervisord runs in this home (stopped, or a cluster host's services elsewhere)."""
    try:
        return {p["name"]: p for p in proxy(socket_path(settings)).supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error):
        return {}
