"""The crash matrix: the process killed (SIGKILL) at each write point of the cycle, for each kind of action,
then rerun, ends in the same platform state as a telling without a crash, on ServiceNow and on Jira Service
Management (whose write settings plan the three kinds ServiceNow has no place for); and the test-only hook that
kills it (``MIM_TEST_CRASH_AT``) does what it says, also through ``mim sync --once``. The random ``kill -9``
test is in ``tests/test_job_e2e.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
import requests

from connector.core.actions import ActionKey, SetStage
from connector.job.faults import ACTION_KINDS, CRASH_ENV, POINTS, CrashHook
from connector.job.redrive import superseded_stages
from tests.crash_matrix import EMAIL, PASSWORD, PLATFORMS, JiraSite, Site, Telling, first_cycle, tell
from tests.shipped import servicenow_sim

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the matrix kills forked children")

JSM_ONLY = ("add_stakeholders", "set_services", "create_review")
"""Kinds only a Jira Service Management site plans (its write settings switch on those duties); the ServiceNow
story cannot plan them."""
KINDS = {"servicenow": tuple(kind for kind in ACTION_KINDS if kind not in JSM_ONLY), "jira": ACTION_KINDS}
"""The kinds each platform's story plans: every kind is crash-tested on at least one platform."""


class Baselines(dict[str, Telling]):
    """The uninterrupted telling of each platform, told when first needed."""

    def __missing__(self, platform: str) -> Telling:
        self[platform] = found = tell(platform=platform)
        return found


@pytest.fixture(scope="module")
def baselines() -> Baselines:
    return Baselines()


def test_every_kind_of_action_is_crash_tested_on_some_platform() -> None:
    assert set().union(*KINDS.values()) == set(ACTION_KINDS) and set(KINDS) == set(PLATFORMS)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_story_plans_every_kind_of_action_the_platform_has(baselines: Baselines, platform: str) -> None:
    baseline = baselines[platform]
    assert set().union(*baseline.cycles) == set(KINDS[platform])
    assert baseline.crashed == 0


def test_on_servicenow_the_story_ends_with_the_review_tasks_and_the_change(baselines: Baselines) -> None:
    state = baselines["servicenow"].state
    assert len(state["tasks"]) == 3 and len(state["changes"]) == 1


def test_on_jsm_the_story_ends_with_stakeholders_affected_services_and_the_review_holding_its_tasks(
        baselines: Baselines) -> None:
    state = baselines["jira"].state
    issues = {i["key"]: i["fields"] for i in map(json.loads, state["issues"])}
    types = Counter(fields["issuetype"]["name"] for fields in issues.values())
    assert types["[System] Post-incident review"] == 1 and types["Task"] == 3 and types["[System] Change"] == 1
    [review] = [key for key, fields in issues.items() if fields["issuetype"]["name"].endswith("Post-incident review")]
    assert sum(1 for link in issues[review]["issuelinks"] if "outwardIssue" in link) == 3, "the review holds its tasks"
    majors = [key for key, fields in issues.items() if fields["customfield_10050"]]
    assert len(majors) == 2
    assert sorted(state["people"]) == sorted(f"{key}: stakeholder carla.rossi" for key in majors)
    services = {key: sorted(s["name"] for s in issues[key]["customfield_10090"] or []) for key in majors}
    assert sorted(services.values()) == [["bi", "crm", "erp", "hr-portal", "wiki"], ["web-shop"]]


CELLS = [pytest.param(platform, point, kind, id=f"{platform}-{point}-{kind}")
         for platform in PLATFORMS for kind in KINDS[platform] for point in POINTS]


@pytest.mark.parametrize(("platform", "point", "kind"), CELLS)
def test_a_kill_at_each_write_point_then_a_rerun_converges(baselines: Baselines, platform: str, point: str,
                                                           kind: str) -> None:
    baseline = baselines[platform]
    crashed = tell(f"{point}:{kind}", first_cycle(baseline, kind), platform)

    assert crashed.crashed == 1, "the hook killed the cycle"
    for part, expected in baseline.state.items():
        assert crashed.state[part] == expected, part


def _only_created(issue_type: str) -> Callable[[Site], None]:
    """Take back what the Jira adapter sends after the create of the newest issue of ``issue_type``: its links
    and its owner (the state a kill right after the create leaves)."""
    def take_back(site: Site) -> None:
        assert isinstance(site, JiraSite)
        [key, *_] = [k for k in reversed(site.sim.issue_keys())
                     if site.sim.issue(k)["fields"]["issuetype"]["name"] == issue_type]
        for link in site.sim.links(key):
            gone = requests.delete(f"{site.server.url}/rest/api/3/issueLink/{link['id']}", auth=(EMAIL, PASSWORD),
                                   timeout=5)
            assert gone.status_code == 204, gone.text
        site.sim.edit_issue(key, {"assignee": None})
    return take_back


@pytest.mark.parametrize(("kind", "issue_type"), [("create_change", "[System] Change"),
                                                  ("create_review", "[System] Post-incident review"),
                                                  ("create_task", "Task")])
def test_on_jira_a_kill_right_after_a_create_then_a_rerun_links_it_and_gives_the_owner(
        baselines: Baselines, kind: str, issue_type: str) -> None:
    """The Jira adapter creates a change, review or review task, links it, then (review and tasks) assigns its
    owner: several requests. Killed right after the create (the hook kills after the action; the link and the
    owner are then taken back as if never sent), the rerun finds the issue by its tag and must still link it and
    give it its owner."""
    baseline = baselines["jira"]
    crashed = tell(f"after_send:{kind}", first_cycle(baseline, kind), "jira", unsent=_only_created(issue_type))

    assert crashed.crashed == 1
    for part, expected in baseline.state.items():
        assert crashed.state[part] == expected, part


def test_the_hook_is_disarmed_without_its_variable_and_refuses_a_typo() -> None:
    killed: list[bool] = []
    hook = CrashHook.from_environment({})
    hook.at("after_ledger", [SetStage(key="stage:x:containment", target="x", stage="containment")])
    assert hook.point is None and not killed
    with pytest.raises(ValueError, match="unknown point 'after_lunch'"):
        CrashHook.from_environment({CRASH_ENV: "after_lunch:link"})
    with pytest.raises(ValueError, match="unknown action kind 'lnk'"):
        CrashHook.from_environment({CRASH_ENV: "after_send:lnk"})
    armed = CrashHook("after_ledger", "set_stage", kill=lambda: killed.append(True))
    armed.at("after_ledger", [SetStage(key="stage:x:containment", target="x", stage="containment")])
    armed.at("before_watermark", [SetStage(key="stage:x:containment", target="x", stage="containment")])
    assert killed == [True]


def test_mim_sync_killed_by_the_hook_then_rerun_writes_each_link_once(tmp_path: Path) -> None:
    sim = servicenow_sim(user="crash", password="crash-password-123")
    server = sim.server().start()
    try:
        now = datetime.now(timezone.utc)
        ids = [sim.insert("incident", {"short_description": "Checkout fails", "business_service": "web-shop",
                                       "caller_id": f"caller{i}",
                                       "opened_at": (now - timedelta(minutes=10 - i)).strftime("%Y-%m-%d %H:%M:%S")})["sys_id"]
               for i in range(6)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
        env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=server.url, MIM_SERVICENOW_USERNAME="crash",
                   MIM_SERVICENOW_PASSWORD="crash-password-123", MIM_STATE=str(tmp_path / "state.sqlite"),
                   PYTHONPATH=str(ROOT))
        command = [sys.executable, str(ROOT / "cli.py"), "sync", "--once"]

        killed = subprocess.run(command, env={**env, CRASH_ENV: "after_send:link"}, capture_output=True, timeout=60)
        linked = [i for i in ids[1:] if sim.get("incident", i)["parent_incident"] == ids[0]]
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()

    assert killed.returncode == -9, killed.stderr
    assert len(linked) == 1, "killed right after the first link was sent"
    assert rerun.returncode == 0, rerun.stderr
    assert all(sim.get("incident", i)["parent_incident"] == ids[0] for i in ids[1:])
    patches = [r for r in sim.records("sys_journal_field") if r["element_id"] == ids[0]]
    assert len({p["value"] for p in patches}) == len(patches), "no note written twice"


def test_only_the_latest_pending_stage_of_an_incident_is_re_sent() -> None:
    def row(mi: str, stage: str) -> dict[str, object]:
        key = str(ActionKey.stage(mi, stage))
        return {"key": key, "kind": "set_stage", "target": mi, "status": "planned",
                "action": {"kind": "set_stage", "key": key, "target": mi, "stage": stage}}

    # the ledger hands rows of one cycle back sorted by key: containment before identification
    rows = [row("a", "containment"), row("a", "identification"), row("b", "identification")]

    assert superseded_stages([], rows) == {str(ActionKey.stage("a", "identification"))}
    fresh = [SetStage(key=str(ActionKey.stage("b", "containment")), target="b", stage="containment")]
    assert superseded_stages(fresh, rows) == {str(ActionKey.stage("a", "identification")),
                                              str(ActionKey.stage("b", "identification"))}
