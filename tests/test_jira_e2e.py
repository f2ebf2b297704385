"""End to end over real HTTP: the Jira adapter and the sync cycle against the Jira simulator (Cloud and
Data Center). Every request the connector sends and every response it gets in the Cloud tests is validated
against Atlassian's OpenAPI document at teardown (``tests/jira_openapi.py``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from connector.core.settings import default_dir
from connector.job.cycle import CycleReport, run_cycle
from connector.job.store import StateStore
from connector.platforms.errors import PlatformError
from connector.platforms.retry import RetryPolicy
from connector.process.processfile import load_process
from connector.sim.jira import adf_to_text, seeded
from tests import jira_openapi
from tests.jira_site import EMAIL, FLAVOURS, TOKEN, Site, contract, mapping, process, rules, site  # noqa: F401

UTC = timezone.utc

# ---------------------------------------------------------------------------------------------- the storm


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_one_cycle_flags_one_issue_links_five_and_notes_the_rule(site: Callable[..., Site], flavour: str) -> None:
    s = site(flavour)
    report = s.cycle()
    assert report.failures == [] and len(report.declarations) == 1
    major = s.storm[0]  # rule service-surge: parent = earliest ticket
    assert s.flagged() == [major]
    assert sorted(s.children_of(major)) == sorted(s.storm[1:])
    for child in s.storm[1:]:
        [link] = s.sim.links(child)  # exactly one link, seen from the child: "is caused by" the major incident
        assert link["type"]["inward"] == "is caused by" and "outwardIssue" not in link
    major_links = s.sim.links(major)
    assert len(major_links) == 5 and all(link["type"]["outward"] == "causes" for link in major_links)
    noise = [k for k in s.sim.issue_keys() if k not in s.storm]
    assert all(s.sim.links(k) == [] and s.sim.issue(k)["fields"]["labels"] == [] for k in noise)
    [comment] = s.sim.comments(major)
    assert comment["jsdPublic"] is False  # internal: sd.public.comment = {"internal": true}
    if flavour == "cloud":
        assert isinstance(comment["body"], dict) and comment["body"]["type"] == "doc"
        text = adf_to_text(comment["body"])
    else:
        assert isinstance(comment["body"], str)  # v2: plain text
        text = comment["body"]
    assert "rule service-surge" in text and "[mim-" in text
    props = s.sim.properties(major)["mim"]
    assert props["marker"] == "mim:service-surge" and props["declared"] is True
    # the link is a child's marker: no entity property is written on a child (one request a child)
    assert all("mim" not in s.sim.properties(c) for c in s.storm[1:])
    labels = s.sim.issue(major)["fields"]["labels"]
    assert "mim-proposed" in labels  # the rule proposes; a human confirms by removing the label
    searches = {e["path"] for e in s.log() if "search" in e["path"]}
    assert searches == ({"/rest/api/3/search/jql"} if flavour == "cloud" else {"/rest/api/2/search"})


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_second_cycle_writes_nothing_and_a_late_issue_joins_at_the_next(site: Callable[..., Site], flavour: str) -> None:
    s = site(flavour)
    s.cycle()
    s.clear_log()
    second = s.cycle()
    assert s.writes() == [] and second.writes == 0 and second.failures == []
    late = s.open_incident("Checkout still failing", "shopper-late", 0)
    s.clock.advance(2)
    third = s.cycle()
    assert third.late_links == 1 and third.failures == []
    assert late in s.children_of(s.storm[0])
    assert s.flagged() == [s.storm[0]]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_quiet_cycle_is_one_search_once_discovery_is_cached(site: Callable[..., Site], flavour: str) -> None:
    s = site(flavour)
    s.cycle()
    s.cycle()
    s.clear_log()
    # A new store connection and a new adapter each time, as separate `mim sync --once` runs would have.
    for _ in range(2):
        report = s.cycle()
        assert report.requests == 1
    search = "POST /rest/api/3/search/jql" if flavour == "cloud" else "POST /rest/api/2/search"
    assert [f"{e['method']} {e['path']}" for e in s.log()] == [search, search]


def test_uncached_quiet_cycle_costs_discovery_plus_one_search(site: Callable[..., Site]) -> None:
    s = site()
    with StateStore(s.state, "jira") as store:
        first = s.cycle(store)
    assert first.requests > 10
    s.state.unlink()  # a lost state: discovery again, the rebuild search, the delta
    s.clear_log()
    s.cycle()
    paths = [e["path"] for e in s.log()]
    assert paths[:6] == ["/rest/api/2/serverInfo", "/_edge/tenant_info", "/rest/api/3/myself", "/rest/api/3/field",
                         "/rest/api/3/issueLinkType", "/rest/api/3/issuetype"]
    assert s.writes() == []  # a lost state file causes no second major incident and no duplicate write
    assert s.flagged() == [s.storm[0]]


def test_a_human_unflagging_is_a_rejection_never_redeclared(site: Callable[..., Site]) -> None:
    s = site()
    s.cycle()
    major = s.storm[0]
    s.sim.edit_issue(major, {"major_incident": False})
    s.clear_log()
    s.cycle()
    s.state.unlink()  # even after losing the state
    s.cycle()
    assert s.writes() == [] and s.flagged() == []
    assert s.sim.properties(major)["mim"]["declared"] is True


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rate_limits_and_unavailability_on_30_percent_of_requests_still_converge(site: Callable[..., Site],
                                                                                 flavour: str) -> None:
    s = site(flavour)
    s.policy = lambda: RetryPolicy(sleep=lambda seconds: None, attempts=10)
    rate_limited = s.server.add_fault("429", rate=0.15, retry_after=0)
    unavailable = s.server.add_fault("503", rate=0.18, retry_after=None)
    late_added = False
    for attempt in range(8):
        try:
            report = s.cycle()
        except PlatformError:
            continue
        if not late_added:
            late = s.open_incident("Checkout broken again", "shopper-late", 0)
            late_added = True
        elif report.failures == [] and report.writes == 0:
            break
    faults = rate_limited.fired + unavailable.fired
    assert faults >= 10, "the faults did not fire"
    s.server.clear_faults()
    s.clear_log()
    final = s.cycle()
    assert final.writes == 0 and s.writes() == []
    major = s.storm[0]
    assert s.flagged() == [major]
    assert sorted(s.children_of(major)) == sorted(s.storm[1:] + [late])
    assert all(len(s.sim.links(k)) == 1 for k in s.storm[1:] + [late])
    assert len(s.sim.comments(major)) == 1  # no duplicate declaration note
    assert len(s.sim.issue_keys()) == 12  # nothing created twice (6 storm + 5 noise + 1 late)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_whole_process_runs_to_closed_on_the_simulator(site: Callable[..., Site], flavour: str) -> None:
    from connector.process.planner import plan_process

    planners = [plan_process]
    s = site(flavour)  # the process file's people exist, its groups and teams do not: the team is not written
    for person in ("alice.martin", "bob.schneider", "carla.rossi", "oncall.duty"):
        s.sim.add_user(person)

    def cycle(minutes: float = 5) -> CycleReport:
        with StateStore(s.state, "jira") as store:
            platform = s.platform()
            try:
                report = run_cycle(platform, store, s.rules, s.process, s.clock.advance(minutes), planners=planners)
            finally:
                platform.close()
        assert report.failures == [], report.failures
        return report

    def quiet() -> None:
        s.clear_log()
        assert cycle(1).writes == 0 and s.writes() == []

    cycle()
    major = s.storm[0]
    assert s.sim.issue(major)["fields"]["assignee"] is not None  # the manager (Cloud: looked up to an accountId)
    quiet()
    s.sim.edit_issue(major, {"customfield_10060": "Resolution"})  # an agent moves it to resolution
    cycle()
    [change] = [k for k in s.sim.issue_keys() if "Change" in s.sim.issue(k)["fields"]["issuetype"]["name"]]
    assert any(link.get("outwardIssue", {}).get("key") == change for link in s.sim.links(major))
    quiet()
    s.sim.edit_issue(major, {"status": "Resolved"})
    cycle()
    children = s.storm[1:]
    assert all(s.sim.issue(k)["fields"]["status"]["statusCategory"]["key"] == "done" for k in children)
    # Cloud (Premium): a post-incident review linked to the major incident holds the tasks; Data Center has no
    # review type: the tasks are linked to the major incident itself
    holders = [link["outwardIssue"]["key"] for link in s.sim.links(major) if "outwardIssue" in link
               and "Post-incident review" in s.sim.issue(link["outwardIssue"]["key"])["fields"]["issuetype"]["name"]]
    assert len(holders) == (1 if flavour == "cloud" else 0)
    holder = holders[0] if holders else major
    tasks = [link["outwardIssue"]["key"] for link in s.sim.links(holder) if "outwardIssue" in link
             and s.sim.issue(link["outwardIssue"]["key"])["fields"]["issuetype"]["name"] == "Task"]
    assert len(tasks) == 3
    quiet()
    s.sim.edit_issue(major, {"status": "Closed"})
    waiting = cycle(30)
    assert any(p["key"].endswith(":waiting") for p in waiting.planned)  # closed, review tasks still open
    for task in tasks:
        s.sim.edit_issue(task, {"status": "Closed"})
    closing = cycle(30)
    assert any(p["key"].endswith(":closed") and p["kind"] == "note" for p in closing.planned)
    quiet()


def test_mim_sync_once_against_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contract: bool) -> None:
    from cli import main

    shipped, _ = load_process(default_dir("rules") / "process.yaml")
    assert shipped is not None
    # What `mim simulate jira` serves: a site that knows the people and groups of the shipped process file.
    sim = seeded(EMAIL, TOKEN, "cloud", shipped.people(), shipped.groups())
    sim.record_exchanges = True  # real clock: the CLI uses the real now
    server = sim.server().start()
    now = datetime.now(UTC)
    try:
        storm = [sim.create_issue({"summary": f"Checkout down {n}", "components": ["web-shop"], "reporter": f"cli{n}",
                                   "created": (now - timedelta(minutes=8 - n)).isoformat()})["key"] for n in range(6)]
        monkeypatch.chdir(tmp_path)
        env = {"MIM_PLATFORM": "jira", "MIM_JIRA_URL": server.url, "MIM_JIRA_EMAIL": EMAIL, "MIM_JIRA_TOKEN": TOKEN,
               "MIM_JIRA_PROJECT": "ITSM", "MIM_STATE": str(tmp_path / "state.sqlite"),
               "MIM_RULES": str(default_dir("rules"))}
        runner = CliRunner()
        first = runner.invoke(main, ["sync", "--once", "--json"], env=env)
        assert first.exit_code == 0, first.output
        assert TOKEN not in first.output
        assert json.loads(first.stdout)["failures"] == []  # the shipped files run clean
        server.clear_requests()
        second = runner.invoke(main, ["sync", "--once"], env=env)
        assert second.exit_code == 0, second.output
        writes = [e for e in server.requests() if e["method"] != "GET" and not e["path"].endswith("/search/jql")]
        assert writes == []
        assert [k for k in storm if sim.issue(k)["fields"].get("customfield_10050") == "MAJOR_INCIDENT"] == [storm[0]]
        assert len(sim.links(storm[0])) == 5
        assert sim.issue(storm[0])["fields"]["assignee"] is not None  # the manager, resolved to an accountId
    finally:
        server.stop()
    if contract:
        assert jira_openapi.validate_exchanges(sim.exchanges) == []


def test_mim_simulate_jira_knows_the_people_and_groups_of_the_process_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.sim.jira as sim_jira
    from cli import main

    served: dict[str, object] = {}
    monkeypatch.setattr(sim_jira, "serve", lambda *args, **kwargs: served.update(args=args, **kwargs))
    result = CliRunner().invoke(main, ["simulate", "jira", "--port", "0"],
                                env={"MIM_RULES": str(default_dir("rules"))})
    assert result.exit_code == 0, result.output
    assert served["people"] == ["alice.martin", "bob.schneider", "carla.rossi", "oncall.duty"]
    assert served["groups"] == ["major-incident-team", "service-desk-ooh"]
