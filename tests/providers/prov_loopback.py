"""A small HTTP(S) server on 127.0.0.1 that hands each request to an app object.

The cloud fakes (GCP instance group managers, Azure scale sets) and the proxy in front of
moto are such apps; :class:`prov_faults.FaultInjector` wraps any of them. Real SDK clients
talk to the server over real sockets, so everything from URL building to response parsing
and long-running-operation polling is the SDK's own code.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


@dataclass
class Request:
    method: str
    target: str
    """Path and query, as sent."""
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    fault: str = ""
    """Set by the fault injector for faults the app must act out (stockout, partial delete)."""

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


DROP = Response(-1)
"""Close the connection without answering (what a client sees as a timeout)."""


@dataclass(frozen=True)
class Call:
    """What a request is, for fault injection and counting."""

    kind: str
    """read, scale, delete, poll or other."""
    permission: str
    """The cloud permission this request needs (named in injected permission errors)."""
    instances: int = 0
    """For deletes: how many instances the request names."""


class App(Protocol):
    def handle(self, request: Request) -> Response: ...

    def classify(self, request: Request) -> Call: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm and delayed ACKs each
    # request would wait ~40 ms on loopback.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app.handle(request)
        except Exception as exc:  # a fake's bug must show up as a 500, not a hang
            response = Response.json(500, {"error": {"code": 500, "message": repr(exc)}})
            self.server.errors.append(exc)
        if response is DROP or response.status < 0:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.errors: list[BaseException] = []


class LoopbackServer:
    """Serves ``app`` on ``127.0.0.1`` (TLS when ``ssl_context`` is given) in a thread."""

    def __init__(self, app: App, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server(app)
        self.tls = ssl_context is not None
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions the app raised (each was answered with a 500)."""
        return self._server.errors

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
