"""The crash matrix: the process killed (SIGKILL) at each write point of the cycle, for each kind of action,
then rerun, ends in the same platform state as a telling without a crash; and the test-only hook that kills
it (``MIM_TEST_CRASH_AT``) does what it says, also through ``mim sync --once``. The random ``kill -9`` test is
in ``tests/test_job_e2e.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.core.actions import ActionKey, SetStage
from connector.job.faults import ACTION_KINDS, CRASH_ENV, POINTS, CrashHook
from connector.job.redrive import superseded_stages
from tests.crash_matrix import Telling, first_cycle, tell
from tests.shipped import servicenow_sim

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the matrix kills forked children")


@pytest.fixture(scope="module")
def baseline() -> Telling:
    return tell()


JSM_ONLY = ("add_stakeholders", "set_services", "create_review")
"""Kinds only a Jira Service Management site plans (its write settings switch on those duties); the ServiceNow
story cannot plan them."""
SERVICENOW_KINDS = tuple(kind for kind in ACTION_KINDS if kind not in JSM_ONLY)


def test_the_story_plans_every_kind_of_action_servicenow_has(baseline: Telling) -> None:
    planned = set().union(*baseline.cycles)
    assert planned == set(SERVICENOW_KINDS)
    assert baseline.crashed == 0
    assert len(baseline.state["tasks"]) == 3 and len(baseline.state["changes"]) == 1


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind", SERVICENOW_KINDS)
def test_a_kill_at_each_write_point_then_a_rerun_converges(baseline: Telling, point: str, kind: str) -> None:
    crashed = tell(f"{point}:{kind}", first_cycle(baseline, kind))

    assert crashed.crashed == 1, "the hook killed the cycle"
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
