"""Prometheus metrics and the health check of the job.

``mim run --metrics-port N`` serves them at ``/metrics`` and answers ``/healthz`` (200 while the last
successful cycle is recent, 503 otherwise) from :func:`serve`; ``mim sync --once --metrics-file FILE`` writes
the same metrics for node_exporter's textfile collector, carrying the counters over from the previous file so
they keep counting up across runs. Names (all ``mim_``) are documented in docs/deployment.md; the alert rules
and the dashboard in deploy/ use them, and a test checks every name they use is served.

No label ever holds a ticket, a URL or a secret: kinds, results, methods and status codes only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from connector.platforms.observe import HttpObservable

if TYPE_CHECKING:
    from connector.job.assembly import Job
    from connector.job.cycle import CycleReport

VERSION = "0.1.0"
STALE_AFTER_INTERVALS = 3
"""``/healthz`` turns 503 when no cycle succeeded for this many intervals."""
ACTION_KINDS = ("declare", "create_parent", "link", "note", "set_fields", "set_stage", "create_task", "create_change",
                "resolve_child", "notify")
WRITE_RESULTS = ("applied", "skipped", "failed")
CYCLE_RESULTS = ("ok", "platform_error", "state_error", "crashed", "lock_lost")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class Health:
    """The answer of ``/healthz``."""

    ok: bool
    role: str
    detail: str
    last_success_age_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "stale", "role": self.role, "detail": self.detail,
                "last_success_age_seconds": None if self.last_success_age_s is None else round(self.last_success_age_s, 1)}


class Metrics:
    """The job's metrics in a registry of their own, and what ``/healthz`` needs to answer."""

    def __init__(self, platform: str, store: str, interval_s: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.interval_s = float(interval_s)
        self.info = Gauge("mim_info", "The running connector: platform, state store kind and version (always 1)",
                          ["platform", "store", "version"], registry=r)
        self.info.labels(platform, store, VERSION).set(1)
        self.interval = Gauge("mim_interval_seconds", "The configured time between cycles", registry=r)
        self.interval.set(self.interval_s)
        self.cycles = Counter("mim_cycles", "Sync cycles by result: ok, platform_error, state_error, crashed, "
                              "lock_lost", ["result"], registry=r)
        self.cycle_duration = Histogram("mim_cycle_duration_seconds", "Wall time of successful cycles",
                                        buckets=DURATION_BUCKETS, registry=r)
        self.last_cycle_duration = Gauge("mim_last_cycle_duration_seconds", "Wall time of the last successful cycle",
                                         registry=r)
        self.tickets_read = Counter("mim_tickets_read", "Tickets read from the platform by the delta polls", registry=r)
        self.decisions = Counter("mim_decisions", "Engine decisions by kind: declaration, late_link", ["kind"],
                                 registry=r)
        self.writes = Counter("mim_writes", "Actions sent, by kind and result (applied, skipped: already true, "
                              "failed)", ["kind", "result"], registry=r)
        self.requests = Counter("mim_http_requests", "HTTP requests to the platform by method and status "
                                "(error: no answer)", ["platform", "method", "status"], registry=r)
        self.request_duration = Histogram("mim_http_request_duration_seconds", "HTTP request latency to the platform",
                                          ["platform"], buckets=DURATION_BUCKETS, registry=r)
        self.retries = Counter("mim_retries", "Requests retried under the retry policy", ["platform"], registry=r)
        self.active = Gauge("mim_active", "1 while this process holds the runner lock (active), 0 while it waits "
                            "as standby", registry=r)
        self.lock_acquired = Counter("mim_lock_acquired", "Times this process became the active runner", registry=r)
        self.lock_lost = Counter("mim_lock_lost", "Times the runner lock was lost while active (its database "
                                 "session ended)", registry=r)
        self.last_success = Gauge("mim_last_success_timestamp_seconds", "Unix time the last successful cycle "
                                  "ended (of this state, by any runner)", registry=r)
        for result in CYCLE_RESULTS:
            self.cycles.labels(result)
        for kind in ("declaration", "late_link"):
            self.decisions.labels(kind)
        for kind in ACTION_KINDS:
            for outcome in WRITE_RESULTS:
                self.writes.labels(kind, outcome)
        self.retries.labels(platform)
        self.platform = platform
        self.started = time.time()
        self.role = "starting"
        self.active_since: float | None = None
        self.last_success_at: float | None = None
        self.last_poll: float = self.started
        self._retries_seen = 0

    # -- what the job reports --

    def attach(self, job: "Job") -> None:
        """Observe the job's HTTP requests (where the adapter allows it)."""
        if isinstance(job.platform, HttpObservable):
            job.platform.observe_http(self.observe_request)

    def observe_request(self, platform: str, method: str, status: str, seconds: float) -> None:
        """One HTTP request (the hook of :mod:`connector.platforms.observe`)."""
        self.requests.labels(platform, method, status).inc()
        self.request_duration.labels(platform).observe(seconds)

    def count_retries(self, total: int) -> None:
        """The retry policy's running count (``RetryPolicy.retries``); the increase is added."""
        if total > self._retries_seen:
            self.retries.labels(self.platform).inc(total - self._retries_seen)
        self._retries_seen = total

    def cycle_done(self, report: "CycleReport", ended: float | None = None) -> None:
        """A successful cycle: its counts, its writes by kind and result, the time of success."""
        ended = time.time() if ended is None else ended
        self.cycles.labels("ok").inc()
        self.cycle_duration.observe(report.duration_s)
        self.last_cycle_duration.set(report.duration_s)
        self.tickets_read.inc(report.tickets_read)
        self.decisions.labels("declaration").inc(len(report.declarations))
        self.decisions.labels("late_link").inc(report.late_links)
        kinds = {item["key"]: item["kind"] for item in report.planned if "key" in item}
        for key, outcome in report.outcomes.items():
            self.writes.labels(kinds.get(key, key.split(":", 1)[0]), outcome.status).inc()
        self.succeeded(ended)

    def succeeded(self, at: float) -> None:
        """Remember a successful cycle that ended at ``at`` (Unix time)."""
        self.last_success_at = at
        self.last_success.set(at)

    def cycle_failed(self, result: str) -> None:
        """A cycle that did not complete: ``platform_error``, ``state_error``, ``crashed`` or ``lock_lost``."""
        self.cycles.labels(result).inc()

    def became_active(self, last_success: float | None) -> None:
        """This process took the runner lock; ``last_success`` is the last cycle the state remembers."""
        self.role = "active"
        self.active.set(1)
        self.lock_acquired.inc()
        self.active_since = time.time()
        if last_success is not None and (self.last_success_at is None or last_success > self.last_success_at):
            self.succeeded(last_success)

    def became_standby(self) -> None:
        """Another process holds the runner lock; this one waits."""
        self.role = "standby"
        self.active.set(0)
        self.active_since = None
        self.last_poll = time.time()

    def lost_lock(self) -> None:
        """The runner lock was lost while active."""
        self.lock_lost.inc()
        self.cycle_failed("lock_lost")
        self.became_standby()

    # -- health --

    def health(self, now: float | None = None) -> Health:
        """Healthy while the last successful cycle is recent (``STALE_AFTER_INTERVALS`` intervals; a runner that
        just became active gets as long for its first), or, as standby, while it keeps watching the lock."""
        now = time.time() if now is None else now
        limit = STALE_AFTER_INTERVALS * self.interval_s
        age = None if self.last_success_at is None else now - self.last_success_at
        if self.role == "active":
            reference = max(x for x in (self.last_success_at, self.active_since, self.started) if x is not None)
            fresh = now - reference <= limit
            detail = (f"last successful cycle {age:.0f}s ago" if age is not None else "no successful cycle yet")
            return Health(fresh, "active", detail + ("" if fresh else f" (limit {limit:.0f}s)"), age)
        if self.role == "standby":
            watching = now - self.last_poll <= limit
            return Health(watching, "standby", "waiting for the runner lock" if watching else
                          "the standby stopped watching the lock", age)
        fresh = now - self.started <= limit
        return Health(fresh, self.role, "starting", age)

    # -- textfile collector (mim sync --once) --

    def load_textfile(self, path: Path) -> None:
        """Continue the counters (and the time of the last success) of a previous run's file; a missing or
        unreadable file starts from zero, which Prometheus reads as a counter reset."""
        try:
            text = path.read_text(encoding="utf-8")
            families = list(text_string_to_metric_families(text))
        except (OSError, ValueError):
            return
        counters = {"mim_cycles": self.cycles, "mim_tickets_read": self.tickets_read, "mim_decisions": self.decisions,
                    "mim_writes": self.writes, "mim_http_requests": self.requests, "mim_retries": self.retries,
                    "mim_lock_acquired": self.lock_acquired, "mim_lock_lost": self.lock_lost}
        for family in families:
            if family.name == "mim_last_success_timestamp_seconds":
                for sample in family.samples:
                    if sample.value > 0:
                        self.succeeded(sample.value)
                continue
            counter = counters.get(family.name)
            if counter is None or family.type != "counter":
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total") or sample.value <= 0:
                    continue
                labelled = counter.labels(**sample.labels) if sample.labels else counter
                labelled.inc(sample.value)

    def write_textfile(self, path: Path) -> None:
        """Write the metrics atomically (a temporary file renamed), as node_exporter's collector wants."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:  # noqa: N802 (the http.server interface)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self.metrics.exposition())
        elif path in ("/healthz", "/health"):
            health = self.metrics.health()
            self._send(200 if health.ok else 503, "application/json", json.dumps(health.to_dict()).encode() + b"\n")
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", b"mim: /metrics /healthz\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not logged."""


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a port, served from a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        handler = type("MetricsHandler", (_Handler,), {"metrics": metrics})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mim-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Start serving ``metrics`` on ``host:port`` (port 0: any free one, see ``.port``)."""
    return MetricsServer(metrics, host, port).start()


def store_kind(location: str) -> str:
    """``sqlite`` or ``postgresql`` for the ``mim_info`` label."""
    return "postgresql" if str(location).startswith(("postgresql://", "postgres://")) else "sqlite"


__all__ = ["Health", "Metrics", "MetricsServer", "STALE_AFTER_INTERVALS", "serve", "store_kind"]
