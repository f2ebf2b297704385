"""Shared machinery for the platform simulators: one way to route requests, a threaded loopback HTTP server,
a request log and fault injection.

A simulator declares its endpoints as a table of :class:`Route` values and answers through one
:class:`Router`, which also holds what the platform says to an unknown path, a wrong method and missing
credentials. :class:`SimServer` serves a plain function ``handle(request) -> SimResponse`` (the simulator's
router behind its lock) and adds, in front of every route, fault injection and two control endpoints:

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
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("429", "500", "502", "503", "504", "202", "slow", "drop", "html", "cut")
CONNECTION_FAULTS = ("drop", "cut")
"""Faults of the connection itself: they apply to a whole HTTP request, never to one item inside it."""

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
    latency of ``slow``. ``cut`` carries the request out and sends the headers and half of its answer, then
    closes the connection (a body cut short). With ``after`` the request is carried out first and the fault replaces its answer: the
    client cannot tell whether it landed (a lost answer), the case a retry must read back before it writes.
    """

    kind: str
    rate: float = 1.0
    count: int = 0
    match: str = ""
    retry_after: float | None = 0
    delay: float = 0.5
    after: bool = False
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")


Handler = Callable[[SimRequest], SimResponse]

ANY_METHOD = "*"
"""``Route.methods`` of a route whose handler answers every method itself (when the platform checks
something else before the method)."""

Groups = Mapping[str, "str | None"]
"""The named parts of a matched path (``None`` for an optional part that was absent)."""

_TEMPLATE_TOKEN = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<choices>[^{}]*))?\}|(?P<bracket>[\[\]])")


def compile_path(template: str) -> re.Pattern[str]:
    """The regex of a path template, matched against a whole path.

    ``{name}`` is one path segment (a named group), ``{name:a|b}`` one of the words given, ``[...]`` an
    optional part; everything else is literal: ``/api/now[/{version:v1|v2}]/table/{table}[/]``.
    """
    parts: list[str] = []
    depth = 0
    position = 0
    for token in _TEMPLATE_TOKEN.finditer(template):
        parts.append(re.escape(template[position:token.start()]))
        position = token.end()
        if token["bracket"] == "[":
            depth += 1
            parts.append("(?:")
        elif token["bracket"] == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in path template {template!r}")
            parts.append(")?")
        elif token["choices"] is None:
            parts.append(f"(?P<{token['name']}>[^/]+)")
        else:
            choices = "|".join(re.escape(choice) for choice in token["choices"].split("|"))
            parts.append(f"(?P<{token['name']}>{choices})")
    if depth:
        raise ValueError(f"unbalanced '[' in path template {template!r}")
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))


@dataclass(frozen=True)
class Route:
    """One endpoint of a simulated API: the methods it answers, a path template (see :func:`compile_path`) and
    the handler, called as ``handler(request, **groups)``.

    ``methods`` is a space-separated list (``"GET HEAD"``) or :data:`ANY_METHOD`. A ``public`` route needs no
    credentials. ``serves(groups)`` says whether the site serves the path right now (a flavour, an API
    version, a feature switch); a path no route serves is unknown, not a wrong method. ``check(request,
    **groups)`` runs as soon as the path matches, before the method is looked at, and may answer instead of
    the handler (what the platform validates first). Routes that share a path share ``public`` and ``check``.
    """

    methods: str
    path: str
    handler: Callable[..., SimResponse]
    public: bool = False
    serves: Callable[[Groups], bool] | None = None
    check: Callable[..., SimResponse | None] | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_path(self.path))

    def accepts(self, method: str) -> bool:
        """Whether the route answers ``method``."""
        return self.methods == ANY_METHOD or method.upper() in self.methods.split()

    def match(self, path: str) -> dict[str, str | None] | None:
        """The named parts of ``path`` when this route serves it, else ``None``."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        groups = found.groupdict()
        if self.serves is not None and not self.serves(groups):
            return None
        return groups

    def example(self, **values: str) -> str:
        """A concrete path of this route: each ``{name}`` from ``values`` (default: its first word, or ``x``),
        optional parts left out."""
        out: list[str] = []
        depth = 0
        position = 0
        for token in _TEMPLATE_TOKEN.finditer(self.path):
            if not depth:
                out.append(self.path[position:token.start()])
            position = token.end()
            if token["bracket"]:
                depth += 1 if token["bracket"] == "[" else -1
            elif not depth:
                default = token["choices"].split("|")[0] if token["choices"] is not None else "x"
                out.append(values.get(token["name"], default))
        out.append(self.path[position:])
        return "".join(out)


@dataclass(frozen=True)
class Resolution:
    """Where a request goes: ``known`` is the first route serving the path (``None``: unknown path),
    ``route`` the one that also accepts the method (``None``: wrong method), ``groups`` the path's parts."""

    known: Route | None
    route: Route | None
    groups: dict[str, str | None]


class Router:
    """The one dispatcher of both simulators: a table of :class:`Route` values plus the platform's answers to
    an unknown path, a wrong method and missing credentials.

    A request is authenticated first (unless its path is public), then the path's ``check`` runs, then the
    first route that accepts the method answers.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        not_found: Handler,
        wrong_method: Handler,
        authorised: Callable[[SimRequest], bool],
        unauthorised: Handler,
    ) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self.not_found = not_found
        self.wrong_method = wrong_method
        self.authorised = authorised
        self.unauthorised = unauthorised

    def resolve(self, method: str, path: str) -> Resolution:
        """The routes that serve ``path`` and accept ``method``."""
        known: Route | None = None
        known_groups: dict[str, str | None] = {}
        for route in self.routes:
            groups = route.match(path)
            if groups is None:
                continue
            if known is None:
                known, known_groups = route, groups
            if route.accepts(method):
                return Resolution(known, route, groups)
        return Resolution(known, None, known_groups)

    def dispatch(self, request: SimRequest, *, path: str | None = None, authenticate: bool = True) -> SimResponse:
        """Answer ``request`` (its path, or ``path`` when the platform normalises it first); with
        ``authenticate=False`` credentials are not checked (a sub-request of an authenticated batch)."""
        found = self.resolve(request.method, request.path if path is None else path)
        if authenticate and not (found.known is not None and found.known.public) and not self.authorised(request):
            return self.unauthorised(request)
        if found.known is None:
            return self.not_found(request)
        if found.known.check is not None:
            answer = found.known.check(request, **found.groups)
            if answer is not None:
                return answer
        if found.route is None:
            return self.wrong_method(request)
        return found.route.handler(request, **found.groups)


class SimServer:
    """A threaded HTTP server on 127.0.0.1 around a simulator handler (which checks credentials itself, see
    :class:`Router`).

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port;
    ``poll_interval`` is how often the serving thread looks for :meth:`stop`.
    """

    def __init__(
        self,
        handler: Handler,
        port: int = 0,
        host: str = "127.0.0.1",
        seed: int = 1,
        *,
        poll_interval: float = 0.05,
        name: str = "sim",
    ) -> None:
        self.handler = handler
        self.poll_interval = poll_interval
        self.name = name
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
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": self.poll_interval},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def close(self) -> None:
        """Close the socket after :meth:`serve_forever` returned."""
        self._server.server_close()

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

    def fault_for(self, request: SimRequest, connection: bool = True) -> FaultRule | None:
        """The fault rule that fires for ``request`` now, if any (counted as fired). A simulator that answers
        several requests in one (a batch) asks for each inner request with ``connection=False``: only the
        faults of an answer (not ``drop`` or ``cut``) apply to those."""
        return self._pick_fault(request, connection)

    def fault_answer(self, rule: FaultRule, request: SimRequest) -> SimResponse | None:
        """The answer of a fault rule (``None`` for ``slow``, ``drop`` and ``cut``)."""
        return self._fault_response(rule, request)

    # -- internals -------------------------------------------------------------------------------

    def _pick_fault(self, request: SimRequest, connection: bool = True) -> FaultRule | None:
        target = f"{request.method} {request.path}"
        with self._lock:
            for rule in self.faults:
                if rule.count and rule.fired >= rule.count:
                    continue
                if not connection and rule.kind in CONNECTION_FAULTS:
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

    def _fault_response(self, rule: FaultRule, request: SimRequest) -> SimResponse | None:
        """The answer of a fault that answers (``None`` for ``slow`` and ``drop``)."""
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
                carried_out = None
                if rule is None or rule.after or rule.kind == "cut":
                    carried_out = self._answer(request)
                if rule is not None and rule.kind == "drop":
                    server._record(request, 0)
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if rule is not None and rule.kind == "cut":
                    answer = carried_out or self._answer(request)
                    server._record(request, answer.status)
                    self._send(answer, cut=True)
                    return
                faulted = server._fault_response(rule, request) if rule is not None else None
                response = faulted or carried_out or self._answer(request)
                server._record(request, response.status)
                self._send(response)

            def _answer(self, request: SimRequest) -> SimResponse:
                try:
                    return server.handler(request)
                except Exception as exc:  # a simulator bug must answer 500, not hang the client
                    return SimResponse(500, {"error": {"message": f"simulator error: {exc!r}"}})

            def _send(self, response: SimResponse, cut: bool = False) -> None:
                payload = response.encode()
                self.send_response(response.status)
                headers = dict(response.headers)
                if payload and not any(k.lower() == "content-type" for k in headers):
                    headers["Content-Type"] = "application/json;charset=UTF-8"
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if cut:
                    # the promised length never arrives: the client reads a body cut short
                    self.wfile.write(payload[:len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

        return _Handler

    def _record(self, request: SimRequest, status: int) -> None:
        with self._lock:
            self.log.append({"method": request.method, "path": request.path, "status": status})
