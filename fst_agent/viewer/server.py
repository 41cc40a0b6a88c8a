"""The viewer's HTTP server: the standard library's threading server in front of :class:`ViewerApp`.

One thread per request (SQLite reads release the GIL, so a slow page does not hold up the others); only GET
and HEAD are answered. Bound to loopback (the default) it also refuses requests whose ``Host`` is not a
loopback name, so a web page elsewhere cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog

from fst_agent.viewer.app import SECURITY_HEADERS, Response, ViewerApp
from fst_agent.viewer.errors import ViewerError

log = structlog.get_logger(__name__)

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _hostname(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: without this, Nagle's algorithm holds the body back until the client's
    # delayed ACK of the headers (~40 ms on Linux)
    disable_nagle_algorithm = True

    def _send(self, response: Response, head: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    def _allowed_host(self) -> bool:
        if not self.server.loopback_only:
            return True
        name = _hostname(self.headers.get("Host", ""))
        return name in _LOOPBACK_NAMES or name == self.server.bound_host or _is_loopback(name)

    def _serve(self, head: bool) -> None:
        if not self._allowed_host():
            body = b"this viewer answers only requests addressed to a loopback name (localhost, 127.0.0.1)\n"
            self._send(Response(403, body, "text/plain; charset=utf-8", dict(SECURITY_HEADERS)), head)
            return
        parts = urlsplit(self.path)
        self._send(self.server.app.handle(parts.path or "/", parts.query), head)

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse(self) -> None:
        # the request's body is never read: close the connection so it cannot be taken for the next request
        self.close_connection = True
        body = b"read-only viewer: only GET and HEAD\n"
        self._send(Response(405, body, "text/plain; charset=utf-8",
                            {**SECURITY_HEADERS, "Allow": "GET, HEAD", "Connection": "close"}))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is noise; errors still go to log_message

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
        log.debug("viewer.http", client=self.client_address[0], line=format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: ViewerApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.bound_host = address[0]
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class ViewerServer:
    """Serves a :class:`ViewerApp` on ``host:port`` (port 0: a free one; :attr:`url` says which).

    ``serve_forever()`` blocks (the CLI); ``start()`` serves from a background thread (tests, notebooks);
    either way ``close()`` stops it and closes the runs' read connections. Usable as a context manager
    (started on enter)."""

    def __init__(self, app: ViewerApp, host: str | None = None, port: int | None = None) -> None:
        self.app = app
        host = host if host is not None else app.config.host
        port = port if port is not None else app.config.port
        try:
            self._server = _Server((host, port), app, loopback_only=_is_loopback(host))
        except OSError as exc:
            raise ViewerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                              + (" (another program uses the port: pass --port 0 for a free one)"
                                 if exc.errno in (98, 48) else "")) from None
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def loopback(self) -> bool:
        return self._server.loopback_only

    def serve_forever(self) -> None:
        log.info("viewer.serving", url=self.url, runs=[r.name for r in self.app.runs])
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> ViewerServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fst-agent-viewer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self.app.close()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
