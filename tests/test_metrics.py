"""Metrics and health: what /healthz answers when, the HTTP hook on both adapters, and `mim sync --once
--metrics-file` for node_exporter's textfile collector (counters continue across runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import cli
from connector.core.mapping import load_mapping
from connector.job.metrics import STALE_AFTER_INTERVALS, Metrics, serve
from connector.platforms.jira import JiraPlatform
from connector.platforms.observe import HttpObservable
from connector.platforms.retry import RetryPolicy
from connector.platforms.servicenow import ServiceNowPlatform
from connector.process.processfile import load_process
from connector.sim.jira import JiraSim
from connector.sim.servicenow import ServiceNowSim

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_is_ok_while_the_last_success_is_at_most_3_intervals_old() -> None:
    metrics = Metrics("servicenow", "sqlite", 60)
    metrics.started = T0
    assert metrics.health(T0 + 10).ok and metrics.health(T0 + 10).role == "starting"
    metrics.became_active(None)
    metrics.active_since = T0
    assert metrics.health(T0 + 179).ok, "a new active runner gets 3 intervals for its first cycle"
    assert not metrics.health(T0 + 181).ok
    metrics.succeeded(T0 + 200)
    assert metrics.health(T0 + 200 + STALE_AFTER_INTERVALS * 60).ok
    stale = metrics.health(T0 + 200 + STALE_AFTER_INTERVALS * 60 + 1)
    assert not stale.ok and stale.to_dict()["status"] == "stale" and stale.to_dict()["last_success_age_seconds"] == 181
    metrics.became_standby()
    assert metrics.health(metrics.last_poll + 60).ok and metrics.health(metrics.last_poll + 60).role == "standby"
    assert not metrics.health(metrics.last_poll + 181).ok, "a standby that stopped watching the lock is unhealthy"


def test_the_endpoints_answer_as_kubernetes_and_prometheus_expect() -> None:
    metrics = Metrics("jira", "postgresql", 1)
    server = serve(metrics, 0, "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        metrics.became_active(None)
        ok = requests.get(f"{base}/healthz", timeout=5)
        assert ok.status_code == 200 and ok.json()["role"] == "active"
        metrics.active_since = metrics.started = metrics.active_since - 10  # 10 intervals ago, no success since
        stale = requests.get(f"{base}/healthz", timeout=5)
        assert stale.status_code == 503 and stale.json()["status"] == "stale"
        page = requests.get(f"{base}/metrics", timeout=5)
        assert page.headers["Content-Type"].startswith("text/plain") and "mim_active 1.0" in page.text
        assert samples(page.text)[("mim_info", (("platform", "jira"), ("store", "postgresql"), ("version", "0.1.0")))] == 1
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.stop()


@pytest.fixture()
def servicenow() -> Iterator[tuple[ServiceNowSim, str]]:
    sim = ServiceNowSim(user="obs", password="obs-secret-pw")
    process, _ = load_process(ROOT / "rules" / "process.yaml")
    if process is not None:
        sim.add_people(process.people(), process.groups())  # the shipped process file's people and groups exist
    server = sim.server().start()
    yield sim, server
    server.stop()


def test_every_request_of_the_servicenow_adapter_is_counted_by_method_and_status(servicenow) -> None:
    sim, server = servicenow
    mapping, _ = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    policy = RetryPolicy(sleep=lambda s: None)
    platform = ServiceNowPlatform(server.url, "obs", "obs-secret-pw", mapping, policy=policy)
    metrics = Metrics("servicenow", "sqlite", 60)
    assert isinstance(platform, HttpObservable)
    platform.observe_http(metrics.observe_request)
    server.add_fault("503", count=1)
    platform.discover(None)
    sent = platform.requests_sent
    metrics.count_retries(policy.retries)
    counted = samples(metrics.exposition().decode())
    by_status = {dict(k[1])["status"]: v for k, v in counted.items() if k[0] == "mim_http_requests_total"}
    assert by_status.get("503") == 1 and sum(by_status.values()) == sent, by_status
    assert counted[("mim_retries_total", (("platform", "servicenow"),))] == 1
    assert counted[("mim_http_request_duration_seconds_count", (("platform", "servicenow"),))] == sent
    platform.close()


def test_a_request_that_gets_no_answer_is_counted_as_an_error_on_jira() -> None:
    sim = JiraSim(email="obs@example.com", token="obs-token")
    server = sim.server().start()
    mapping, _ = load_mapping(ROOT / "mappings" / "jira.yaml")
    platform = JiraPlatform(server.url, "obs@example.com", "obs-token", mapping, project="ITSM", flavour="cloud",
                            policy=RetryPolicy(sleep=lambda s: None))
    metrics = Metrics("jira", "sqlite", 60)
    platform.observe_http(metrics.observe_request)
    try:
        server.add_fault("drop", count=1)
        platform.discover(None)
    finally:
        platform.close()
        server.stop()
    counted = samples(metrics.exposition().decode())
    errors = [v for k, v in counted.items() if k[0] == "mim_http_requests_total" and ("status", "error") in k[1]]
    assert errors == [1.0]
    assert any(("method", "GET") in k[1] and ("status", "200") in k[1] for k in counted if k[0] == "mim_http_requests_total")


def _storm(sim: ServiceNowSim) -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    for i in range(6):
        sim.insert("incident", {"short_description": "Checkout fails", "business_service": "web-shop",
                                "caller_id": f"caller{i}",
                                "opened_at": (now - timedelta(minutes=6 - i)).strftime("%Y-%m-%d %H:%M:%S")})


def test_sync_once_writes_the_metrics_file_and_its_counters_continue_across_runs(servicenow, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sim, server = servicenow
    for name in [n for n in os.environ if n.startswith("MIM_")]:
        monkeypatch.delenv(name)
    for name, value in {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": server.url,
                        "MIM_SERVICENOW_USERNAME": "obs", "MIM_SERVICENOW_PASSWORD": "obs-secret-pw",
                        "MIM_STATE": str(tmp_path / "state.sqlite")}.items():
        monkeypatch.setenv(name, value)
    textfile = tmp_path / "textfile" / "mim.prom"
    _storm(sim)
    first = CliRunner().invoke(cli.main, ["sync", "--once", "--metrics-file", str(textfile)])
    assert first.exit_code == 0, first.output
    after_one = samples(textfile.read_text())
    assert after_one[("mim_cycles_total", (("result", "ok"),))] == 1
    assert after_one[("mim_decisions_total", (("kind", "declaration"),))] == 1
    assert after_one[("mim_writes_total", (("kind", "link"), ("result", "applied")))] == 5
    assert after_one[("mim_last_success_timestamp_seconds", ())] > 0
    second = CliRunner().invoke(cli.main, ["sync", "--once", "--metrics-file", str(textfile)])
    assert second.exit_code == 0, second.output
    after_two = samples(textfile.read_text())
    assert after_two[("mim_cycles_total", (("result", "ok"),))] == 2, "the counter continues from the last file"
    assert after_two[("mim_decisions_total", (("kind", "declaration"),))] == 1
    assert after_two[("mim_tickets_read_total", ())] >= after_one[("mim_tickets_read_total", ())]
    monkeypatch.setenv("MIM_SERVICENOW_PASSWORD", "a-wrong-password")  # the platform refuses: a failed run
    failed = CliRunner().invoke(cli.main, ["sync", "--once", "--metrics-file", str(textfile)])
    assert failed.exit_code == 1
    after_failure = samples(textfile.read_text())
    assert after_failure[("mim_cycles_total", (("result", "platform_error"),))] == 1
    assert after_failure[("mim_cycles_total", (("result", "ok"),))] == 2
    assert after_failure[("mim_last_success_timestamp_seconds", ())] == after_two[("mim_last_success_timestamp_seconds", ())]
    assert not list(textfile.parent.glob("*.tmp*")), "written atomically, nothing left behind"
