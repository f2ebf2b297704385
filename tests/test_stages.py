"""The stage planner (pure): every stage transition, humans win, reopen, out of hours, calendar edge cases,
update cadence, rota, and that planning twice over the same state plans nothing new."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from connector.core.actions import Action, AddNote, CreateChange, CreateTask, Notify, ResolveChild, SetFields, SetStage
from connector.core.ticket import Ticket
from connector.detection.engine import Decisions, Declaration
from connector.detection.process_state import Declared, ReviewCounts
from connector.detection.rules import load_rules
from connector.job.store import MIRecord, StateStore
from connector.process.assignment import calendar_for, choose_assignment
from connector.process.context import ProcessContext
from connector.process.maintenance import business_days
from connector.process.planner import plan_process
from connector.process.processfile import ProcessFile, load_process

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules
SHIPPED, _errors = load_process(ROOT / "rules" / "process.yaml")
assert SHIPPED is not None and not _errors, _errors
UTC = timezone.utc
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 11:00 in Berlin: business hours
SUNDAY_03_BERLIN = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)  # Sunday 03:00 CET


def process_with(**changes: Any) -> ProcessFile:
    """The shipped process file with some sections replaced (validated like a loaded file)."""
    data = SHIPPED.model_dump(mode="json")
    data.update(changes)
    return ProcessFile.model_validate(data)


class World:
    """Tickets, registry and ledger in memory; actions are applied the way a platform would apply them
    (ServiceNow-like: a created change is linked to the incident)."""

    def __init__(self, store: StateStore, process: ProcessFile = SHIPPED, now: datetime = MONDAY_10) -> None:
        self.store = store
        self.process = process
        self.now = now
        self.tickets: dict[str, Ticket] = {}
        self.records: dict[str, MIRecord] = {}
        self.ledger: dict[str, Action] = {}
        self.notes: dict[str, list[str]] = {}
        self._declared: list[Declaration] = []
        self._seq = 0
        self.rota_start = 0

    def add(self, ident: str | None = None, opened_at: datetime | None = None, **fields: Any) -> Ticket:
        self._seq += 1
        ticket = Ticket(id=ident or f"t{self._seq}", key=f"INC{self._seq:04d}", opened_at=opened_at or self.now,
                        state="new", **fields)
        self.tickets[ticket.id] = ticket
        return ticket

    def declare(self, children: int = 4, service: str = "web-shop", mi_id: str | None = None,
                at: datetime | None = None) -> MIRecord:
        at = at or self.now
        parent = self.add(mi_id, opened_at=at - timedelta(minutes=10), service=service, title="Checkout fails",
                          caller="c0", priority=3)
        kids = [self.add(opened_at=at - timedelta(minutes=9 - i), service=service, caller=f"c{i + 1}", priority=3)
                for i in range(children)]
        record = MIRecord(id=parent.id, rule="service-surge", group=[service], started_at=parent.opened_at,
                          declared_at=at, key=parent.key, stage="identification", children=[k.id for k in kids],
                          declaration=Declared(first_opened_at=parent.opened_at, declared_at=at,
                                               triggered_by=[parent.id] + [k.id for k in kids], service=service))
        self.records[record.id] = record
        self._declared.append(Declaration(
            mi_id=parent.id, rule="service-surge", mode="propose", parent_mode="earliest", group_fields=("service",),
            group=(service,), detected_at=at, started_at=parent.opened_at, tickets=(parent, *kids), parent=parent,
            set_fields={}))
        # identification.py's own actions in the declaring cycle
        self.ledger[f"stage:{parent.id}:identification"] = SetStage(key=f"stage:{parent.id}:identification",
                                                                    target=parent.id, stage="identification")
        self.tickets[parent.id] = parent.model_copy(update={"stage": "identification", "major": "proposed"})
        for kid in kids:  # identification links them in the declaring cycle
            self.tickets[kid.id] = self.tickets[kid.id].model_copy(update={"parent": parent.id})
        return record

    def human(self, ident: str, **fields: Any) -> None:
        """An agent edits a ticket."""
        if fields.get("state") == "resolved" and "resolved_at" not in fields:
            fields["resolved_at"] = self.now
        self.tickets[ident] = self.tickets[ident].model_copy(update={**fields, "updated_at": self.now})

    def context(self) -> ProcessContext:
        for record in self.records.values():
            ticket = self.tickets.get(record.id)
            if ticket is None:
                continue
            record.status = ("open" if ticket.is_open else "closed" if ticket.state == "closed" else "resolved")
            if ticket.stage:
                record.stage = ticket.stage
        decisions = Decisions(declarations=list(self._declared))
        return ProcessContext(self.now, self.process, list(self.records.values()), dict(self.tickets),
                              declared=frozenset(d.mi_id for d in decisions.declarations), rota_start=self.rota_start)

    def plan(self) -> list[Action]:
        actions = plan_process(self.context())
        self._declared = []
        return actions

    def step(self, minutes: float = 0) -> list[Action]:
        """One cycle: plan, keep what the ledger has not seen, apply it; returns the new actions."""
        self.now += timedelta(minutes=minutes)
        new = [a for a in self.plan() if a.key not in self.ledger]
        for action in new:
            self.ledger[action.key] = action
            self._apply(action)
        return new

    def _apply(self, action: Action) -> None:
        target = action.target
        if isinstance(action, SetStage):
            self.human(target, stage=action.stage)
        elif isinstance(action, SetFields):
            self.human(target, **action.fields)
        elif isinstance(action, ResolveChild):
            self.human(target, state="resolved")
        elif isinstance(action, CreateChange):
            self.human(target, change=f"chg-{target}")
        elif isinstance(action, AddNote):
            self.notes.setdefault(target, []).append(action.text)


def keys(actions: list[Action]) -> list[str]:
    return [a.key for a in actions]


def only(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite", "servicenow") as s:
        yield s


@pytest.fixture()
def world(store: StateStore) -> World:
    return World(store)


# -- stage transitions ----------------------------------------------------------------------------------------


def test_declared_in_hours_is_contained_with_team_rota_manager_and_raised_priority(world: World) -> None:
    mi = world.declare()
    actions = world.step()
    assign = only(actions, SetFields)
    assert assign[0].key == f"assign:{mi.id}"
    assert assign[0].fields == {"assignment_group": "major-incident-team", "assignee": "alice.martin", "priority": 1}
    assert [a.stage for a in only(actions, SetStage)] == ["containment"]
    assert f"comms:{mi.id}:declared" in keys(actions)
    declared = next(a for a in actions if a.key == f"comms:{mi.id}:declared")
    assert "Manager: alice.martin" in declared.text and mi.key in declared.text
    assert mi.progress.containment.manager == "alice.martin" and mi.progress.containment.manager_source == "rota"
    assert world.tickets[mi.id].stage == "containment"


TRANSITIONS = [
    # (id, what the agent does, expected new stage, expected action kinds (in order, de-duplicated))
    ("change-linked-by-hand", {"change": "chg-by-agent"}, "resolution", ["set_stage"]),
    ("stage-set-to-resolution-by-hand", {"stage": "resolution"}, "resolution", ["create_change"]),
    ("resolved", {"state": "resolved"}, "maintenance",
     ["note", "resolve_child", "create_task", "set_stage"]),
    # review tasks are created and still open: the process waits in maintenance (and says so in a note)
    ("closed-without-resolving-first", {"state": "closed"}, "maintenance",
     ["note", "resolve_child", "create_task", "set_stage"]),
    ("canceled", {"state": "canceled"}, "closed", ["note", "set_stage"]),
]


@pytest.mark.parametrize("change, stage, kinds", [t[1:] for t in TRANSITIONS], ids=[t[0] for t in TRANSITIONS])
def test_stage_transition_from_containment(world: World, change: dict[str, Any], stage: str, kinds: list[str]) -> None:
    mi = world.declare()
    world.step()
    world.now += timedelta(minutes=5)
    world.human(mi.id, **change)
    actions = world.step()
    seen: list[str] = []
    for action in actions:
        if action.kind not in seen:
            seen.append(action.kind)
    assert sorted(seen) == sorted(kinds)
    assert world.tickets[mi.id].stage == stage
    assert world.step(minutes=1) == [], "a second cycle over the same state plans nothing new"


def test_resolution_by_hand_creates_the_change_from_the_template(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, stage="resolution")
    actions = world.step(minutes=3)
    change = only(actions, CreateChange)[0]
    assert change.key == f"change:{mi.id}"
    assert change.title == f"Resolution plan for {mi.key}: Checkout fails"
    assert change.description == f"Implements the resolution of major incident {mi.key} on web-shop."
    assert change.group == "major-incident-team" and change.change_type == "normal"
    assert not only(actions, SetStage), "the agent already set the stage"
    assert mi.progress.resolution.entered_at == world.now
    assert world.step(minutes=1) == []


def test_a_linked_change_enters_resolution_without_creating_another(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, change="chg-42")
    actions = world.step(minutes=2)
    assert keys(actions) == [f"stage:{mi.id}:resolution"]
    assert mi.progress.resolution.change == "chg-42" and mi.progress.resolution.change_linked_at == world.now


def test_maintenance_resolves_only_open_children_and_creates_review_tasks_with_business_day_dues(world: World) -> None:
    mi = world.declare(children=3)
    world.step()
    cascaded = mi.children[0]
    world.now = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)  # Friday 16:00 Berlin
    world.human(cascaded, state="resolved")  # the platform cascaded this one itself
    world.human(mi.id, state="resolved")
    actions = world.step()
    resolved = only(actions, ResolveChild)
    assert sorted(a.target for a in resolved) == sorted(mi.children[1:])
    assert all(a.key == f"resolve:{a.target}:{mi.id}" and a.parent == mi.id for a in resolved)
    tasks = only(actions, CreateTask)
    assert [t.key for t in tasks] == [f"task:{mi.id}:1", f"task:{mi.id}:2", f"task:{mi.id}:3"]
    # 3, 5 and 10 business days after Friday 16:00 Berlin, same wall time
    assert [t.due for t in tasks] == [datetime(2026, 3, 11, 15, 0, tzinfo=UTC), datetime(2026, 3, 13, 15, 0, tzinfo=UTC),
                                      datetime(2026, 3, 20, 15, 0, tzinfo=UTC)]
    assert tasks[0].owner == "alice.martin"
    assert tasks[1].owner == "alice.martin", "a task without owner goes to the major incident manager"
    metrics = next(a for a in actions if a.key == f"note:{mi.id}:metrics")
    assert "time to identify" in metrics.text and "estimated downtime cost" in metrics.text
    assert "250,000 USD per hour on web-shop" in metrics.text
    assert world.tickets[mi.id].stage == "maintenance"
    assert world.step(minutes=10) == []


def test_a_child_a_human_unlinked_is_not_resolved_with_the_major_incident(world: World) -> None:
    mi = world.declare(children=3)
    world.step()
    unlinked = mi.children[1]
    world.human(unlinked, parent=None)  # an agent decided this one is a different problem
    world.human(mi.id, state="resolved")
    resolved = only(world.step(minutes=30), ResolveChild)
    assert unlinked not in [a.target for a in resolved]
    assert len(resolved) == 2


def test_children_are_not_routed_out_of_hours_where_the_platform_has_no_assignment_group(store: StateStore) -> None:
    world = World(store, now=SUNDAY_03_BERLIN)
    world.declare(children=2)
    context = world.context()
    context.writable = frozenset({"assignee", "priority", "stage", "state"})
    actions = plan_process(context)
    assert not [a for a in actions if a.key.startswith("ooh:") or a.key.endswith(":ooh")]
    assign = next(a for a in actions if a.key.startswith("assign:"))
    assert "assignment_group" not in assign.fields and assign.fields["assignee"] == "oncall.duty"


def test_closed_writes_the_final_note_and_stops(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, state="resolved")
    world.step(minutes=30)
    mi.followup.review_tasks = ReviewCounts(done=3, total=3)  # read back by the sync cycle
    world.human(mi.id, state="closed")
    actions = world.step(minutes=60)
    assert keys(actions) == [f"note:{mi.id}:closed", f"comms:{mi.id}:closed", f"stage:{mi.id}:closed"]
    assert "is closed" in actions[0].text
    assert mi.progress.done is True
    world.human(mi.id, stage="maintenance")
    assert world.step(minutes=60) == [], "a closed major incident is finished: nothing is written again"


def test_rejected_major_incident_gets_no_process(world: World) -> None:
    mi = world.declare()
    world.human(mi.id, major="rejected")
    ctx = world.context()
    mi.status = "rejected"  # what the sync cycle's registry refresh makes of a rejected candidate
    assert plan_process(ctx) == []


# -- humans win -----------------------------------------------------------------------------------------------


def test_a_manager_changed_by_hand_is_recorded_and_never_overwritten(world: World) -> None:
    mi = world.declare()
    world.step()
    world.step(minutes=1)  # the connector sees its own assignment on the platform
    world.human(mi.id, assignee="dave.on.shift")
    assert world.step(minutes=2) == []
    assert mi.progress.containment.manager == "dave.on.shift" and mi.progress.containment.manager_source == "human"
    assert mi.ownership.human["assignee"] == "dave.on.shift"
    for _ in range(3):
        assert not only(world.step(minutes=40), SetFields)
    assert world.tickets[mi.id].assignee == "dave.on.shift"


def test_a_team_changed_by_hand_is_kept(world: World) -> None:
    mi = world.declare()
    world.step()
    world.step(minutes=1)
    world.human(mi.id, assignment_group="network-team")
    world.step(minutes=1)
    world.human(mi.id, state="resolved")
    world.step(minutes=1)
    assert world.tickets[mi.id].assignment_group == "network-team"
    assert mi.progress.containment.team == "network-team"


def test_a_write_not_yet_on_the_platform_is_not_mistaken_for_a_human(world: World) -> None:
    mi = world.declare()
    actions = world.plan()  # planned but the write has not reached the platform (failed, retried next cycle)
    assert only(actions, SetFields)
    world.now += timedelta(minutes=1)
    assert not only(world.plan(), SetFields)
    assert mi.ownership.human == {}


def test_a_reference_read_back_as_a_sys_id_is_not_a_human_change(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, assignee="6816f79cc0a8016401c5a33be04be441")  # ServiceNow shows assigned_to as a sys_id
    world.step(minutes=1)
    assert mi.ownership.human == {} and mi.progress.containment.manager == "alice.martin"
    world.human(mi.id, assignee="a-human-choice")
    world.step(minutes=1)
    assert mi.ownership.human["assignee"] == "a-human-choice"


def test_a_stage_moved_back_by_hand_is_not_overwritten_until_something_new_happens(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, change="chg-1")
    world.step(minutes=1)
    world.step(minutes=1)
    assert world.tickets[mi.id].stage == "resolution"
    world.human(mi.id, stage="containment")
    for _ in range(3):
        assert not only(world.step(minutes=10), SetStage)
    assert world.tickets[mi.id].stage == "containment"
    assert mi.ownership.human["stage"] == "containment"
    world.human(mi.id, state="resolved")
    world.step(minutes=10)
    assert world.tickets[mi.id].stage == "maintenance", "resolving the incident is new: the process moves on"


def test_a_stage_set_by_hand_before_the_connector_acts_wins(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, stage="maintenance")  # an agent jumps ahead while the incident is open
    assert not only(world.step(minutes=5), SetStage)
    assert world.tickets[mi.id].stage == "maintenance"


def test_a_human_assignment_counts_as_containment_when_there_is_nothing_to_assign(store: StateStore) -> None:
    world = World(store, process_with(team=None, managers={"rota": [], "on_call": []}))
    mi = world.declare()
    first = world.step()
    assert not only(first, SetFields) and not mi.progress.containment.contained
    world.human(mi.id, assignee="eve", assignment_group="ops")
    actions = world.step(minutes=3)
    assert keys(actions) == [f"stage:{mi.id}:containment"]
    assert mi.progress.containment.manager == "eve" and mi.progress.containment.manager_source == "human"


# -- reopen --------------------------------------------------------------------------------------------------


def test_a_reopened_incident_goes_back_to_resolution_and_is_maintained_again(world: World) -> None:
    mi = world.declare(children=2)
    world.step()
    world.human(mi.id, change="chg-1")
    world.step(minutes=5)
    world.human(mi.id, state="resolved")
    world.step(minutes=30)
    assert world.tickets[mi.id].stage == "maintenance"
    world.human(mi.id, state="in_progress", resolved_at=None)
    for child in mi.children:
        world.human(child, state="in_progress")
    actions = world.step(minutes=10)
    assert [k for k in keys(actions) if ":update:" not in k] == [f"stage:{mi.id}:resolution:r1"]
    assert mi.progress.epoch == 1 and mi.progress.maintenance.resolved_at is None
    world.human(mi.id, state="resolved")
    again = world.step(minutes=30)
    assert sorted(a.key for a in only(again, ResolveChild)) == sorted(f"resolve:{c}:{mi.id}:r1" for c in mi.children)
    assert not only(again, CreateTask), "review tasks are created once"
    assert f"note:{mi.id}:metrics:r1" in keys(again) and f"stage:{mi.id}:maintenance:r1" in keys(again)
    assert world.step(minutes=5) == []


def test_a_reopened_incident_without_a_change_goes_back_to_containment(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, state="resolved")
    world.step(minutes=5)
    world.human(mi.id, state="in_progress", resolved_at=None)
    assert [k for k in keys(world.step(minutes=5)) if ":update:" not in k] == [f"stage:{mi.id}:containment:r1"]


# -- out of hours, calendar ----------------------------------------------------------------------------------


CALENDAR_CASES = [
    # (id, declared at (UTC), manager, group, source)
    ("monday-11:00-berlin", datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "alice.martin", "major-incident-team", "rota"),
    ("sunday-03:00-berlin", SUNDAY_03_BERLIN, "oncall.duty", "service-desk-ooh", "on_call"),
    ("friday-18:00-berlin-closing-time", datetime(2026, 3, 6, 17, 0, tzinfo=UTC), "oncall.duty", "service-desk-ooh",
     "on_call"),
    ("friday-17:59-berlin", datetime(2026, 3, 6, 16, 59, tzinfo=UTC), "alice.martin", "major-incident-team", "rota"),
    # summer time from Sunday 29 March 2026: 06:30 UTC is 08:30 in Berlin (in hours), 05:30 UTC is 07:30 (not)
    ("after-spring-dst-08:30-local", datetime(2026, 3, 30, 6, 30, tzinfo=UTC), "alice.martin", "major-incident-team",
     "rota"),
    ("after-spring-dst-07:30-local", datetime(2026, 3, 30, 5, 30, tzinfo=UTC), "oncall.duty", "service-desk-ooh",
     "on_call"),
    ("before-spring-dst-07:30-utc-is-08:30-local", datetime(2026, 3, 27, 7, 30, tzinfo=UTC), "alice.martin",
     "major-incident-team", "rota"),
    # winter time again from Sunday 25 October 2026: 07:30 UTC is 08:30 local
    ("after-autumn-dst-08:30-local", datetime(2026, 10, 26, 7, 30, tzinfo=UTC), "alice.martin", "major-incident-team",
     "rota"),
    ("after-autumn-dst-06:30-utc-is-07:30-local", datetime(2026, 10, 26, 6, 30, tzinfo=UTC), "oncall.duty",
     "service-desk-ooh", "on_call"),
    # holidays: an explicit one (Christmas Eve, Thursday) and a German public one (Labour Day, Friday)
    ("christmas-eve-11:00", datetime(2026, 12, 24, 10, 0, tzinfo=UTC), "oncall.duty", "service-desk-ooh", "on_call"),
    ("labour-day-11:00", datetime(2026, 5, 1, 9, 0, tzinfo=UTC), "oncall.duty", "service-desk-ooh", "on_call"),
]


@pytest.mark.parametrize("at, manager, group, source", [c[1:] for c in CALENDAR_CASES], ids=[c[0] for c in CALENDAR_CASES])
def test_manager_in_and_out_of_hours(at: datetime, manager: str, group: str, source: str) -> None:
    assignment, position = choose_assignment(SHIPPED, calendar_for(SHIPPED), at, 0)
    assert (assignment.manager, assignment.group, assignment.source) == (manager, group, source)
    assert position == (1 if source == "rota" else 0), "the rota only turns when it is used"


def test_sunday_03_00_in_berlin_gets_the_on_call_manager(store: StateStore) -> None:
    world = World(store, now=SUNDAY_03_BERLIN)
    mi = world.declare()
    actions = world.step()
    assert only(actions, SetFields)[0].fields["assignee"] == "oncall.duty"
    assert "out of hours" in only(actions, SetFields)[0].reason
    assert mi.progress.containment.rota is None


def test_children_that_arrive_out_of_hours_are_routed_with_raised_urgency(store: StateStore) -> None:
    world = World(store, now=datetime(2026, 3, 6, 16, 30, tzinfo=UTC))  # Friday 17:30 Berlin
    mi = world.declare(children=1)
    world.step()
    world.now = datetime(2026, 3, 6, 17, 20, tzinfo=UTC)  # 18:20 Berlin: closed
    late = world.add(service="web-shop", urgency=3)
    already_urgent = world.add(service="web-shop", urgency=1)
    mi.children += [late.id, already_urgent.id]
    actions = world.step()
    routes = {a.target: a.fields for a in only(actions, SetFields)}
    assert routes == {late.id: {"assignment_group": "service-desk-ooh", "urgency": 1},
                      already_urgent.id: {"assignment_group": "service-desk-ooh"}}
    notes = [a for a in only(actions, AddNote) if a.target == late.id]
    assert notes and "out of hours" in notes[0].text
    assert "out of hours" in only(actions, SetFields)[0].reason and "Europe/Berlin" in only(actions, SetFields)[0].reason
    assert mi.children[0] not in routes, "a child that arrived in hours is left alone"
    assert world.step(minutes=5) == []


# -- communications cadence ------------------------------------------------------------------------------------


def test_updates_follow_the_cadence_and_only_the_latest_due_one_is_sent(world: World) -> None:
    mi = world.declare()
    world.step()
    assert not [k for k in keys(world.step(minutes=29)) if ":update:" in k]
    assert [k for k in keys(world.step(minutes=2)) if ":update:" in k] == [f"comms:{mi.id}:update:1"]
    assert [k for k in keys(world.step(minutes=30)) if ":update:" in k] == [f"comms:{mi.id}:update:2"]
    # the connector is down for two and a half hours: one update on return, not five
    assert [k for k in keys(world.step(minutes=150)) if ":update:" in k] == [f"comms:{mi.id}:update:7"]
    assert mi.progress.comms.updates_sent == 3
    update = world.ledger[f"comms:{mi.id}:update:7"]
    assert isinstance(update, AddNote) and "stage containment" in update.text and "3h" in update.text
    world.human(mi.id, state="resolved")
    assert not [k for k in keys(world.step(minutes=60)) if ":update:" in k], "no updates once resolved"


def test_messages_go_to_every_audience_and_webhook(store: StateStore) -> None:
    communications = SHIPPED.communications.model_dump(mode="json")
    communications["stakeholders"] = [{"name": "service-desk", "audience": "internal"},
                                      {"name": "customers", "audience": "public"},
                                      {"name": "ops-chat", "webhook": "ops", "format": "slack"}]
    world = World(store, process_with(communications=communications))
    mi = world.declare()
    actions = world.step()
    declared = [a for a in actions if a.key.startswith(f"comms:{mi.id}:declared")]
    assert [(a.key, type(a).__name__) for a in declared] == [
        (f"comms:{mi.id}:declared", "AddNote"), (f"comms:{mi.id}:declared:public", "AddNote"),
        (f"comms:{mi.id}:declared:hook:ops-chat", "Notify")]
    assert [a.internal for a in declared[:2]] == [True, False]
    hook = declared[2]
    assert isinstance(hook, Notify) and hook.channel == "ops" and hook.url == "webhook:ops"
    assert hook.payload == {"text": declared[0].text}


# -- rota ------------------------------------------------------------------------------------------------------


def test_the_rota_turns_across_incidents_skipping_the_unavailable(store: StateStore) -> None:
    managers = SHIPPED.managers.model_dump(mode="json")
    managers["rota"][1]["available"] = False
    world = World(store, process_with(managers=managers))
    picked = []
    for n in range(4):
        mi = world.declare(service=f"svc-{n}")
        world.step(minutes=1)
        picked.append(mi.progress.containment.manager)
    assert picked == ["alice.martin", "carla.rossi", "alice.martin", "carla.rossi"]


def test_the_rota_position_is_not_advanced_by_planning_again(world: World) -> None:
    first = world.declare(service="a")
    world.plan()
    world.plan()
    second = world.declare(service="b")
    world.step()
    assert (first.progress.containment.manager, second.progress.containment.manager) == ("alice.martin", "bob.schneider")


def test_the_rota_start_seeds_the_first_assignment(world: World) -> None:
    world.rota_start = 2
    mi = world.declare()
    world.step()
    assert mi.progress.containment.manager == "carla.rossi"


# -- idempotency, purity, rebuild ------------------------------------------------------------------------------


def story(world: World) -> Iterator[str]:
    """The whole life of a major incident, yielding after each cycle."""
    mi = world.declare(children=3)
    world.step()
    yield "declared"
    world.human(mi.id, stage="resolution")
    world.step(minutes=40)
    yield "resolution"
    world.human(mi.id, state="resolved")
    world.step(minutes=20)
    yield "maintenance"
    world.human(mi.id, state="closed")
    world.step(minutes=60)
    yield "closed"


def test_a_second_planning_pass_over_the_same_state_plans_no_new_key(world: World) -> None:
    for step in story(world):
        again = world.plan()
        assert [k for k in keys(again) if k not in world.ledger] == [], step


def test_planning_is_deterministic_and_writes_nothing_to_the_store(store: StateStore) -> None:
    world = World(store)
    world.declare()
    twin = World(store)
    twin.records, twin.tickets, twin._declared = copy.deepcopy((world.records, world.tickets, world._declared))
    first, second = world.plan(), twin.plan()
    assert [a.to_dict() for a in first] == [a.to_dict() for a in second]
    assert store.ledger_rows() == [] and store.counter("rota_position") is None and store.major_incidents() == []


def test_a_rebuilt_state_adopts_the_platform_stage_and_redoes_nothing(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, change="chg-1")
    world.step(minutes=5)
    # the state file is lost: the registry is rebuilt from the platform's marker, with no process state
    rebuilt = MIRecord(id=mi.id, rule=mi.rule, group=mi.group, started_at=mi.started_at, declared_at=mi.declared_at,
                       key=mi.key, children=list(mi.children))
    world.records = {mi.id: rebuilt}
    world.ledger.clear()
    assert world.step(minutes=5) == []
    assert rebuilt.progress.adopted == "resolution" and rebuilt.progress.containment.manager == "alice.martin"
    world.human(mi.id, state="resolved")
    assert f"stage:{mi.id}:maintenance" in keys(world.step(minutes=5))


def test_a_new_parent_is_planned_on_its_synthetic_id_and_keeps_its_keys_after_creation(world: World) -> None:
    mi = world.declare()
    synthetic = "new-abc123"
    real = world.tickets.pop(mi.id)
    world.records = {synthetic: MIRecord(id=synthetic, rule=mi.rule, group=mi.group, started_at=mi.started_at,
                                         declared_at=mi.declared_at, synthetic_id=synthetic, children=mi.children,
                                         declaration=mi.declaration.model_copy(deep=True))}
    world._declared = [Declaration(mi_id=synthetic, rule=mi.rule, mode="propose", parent_mode="new",
                                   group_fields=("service",), group=("web-shop",), detected_at=world.now,
                                   started_at=mi.started_at, tickets=(), parent=None, set_fields={})]
    first = world.plan()
    assert f"assign:{synthetic}" in keys(first) and all(a.target == synthetic for a in first)
    for action in first:
        world.ledger[action.key] = action
    # the platform created it: the sync cycle re-keys the record to the real id
    record = world.records.pop(synthetic)
    record.id = real.id
    world.records[real.id] = record
    world.tickets[real.id] = real.model_copy(update={"stage": "containment", "assignment_group": "major-incident-team",
                                                     "assignee": "alice.martin", "marker": f"mim:service-surge:{synthetic}"})
    again = world.plan()
    # only the announcement, which waited for the real record (and its number) to exist
    assert not [k for k in keys(first) if k.startswith("comms:")]
    fresh = [k for k in keys(again) if k not in world.ledger]
    assert fresh and all(k.startswith(f"comms:{synthetic}:declared") for k in fresh)
    assert all(synthetic not in getattr(a, "text", "") for a in again)
    for action in again:
        world.ledger[action.key] = action
    assert [k for k in keys(world.plan()) if k not in world.ledger] == []


def test_review_due_counts_whole_business_days() -> None:
    assert [business_days(timedelta(days=d)) for d in (0, 1, 5)] == [0, 1, 5]
    assert business_days(timedelta(hours=36)) == 2


# -- following the change and the review tasks (read back by the sync cycle) ------------------------------------


def duties(actions: list[Action]) -> list[str]:
    """Action keys other than the periodic update messages."""
    return [k for k in keys(actions) if not k.startswith("comms:")]


def follow(record: MIRecord, change: str | None = None, done: int | None = None, total: int = 3,
           open_tasks: list[str] | None = None) -> None:
    """What the sync cycle keeps after ``fetch_followups`` (:func:`~connector.detection.registry.record_followups`)."""
    if change is not None:
        record.followup.change_state = change
    if done is not None:
        record.followup.review_tasks = ReviewCounts(done=done, total=total)
        record.followup.review_open = open_tasks if open_tasks is not None else [f"TASK{n}" for n in range(done, total)]


def test_closed_waits_for_the_review_tasks_and_says_so_once(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, state="resolved")
    assert len(only(world.step(minutes=30), CreateTask)) == 3
    follow(mi, done=1)
    world.human(mi.id, state="closed")
    waiting = world.step(minutes=60)
    assert keys(waiting) == [f"note:{mi.id}:waiting"]
    assert "waiting for 2 review tasks: TASK1, TASK2" in waiting[0].text
    assert world.tickets[mi.id].stage == "maintenance" and not mi.progress.done
    assert [k for k in keys(world.plan()) if k not in world.ledger] == [], "a second pass plans nothing new"
    assert world.step(minutes=30) == [], "the waiting note is written once"
    follow(mi, done=2)
    assert world.step(minutes=30) == [], "one task still open"
    follow(mi, done=3)
    closed = world.step(minutes=30)
    assert keys(closed) == [f"note:{mi.id}:closed", f"comms:{mi.id}:closed", f"stage:{mi.id}:closed"]
    assert "review tasks done 3/3" in closed[0].text
    assert world.tickets[mi.id].stage == "closed" and mi.progress.done is True
    assert [e.value for e in mi.timeline if e.event == "waiting_for_reviews"] == [2]


def test_review_tasks_not_read_back_yet_are_not_done(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, state="resolved")
    world.step(minutes=30)
    follow(mi, done=0, total=0)  # read back before the tasks were created
    world.human(mi.id, state="closed")
    actions = world.step(minutes=60)
    assert keys(actions) == [f"note:{mi.id}:waiting"] and "waiting for 3 review tasks" in actions[0].text
    follow(mi, done=2, total=2)  # one of the three not seen yet: not known done
    assert world.step(minutes=30) == []
    follow(mi, done=3, total=3)
    assert f"stage:{mi.id}:closed" in keys(world.step(minutes=30))


def test_without_review_tasks_closing_the_incident_closes_the_process(store: StateStore) -> None:
    world = World(store, process_with(review={"tasks": []}))
    mi = world.declare()
    world.step()
    world.human(mi.id, state="closed")
    actions = world.step(minutes=30)
    assert f"stage:{mi.id}:closed" in keys(actions) and f"note:{mi.id}:waiting" not in keys(actions)
    assert mi.progress.done is True


def test_change_states_are_timeline_events_and_a_done_change_is_noted_once(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, stage="resolution")
    world.step(minutes=3)
    follow(mi, change="new")
    assert duties(world.step(minutes=15)) == [], "a new change is only an event"
    follow(mi, change="in_progress")
    assert duties(world.step(minutes=15)) == []
    follow(mi, change="resolved")
    mi.followup.change_key = "CHG0001"
    noted = world.step(minutes=15)
    assert duties(noted) == [f"note:{mi.id}:change_done"]
    assert "The change CHG0001" in noted[0].text and "is resolved" in noted[0].text
    follow(mi, change="closed")
    assert duties(world.step(minutes=15)) == [], "noted once, not again when it closes"
    again = world.plan()
    assert [k for k in keys(again) if k not in world.ledger] == []
    events = [(e.value, e.by) for e in mi.timeline if e.event == "change_state"]
    assert events == [("new", "platform"), ("in_progress", "platform"), ("resolved", "platform"),
                      ("closed", "platform")]


def test_a_change_done_after_the_incident_is_resolved_is_an_event_but_no_note(world: World) -> None:
    mi = world.declare()
    world.step()
    world.human(mi.id, stage="resolution")
    world.step(minutes=3)
    world.human(mi.id, state="resolved")
    world.step(minutes=30)
    follow(mi, change="closed")
    assert duties(world.step(minutes=15)) == []
    assert [e.value for e in mi.timeline if e.event == "change_state"] == ["closed"]


def test_following_is_idempotent_across_the_whole_story(world: World) -> None:
    mi = world.declare(children=2)
    world.step()
    world.human(mi.id, stage="resolution")
    world.step(minutes=10)
    for change_state, done in (("in_progress", None), ("resolved", None), ("closed", 0)):
        follow(mi, change=change_state, done=done)
        world.step(minutes=15)
        assert [k for k in keys(world.plan()) if k not in world.ledger] == [], change_state
    world.human(mi.id, state="resolved")
    world.step(minutes=15)
    world.human(mi.id, state="closed")
    for done in (0, 1, 3):
        follow(mi, done=done)
        world.step(minutes=15)
        assert [k for k in keys(world.plan()) if k not in world.ledger] == [], done
    assert world.tickets[mi.id].stage == "closed"
