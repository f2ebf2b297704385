"""Shared machinery for the platform simulators: a threaded loopback HTTP server, a request log and
fault injection.

A simulator is a plain function ``handle(request) -> SimResponse`` wrapped by :class:`SimServer`.
The server adds two control endpoints that every simulator has:

* ``GET /__sim/requests`` -- the request log, a JSON list of ``{"method", "path", "status"}`` oldest
  first; ``DELETE /__sim/requests`` clears it.
* ``GET|POST|DELETE /__sim/faults`` -- read, add or clear fault rules (see :class:`FaultRule`).

Faults can also be added from Python with :meth:`SimServer.add_fault`.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("429", "500", "502", "503", "504", "202", "slow", "drop", "html")

MAINTENANCE_PAGE = (
    b"<html><head><title>Instance hibernating</title></head>"
    b"<body><h1>This instance is under maintenance</h1></body></html>"
)


@dataclass
class SimRequest:
    """An HTTP request as the simulator handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body); raises ``ValueError`` if malformed."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


@dataclass
class SimResponse:
    """What a handler returns: status, JSON-able body (or raw bytes) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encode(self) -> bytes:
        """The body bytes to send."""
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode("utf-8")


@dataclass
class FaultRule:
    """One fault: ``kind`` on requests whose ``METHOD path`` matches ``match`` (a regex), with probability
    ``rate``, at most ``count`` times (0 = unlimited).

    ``retry_after`` (seconds) goes into the ``Retry-After`` header of 429/503; ``delay`` is the extra
    latency of ``slow``.
    """

    kind: str
    rate: float = 1.0
    count: int = 0
    match: str = ""
    retry_after: float | None = 0
    delay: float = 0.5
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")


Handler = Callable[[SimRequest], SimResponse]


class SimServer:
    """A threaded HTTP server on 127.0.0.1 around a simulator handler.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        handler: Handler,
        port: int = 0,
        host: str = "127.0.0.1",
        auth_check: Callable[[SimRequest], bool] | None = None,
        auth_failure: Callable[[], SimResponse] | None = None,
        seed: int = 1,
    ) -> None:
        self.handler = handler
        self.auth_check = auth_check
        self.auth_failure = auth_failure or (lambda: SimResponse(401, {"error": "unauthorised"}))
        self.log: list[dict[str, Any]] = []
        self.faults: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._server = ThreadingHTTPServer((host, port), self._make_handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SimServer":
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_fault(self, kind: str, **kwargs: Any) -> FaultRule:
        """Add a fault rule (see :class:`FaultRule`)."""
        rule = FaultRule(kind=kind, **kwargs)
        with self._lock:
            self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        with self._lock:
            self.faults.clear()

    def requests(self) -> list[dict[str, Any]]:
        """A copy of the request log."""
        with self._lock:
            return list(self.log)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.log.clear()

    # -- internals -------------------------------------------------------------------------------

    def _pick_fault(self, request: SimRequest) -> FaultRule | None:
        target = f"{request.method} {request.path}"
        with self._lock:
            for rule in self.faults:
                if rule.count and rule.fired >= rule.count:
                    continue
                if rule.match and not re.search(rule.match, target):
                    continue
                if self._random.random() < rule.rate:
                    rule.fired += 1
                    return rule
        return None

    def _control(self, request: SimRequest) -> SimResponse:
        if request.path == "/__sim/requests":
            if request.method == "DELETE":
                self.clear_requests()
                return SimResponse(204)
            return SimResponse(200, self.requests())
        if request.path == "/__sim/faults":
            if request.method == "DELETE":
                self.clear_faults()
                return SimResponse(204)
            if request.method == "POST":
                try:
                    spec = request.json() or {}
                    specs = spec if isinstance(spec, list) else [spec]
                    for item in specs:
                        self.add_fault(**item)
                except (TypeError, ValueError) as exc:
                    return SimResponse(400, {"error": str(exc)})
                return SimResponse(201, [asdict(f) for f in self.faults])
            return SimResponse(200, [asdict(f) for f in self.faults])
        return SimResponse(404, {"error": "unknown control endpoint"})

    def _fault_response(self, rule: FaultRule) -> SimResponse | None:
        headers: dict[str, str] = {}
        if rule.kind in ("429", "503") and rule.retry_after is not None:
            headers["Retry-After"] = str(int(rule.retry_after) if float(rule.retry_after).is_integer() else rule.retry_after)
        if rule.kind == "429":
            return SimResponse(429, {"error": {"message": "Rate limit exceeded", "detail": ""}, "status": "failure",
                                     "errorMessages": ["Rate limit exceeded"]}, headers)
        if rule.kind in ("500", "502", "503", "504"):
            return SimResponse(int(rule.kind), {"error": {"message": "Service unavailable", "detail": ""},
                                                "status": "failure"}, headers)
        if rule.kind == "202":
            return SimResponse(202, None)
        if rule.kind == "html":
            return SimResponse(200, raw=MAINTENANCE_PAGE, headers={"Content-Type": "text/html"})
        return None

    def _make_handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def setup(self) -> None:
                super().setup()
                # Nagle's algorithm delays small keep-alive answers by ~40 ms each: far slower than a real site
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _dispatch(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = SimRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                if parts.path.startswith("/__sim/"):
                    self._send(server._control(request))
                    return
                rule = server._pick_fault(request)
                if rule is not None and rule.kind == "slow":
                    time.sleep(rule.delay)
                    rule = None
                if rule is not None and rule.kind == "drop":
                    server._record(request, 0)
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                response = server._fault_response(rule) if rule is not None else None
                if response is None:
                    if server.auth_check is not None and not server.auth_check(request):
                        response = server.auth_failure()
                    else:
                        try:
                            response = server.handler(request)
                        except Exception as exc:  # a simulator bug must answer 500, not hang the client
                            response = SimResponse(500, {"error": {"message": f"simulator error: {exc!r}"}})
                server._record(request, response.status)
                self._send(response)

            def _send(self, response: SimResponse) -> None:
                payload = response.encode()
                self.send_response(response.status)
                headers = dict(response.headers)
                if payload and not any(k.lower() == "content-type" for k in headers):
                    headers["Content-Type"] = "application/json;charset=UTF-8"
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

        return _Handler

    def _record(self, request: SimRequest, status: int) -> None:
        with self._lock:
            self.log.append({"method": request.method, "path": request.path, "status": status})
