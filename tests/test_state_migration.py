"""A state file written by an earlier version keeps working: ``tests/fixtures/state-v1/`` holds a real state
(schema 1, records with a ``facts`` dict) made by the code from before the process state was typed
(``make_state_v1.py``), with what that code reported and planned from it. Opened by this version, the state is
migrated, reports the same, and the cycles that follow plan what the old code planned: nothing a minute later,
then the same update messages."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.core.actions import ActionKey
from connector.detection.process_state import (
    Closure,
    Comms,
    Containment,
    Declared,
    FollowUp,
    InitialAssignment,
    Maintenance,
    OwnedField,
    Ownership,
    PlatformReading,
    Progress,
    Resolution,
    ReviewCounts,
    RotaTurn,
    StageEvents,
    TimelineEvent,
)
from connector.detection.registry import MIRecord
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.migrations import V1_KEYS, record_v1_to_v2
from connector.job.store import SCHEMA_VERSION, StateError, StateStore
from connector.process.processfile import load_process
from connector.tools.report import collect, render_json, render_table
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "state-v1"
RULES = load_rules([ROOT / "rules"]).rules
PROCESS, _errors = load_process(ROOT / "rules" / "process.yaml")
assert PROCESS is not None and not _errors
NEXT = json.loads((FIXTURE / "next.json").read_text(encoding="utf-8"))
NOW = datetime.fromisoformat(NEXT["now"])
TIMES = ("opened_at", "updated_at", "resolved_at")


def restore_state(path: Path) -> Path:
    """The fixture's state file, rebuilt from its SQL dump."""
    with sqlite3.connect(path) as db:
        db.executescript((FIXTURE / "state.sql").read_text(encoding="utf-8"))
    return path


def restore_platform(clock: Clock) -> FakePlatform:
    """The fake platform as the fixture's story left it."""
    data = json.loads((FIXTURE / "platform.json").read_text(encoding="utf-8"))
    platform = FakePlatform(clock)
    platform.records = {i: {k: (datetime.fromisoformat(v) if k in TIMES and v is not None else v) for k, v in r.items()}
                        for i, r in data["records"].items()}
    platform.notes = data["notes"]
    platform._seq = data["seq"]
    return platform


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return restore_state(tmp_path / "state.sqlite")


def test_the_fixture_is_a_state_of_schema_1(state: Path) -> None:
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (1,)
        records = [json.loads(data) for (data,) in db.execute("SELECT data FROM major_incidents")]
    keys = set().union(*(r["facts"] for r in records))
    assert len(records) == 4 and len(keys) >= 50, "most of what the process remembers is in it"


def test_an_old_state_is_migrated_to_the_current_schema(state: Path) -> None:
    with StateStore(state, "servicenow"):
        pass
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)


def test_an_old_state_reports_what_the_old_code_reported(state: Path) -> None:
    with StateStore(state, "servicenow") as store:
        data = collect(store, PROCESS, NOW)
    before = json.loads((FIXTURE / "report.json").read_text(encoding="utf-8"))
    now = json.loads(render_json(data))
    # the report has grown (the overview, the verdicts, review tasks on time): what it said then, it says the same
    assert {k: now[k] for k in before if k != "major_incidents"} == {
        k: v for k, v in before.items() if k != "major_incidents"}
    assert [{k: mi[k] for k in old} for mi, old in zip(now["major_incidents"], before["major_incidents"])] == \
        before["major_incidents"]
    assert render_table(data) + "\n" == (FIXTURE / "report.txt").read_text(encoding="utf-8")


def test_an_old_state_keeps_the_verdicts_people_made_before_decisions_were_recorded(state: Path) -> None:
    with StateStore(state, "servicenow") as store:
        data = collect(store, PROCESS, NOW)
    verdicts = {mi["key"]: (mi["mode"], mi["verdict"], mi["decided_at"]) for mi in data["major_incidents"]}
    assert verdicts["INC00022"] == ("propose", "rejected", None), "rejected then, its time unknown"
    rule = {r["rule"]: r for r in data["overview"]["rules"]}["service-surge"]
    assert (rule["proposals"], rule["accepted"], rule["rejected"], rule["open"]) == (3, 0, 1, 2)


def test_an_old_state_reads_the_same_after_a_second_opening(state: Path) -> None:
    with StateStore(state, "servicenow") as store:
        first = [r.to_json() for r in store.major_incidents()]
    with StateStore(state, "servicenow") as store:
        assert [r.to_json() for r in store.major_incidents()] == first


def planned(report: Any) -> list[dict[str, Any]]:
    return json.loads(json.dumps(report.planned, default=str))


def test_the_cycles_after_an_upgrade_plan_what_the_old_code_planned(state: Path) -> None:
    clock = Clock(NOW)
    platform = restore_platform(clock)
    with StateStore(state, "servicenow") as store:
        quiet = run_cycle(platform, store, RULES, PROCESS, clock.advance(minutes=1))
        assert quiet.failures == [] and planned(quiet) == NEXT["planned"][0] == [] and quiet.writes == 0
        due = run_cycle(platform, store, RULES, PROCESS, clock.advance(minutes=30))
        assert due.failures == [] and planned(due) == NEXT["planned"][1]
        assert run_cycle(platform, store, RULES, PROCESS, clock.advance(minutes=1)).planned == []


def test_every_key_in_an_old_ledger_is_an_action_key_in_its_one_form(state: Path) -> None:
    with StateStore(state, "servicenow") as store:
        rows = store.ledger_rows()
    assert len(rows) > 90
    for row in rows:
        assert str(ActionKey.parse(row["key"])) == row["key"] == ActionKey.of(ActionKey.parse(row["key"]).parts)
    assert {ActionKey.parse(row["key"]).kind for row in rows} >= {"declare", "link", "note", "stage", "assign", "ooh",
                                                                   "change", "task", "resolve", "comms"}


def test_the_old_state_spans_the_whole_process(state: Path) -> None:
    with StateStore(state, "servicenow") as store:
        stages = {r.id: (r.stage, r.status) for r in store.major_incidents()}
    assert stages == {NEXT["web_shop"]: ("closed", "closed"), NEXT["payments"]: ("containment", "open"),
                      NEXT["vpn"]: ("resolution", "open"), NEXT["intranet"]: ("containment", "rejected")}


# -- the record upgrade, key by key ---------------------------------------------------------------------------

AT = "2026-03-02T10:00:00+00:00"
LATER = "2026-03-02T11:30:00+01:00"
EVERY_KEY = {
    "first_opened_at": AT, "declared_at": AT, "detected_at": AT, "triggered_by": ["a", "b"], "group_fields": ["service"],
    "mode": "propose", "service": "web-shop",
    "major": "proposed", "state": "closed", "resolved_at": AT,
    "followed_at": AT, "change_state": "closed", "change_key": "CHG1", "review_tasks": {"done": 1, "total": 3},
    "review_open": ["TASK2", "TASK3"],
    "process": 1, "epoch": 1, "adopted": "resolution", "seen_state": "closed", "reopened_at": LATER,
    "stage_keys": ["stage:a:resolution", "stage:a:maintenance:r1"], "stage_human_at": AT, "process_done": True,
    "stage_event_at": {"identification": AT, "containment": AT, "resolution": LATER, "maintenance:0": AT,
                       "maintenance:1": LATER, "closed:1": LATER},
    "declared_sent": True, "last_update": 4, "updates_sent": 2,
    "contained": True, "contained_at": AT, "manager": "eve", "manager_source": "human", "team": "ops",
    "rota_seq": 7, "rota_next": 2, "initial": {"assignment_group": None, "assignee": "x"},
    "ooh_checked": ["b"], "ooh_routed": ["b"],
    "resolution": True, "resolution_at": LATER, "change": "chg-1", "change_linked_at": AT, "change_planned": True,
    "change_title": "Plan", "change_state_seen": "closed", "change_done_noted": True,
    "maintained": [0, 1], "mi_resolved_at": LATER, "review_planned": True, "review_tasks_planned": 3,
    "waiting_noted": [1],
    "closed": True, "closed_at": LATER,
    "owned": {"stage": {"written": "maintenance", "ours": ["identification", "maintenance"], "before": "resolution",
                        "landed": True, "seen": "maintenance", "by": "connector", "at": AT}},
    "human": {"assignee": "eve", "assignment_group": None}, "human_at": {"assignee": AT},
    "timeline": [{"at": AT, "by": "human", "event": "assignee", "value": "eve"},
                 {"at": LATER, "by": "connector", "event": "update", "value": 4}],
}


def old_record(**facts: Any) -> str:
    return json.dumps({"id": "a", "rule": "service-surge", "group": ["web-shop"], "started_at": AT, "declared_at": AT,
                       "status": "closed", "key": "INC1", "synthetic_id": None, "stage": "closed", "children": ["b"],
                       "facts": facts}, sort_keys=True)


def test_every_key_schema_1_wrote_has_its_place() -> None:
    assert set(EVERY_KEY) == V1_KEYS
    record = MIRecord.from_json(record_v1_to_v2(old_record(**EVERY_KEY)))
    at, later = datetime.fromisoformat(AT), datetime.fromisoformat(LATER)
    assert record.declaration == Declared(first_opened_at=at, declared_at=at, detected_at=at, triggered_by=["a", "b"],
                                          group_fields=["service"], mode="propose", service="web-shop")
    assert record.reading == PlatformReading(major="proposed", state="closed", resolved_at=at)
    assert record.followup == FollowUp(followed_at=at, change_state="closed", change_key="CHG1",
                                       review_tasks=ReviewCounts(done=1, total=3), review_open=["TASK2", "TASK3"])
    progress = record.progress
    assert (progress.started, progress.epoch, progress.adopted, progress.seen_state, progress.reopened_at,
            progress.stage_keys, progress.stage_human_at, progress.done) == (
        True, 1, "resolution", "closed", later, ["stage:a:resolution", "stage:a:maintenance:r1"], at, True)
    assert progress.stage_events == StageEvents(identification=at, containment=at, resolution=later,
                                                maintenance={0: at, 1: later}, closed={1: later})
    assert progress.comms == Comms(declared_sent=True, last_update=4, updates_sent=2)
    assert progress.containment == Containment(
        contained=True, contained_at=at, manager="eve", manager_source="human", team="ops",
        rota=RotaTurn(seq=7, next=2), initial=InitialAssignment(assignee="x"), ooh_checked=["b"], ooh_routed=["b"])
    assert progress.resolution == Resolution(entered=True, entered_at=later, change="chg-1", change_linked_at=at,
                                             change_planned=True, change_title="Plan", change_state_seen="closed",
                                             change_done_noted=True)
    assert progress.maintenance == Maintenance(maintained=[0, 1], resolved_at=later, review_planned=True,
                                               review_tasks_planned=3, waiting_noted=[1])
    assert progress.closure == Closure(closed=True, closed_at=later)
    assert record.ownership == Ownership(
        owned={"stage": OwnedField(written="maintenance", ours=["identification", "maintenance"], before="resolution",
                                   landed=True, seen="maintenance", by="connector", at=at)},
        human={"assignee": "eve", "assignment_group": None}, human_at={"assignee": at})
    assert record.timeline == [TimelineEvent(at=at, by="human", event="assignee", value="eve"),
                               TimelineEvent(at=later, event="update", value=4)]
    assert record.timeline[1].at.utcoffset() == timedelta(hours=1), "times keep their offset"
    assert [e.to_dict() for e in record.timeline] == EVERY_KEY["timeline"], "and read back as they were written"


def test_an_empty_old_record_becomes_an_empty_process_state() -> None:
    record = MIRecord.from_json(record_v1_to_v2(old_record()))
    assert record.progress == Progress() and record.declaration == Declared() and record.timeline == []
    assert (record.id, record.key, record.children, record.status) == ("a", "INC1", ["b"], "closed")


def test_the_review_count_of_early_versions_is_the_number_planned() -> None:
    record = MIRecord.from_json(record_v1_to_v2(old_record(review_tasks=3)))
    assert record.progress.maintenance.review_tasks_planned == 3 and record.followup.review_tasks is None


def test_keys_no_version_wrote_are_left_behind() -> None:
    record = MIRecord.from_json(record_v1_to_v2(old_record(title="never written", review_tasks_done=1)))
    assert record == MIRecord.from_json(record_v1_to_v2(old_record()))


def test_a_record_that_does_not_fit_fails_the_upgrade_and_changes_nothing(state: Path) -> None:
    with sqlite3.connect(state) as db:
        db.execute("UPDATE major_incidents SET data = ? WHERE id = ?", (old_record(epoch="one"), NEXT["vpn"]))
    with sqlite3.connect(state) as db:
        before = db.execute("SELECT data FROM major_incidents ORDER BY id").fetchall()
    with pytest.raises(StateError, match=f"major incident {NEXT['vpn']} .* cannot be upgraded to schema 2"):
        StateStore(state, "servicenow")
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (1,)
        assert db.execute("SELECT data FROM major_incidents ORDER BY id").fetchall() == before


def test_the_fixture_holds_every_key_but_those_only_a_rebuilt_state_writes(state: Path) -> None:
    with sqlite3.connect(state) as db:
        keys = set().union(*(json.loads(data)["facts"] for (data,) in db.execute("SELECT data FROM major_incidents")))
    assert keys <= V1_KEYS and V1_KEYS - keys == {"adopted", "initial"}


# -- typed state: a misspelt name is an error, not a new key ---------------------------------------------------

def test_a_misspelt_field_is_refused_when_written() -> None:
    record = MIRecord(id="a", rule="r", group=[], started_at=datetime.fromisoformat(AT),
                      declared_at=datetime.fromisoformat(AT))
    with pytest.raises(ValueError, match="no field"):
        record.progress.containment.manger = "eve"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no field"):
        record.facts = {}  # type: ignore[attr-defined]


def test_a_misspelt_field_is_refused_when_read() -> None:
    data = json.loads(MIRecord(id="a", rule="r", group=[], started_at=datetime.fromisoformat(AT),
                               declared_at=datetime.fromisoformat(AT)).to_json())
    data["progress"]["comms"]["update_sent"] = 1
    with pytest.raises(ValueError, match="update_sent"):
        MIRecord.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="facts"):  # a schema 1 record is read only through the migration
        MIRecord.from_json(old_record())


def test_times_must_carry_their_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        TimelineEvent(at=datetime(2026, 3, 2, 10, 0), event="stage")


def test_a_record_reads_back_as_it_was_saved() -> None:
    record = MIRecord.from_json(record_v1_to_v2(old_record(**EVERY_KEY)))
    again = MIRecord.from_json(record.to_json())
    assert again == record and again.to_json() == record.to_json()
