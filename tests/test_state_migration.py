"""A state file written by an earlier version keeps working: ``tests/fixtures/state-v1/`` holds a real state
(schema 1, records with a ``facts`` dict) made by the code from before the process state was typed
(``make_state_v1.py``), with what that code reported and planned from it. Opened by this version, the state is
migrated, reports the same, and the cycles that follow plan what the old code planned: nothing a minute later,
then the same update messages."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.core.actions import ActionKey
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.store import SCHEMA_VERSION, StateStore
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
    assert render_json(data) + "\n" == (FIXTURE / "report.json").read_text(encoding="utf-8")
    assert render_table(data) + "\n" == (FIXTURE / "report.txt").read_text(encoding="utf-8")


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
