"""The major incident process as a pure planner: stages, their duties, and what humans changed.

``identification -> containment -> resolution -> maintenance -> closed``

| stage          | entered when                                              | duties planned                                        |
|----------------|-----------------------------------------------------------|-------------------------------------------------------|
| identification | declared (identification.py writes the stage and note)    | ``declared`` message                                  |
| containment    | team and manager assigned, by us or by a human            | team group, manager (rota or on call), priority       |
| resolution     | a change is linked, or a human sets the stage             | a change from the template when none is linked        |
| maintenance    | the major incident is resolved                            | open children resolved, review tasks, metrics note, ``resolved`` message |
| closed         | the major incident is closed and its review tasks are done | final note, ``closed`` message |

The change and the review tasks are read back by the sync cycle (``Platform.fetch_followups``, when due)
into the record's :class:`~connector.detection.process_state.FollowUp` (change state, review tasks done/total,
those still open); the planner only reads them. A closed incident whose review tasks are still open stays in maintenance (noted once, with
the tasks that remain). Every change state seen is a timeline event; a change resolved or closed while the
incident is in resolution is noted on the incident once.

While the incident is open an ``update`` message is due every ``communications.update_every`` after
declaration; only the latest due one is sent, so a connector that was down does not flood anyone.
Children of an open major incident that arrived out of hours are routed to the out-of-hours group with
raised urgency and a note.

**Pure.** Time is ``ctx.now``; nothing here sends, logs, reads a clock or the state store: the sync cycle
hands in the records, the latest known tickets (children of long-running incidents included, from its cache)
and where the rota starts. What the planner decided is kept in the record's typed process state
(``progress``, ``ownership``, ``timeline``: :mod:`connector.detection.process_state`), which the sync cycle
saves in the same transaction that records the planned actions in the ledger, so a decision and its writes
persist together (and a dry run persists neither).

**Idempotent.** Every action key is deterministic (``assign:<mi>``, ``stage:<mi>:containment``,
``change:<mi>``, ``task:<mi>:<n>``, ``resolve:<child>:<mi>``, ``comms:<mi>:declared``,
``comms:<mi>:update:<n>``...); after a reopen, keys of repeated duties carry ``:r<n>``. A duty is planned
once: a second pass over the same state plans nothing new.

**Humans win.** For the stage, the assignment group and the assignee, the planner remembers what it wrote
and the value it last saw. A different value on the platform is a human's: it is recorded (timeline, the
manager shown in reports) and never written over. The stage still moves on when something *new* happens
after the human's edit (the incident is resolved, closed or reopened). A rebuilt state (lost state file)
adopts the stage found on the platform and does not redo the duties of the stages already passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from connector.core.actions import (
    Action,
    ActionKey,
    AddNote,
    CreateChange,
    CreateTask,
    ResolveChild,
    SetFields,
    SetStage,
)
from connector.core.durations import format_duration
from connector.core.templating import TemplateError, render
from connector.core.ticket import OPEN_STATES, Ticket
from connector.detection.process_state import InitialAssignment, OwnedField, RotaTurn, StageEvents, TimelineEvent
from connector.detection.registry import MIRecord
from connector.process import messages, metrics
from connector.process.calendar import BusinessCalendar
from connector.process.context import ProcessContext
from connector.process.processfile import ProcessFile
from connector.process.rota import RotaMember, WeeklyOnCall, pick_round_robin

STAGES = ("identification", "containment", "resolution", "maintenance", "closed")
RANK = {stage: i for i, stage in enumerate(STAGES)}
ENDED_STATES = frozenset({"resolved", "closed", "canceled"})
"""Store counter read as the rota's starting position before any rota assignment is recorded."""


def calendar_for(process: ProcessFile) -> BusinessCalendar:
    """The business calendar of the process file."""
    hours = process.business_hours
    return BusinessCalendar(time_zone=hours.time_zone, days=tuple(hours.days), start=hours.start, end=hours.end,
                            holidays=tuple(hours.holidays), country=hours.country, subdivision=hours.subdivision)


@dataclass(frozen=True)
class Assignment:
    """Who takes the major incident: a group, a manager, and where the manager came from."""

    group: str | None
    manager: str | None
    source: str  # rota | on_call | none


def on_call_at(process: ProcessFile, at: datetime) -> tuple[str, str | None] | None:
    """``(person, group)`` on call at ``at`` (local days and times of the process file), or None."""
    entries = process.managers.on_call
    if not entries:
        return None
    weekly = WeeklyOnCall(process.business_hours.time_zone,
                          [(day, e.start, e.end, e.person) for e in entries for day in e.days])
    found = weekly.entry_at(at)
    if found is None:
        return None
    for entry in entries:
        if entry.person == found.person and entry.start == found.start and entry.end == found.end:
            return entry.person, entry.group
    return found.person, None


def choose_assignment(process: ProcessFile, calendar: BusinessCalendar, at: datetime,
                      position: int) -> tuple[Assignment, int]:
    """The team and manager for a major incident declared at ``at``, and the rota position after it.

    In business hours: the team group and the next available manager of the rota (round robin from
    ``position``). Out of hours: the on-call person and their group (the team group if the shift has none);
    when no shift covers the moment (a holiday afternoon, say) the first on-call entry stands in, and the rota
    only when there is no on-call list at all.
    """
    team = process.team.group if process.team else None
    if not calendar.is_business_time(at):
        on_call = on_call_at(process, at)
        if on_call is None and process.managers.on_call:
            first = process.managers.on_call[0]
            on_call = (first.person, first.group)
        if on_call is not None:
            return Assignment(on_call[1] or team, on_call[0], "on_call"), position
    people = [RotaMember(p.id, p.name or p.id, p.available) for p in process.managers.rota]
    person, after = pick_round_robin(people, position) if people else (None, position)
    return Assignment(team, person.id if person else None, "rota" if person else "none"), after


def business_days(due: timedelta) -> int:
    """Whole business days of a review task's ``due`` (``5d`` -> 5; ``36h`` -> 2, rounded up)."""
    seconds = due.total_seconds()
    return max(0, int(-(-seconds // 86400)))


@dataclass
class _Pass:
    """State shared by one planning pass over every record (the running rota position)."""

    ctx: ProcessContext
    calendar: BusinessCalendar
    position: int
    sequence: int
    declared_now: frozenset[str]

    def tickets(self, ids: Iterable[str]) -> dict[str, Ticket]:
        """Latest known tickets (the cycle hands every open incident's tickets in; the planner reads nothing)."""
        return {i: self.ctx.tickets[i] for i in ids if i and i in self.ctx.tickets}


def rota_position(records: Iterable[MIRecord], counter: Any) -> tuple[int, int]:
    """``(position, sequence)`` of the rota: where the latest rota assignment left it, else the store counter.

    Each rota assignment records its sequence number and the position after it in the record
    (:class:`~connector.detection.process_state.RotaTurn`), which the sync cycle saves together with the planned
    assignment: the position advances exactly when an assignment is planned, and a pass that is not persisted
    (a dry run, a crash) does not move it.
    """
    turns = [r.progress.containment.rota for r in records if r.progress.containment.rota is not None]
    latest = max(turns, key=lambda turn: turn.seq, default=None)
    if latest is None or not latest.seq:
        return int(counter or 0), 0
    return latest.next, latest.seq


def plan_process(ctx: ProcessContext) -> list[Action]:
    """Process planner for the sync cycle: every duty due this cycle for every tracked major incident."""
    records = sorted(ctx.records, key=lambda r: (r.declared_at, r.id))
    run = _Pass(ctx, calendar_for(ctx.process), *rota_position(records, ctx.rota_start),
                ctx.declared)
    actions: list[Action] = []
    for record in records:
        if record.status == "rejected" or record.progress.done:
            continue  # finished: not even a cache read
        actions += _RecordPlan(run, record).plan()
    return actions


class _RecordPlan:
    """The duties of one major incident in one cycle."""

    def __init__(self, run: _Pass, record: MIRecord) -> None:
        self.run = run
        self.ctx = run.ctx
        self.process = run.ctx.process
        self.record = record
        self.progress = record.progress
        self.now = run.ctx.now
        self.mid = record.synthetic_id or record.id
        self.target = record.id
        self.ticket = run.tickets([record.id]).get(record.id)
        self.actions: list[Action] = []

    # -- helpers ---------------------------------------------------------------------------------------

    def _value(self, name: str) -> Any:
        return getattr(self.ticket, name) if self.ticket is not None else None

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    def _event(self, event: str, value: str | int | None = None, by: str = "connector") -> None:
        self.record.timeline.append(TimelineEvent(at=self.now, event=event, value=value, by=by))

    def values(self, stage: str | None = None) -> dict[str, object]:
        """The named values a message template may use."""
        record, progress = self.record, self.progress
        change = self._value("change") or progress.resolution.change
        since = self.now - record.declared_at
        triggered = record.declaration.triggered_by
        labels = self.run.tickets(triggered[:10])
        shown = [labels[i].label if i in labels else i for i in triggered[:10]]
        m = metrics.compute(record, self.process, self.now)
        return {
            "key": record.key or self._value("key") or record.id,
            "title": self._value("title") or f"{record.rule} on {', '.join(record.group)}",
            "rule": record.rule,
            "stage": stage or record.stage or "identification",
            "service": record.declaration.service or self._value("service") or "",
            "group": ", ".join(str(g) for g in record.group),
            "children": len(record.children),
            "manager": progress.containment.manager or "unassigned",
            "team": progress.containment.team or "",
            "declared_at": f"{record.declared_at:%Y-%m-%d %H:%M} UTC",
            "since_declared": format_duration(timedelta(minutes=int(max(since, timedelta(0)).total_seconds() // 60)))
                              if since >= timedelta(minutes=1) else "0m",
            "url": self._value("url") or "",
            "triggered_by": ", ".join(shown) + (f" and {len(triggered) - 10} more" if len(triggered) > 10 else ""),
            "resolution": self._resolution_text(),
            "change": change or "none",
            "updates_sent": progress.comms.updates_sent,
            "impact_minutes": metrics.impact_minutes(record, self.now),
            "cost": metrics.money(m.estimated_cost, m.currency),
        }

    def _resolution_text(self) -> str:
        resolved = self.progress.maintenance.resolved_at
        if resolved is None:
            return "not resolved yet"
        text = f"resolved at {resolved:%Y-%m-%d %H:%M} UTC"
        # the change's own id is opaque (a sys_id); the title we gave it is what people recognise
        title = self.progress.resolution.change_title
        return text + (f" (resolution plan: {title})" if title else "")

    def _message(self, kind: str, key: ActionKey, stage: str | None = None) -> None:
        self.actions += messages.message_actions(self.process, kind, key, self.target, self.values(stage),
                                              rule=self.record.rule)

    # -- ownership of fields (humans win) -----------------------------------------------------------------

    def _wrote(self, name: str, value: str | None, before: str | None) -> None:
        owned = self.record.ownership.owned
        ours = list(owned[name].ours) if name in owned else []
        owned[name] = OwnedField(written=value, ours=ours + [value], before=before, landed=False, seen=None,
                                 by="connector", at=self.now)

    def _observe(self, name: str, current: str | None) -> bool:
        """Track ``name`` against what we wrote; True when a human changed it (recorded, never overwritten).

        Until our write shows on the platform, the old value (or an earlier value of ours) means "not there
        yet". A reference field may come back spelled the platform's way (a user name written, a sys_id
        read), so the first other value seen is taken as ours; stage values are canonical, so for the stage
        any value we never wrote is a human's.
        """
        ownership = self.record.ownership
        owned = ownership.owned.get(name)
        if owned is None or self.ticket is None:
            return False
        if not owned.landed:
            if current == owned.written:
                owned.landed, owned.seen = True, current
                return False
            if current == owned.before or current in owned.ours:
                return False
            if name != "stage":
                owned.landed, owned.seen = True, current
                return False
        elif current == owned.seen or (current == owned.written and owned.by == "connector"):
            owned.seen = current
            return False
        owned.landed, owned.seen, owned.by, owned.at = True, current, "human", self.now
        ownership.human[name] = current
        ownership.human_at[name] = self.now
        self._event(name, current, by="human")
        return True

    # -- the stages ---------------------------------------------------------------------------------------

    def plan(self) -> list[Action]:
        if not self.progress.started:
            self._first_sight()
        self._observe_platform()
        state = self._value("state") or "new"
        if state in OPEN_STATES:
            self._identification()
            self._containment()
            self._out_of_hours_children()
            self._resolution()
        elif state == "resolved":
            self._containment_by_human_only()
            self._maintenance()
        else:
            self._maintenance(canceled=state == "canceled")
            if self.review_done():
                self._closed()
            else:
                self._waiting_for_reviews()
        self._follow_change(state)
        self._write_stage()
        if state in OPEN_STATES:
            self._update_message()
        if self.progress.closure.closed:
            self.progress.done = True
        return self.actions

    def _first_sight(self) -> None:
        """Start tracking; a record the planner never saw before that already has a stage on the platform
        (a rebuilt state, an upgrade) adopts it instead of redoing the duties of the stages passed."""
        progress = self.progress
        progress.started = True
        if self.record.id in self.run.declared_now or self.mid in self.run.declared_now:
            # identification.py writes the stage and the declaration note in this very cycle
            self._wrote("stage", "identification", self._value("stage"))
            progress.stage_keys = [ActionKey.stage(self.mid, "identification")]
            progress.stage_events = StageEvents(identification=self.record.declared_at)
            self._event("stage", "identification")
            return
        stage = self._value("stage")
        if stage not in RANK:
            return
        progress.adopted = stage
        self._adopt("stage", stage, by="platform")
        progress.stage_keys = [ActionKey.stage(self.mid, s) for s in STAGES[:RANK[stage] + 1]]
        rank = RANK[stage]
        progress.comms.declared_sent = True
        every = self.process.communications.update_every
        if every:
            progress.comms.last_update = int((self.now - self.record.declared_at) / every)
        if rank >= RANK["containment"]:
            containment = progress.containment
            containment.contained = True
            if containment.manager is None:
                containment.manager = self._value("assignee")
            if containment.team is None:
                containment.team = self._value("assignment_group")
            containment.manager_source = "platform"
        if rank >= RANK["resolution"]:
            progress.resolution.entered = True
            progress.resolution.change_planned = True
        if rank >= RANK["maintenance"]:
            progress.maintenance.maintained = [0]
            progress.maintenance.review_planned = True
            progress.seen_state = self._value("state")
        if rank >= RANK["closed"]:
            progress.closure.closed = True

    def _observe_platform(self) -> None:
        """Reopen, human edits of the stage, team and manager, and a change linked on the platform."""
        progress, ticket = self.progress, self.ticket
        if ticket is None:
            return
        state = ticket.state
        previous = progress.seen_state
        if previous in ENDED_STATES and state in OPEN_STATES:
            progress.epoch = self.epoch + 1
            progress.reopened_at = self.now
            progress.maintenance.resolved_at = None
            progress.closure.closed = False
            progress.closure.closed_at = None
            self._event("reopened", state)
        progress.seen_state = state
        if self._observe("stage", ticket.stage):
            progress.stage_human_at = self.now
        elif ticket.stage and "stage" not in self.record.ownership.owned:
            # a stage set while the planner never wrote one: a human's
            self._adopt("stage", ticket.stage, by="human")
            progress.stage_human_at = self.now
            self._event("stage", ticket.stage, by="human")
        containment, resolution = progress.containment, progress.resolution
        for name in ("assignment_group", "assignee"):
            if self._observe(name, getattr(ticket, name)):
                if name == "assignee":
                    containment.manager = ticket.assignee
                    containment.manager_source = "human"
                else:
                    containment.team = ticket.assignment_group
        if ticket.change and ticket.change != resolution.change:
            resolution.change = ticket.change
            if resolution.change_linked_at is None:
                resolution.change_linked_at = self.now
            self._event("change_linked", ticket.change)
        if ticket.change and self.ctx.tickets.get(ticket.change) is not None:
            # the platform exposes the change as a ticket: follow its state
            self.record.followup.change_state = self.ctx.tickets[ticket.change].state

    def _adopt(self, name: str, value: str | None, by: str) -> None:
        self.record.ownership.owned[name] = OwnedField(written=value, ours=[], before=value, landed=True, seen=value,
                                                       by=by, at=self.now)

    def _identification(self) -> None:
        """The ``declared`` message, once (after the team and manager are chosen, so it can name them)."""
        if self.progress.comms.declared_sent:
            return
        self._containment()
        if self.target.startswith("new-"):
            return  # a parent still to be created has no number to announce yet: next cycle
        self.progress.comms.declared_sent = True
        self._message("declared", ActionKey.comms(self.mid, "declared"), stage="identification")

    def _containment(self) -> None:
        containment = self.progress.containment
        if containment.contained:
            return
        ticket = self.ticket
        human = self.record.ownership.human
        if "assignee" in human or "assignment_group" in human:
            self._contained("human")
            return
        process = self.process
        assignment, after = choose_assignment(process, self.run.calendar, self.record.declared_at, self.run.position)
        fields: dict[str, Any] = {}
        if assignment.group:
            fields["assignment_group"] = assignment.group
        if assignment.manager:
            fields["assignee"] = assignment.manager
        raise_to = process.team.raise_priority if process.team else None
        current_priority = self._value("priority")
        if raise_to is not None and (current_priority is None or current_priority > raise_to):
            fields["priority"] = raise_to
        fields = {name: value for name, value in fields.items() if name in self.ctx.writable}
        if not fields.keys() & {"assignment_group", "assignee"}:
            # nothing to assign from the process file: containment waits for a human to assign
            if containment.initial is None:
                containment.initial = InitialAssignment(assignment_group=self._value("assignment_group"),
                                                        assignee=self._value("assignee"))
            initial = containment.initial
            if ticket is not None and (ticket.assignee != initial.assignee
                                       or ticket.assignment_group != initial.assignment_group):
                containment.manager = ticket.assignee
                containment.team = ticket.assignment_group
                containment.manager_source = "human"
                self._contained("human")
            return
        if assignment.source == "rota":
            self.run.position = after
            self.run.sequence += 1
            containment.rota = RotaTurn(seq=self.run.sequence, next=after)
        containment.manager = assignment.manager
        containment.manager_source = assignment.source
        containment.team = assignment.group
        for name in ("assignment_group", "assignee"):
            if name in fields:
                self._wrote(name, fields[name], self._value(name))
        why = ("out of hours: on-call manager" if assignment.source == "on_call" else
               "round-robin rota" if assignment.source == "rota" else "team")
        self.actions.append(SetFields(key=ActionKey.assign(self.mid), target=self.target, rule=self.record.rule,
                                      reason=f"containment: major incident team and manager ({why})", fields=fields))
        self._contained("connector")

    def _containment_by_human_only(self) -> None:
        """An incident resolved before the connector assigned anyone is not assigned after the fact."""
        if not self.progress.containment.contained and self.record.ownership.human:
            self._contained("human")

    def _contained(self, by: str) -> None:
        containment = self.progress.containment
        containment.contained = True
        containment.contained_at = self.now
        self.progress.stage_events.containment = self.now
        self._event("contained", containment.manager, by=by)

    def _out_of_hours_children(self) -> None:
        ooh = self.process.out_of_hours
        if ooh is None or not self.record.children:
            return
        checked = self.progress.containment.ooh_checked
        routed = self.progress.containment.ooh_routed
        pending = [c for c in self.record.children if c not in checked and c != self.record.id]
        if not pending:
            return
        children = self.run.tickets(pending)
        values: dict[str, object] | None = None
        for child_id in pending:
            child = children.get(child_id)
            if child is None:
                continue  # not seen yet; checked when it is
            checked.append(child_id)
            if not child.is_open or self.run.calendar.is_business_time(child.opened_at):
                continue
            if "assignment_group" not in self.ctx.writable:
                continue  # the platform has no assignment group to route to (Jira): nothing to write or say
            fields: dict[str, Any] = {"assignment_group": ooh.group}
            if ooh.urgency is not None and "urgency" in self.ctx.writable and (child.urgency is None or child.urgency > ooh.urgency):
                fields["urgency"] = ooh.urgency
            if values is None:
                values = messages.template_values(self.values())
            try:
                text = render(ooh.note, values)
            except TemplateError:
                text = f"Arrived out of hours: routed to {ooh.group} with raised urgency."
            local = child.opened_at.astimezone(self.run.calendar.zone)
            reason = f"arrived out of hours ({local:%a %H:%M} {self.process.business_hours.time_zone})"
            self.actions.append(SetFields(key=ActionKey.ooh(child_id, self.mid), target=child_id, rule=self.record.rule,
                                          reason=reason, fields=fields))
            self.actions.append(AddNote(key=ActionKey.ooh_note(child_id), target=child_id, rule=self.record.rule,
                                        reason=reason, text=text))
            routed.append(child_id)

    def _resolution(self) -> None:
        resolution = self.progress.resolution
        stage = self.record.ownership.owned.get("stage")
        ours = stage.ours if stage is not None else []
        human_stage = self._value("stage") == "resolution" and "resolution" not in ours
        if not resolution.entered:
            if not (self._value("change") or resolution.change or human_stage):
                return
            resolution.entered = True
            resolution.entered_at = self.now
            self.progress.stage_events.resolution = self.now
            self._event("resolution", "change linked" if (self._value("change") or resolution.change) else "stage set",
                        by="connector" if self._value("change") else "human")
        if resolution.change_planned or self._value("change") or resolution.change:
            return
        resolution.change_planned = True
        template = self.process.change
        values = messages.template_values(self.values("resolution"))
        try:
            title, description = render(template.title, values), render(template.description, values)
        except TemplateError:
            title = f"Resolution plan for {values['key']}"
            description = f"Implements the resolution of major incident {values['key']}."
        group = self.process.team.group if (template.assign_to_team and self.process.team) else None
        self.actions.append(CreateChange(key=ActionKey.change(self.mid), target=self.target, rule=self.record.rule,
                                         reason="resolution stage: the resolution plan is implemented as a change",
                                         title=title, description=description, group=group,
                                         change_type=template.type))
        resolution.change_title = title
        self._event("change_planned", title)

    def _maintenance(self, canceled: bool = False) -> None:
        maintenance = self.progress.maintenance
        if self.epoch in maintenance.maintained:
            return
        maintenance.maintained.append(self.epoch)
        resolved = self._value("resolved_at") or self.now
        maintenance.resolved_at = resolved
        self.progress.stage_events.maintenance[self.epoch] = self.now
        self._event("resolved", self._value("state"), by="platform")
        if canceled:
            return
        self._message("resolved", ActionKey.comms(self.mid, "resolved", round=self.epoch), stage="maintenance")
        self._resolve_children()
        self._review_tasks(resolved)
        m = metrics.compute(self.record, self.process, self.now)
        self.actions.append(AddNote(key=ActionKey.note(self.mid, "metrics", self.epoch), target=self.target, rule=self.record.rule,
                                    reason="maintenance: metrics", text=metrics.note_text(m)))

    def _resolve_children(self) -> None:
        children = self.run.tickets([c for c in self.record.children if c != self.record.id])
        key = self.record.key or self._value("key") or self.record.id
        notes = f"Resolved with major incident {key}: {self._resolution_text()}."
        for child_id in sorted(children):
            child = children[child_id]
            # platforms that cascade (ServiceNow with MIM) already resolved these; only the rest are ours,
            # and only while they are still linked (a human may have unlinked one)
            if not child.is_open or child.parent != self.target:
                continue
            self.actions.append(ResolveChild(key=ActionKey.resolve(child_id, self.mid, self.epoch), target=child_id,
                                             parent=self.target, rule=self.record.rule,
                                             reason=f"major incident {key} resolved", notes=notes))

    def _review_tasks(self, resolved: datetime) -> None:
        maintenance = self.progress.maintenance
        if maintenance.review_planned:
            return
        maintenance.review_planned = True
        tasks = self.process.review.tasks
        maintenance.review_tasks_planned = len(tasks)
        key = self.record.key or self._value("key") or self.record.id
        for n, task in enumerate(tasks, start=1):
            due = self.run.calendar.add_business_days(resolved, business_days(task.due))
            description = task.description or f"Post-implementation review of major incident {key}."
            self.actions.append(CreateTask(key=ActionKey.task(self.mid, n), target=self.target, rule=self.record.rule,
                                           reason=f"maintenance: review task {n} of {len(tasks)}",
                                           title=f"{task.title} ({key})", description=description,
                                           owner=task.owner or self.progress.containment.manager, due=due))

    def review_done(self) -> bool:
        """The review tasks are known done (every one read back resolved, closed or canceled), or there are
        none to wait for."""
        return metrics.reviews_done(self.record)

    def _waiting_for_reviews(self) -> None:
        """Closed on the platform with review tasks open: stay in maintenance and say so, once."""
        noted = self.progress.maintenance.waiting_noted
        if self.epoch in noted:
            return
        noted.append(self.epoch)
        followed = self.record.followup.review_tasks
        planned = metrics.planned_reviews(self.record)
        open_tasks = list(self.record.followup.review_open)
        if followed is not None:
            count = max(planned, followed.total) - followed.done
        else:
            count = planned
        self._event("waiting_for_reviews", count)
        key = self.record.key or self._value("key") or self.record.id
        which = f": {', '.join(open_tasks)}" if open_tasks else ""
        self.actions.append(AddNote(
            key=ActionKey.note(self.mid, "waiting", self.epoch), target=self.target, rule=self.record.rule,
            reason="closed on the platform, review tasks open: the process stays in maintenance",
            text=f"Major incident {key} is closed; the process stays in maintenance, waiting for {count} review "
                 f"task{'s' if count != 1 else ''}{which}."))

    def _follow_change(self, state: str) -> None:
        """The change's state as read back: every new state is a timeline event; a change resolved or closed
        while the incident is in resolution is noted on the incident, once."""
        resolution = self.progress.resolution
        change_state = self.record.followup.change_state
        if not change_state:
            return
        if change_state != resolution.change_state_seen:
            resolution.change_state_seen = change_state
            self._event("change_state", change_state, by="platform")
        if (change_state in ("resolved", "closed") and state in OPEN_STATES and resolution.entered
                and not resolution.change_done_noted):
            resolution.change_done_noted = True
            key = self.record.key or self._value("key") or self.record.id
            change = (self.record.followup.change_key or resolution.change_title or resolution.change
                      or "the change")
            self.actions.append(AddNote(
                key=ActionKey.note(self.mid, "change_done"), target=self.target, rule=self.record.rule,
                reason=f"resolution: the change is {change_state}",
                text=f"The change {change} implementing the resolution of major incident {key} is {change_state}. "
                     f"Resolve the major incident once the service is confirmed restored."))

    def _closed(self) -> None:
        closure = self.progress.closure
        if closure.closed:
            return
        closure.closed = True
        closure.closed_at = self.now
        self.progress.stage_events.closed[self.epoch] = self.now
        self._event("closed", self._value("state"), by="platform")
        m = metrics.compute(self.record, self.process, self.now)
        key = self.record.key or self._value("key") or self.record.id
        self.actions.append(AddNote(
            key=ActionKey.note(self.mid, "closed", self.epoch), target=self.target, rule=self.record.rule, reason="closed: final note",
            text=f"Major incident {key} is closed. Impact {metrics.human_duration(m.impact_s)}, {m.children} related "
                 f"tickets, {m.updates_sent} updates sent, review tasks done {metrics.review_text(m)}. Stage: closed."))
        self._message("closed", ActionKey.comms(self.mid, "closed", round=self.epoch), stage="closed")

    # -- the stage written back -----------------------------------------------------------------------------

    def _desired(self) -> tuple[str, datetime | None]:
        """The stage the process is in, and when the event that put it there was observed."""
        progress, state = self.progress, self._value("state") or "new"
        events = progress.stage_events
        if state in ("closed", "canceled"):
            if not progress.closure.closed:
                return "maintenance", events.maintenance.get(self.epoch)
            return "closed", events.closed.get(self.epoch)
        if state == "resolved":
            return "maintenance", events.maintenance.get(self.epoch)
        reopened = progress.reopened_at if self.epoch else None
        if progress.resolution.entered:
            return "resolution", max(filter(None, [events.resolution, reopened]), default=None)
        if progress.containment.contained:
            return "containment", max(filter(None, [events.containment, reopened]), default=None)
        return "identification", events.identification

    def _write_stage(self) -> None:
        """Write the stage the process is in, once per stage (and per reopening); never over a human's stage
        set after the event that would move it."""
        stage, event_at = self._desired()
        current = self._value("stage")
        planned = self.progress.stage_keys
        key = ActionKey.stage(self.mid, stage, self.epoch)
        self.record.stage = current or stage
        if key in planned:
            return
        planned.append(key)
        human_at = self.progress.stage_human_at
        if current == stage or (human_at and (event_at is None or event_at < human_at)):
            return
        self._wrote("stage", stage, current)
        self.actions.append(SetStage(key=key, target=self.target, rule=self.record.rule,
                                     reason=f"stage {stage}", stage=stage))
        self._event("stage", stage)
        self.record.stage = stage

    def _update_message(self) -> None:
        every = self.process.communications.update_every
        comms = self.progress.comms
        if not every or not self.process.communications.stakeholders or not comms.declared_sent:
            return
        due = int((self.now - self.record.declared_at) / every)
        if due < 1 or due <= comms.last_update:
            return
        # only the latest due update goes out: after downtime nobody wants the missed ones in a burst
        comms.last_update = due
        comms.updates_sent += 1
        self._message("update", ActionKey.comms(self.mid, "update", due), stage=self.record.stage)
        self._event("update", due)


__all__ = ["plan_process", "choose_assignment", "on_call_at", "calendar_for", "Assignment", "STAGES", "business_days"]
