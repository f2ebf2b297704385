"""End to end over real HTTP: the ServiceNow simulator, the adapter and ``mim sync --once``.

Incidents are seeded through the simulator's Python API (opened in the recent past), the cycle runs through
the CLI exactly as an operator would run it (``MIM_PLATFORM``, ``MIM_SERVICENOW_URL`` ...), and the result is
read back from the simulator. Requests are counted from the simulator's log at ``/__sim/requests``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from click.testing import CliRunner

import cli
from connector.core.actions import AddNote, CreateTask, ResolveChild, SetFields
from connector.core.mapping import load_mapping
from connector.platforms.base import ProcessNeeds, marker_tag
from connector.platforms.retry import RetryPolicy
from connector.platforms.servicenow import ServiceNowPlatform
from connector.sim.base import SimServer
from connector.sim.servicenow import INCIDENT_FIELDS, ServiceNowSim

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "mim.integration", "sim-pw-1234"
SERVICE = "5e" * 16
PROCESS = {
    "version": 1,
    "team": {"group": "major-incident-team", "raise_priority": 1},
    "managers": {"rota": [{"id": "alice.martin", "name": "Alice Martin"}]},
    "communications": {"templates": {"declared": "Major incident {key} declared by rule {rule}: {title}."}},
}

_servers: list[SimServer] = []


@pytest.fixture(scope="module", autouse=True)
def _stop_servers_together() -> Iterator[None]:
    # SimServer.stop() waits for the serve loop's poll interval; stopping all at once keeps the module fast.
    yield
    threads = [threading.Thread(target=server.stop) for server in _servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _servers.clear()


@dataclass
class Instance:
    """A running simulator, a private state/config directory and the environment for ``mim``."""

    sim: ServiceNowSim
    server: SimServer
    home: Path
    now: datetime

    @property
    def env(self) -> dict[str, str | None]:
        return {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": self.server.url,
                "MIM_SERVICENOW_USERNAME": USER, "MIM_SERVICENOW_PASSWORD": PASSWORD,
                "MIM_STATE": str(self.home / "state.sqlite"), "MIM_RULES": str(self.home / "rules"),
                "MIM_MAPPINGS": str(self.home / "mappings"), "MIM_CONFIG": str(self.home / "mim.toml")}

    def incident(self, minutes_ago: float, service: str = SERVICE, caller: int = 0, **fields: Any) -> dict[str, str]:
        opened = self.now - timedelta(minutes=minutes_ago)
        return self.sim.insert("incident", {"short_description": f"Web shop checkout fails ({caller})",
                                            "business_service": service, "caller_id": f"{caller:032x}",
                                            "opened_at": opened, "sys_created_on": opened, "sys_updated_on": opened,
                                            **fields})

    def storm(self, size: int, *, first_caller: int = 1, minutes: float = 12.0) -> list[dict[str, str]]:
        return [self.incident(minutes - minutes * i / size, caller=first_caller + i) for i in range(size)]

    def sync(self) -> dict[str, Any]:
        result = CliRunner().invoke(cli.main, ["sync", "--once", "--json"], env=self.env, catch_exceptions=False)
        assert result.exit_code in (0, 1), result.output
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def log(self) -> list[dict[str, Any]]:
        response = requests.get(self.server.url + "/__sim/requests", timeout=10)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def clear_log(self) -> None:
        requests.delete(self.server.url + "/__sim/requests", timeout=10).raise_for_status()

    def writes(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log() if entry["method"] != "GET"]

    def set_write(self, **settings: Any) -> None:
        path = self.home / "mappings" / "servicenow.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["write"].update(settings)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def started(tmp_path: Path, sim: ServiceNowSim) -> Instance:
    """``sim`` serving, with the process file's group and manager, and a private config and state."""
    (tmp_path / "rules").mkdir()
    shutil.copy(ROOT / "rules" / "default.yaml", tmp_path / "rules" / "default.yaml")
    (tmp_path / "rules" / "process.yaml").write_text(yaml.safe_dump(PROCESS), encoding="utf-8")
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    (tmp_path / "mim.toml").write_text("", encoding="utf-8")
    sim.insert("sys_user_group", {"name": "major-incident-team"})
    sim.insert("sys_user", {"user_name": "alice.martin", "name": "Alice Martin"})
    server = sim.server()
    server.start()
    _servers.append(server)
    return Instance(sim, server, tmp_path, datetime.now(timezone.utc).replace(microsecond=0))


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    return started(tmp_path, ServiceNowSim(user=USER, password=PASSWORD))


def fetch(sim: ServiceNowSim, sys_id: str) -> dict[str, str]:
    found = sim.get("incident", sys_id)
    assert found is not None
    return found


def proposed(sim: ServiceNowSim) -> list[dict[str, str]]:
    return [r for r in sim.records("incident") if r["major_incident_state"] in ("proposed", "accepted")]


def test_a_storm_becomes_one_major_incident_with_its_children_linked(instance: Instance) -> None:
    storm = instance.storm(6)
    noise = [instance.incident(5, service="0d" * 16, caller=90), instance.incident(3, service="0e" * 16, caller=91),
             instance.incident(300, caller=92)]  # the same service, but hours before the surge
    report = instance.sync()
    assert report["failures"] == []
    [mi] = proposed(instance.sim)
    assert mi["sys_id"] == storm[0]["sys_id"] and mi["u_mim_marker"] == "mim:service-surge"
    assert mi["correlation_id"] == ""
    for child in storm[1:]:
        assert fetch(instance.sim, child["sys_id"])["parent_incident"] == mi["sys_id"]
    for seeded in noise:
        after = fetch(instance.sim, seeded["sys_id"])
        assert after == {**seeded, "sys_updated_on": after["sys_updated_on"]} and after["sys_mod_count"] == "0"
        assert instance.sim.journal(seeded["sys_id"]) == []
    notes = [entry["value"] for entry in instance.sim.journal(mi["sys_id"], "work_notes")]
    assert any("rule service-surge" in note for note in notes)
    assert mi["u_mim_stage"] in ("identification", "containment")
    assignments = [a for a in report["planned"] if a["kind"] == "set_fields" and "assignment_group" in a["fields"]]
    if assignments:  # the process planner assigned the team: the group name was resolved to its sys_id
        assert mi["assignment_group"] == instance.sim.records("sys_user_group")[0]["sys_id"]


def test_a_second_sync_writes_nothing(instance: Instance) -> None:
    instance.storm(6)
    instance.sync()
    instance.clear_log()
    report = instance.sync()
    assert instance.writes() == [] and report["results"].get("applied", 0) == 0


def test_a_late_incident_on_the_same_service_becomes_a_child(instance: Instance) -> None:
    instance.storm(6)
    instance.sync()
    [mi] = proposed(instance.sim)
    late = instance.incident(0, caller=77)
    instance.clear_log()
    instance.sync()
    assert fetch(instance.sim, late["sys_id"])["parent_incident"] == mi["sys_id"]
    assert len(proposed(instance.sim)) == 1
    assert [(w["method"], w["path"]) for w in instance.writes()] == [("PATCH", f"/api/now/table/incident/{late['sys_id']}")]


def test_a_quiet_cycle_is_one_request_also_across_separate_runs(instance: Instance) -> None:
    instance.storm(6)
    instance.sync()
    instance.sync()  # reads back the connector's own writes
    instance.clear_log()
    assert instance.sync()["requests"] == 1
    env = {**os.environ, **{k: v for k, v in instance.env.items() if v is not None}}
    completed = subprocess.run([sys.executable, "-m", "cli", "sync", "--once", "--json"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["requests"] == 1
    assert [(e["method"], e["path"]) for e in instance.log()] == [("GET", "/api/now/table/incident")] * 2


def storm_of_200(instance: Instance) -> int:
    # A connector that has been running: state, watermark and discovery exist before the storm.
    instance.incident(60, service="0f" * 16, caller=99)
    instance.sync()
    storm = instance.storm(200, minutes=10)
    instance.clear_log()
    report = instance.sync()
    assert report["failures"] == []
    [mi] = proposed(instance.sim)
    children = [r for r in instance.sim.records("incident") if r["parent_incident"] == mi["sys_id"]]
    assert len(children) == 199 and mi["sys_id"] == storm[0]["sys_id"]
    assert report["requests"] == len(instance.log())
    return int(report["requests"])


def test_a_storm_of_200_is_declared_in_at_most_10_requests_with_the_batch_api(instance: Instance) -> None:
    sent = storm_of_200(instance)
    assert sent <= 10
    assert sum(1 for e in instance.log() if e["path"] == "/api/now/v1/batch") >= 4


def test_without_the_batch_api_the_same_storm_takes_more_than_200_requests(instance: Instance) -> None:
    instance.set_write(batch=False)
    assert storm_of_200(instance) > 200


def test_with_30_percent_429_and_503_the_storm_converges_without_duplicate_writes(instance: Instance) -> None:
    storm = instance.storm(6)
    instance.server.add_fault("429", rate=0.15, retry_after=0)
    instance.server.add_fault("503", rate=0.18, retry_after=0)
    for _ in range(5):
        instance.sync()
    instance.server.clear_faults()
    faulted = [e for e in instance.log() if e["status"] in (429, 503)]
    assert len(faulted) >= 0.2 * len(instance.log())
    report = instance.sync()
    assert report["failures"] == [] and report["results"].get("applied", 0) == 0
    [mi] = proposed(instance.sim)
    declared = [j for j in instance.sim.journal(mi["sys_id"]) if marker_tag(f"note:{mi['sys_id']}:declared") in j["value"]]
    assert len(declared) == 1
    for child in storm[1:]:
        linked = fetch(instance.sim, child["sys_id"])
        assert linked["parent_incident"] == mi["sys_id"]
        assert linked["sys_mod_count"] == "1"  # linked once, with one write
    assert len(instance.sim.records("incident")) == 6


# -- the adapter alone over real HTTP ------------------------------------------------------------


def adapter(instance: Instance, **kwargs: Any) -> ServiceNowPlatform:
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    return ServiceNowPlatform(instance.server.url, USER, PASSWORD, mapping,
                              policy=RetryPolicy(sleep=lambda s: None), **kwargs)


def test_pages_hidden_by_acls_do_not_end_the_poll(tmp_path: Path) -> None:
    hidden: set[str] = set()
    sim = ServiceNowSim(user=USER, password=PASSWORD, readable=lambda table, row: row["sys_id"] not in hidden)
    server = sim.server()
    server.start()
    _servers.append(server)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rows = [sim.insert("incident", {"opened_at": now, "sys_updated_on": now - timedelta(seconds=60 - i)}) for i in range(9)]
    hidden.update(r["sys_id"] for r in rows[:6])  # the first two pages of three come back empty
    instance = Instance(sim, server, tmp_path, now)
    platform = adapter(instance, page_size=3)
    seen = [r["sys_id"] for r in platform.fetch_changed(None, now - timedelta(hours=1))]
    assert seen == [r["sys_id"] for r in rows[6:]]


def test_oauth_and_every_kind_of_transient_fault_over_real_http(instance: Instance) -> None:
    instance.storm(3)
    for kind in ("202", "html", "drop", "500", "504"):
        instance.server.add_fault(kind, count=1, match="GET /api/now/table/incident")
    platform = adapter(instance, client_id="mim", client_secret="oauth-secret")
    rows = list(platform.fetch_changed(None, instance.now - timedelta(hours=1)))
    assert len(rows) == 3
    assert platform.requests_sent == 7  # a token request, five faults and the answer
    paths = [e["path"] for e in instance.log()]
    assert paths[0] == "/oauth_token.do" and paths.count("/api/now/table/incident") == 6


# -- what a real instance refuses (shared/reference/servicenow.md §6) ------------------------------------


def test_children_are_resolved_with_a_resolution_code_todays_instance_accepts(instance: Instance) -> None:
    # The mapping's former default, "Solved (Permanently)", belongs to older releases: a current instance
    # answers 403 Data Policy Exception (mandatory: Resolution code) and the child stays open.
    mi, child = instance.incident(20), instance.incident(15, caller=2)
    platform = adapter(instance)
    platform.discover(None)
    [result] = platform.apply([ResolveChild(key=f"resolve:{child['sys_id']}:{mi['sys_id']}", target=child["sys_id"],
                                            parent=mi["sys_id"], notes="Rolled back release 4.2")], lambda t: t)
    assert result.status == "applied", result.detail
    resolved = fetch(instance.sim, child["sys_id"])
    assert (resolved["state"], resolved["close_code"], resolved["close_notes"]) == (
        "6", "Solution provided", "Rolled back release 4.2")


def test_a_refused_resolution_says_which_fields_the_data_policy_wants(instance: Instance) -> None:
    child = instance.incident(15, caller=2)
    instance.set_write(close_code="Solved (Permanently)")
    mapping, errors = load_mapping(instance.home / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    platform = ServiceNowPlatform(instance.server.url, USER, PASSWORD, mapping, policy=RetryPolicy(sleep=lambda s: None))
    platform.discover(None)
    [result] = platform.apply([ResolveChild(key="resolve:c:mi", target=child["sys_id"], parent="m" * 32)], lambda t: t)
    assert result.status == "failed" and not result.retryable
    assert "HTTP 403" in result.detail and "Data Policy Exception" in result.detail and "Resolution code" in result.detail


def test_doctor_reads_the_instances_choices_and_flags_a_resolution_code_it_does_not_offer(instance: Instance) -> None:
    platform = adapter(instance)
    checks = {name: (ok, detail) for name, ok, detail, _ in platform.doctor_checks(platform.discover(None))}
    assert checks["choice values"][0], checks["choice values"]
    instance.set_write(close_code="Solved (Permanently)")
    mapping, errors = load_mapping(instance.home / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    old = ServiceNowPlatform(instance.server.url, USER, PASSWORD, mapping, policy=RetryPolicy(sleep=lambda s: None))
    ok, detail = {name: (ok, detail) for name, ok, detail, _ in old.doctor_checks(old.discover(None))}["choice values"]
    assert not ok and "'Solved (Permanently)' is not a choice" in detail and "Solution provided" in detail


def test_a_group_or_person_the_instance_does_not_know_is_never_written_raw(instance: Instance) -> None:
    # A name is not a sys_id: the instance stores an unresolvable reference as empty, so the old adapter
    # "applied" the write and wiped the assignment group a person had set.
    group = instance.sim.records("sys_user_group")[0]["sys_id"]
    mi = instance.incident(10, assignment_group=group)
    platform = adapter(instance)
    platform.discover(None)
    results = platform.apply([
        SetFields(key=f"assign:{mi['sys_id']}", target=mi["sys_id"], fields={"assignment_group": "no-such-team"}),
        SetFields(key=f"manager:{mi['sys_id']}", target=mi["sys_id"], fields={"assignee": "nobody.here"}),
        CreateTask(key=f"task:{mi['sys_id']}:1", target=mi["sys_id"], title="Review", owner="nobody.here"),
    ], lambda t: t)
    assert [r.status for r in results] == ["failed"] * 3
    assert "no sys_user_group with name 'no-such-team'" in results[0].detail
    assert "no sys_user with user_name 'nobody.here'" in results[1].detail
    assert fetch(instance.sim, mi["sys_id"])["assignment_group"] == group
    assert instance.sim.records("incident_task") == []


def test_a_marker_look_up_never_adopts_a_record_without_the_marker(tmp_path: Path) -> None:
    # ServiceNow silently drops a query term on a column the user may not read (reference §2.3, §6): the
    # look-up for a task's marker then answers with any task of the table.
    sim = ServiceNowSim(user=USER, password=PASSWORD, hidden_fields={"incident_task": ["correlation_id"]})
    server = sim.server()
    server.start()
    _servers.append(server)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    someone_elses = sim.insert("incident_task", {"short_description": "Replace the disk", "correlation_id": "ops-7"})
    mi = sim.insert("incident", {"short_description": "Checkout down", "opened_at": now})
    instance = Instance(sim, server, tmp_path, now)
    platform = adapter(instance)
    platform.discover(None)
    task = CreateTask(key=f"task:{mi['sys_id']}:1", target=mi["sys_id"], title="Post-incident review")
    [result] = platform.apply([task], lambda t: t, frozenset({task.key}))
    assert result.status == "applied" and result.created_id != someone_elses["sys_id"]
    assert [t["short_description"] for t in sim.records("incident_task")] == ["Replace the disk", "Post-incident review"]


def state_lost(instance: Instance) -> None:
    for suffix in ("", "-wal", "-shm"):
        (instance.home / f"state.sqlite{suffix}").unlink(missing_ok=True)


def test_a_monitoring_tools_correlation_id_is_kept_when_its_incident_is_declared_major(instance: Instance) -> None:
    # Monitoring and event tools de-duplicate on correlation_id (reference §4, §6): overwritten, they no longer
    # find their incident and open new ones during the very surge.
    first = instance.incident(12, correlation_id="monitoring-123", correlation_display="Nagios")
    instance.storm(5, first_caller=2, minutes=11)
    report = instance.sync()
    assert report["failures"] == []
    [mi] = proposed(instance.sim)
    assert mi["sys_id"] == first["sys_id"]
    assert (mi["correlation_id"], mi["correlation_display"]) == ("monitoring-123", "Nagios")
    assert mi["u_mim_marker"] == "mim:service-surge"


@pytest.mark.parametrize("marker_column", [True, False], ids=["own-marker-column", "marker-in-a-work-note"])
def test_declare_lose_the_state_and_sync_again_gives_no_second_major_incident(tmp_path: Path,
                                                                               marker_column: bool) -> None:
    fields = INCIDENT_FIELDS if marker_column else tuple(f for f in INCIDENT_FIELDS if f != "u_mim_marker")
    sim = ServiceNowSim(user=USER, password=PASSWORD, incident_fields=fields)
    instance = started(tmp_path, sim)
    storm = instance.storm(6)
    assert instance.sync()["failures"] == []
    [mi] = proposed(instance.sim)
    assert mi["correlation_id"] == "" and instance.sim.get("incident", storm[1]["sys_id"])["parent_incident"] == mi["sys_id"]
    notes = [j["value"] for j in instance.sim.journal(mi["sys_id"], "work_notes")]
    assert any("[mim:service-surge]" in n for n in notes) is (not marker_column)
    state_lost(instance)
    instance.clear_log()
    report = instance.sync()
    assert report["failures"] == [] and report["declarations"] == []
    assert [r["sys_id"] for r in proposed(instance.sim)] == [mi["sys_id"]]
    declared = [w for w in instance.writes() if w["path"].endswith(mi["sys_id"])]
    assert declared == [], "the rebuilt major incident is not declared again"


def test_major_incidents_an_earlier_version_marked_in_correlation_id_are_still_recognised(instance: Instance) -> None:
    storm = instance.storm(6)
    mi = storm[0]["sys_id"]
    instance.sim.update("incident", mi, {"major_incident_state": "proposed", "correlation_id": "mim:service-surge",
                                         "u_mim_stage": "identification"})
    for child in storm[1:]:
        instance.sim.update("incident", child["sys_id"], {"parent_incident": mi})
    report = instance.sync()
    assert report["failures"] == [] and report["declarations"] == []
    assert [r["sys_id"] for r in proposed(instance.sim)] == [mi]
    assert fetch(instance.sim, mi)["correlation_id"] == "mim:service-surge"


def test_a_major_incident_a_person_declared_is_not_taken_for_ours(instance: Instance) -> None:
    theirs = instance.incident(30, service="0a" * 16, major_incident_state="accepted", correlation_id="monitoring-9")
    platform = adapter(instance)
    platform.discover(None)
    assert [r["sys_id"] for r in platform.fetch_marked()] == []
    assert platform.to_ticket(fetch(instance.sim, theirs["sys_id"])).marker is None


def test_doctor_says_where_markers_go_and_refuses_a_marker_column_another_tool_owns(instance: Instance) -> None:
    platform = adapter(instance)
    ok, detail = {name: (ok, detail) for name, ok, detail, _ in platform.doctor_checks(platform.discover(None))}[
        "marker field"]
    assert ok and "u_mim_marker exists" in detail
    instance.set_write(marker_field="correlation_id")  # a mapping of an earlier version
    mapping, errors = load_mapping(instance.home / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    old = ServiceNowPlatform(instance.server.url, USER, PASSWORD, mapping, policy=RetryPolicy(sleep=lambda s: None))
    facts = old.discover(None)
    assert facts["marker_field"] is None, "never used as our marker column"
    ok, detail = {name: (ok, detail) for name, ok, detail, _ in old.doctor_checks(facts)}["marker field"]
    assert not ok and "monitoring" in detail


# -- declaring: as the "Propose major incident" action does, with the roles it needs -----------------------


def test_proposing_records_who_proposed_when_why_and_the_business_impact(tmp_path: Path) -> None:
    instance = started(tmp_path, ServiceNowSim(user=USER, password=PASSWORD, roles=["itil"]))
    instance.storm(6)
    report = instance.sync()
    assert report["failures"] == []
    [mi] = proposed(instance.sim)
    me = next(u["sys_id"] for u in instance.sim.records("sys_user") if u["user_name"] == USER)
    assert mi["major_incident_state"] == "proposed" and mi["proposed_by"] == me and mi["proposed_on"]
    assert mi["business_impact"] == f"5 tickets on service={SERVICE}"  # the threshold was reached at 5
    [proposal] = [n["value"] for n in instance.sim.journal(mi["sys_id"], "work_notes") if "Proposed as" in n["value"]]
    assert "Reason: rule service-surge: 5 tickets" in proposal and f"Business impact: 5 tickets on service={SERVICE}" in proposal


def test_accepting_without_the_major_incident_manager_role_is_a_clear_failure(tmp_path: Path) -> None:
    # reference §1.1 and §6: accepting needs major_incident_manager; the field ACL answers 200 and keeps the
    # old value, so the old adapter reported the declaration applied while the incident never became major
    instance = started(tmp_path, ServiceNowSim(user=USER, password=PASSWORD, roles=["itil"]))
    p1 = instance.incident(5, service="0c" * 16, priority="1", impact="1", urgency="1")
    report = instance.sync()
    [failure] = [f for f in report["failures"] if f.startswith(f"declare:{p1['sys_id']}")]
    assert "kept major_incident_state ''" in failure and "major_incident_manager" in failure
    assert fetch(instance.sim, p1["sys_id"])["major_incident_state"] == ""
    instance.sim.grant("major_incident_manager")
    again = instance.sync()
    assert again["failures"] == []
    assert fetch(instance.sim, p1["sys_id"])["major_incident_state"] == "accepted"
    declared = [n for n in instance.sim.journal(p1["sys_id"], "work_notes") if "Declared a major incident" in n["value"]]
    assert len(declared) == 1, "the declaration note is written once, although the declaration was sent twice"


@pytest.mark.parametrize(("roles", "accepts", "ok", "said"), [
    (["itil"], False, True, "has itil"),
    (["itil"], True, False, "missing major_incident_manager"),
    (["itil", "major_incident_manager"], True, True, "has itil, major_incident_manager"),
    (["snc_read_only"], False, False, "missing one of itil, sn_incident_write"),
    (None, True, True, "has admin"),
], ids=["propose-with-itil", "accept-without-the-role", "accept-with-the-role", "read-only", "admin"])
def test_doctor_checks_the_integration_users_roles_against_the_rules(
        tmp_path: Path, roles: list[str] | None, accepts: bool, ok: bool, said: str) -> None:
    instance = started(tmp_path, ServiceNowSim(user=USER, password=PASSWORD, roles=roles))
    [(name, passed, detail, fix)] = adapter(instance).needs_checks(ProcessNeeds(accepts=accepts))
    assert name == "roles" and passed is ok and said in detail, detail
    assert ok or ("major_incident_manager" in fix) is accepts


# -- the people and groups of the process file ----------------------------------------------------------


def test_doctor_names_the_people_and_groups_of_the_process_file_the_instance_does_not_have(instance: Instance) -> None:
    instance.sim.insert("sys_user", {"user_name": "bob.schneider", "active": "false"})
    needs = ProcessNeeds(people=("alice.martin", "bob.schneider", "carla.rossi"),
                         groups=("major-incident-team", "service-desk-ooh"))
    checks = {name: (ok, detail) for name, ok, detail, _ in adapter(instance).needs_checks(needs)}
    ok, detail = checks["process file people"]
    assert not ok and "no sys_user with user_name 'carla.rossi'" in detail and "inactive: 'bob.schneider'" in detail
    ok, detail = checks["process file groups"]
    assert not ok and "'service-desk-ooh'" in detail and "major-incident-team" not in detail
    instance.sim.add_people(["carla.rossi"], ["service-desk-ooh"])
    instance.sim.update("sys_user", next(u["sys_id"] for u in instance.sim.records("sys_user")
                                         if u["user_name"] == "bob.schneider"), {"active": "true"})
    checks = {name: (ok, detail) for name, ok, detail, _ in adapter(instance).needs_checks(needs)}
    assert checks["process file people"] == (True, "all 3 exist in sys_user")
    assert checks["process file groups"][0]


def test_mim_simulate_and_mim_sync_with_the_shipped_files_run_clean(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env["MIM_SIM_PASSWORD"] = PASSWORD
    simulator = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "simulate", "servicenow", "--port", "0",
                                  "--user", USER], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        url = simulator.stdout.readline().split(" on ")[1].split()[0]
        with requests.Session() as api:
            api.auth = (USER, PASSWORD)
            callers = [api.post(f"{url}/api/now/table/sys_user", json={"user_name": f"shopper{i}"}).json()["result"]
                       ["sys_id"] for i in range(6)]
            for caller in callers:
                created = api.post(f"{url}/api/now/table/incident", json={
                    "short_description": "Checkout fails", "business_service": "web-shop", "caller_id": caller})
                assert created.status_code == 201
        sync_env = {**env, "MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": url, "MIM_SERVICENOW_USERNAME": USER,
                    "MIM_SERVICENOW_PASSWORD": PASSWORD, "MIM_STATE": str(tmp_path / "state.sqlite")}
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once", "--json"], cwd=tmp_path,
                                env=sync_env, capture_output=True, text=True, timeout=60)
        report = json.loads(result.stdout)
        assert report["failures"] == [] and result.returncode == 0, result.stderr
        assert len(report["declarations"]) == 1
        kinds = {a["kind"] for a in report["planned"]}
        assert {"declare", "link", "set_fields"} <= kinds, "declared, linked and assigned to the team and manager"
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


# -- the Batch API under faults (the simulator applies its faults to each item) -----------------------------


def batch_adapter(instance: Instance, sleeps: list[float]) -> ServiceNowPlatform:
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    platform = ServiceNowPlatform(instance.server.url, USER, PASSWORD, mapping, policy=RetryPolicy(sleep=sleeps.append))
    platform.discover(None)
    return platform


def test_a_batch_item_that_may_have_landed_is_read_back_before_it_is_sent_again(instance: Instance) -> None:
    # a 500 after the work is done: the item's note landed, its answer says otherwise
    first, second = instance.incident(5), instance.incident(4, caller=2)
    instance.server.add_fault("500", count=1, after=True, match=f"PATCH /api/now/table/incident/{first['sys_id']}")
    sleeps: list[float] = []
    platform = batch_adapter(instance, sleeps)
    results = platform.apply([AddNote(key=f"note:{r['sys_id']}:x", target=r["sys_id"], text="Routed out of hours")
                              for r in (first, second)], lambda t: t)
    assert [r.status for r in results] == ["applied", "applied"]
    for record in (first, second):
        assert len(instance.sim.journal(record["sys_id"], "work_notes")) == 1, "each note exactly once"


def test_a_rate_limited_batch_item_waits_for_its_retry_after(instance: Instance) -> None:
    first, second = instance.incident(5), instance.incident(4, caller=2)
    instance.server.add_fault("429", count=1, retry_after=3, match=f"PATCH /api/now/table/incident/{first['sys_id']}")
    sleeps: list[float] = []
    platform = batch_adapter(instance, sleeps)
    results = platform.apply([SetFields(key=f"f:{r['sys_id']}", target=r["sys_id"], fields={"urgency": 1})
                              for r in (first, second)], lambda t: t)
    assert [r.status for r in results] == ["applied", "applied"]
    assert sleeps == [3.0], "the item's own Retry-After, once, before the next round"
    assert fetch(instance.sim, first["sys_id"])["urgency"] == "1"


def test_batch_rounds_back_off(instance: Instance) -> None:
    first, second = instance.incident(5), instance.incident(4, caller=2)
    instance.server.add_fault("503", count=2, retry_after=None, match=f"PATCH /api/now/table/incident/{first['sys_id']}")
    sleeps: list[float] = []
    platform = batch_adapter(instance, sleeps)
    results = platform.apply([SetFields(key=f"f:{r['sys_id']}", target=r["sys_id"], fields={"urgency": 1})
                              for r in (first, second)], lambda t: t)
    assert [r.status for r in results] == ["applied", "applied"]
    assert len(sleeps) == 2 and 0 < sleeps[0] <= 0.5 <= sleeps[1], sleeps  # 0.25-0.5 s, then 0.5-1 s
    assert sum(1 for e in instance.log() if e["path"] == "/api/now/v1/batch") == 3


# -- people who edit between the poll and the write -------------------------------------------------------


def test_a_person_who_reassigns_between_the_poll_and_the_write_keeps_the_assignment(instance: Instance) -> None:
    team = instance.sim.records("sys_user_group")[0]["sys_id"]
    jane_team = instance.sim.insert("sys_user_group", {"name": "network-ops"})["sys_id"]
    mi = instance.incident(10, major_incident_state="proposed", u_mim_marker="mim:service-surge")
    platform = adapter(instance)
    platform.discover(None)
    list(platform.fetch_changed(None, instance.now - timedelta(hours=1)))  # the poll
    instance.sim.update("incident", mi["sys_id"], {"assignment_group": jane_team, "sys_updated_by": "agent.jane"})
    [result] = platform.apply([SetFields(key=f"assign:{mi['sys_id']}", target=mi["sys_id"],
                                         fields={"assignment_group": "major-incident-team"})], lambda t: t)
    assert result.status == "skipped" and "changed by agent.jane" in result.detail
    assert fetch(instance.sim, mi["sys_id"])["assignment_group"] == jane_team != team


def test_a_person_who_edits_something_else_does_not_stop_the_write(instance: Instance) -> None:
    mi = instance.incident(10, major_incident_state="proposed", u_mim_marker="mim:service-surge")
    platform = adapter(instance)
    platform.discover(None)
    list(platform.fetch_changed(None, instance.now - timedelta(hours=1)))
    instance.sim.update("incident", mi["sys_id"], {"work_notes": "Calling the vendor", "sys_updated_by": "agent.jane"})
    [result] = platform.apply([SetFields(key=f"assign:{mi['sys_id']}", target=mi["sys_id"],
                                         fields={"assignment_group": "major-incident-team"})], lambda t: t)
    assert result.status == "applied"
    assert fetch(instance.sim, mi["sys_id"])["assignment_group"] == instance.sim.records("sys_user_group")[0]["sys_id"]


def test_close_notes_the_parent_to_child_sync_copied_are_not_overwritten(instance: Instance) -> None:
    mi = instance.incident(20, major_incident_state="accepted", u_mim_marker="mim:service-surge")
    child = instance.incident(15, caller=2, parent_incident=mi["sys_id"])
    platform = adapter(instance)
    platform.discover(None)
    list(platform.fetch_changed(None, instance.now - timedelta(hours=1)))  # the child is open
    instance.sim.update("incident", mi["sys_id"], {"state": "6", "close_code": "Resolved by change",
                                                   "close_notes": "Rolled back release 4.2 (CHG0030001)",
                                                   "sys_updated_by": "agent.jane"})
    [result] = platform.apply([ResolveChild(key=f"resolve:{child['sys_id']}:{mi['sys_id']}", target=child["sys_id"],
                                            parent=mi["sys_id"], notes="Rolled back release 4.2")], lambda t: t)
    assert result.status == "skipped"
    resolved = fetch(instance.sim, child["sys_id"])
    assert (resolved["close_code"], resolved["close_notes"]) == ("Resolved by change", "Rolled back release 4.2 (CHG0030001)")


# -- transport: a body cut short -------------------------------------------------------------------------


def test_an_answer_cut_short_is_retried_and_a_write_behind_it_is_read_back(instance: Instance) -> None:
    # requests raises ChunkedEncodingError when the body ends before its Content-Length: the request was
    # carried out and its answer lost (the retry table's re-read row)
    incident = instance.incident(5)
    instance.server.add_fault("cut", count=1, match="GET /api/now/table/incident")
    platform = adapter(instance)
    platform.discover(None)
    rows = list(platform.fetch_changed(None, instance.now - timedelta(hours=1)))
    assert [r["sys_id"] for r in rows] == [incident["sys_id"]]
    instance.server.add_fault("cut", count=1, match="PATCH /api/now/table/incident")
    [result] = platform.apply([AddNote(key="note:cut", target=incident["sys_id"], text="Routed out of hours")],
                              lambda t: t)
    assert result.status == "applied"
    assert len(instance.sim.journal(incident["sys_id"], "work_notes")) == 1, "read back, not written twice"
