"""HTTP for the dashboard: GET requests -> the page, its JSON answers and Data Docs (read-only).

    GET /                 the page (static/index.html; app.js draws the bars as SVG)
    GET /api/figures      both figures from gold.orders_by_age_gender (?from=YYYY-MM-DD&to=...)
    GET /api/health       components up or down with their state; speed-layer rates, latency, lag
    GET /api/checks       last reconciliation and validation runs, links to Airflow and Data Docs
    GET /data-docs/...    ORDERLAKE_HOME/reports/data_docs
    GET /healthz          200 "ok": the process serves (readiness for `orderlake up`)

The standard library's ThreadingHTTPServer is enough: a handful of users, answers in
milliseconds. It binds ORDERLAKE_BIND_HOST (127.0.0.1 by default; 0.0.0.0 in a container).
Other methods get 501 from the base handler.
"""

from __future__ import annotations

import errno
import json
import mimetypes
import signal
import sys
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from orderlake.dashboard.api import Dashboard
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "orderlake-dashboard"

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        url = urlsplit(self.path)
        route = url.path
        try:
            if route in ("/", "/index.html"):
                self._file(STATIC / "index.html", STATIC)
            elif route.startswith("/static/"):
                self._file(STATIC / unquote(route.removeprefix("/static/")), STATIC)
            elif route == "/api/figures":
                query = parse_qs(url.query)
                self._json(self.server.app.figures(_date(query, "from"), _date(query, "to")))
            elif route == "/api/health":
                self._json(self.server.app.health())
            elif route == "/api/checks":
                self._json(self.server.app.checks())
            elif route == "/data-docs" or route.startswith("/data-docs/"):
                self._data_docs(unquote(route.removeprefix("/data-docs").lstrip("/")))
            elif route == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._not_found()
        except UsageError as exc:
            self._json({"ok": False, "message": str(exc)}, HTTPStatus.BAD_REQUEST)
        except Exception as exc:  # noqa: BLE001 - one bad answer must not take the page down
            self.log_error("%s failed: %r", route, exc)
            doc = {"ok": False, "message": "no data yet", "reason": f"{type(exc).__name__}: {exc}"}
            self._json(doc, HTTPStatus.INTERNAL_SERVER_ERROR)

    do_HEAD = do_GET  # noqa: N815

    def _data_docs(self, rel: str) -> None:
        root = self.server.app.data_docs_dir
        if not root.is_dir():
            body = (
                "<!doctype html><title>Data Docs</title><p>No Data Docs yet: they appear in "
                f"{root} after the first validate_quality run.</p>"
            )
            self._send(HTTPStatus.NOT_FOUND, body.encode(), "text/html; charset=utf-8")
            return
        self._file(root / (rel or "index.html"), root)

    def _file(self, path: Path, root: Path) -> None:
        # resolve first: "..", symlinks and absolute parts must not leave the served directory
        target = path.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            self._not_found()
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith(("javascript", "json")):
            kind += "; charset=utf-8"
        self._send(HTTPStatus.OK, target.read_bytes(), kind)

    def _json(self, doc: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(doc, default=str).encode()
        self._send(status, body, "application/json")

    def _not_found(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # every refresh shows the lake as it is
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # the page polls every few seconds: log failed requests only, not every answer
        if isinstance(code, int) and code >= 400:
            super().log_request(code, size)


def _date(query: dict[str, list[str]], name: str) -> date | None:
    text = (query.get(name) or [""])[0]
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a date; use YYYY-MM-DD.") from None


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung browser connection never blocks shutdown

    def __init__(self, settings: Settings, port: int | None = None):
        self.app = Dashboard(settings)
        port = settings.dashboard_port if port is None else port
        self.host = settings.bind_host
        try:
            super().__init__((self.host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OrderlakeError(
                    f"Port {port} needed by the dashboard is already in use on {self.host}; stop "
                    "the process using it or choose another port with ORDERLAKE_DASHBOARD_PORT."
                ) from None
            raise

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}/"

    def server_close(self) -> None:
        super().server_close()
        self.app.close()


def serve(settings: Settings, port: int | None = None) -> None:
    """Serve in the foreground until SIGTERM or Ctrl-C."""
    server = DashboardServer(settings, port)
    # supervisord stops programs with SIGTERM: leave serve_forever and close cleanly
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"orderlake dashboard on {server.url} (ORDERLAKE_HOME={settings.home})", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> int:
    try:
        serve(Settings.from_env())
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
