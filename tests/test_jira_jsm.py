"""Jira Service Management at parity (issue 14), end to end against the simulator: the team and the manager as
responders, the stakeholders, the affected services, out-of-hours children routed to the out-of-hours team with
raised priority, and the post-incident review holding the review tasks; on Data Center the same through the
configured custom fields. A second sync after each step writes nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from connector.core.mapping import Mapping
from connector.job.cycle import CycleReport, run_cycle
from connector.job.store import StateStore
from connector.process.planner import plan_process
from connector.process.processfile import ProcessFile
from connector.sim.jira import adf_to_text
from tests.jira_site import Site, contract, doctor, mapping, process, rules, site  # noqa: F401

UTC = timezone.utc
PEOPLE = ("alice.martin", "bob.schneider", "carla.rossi", "oncall.duty")
GROUPS = ("major-incident-team", "service-desk-ooh")
# the storm comes in the last minutes of the working day (its tickets 17:42-17:47 in Berlin), and a caller
# just after six, while the surge lasts (the shipped rules' late children: while the surge lasts, plus 15m)
LATE_AFTERNOON = datetime(2024, 1, 15, 16, 52, tzinfo=UTC)  # Monday 17:52 in Berlin
EVENING = datetime(2024, 1, 15, 17, 1, tzinfo=UTC)  # Monday 18:01 in Berlin: out of business hours


def jsm_site(make: Callable[..., Site], flavour: str) -> Site:
    """A site that knows the people and teams of the process file, whose tickets name their affected service, and
    a process file whose stakeholders name a person."""
    s = make(flavour, start=LATE_AFTERNOON)
    for person in PEOPLE:
        s.sim.add_user(person)
    for group in GROUPS:
        s.sim.add_group(group)
        if flavour == "cloud":
            s.sim.add_team(group)
    if flavour == "cloud":
        for key in s.sim.issue_keys():
            # the callers' tickets name their service; the major-incident-to-be (the earliest) does not yet
            service = [] if key == s.storm[0] else [s.sim.issue(key)["fields"]["components"][0]["name"]]
            s.sim.edit_issue(key, {"affected_services": service, "updated": s.sim.issue(key)["fields"]["created"]})
    stakeholders = [s.process.communications.stakeholders[0].model_copy(update={"people": ["carla.rossi"]})]
    s.process = s.process.model_copy(update={
        "communications": s.process.communications.model_copy(update={"stakeholders": stakeholders})})
    return s


def sync(s: Site, minutes: float = 5) -> CycleReport:
    s.clock.advance(minutes)
    with StateStore(s.state, "jira") as store:
        platform = s.platform()
        try:
            report = run_cycle(platform, store, s.rules, s.process, s.clock.now, planners=[plan_process])
        finally:
            platform.close()
    assert report.failures == [], report.failures
    return report


def writes_nothing(s: Site) -> None:
    s.clear_log()
    again = sync(s, minutes=1)
    assert again.writes == 0 and s.writes() == [], s.writes()


def internal_notes(s: Site, key: str) -> list[str]:
    return [c["body"] if isinstance(c["body"], str) else adf_to_text(c["body"])
            for c in s.sim.comments(key) if c["jsdPublic"] is False]


@pytest.mark.parametrize("flavour", ["cloud", "dc"])
def test_the_jsm_process_team_manager_stakeholders_services_out_of_hours_and_review(
        site: Callable[..., Site], flavour: str) -> None:
    s = jsm_site(site, flavour)
    sync(s)
    major = s.storm[0]
    issue = s.sim.issue(major)
    manager = issue["fields"]["assignee"]
    assert manager is not None and manager["displayName"] == "Alice Martin"  # the rota's first manager
    if flavour == "cloud":
        responders = {(r["type"], r["name"]) for r in s.sim.responders(major)}
        assert responders == {("team", "major-incident-team"), ("user", "Alice Martin")}
        [stakeholder] = s.sim.stakeholders(major)
        assert stakeholder.endswith("/" + next(u["accountId"] for u in s.sim.users() if u["name"] == "carla.rossi"))
        assert [svc["name"] for svc in issue["fields"]["customfield_10090"]] == ["web-shop"]
    else:
        assert issue["fields"]["customfield_10100"]["name"] == "major-incident-team"  # the team's group picker
        assert [u["name"] for u in issue["fields"]["customfield_10101"]] == ["alice.martin"]  # responders picker
        assert [u for u in s.sim.participants(major)] == [
            next(u["accountId"] for u in s.sim.users() if u["name"] == "carla.rossi")]  # request participants
    writes_nothing(s)

    # a caller out of hours while the outage lasts: the child goes to the out-of-hours team with a raised priority
    # and a note
    s.clock.now = EVENING
    late = s.open_incident("Checkout broken tonight", "night-shopper", 0)
    if flavour == "cloud":
        s.sim.edit_issue(late, {"affected_services": ["web-shop"]})
    sync(s, minutes=1)
    assert late in s.children_of(major)
    child = s.sim.issue(late)
    assert child["fields"]["priority"]["name"] == "Highest"
    if flavour == "cloud":
        assert ("team", "service-desk-ooh") in {(r["type"], r["name"]) for r in s.sim.responders(late)}
    else:
        assert child["fields"]["customfield_10100"]["name"] == "service-desk-ooh"
    assert any("out of hours" in note for note in internal_notes(s, late))
    writes_nothing(s)

    # resolved: the children too, and the post-incident review holding the review tasks
    s.sim.edit_issue(major, {"status": "Resolved"})
    sync(s)
    assert all(s.sim.issue(k)["fields"]["status"]["statusCategory"]["key"] == "done" for k in s.storm[1:] + [late])
    review_type = "[System] Post-incident review" if flavour == "cloud" else None
    linked = [link.get("outwardIssue", {}).get("key") for link in s.sim.links(major)]
    reviews = [k for k in linked if k and s.sim.issue(k)["fields"]["issuetype"]["name"] == review_type]
    holder = reviews[0] if flavour == "cloud" else major
    if flavour == "cloud":
        assert len(reviews) == 1 and s.sim.issue(holder)["fields"]["assignee"]["displayName"] == "Alice Martin"
    tasks = [link["outwardIssue"]["key"] for link in s.sim.links(holder)
             if link["type"]["name"] == "Relates" and "outwardIssue" in link
             and s.sim.issue(link["outwardIssue"]["key"])["fields"]["issuetype"]["name"] == "Task"]
    assert len(tasks) == len(s.process.review.tasks) == 3
    first = s.sim.issue(tasks[0])["fields"]
    assert first["assignee"]["displayName"] == "Alice Martin" and first["duedate"] is not None
    writes_nothing(s)

    # closed, and the review tasks done: the process closes
    s.sim.edit_issue(major, {"status": "Closed"})
    for task in tasks:
        s.sim.edit_issue(task, {"status": "Closed"})
    closing = sync(s, minutes=30)
    assert any(p["key"].startswith("note:") and p["key"].endswith(":closed") for p in closing.planned)
    writes_nothing(s)


def test_a_standard_cloud_site_has_responders_and_the_label_but_no_major_incident_api(
        site: Callable[..., Site]) -> None:
    s = jsm_site(lambda flavour, **kw: site(flavour, plan="standard", major_incident_field=False, **kw), "cloud")
    sync(s)
    major = s.storm[0]
    assert {(r["type"], r["name"]) for r in s.sim.responders(major)} == {("team", "major-incident-team"),
                                                                         ("user", "Alice Martin")}
    assert "major-incident" in s.sim.issue(major)["fields"]["labels"]
    writes_nothing(s)


def test_the_process_file_stakeholders_name_people(process: ProcessFile) -> None:  # noqa: F811
    assert "carla.rossi" in process.people()


@pytest.mark.parametrize("flavour", ["cloud", "dc"])
def test_doctor_says_where_the_team_the_stakeholders_and_the_review_go(site: Callable[..., Site], flavour: str,
                                                                       tmp_path: Path) -> None:
    s = jsm_site(site, flavour)
    checks = doctor(s, tmp_path)
    assert all(ok for ok, _ in checks.values()), {k: v for k, v in checks.items() if not v[0]}
    team, stakeholders = checks["team and responders"][1], checks["stakeholders"][1]
    if flavour == "cloud":
        assert "JSM responders (customfield_10080)" in team and "Atlassian team" in team
        assert "stakeholder/add" in stakeholders
        assert "Post-incident review" in checks["post-incident review"][1]
        assert checks["affected services"][1] == "Affected services (customfield_10090)"
    else:
        assert "Major incident team (customfield_10100, grouppicker)" in team and "Responders" in team
        assert "request participants" in stakeholders
        assert "linked to the major incident" in checks["post-incident review"][1]


def test_doctor_fails_a_team_that_is_only_a_group_when_responders_are_teams(site: Callable[..., Site],
                                                                           tmp_path: Path) -> None:
    s = site("cloud")
    for person in PEOPLE:
        s.sim.add_user(person)
    for group in GROUPS:
        s.sim.add_group(group)  # groups, but no Atlassian teams: JSM responders cannot name them
    ok, detail = doctor(s, tmp_path)["people and groups"]
    assert not ok and "team 'major-incident-team'" in detail


@pytest.mark.parametrize("field, shown", [("Team", "major-incident-team"),
                                          ("Major incident team", "major-incident-team")],
                         ids=["atlassian-team-field", "group-picker"])
def test_a_cloud_site_can_take_the_team_in_a_field_instead_of_responders(site: Callable[..., Site], field: str,
                                                                        shown: str) -> None:
    s = jsm_site(site, "cloud")
    write = s.mapping.write.model_copy(update={"team_via": "field", "team_field_name": field})
    s.mapping = Mapping(s.mapping.spec.model_copy(update={"write": write}), s.mapping.path)
    sync(s)
    major = s.sim.issue(s.storm[0])["fields"]
    value = major["customfield_10110" if field == "Team" else "customfield_10100"]
    assert value["name"] == shown
    assert s.sim.responders(s.storm[0]) == []  # the team is not a responder: the field holds it
    writes_nothing(s)
