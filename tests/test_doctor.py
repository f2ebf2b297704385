"""mim doctor: read-only checks that say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import cli
from connector.process.processfile import load_process
from connector.sim.jira import JiraSim
from connector.sim.servicenow import INCIDENT_FIELDS, ServiceNowSim


@pytest.fixture()
def servicenow() -> Iterator[tuple[ServiceNowSim, str]]:
    sim = ServiceNowSim(user="doc", password="doc-password-123")
    server = sim.server().start()
    yield sim, server.url
    server.stop()


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **values: str) -> None:
    for name in ("MIM_CONFIG", "MIM_RULES", "MIM_MAPPINGS", "MIM_PROCESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIM_STATE", str(tmp_path / "state.sqlite"))
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _shipped_directory(sim: ServiceNowSim) -> None:
    process, _ = load_process(Path(cli.__file__).resolve().parent / "rules" / "process.yaml")
    assert process is not None
    sim.add_people(process.people(), process.groups())


def test_doctor_passes_on_a_healthy_servicenow(servicenow, tmp_path, monkeypatch) -> None:
    sim, url = servicenow
    _shipped_directory(sim)
    _env(monkeypatch, tmp_path, MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="doc",
         MIM_SERVICENOW_PASSWORD="doc-password-123")
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "ok  connectivity and authentication" in result.output
    assert "doc-password-123" not in result.output
    writes = [r for r in sim_requests(url) if r["method"] not in ("GET",) and "batch" not in r["path"]]
    assert writes == [], "doctor must not write"


def test_doctor_names_a_wrong_password_and_the_fix(servicenow, tmp_path, monkeypatch) -> None:
    sim, url = servicenow
    _env(monkeypatch, tmp_path, MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="doc",
         MIM_SERVICENOW_PASSWORD="wrong-password-456")
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL connectivity and authentication" in result.output
    assert "MIM_SERVICENOW_PASSWORD" in result.output
    assert "wrong-password-456" not in result.output


def test_doctor_reports_a_mapped_field_missing_on_the_instance(tmp_path, monkeypatch) -> None:
    sim = ServiceNowSim(user="doc", password="doc-password-123",
                        incident_fields=[f for f in INCIDENT_FIELDS if f != "business_service"])
    server = sim.server().start()
    try:
        _env(monkeypatch, tmp_path, MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=server.url,
             MIM_SERVICENOW_USERNAME="doc", MIM_SERVICENOW_PASSWORD="doc-password-123")
        result = CliRunner().invoke(cli.main, ["doctor"])
    finally:
        server.stop()
    assert result.exit_code == 1
    assert "business_service" in result.output


def test_doctor_on_jira_checks_the_site(tmp_path, monkeypatch) -> None:
    sim = JiraSim(email="doc@example.com", token="jira-token-789")
    server = sim.server().start()
    try:
        _env(monkeypatch, tmp_path, MIM_PLATFORM="jira", MIM_JIRA_URL=server.url, MIM_JIRA_EMAIL="doc@example.com",
             MIM_JIRA_TOKEN="jira-token-789")
        result = CliRunner().invoke(cli.main, ["doctor"])
    finally:
        server.stop()
    assert "ok  connectivity and authentication" in result.output, result.output
    assert "jira-token-789" not in result.output


def test_doctor_without_a_platform_says_how_to_configure(tmp_path, monkeypatch) -> None:
    _env(monkeypatch, tmp_path)
    monkeypatch.delenv("MIM_PLATFORM", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 1
    assert "MIM_PLATFORM" in result.output


def sim_requests(url: str) -> list[dict[str, object]]:
    import requests

    return requests.get(f"{url}/__sim/requests", timeout=5).json()


def test_doctor_names_the_role_an_accepting_rule_needs_on_servicenow(tmp_path, monkeypatch) -> None:
    # the shipped rules accept p1-critical tickets: without major_incident_manager the instance would keep
    # the old major incident state and answer 200
    sim = ServiceNowSim(user="doc", password="doc-password-123", roles=["itil"])
    server = sim.server().start()
    try:
        _env(monkeypatch, tmp_path, MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=server.url,
             MIM_SERVICENOW_USERNAME="doc", MIM_SERVICENOW_PASSWORD="doc-password-123")
        result = CliRunner().invoke(cli.main, ["doctor"])
        assert result.exit_code == 1
        assert "FAIL roles: doc has itil; missing major_incident_manager" in result.output
    finally:
        server.stop()


def test_doctor_names_the_process_files_people_and_groups_servicenow_lacks(servicenow, tmp_path, monkeypatch) -> None:
    # before, doctor said ok and every sync then failed to assign the team and the manager
    sim, url = servicenow
    _env(monkeypatch, tmp_path, MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="doc",
         MIM_SERVICENOW_PASSWORD="doc-password-123")
    result = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL process file people: no sys_user with user_name 'alice.martin', 'bob.schneider'" in result.output
    assert "FAIL process file groups: no sys_user_group with name 'major-incident-team'" in result.output
