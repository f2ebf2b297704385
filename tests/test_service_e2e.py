"""`mim run` as a service: an active/passive pair on one PostgreSQL state (a real server, see conftest.py), the
standby taking over from a killed active within one interval without writing anything twice, and the metrics
and health endpoints as Prometheus and Kubernetes read them, over real HTTP, against the ServiceNow simulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from connector.sim.servicenow import ServiceNowSim
from tests.shipped import servicenow_sim

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def sim() -> Iterator[tuple[ServiceNowSim, Any]]:
    sn = servicenow_sim(user="svc", password="svc-secret-pw")
    server = sn.server().start()
    yield sn, server
    server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Run:
    """One `mim run` process with its metrics port and its log."""

    def __init__(self, url: str, state: str, interval: float, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
        env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="svc",
                   MIM_SERVICENOW_PASSWORD="svc-secret-pw", MIM_STATE=state, PYTHONPATH=str(ROOT))
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), "run", "--interval", f"{interval:g}s", "--log-format", "json",
                 "--metrics-port", str(self.port), "--metrics-bind", "127.0.0.1"],
                env=env, stdout=out, stderr=out)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            answer = self.get("/healthz")
        except requests.ConnectionError:
            return 0, {}
        return answer.status_code, answer.json()

    def metric(self, name: str, **labels: str) -> float | None:
        for line in self.get("/metrics").text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return None

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)


def _until(condition: Callable[[], Any], timeout: float, what: str, runs: list[Run] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    logs = "\n".join(r.log.read_text()[-3000:] for r in runs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _storm(sn: ServiceNowSim, service: str, size: int = 8) -> list[str]:
    now = datetime.now(timezone.utc)
    return [sn.insert("incident", {"short_description": f"{service} is down", "business_service": service,
                                   "caller_id": f"{service}-caller{i}",
                                   "opened_at": (now - timedelta(minutes=10) + timedelta(seconds=20 * i))
                                   .strftime("%Y-%m-%d %H:%M:%S")})["sys_id"] for i in range(size)]


def _declared(sn: ServiceNowSim, ids: list[str]) -> bool:
    return bool(sn.get("incident", ids[0]).get("major_incident_state"))


def _assert_written_once(sn: ServiceNowSim, storms: list[list[str]]) -> None:
    majors = [r["sys_id"] for r in sn.records("incident") if r.get("major_incident_state")]
    assert sorted(majors) == sorted(ids[0] for ids in storms), "one major incident per storm, no other"
    for ids in storms:
        assert all(sn.get("incident", child)["parent_incident"] == ids[0] for child in ids[1:])
        notes = [row["value"] for row in sn.journal(ids[0])]
        assert sum("by rule service-surge" in n for n in notes) == 1, notes
        assert len(notes) == len(set(notes)), "a note was written twice"


def test_active_passive_pair_on_postgresql_the_standby_takes_over_a_killed_active_within_one_interval(
        sim, postgres, tmp_path: Path) -> None:
    sn, server = sim
    state = postgres.new_schema("pair")
    interval = 2.0
    active = Run(server.url, state, interval, tmp_path / "a.log")
    runs = [active]
    try:
        _until(lambda: active.health()[1].get("role") == "active", 30, "the first run to become active", runs)
        standby = Run(server.url, state, interval, tmp_path / "b.log")
        runs.append(standby)
        _until(lambda: standby.health()[1].get("role") == "standby", 30, "the second run to wait as standby", runs)
        first = _storm(sn, "web-shop")
        _until(lambda: _declared(sn, first), 3 * interval, "the active run to declare the first storm", runs)
        assert active.metric("mim_active") == 1.0 and standby.metric("mim_active") == 0.0
        assert standby.health()[0] == 200, "a standby is healthy: it must not be restarted by its probes"
        assert any(line.get("message", "").startswith("standby") and "holder" in line for line in standby.lines())

        active.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        active.proc.wait(timeout=10)
        second = _storm(sn, "payments")
        _until(lambda: standby.health()[1].get("role") == "active", 2 * interval, "the standby to take over", runs)
        took_over = time.monotonic() - killed
        _until(lambda: _declared(sn, second), 3 * interval, "the new active run to declare the next storm", runs)
        declared = time.monotonic() - killed
        assert took_over <= interval, f"took over after {took_over:.1f}s (interval {interval}s)"
        assert declared <= interval, f"declared the next storm {declared:.1f}s after the kill (interval {interval}s)"
        assert standby.metric("mim_active") == 1.0 and standby.metric("mim_lock_acquired_total") == 1.0
        assert any("taking over" in line.get("message", "") for line in standby.lines())
        time.sleep(interval)  # one more cycle of the new active: it must find nothing left to write
        _assert_written_once(sn, [first, second])
        standby.proc.send_signal(signal.SIGTERM)
        assert standby.proc.wait(timeout=30) == 0
    finally:
        for run in runs:
            run.stop()
    print(f"takeover {took_over:.2f}s, next storm declared {declared:.2f}s after kill -9 (interval {interval:g}s)")


SERVED = ["mim_info", "mim_interval_seconds", "mim_cycles_total", "mim_cycle_duration_seconds_bucket",
          "mim_last_cycle_duration_seconds", "mim_tickets_read_total", "mim_decisions_total", "mim_writes_total",
          "mim_http_requests_total", "mim_http_request_duration_seconds_bucket", "mim_retries_total", "mim_active",
          "mim_lock_acquired_total", "mim_lock_lost_total", "mim_last_success_timestamp_seconds"]


def test_metrics_are_served_during_mim_run_and_healthz_turns_503_when_the_platform_is_unreachable_for_3_intervals(
        sim, tmp_path: Path) -> None:
    sn, server = sim
    interval = 0.5
    storm = _storm(sn, "web-shop")
    run = Run(server.url, str(tmp_path / "state.sqlite"), interval, tmp_path / "run.log")
    try:
        _until(lambda: _declared(sn, storm) and (run.metric("mim_cycles_total", result="ok") or 0) >= 2, 30,
               "two successful cycles", [run])
        text = run.get("/metrics").text
        for name in SERVED:
            assert f"\n{name}" in text, f"{name} is not served"
        assert run.metric("mim_decisions_total", kind="declaration") == 1.0
        assert run.metric("mim_writes_total", kind="declare", result="applied") == 1.0
        assert run.metric("mim_writes_total", kind="link", result="applied") == len(storm) - 1
        assert (run.metric("mim_http_requests_total", platform="servicenow", method="GET", status="200") or 0) >= 2
        assert (run.metric("mim_tickets_read_total") or 0) >= len(storm)
        assert "svc-secret-pw" not in text and server.url not in text
        code, body = run.health()
        assert code == 200 and body["role"] == "active"

        server.add_fault("drop")  # every request from now on: the connection is dropped without an answer
        faulted = time.time()
        code, body = _until(lambda: (h := run.health())[0] == 503 and h, 3 * interval + 5, "healthz 503", [run])
        seen_503 = time.time()
        last_success = run.metric("mim_last_success_timestamp_seconds") or 0
        assert body["last_success_age_seconds"] >= 3 * interval, body
        assert seen_503 - last_success <= 3 * interval + 1.5, "503 within about 3 intervals of the last success"
        assert last_success <= faulted
        assert (run.metric("mim_http_requests_total", platform="servicenow", method="GET", status="error") or 0) >= 1
        assert (run.metric("mim_retries_total", platform="servicenow") or 0) >= 0
    finally:
        run.stop()
