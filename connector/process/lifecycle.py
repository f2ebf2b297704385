"""The stage machine (pure): a record first seen, what changed on the platform since the last pass (a
reopening, a human's stage, team or manager, a change linked), and the stage written back.

The stage is written once per stage and per reopening (``stage:<mi>:<stage>[:r<n>]``), never over a stage a
human set after the event that would move it. A record the planner never saw that already has a stage on the
platform (a rebuilt state, an upgrade) adopts it instead of redoing the duties of the stages passed.
"""

from __future__ import annotations

from datetime import datetime

from connector.core.actions import ActionKey, SetStage
from connector.core.ticket import OPEN_STATES
from connector.detection.process_state import StageEvents
from connector.process import ownership
from connector.process.incident import IncidentPlan

STAGES = ("identification", "containment", "resolution", "maintenance", "closed")
RANK = {stage: i for i, stage in enumerate(STAGES)}
ENDED_STATES = frozenset({"resolved", "closed", "canceled"})
"""Ticket states after which an open state again is a reopening."""


def first_sight(plan: IncidentPlan) -> None:
    """Start tracking; a record the planner never saw before that already has a stage on the platform
    (a rebuilt state, an upgrade) adopts it instead of redoing the duties of the stages passed."""
    progress = plan.progress
    progress.started = True
    if plan.record.id in plan.run.declared_now or plan.mid in plan.run.declared_now:
        # identification.py writes the stage and the declaration note in this very cycle
        ownership.wrote(plan, "stage", "identification", plan.value("stage"))
        progress.stage_keys = [ActionKey.stage(plan.mid, "identification")]
        progress.stage_events = StageEvents(identification=plan.record.declared_at)
        plan.event("stage", "identification")
        return
    stage = plan.value("stage")
    if stage not in RANK:
        return
    progress.adopted = stage
    ownership.adopt(plan, "stage", stage, by="platform")
    progress.stage_keys = [ActionKey.stage(plan.mid, s) for s in STAGES[:RANK[stage] + 1]]
    rank = RANK[stage]
    progress.comms.declared_sent = True
    progress.comms.stakeholders_added = True  # added with the declaration, like its message
    every = plan.process.communications.update_every
    if every:
        progress.comms.last_update = int((plan.now - plan.record.declared_at) / every)
    if rank >= RANK["containment"]:
        containment = progress.containment
        containment.contained = True
        if containment.manager is None:
            containment.manager = plan.value("assignee")
        if containment.team is None:
            containment.team = plan.value("assignment_group")
        containment.manager_source = "platform"
    if rank >= RANK["resolution"]:
        progress.resolution.entered = True
        progress.resolution.change_planned = True
    if rank >= RANK["maintenance"]:
        progress.maintenance.maintained = [0]
        progress.maintenance.review_planned = True
        progress.seen_state = plan.value("state")
    if rank >= RANK["closed"]:
        progress.closure.closed = True


def observe_platform(plan: IncidentPlan) -> None:
    """Reopen, human edits of the stage, team and manager, and a change linked on the platform."""
    progress, ticket = plan.progress, plan.ticket
    if ticket is None:
        return
    state = ticket.state
    previous = progress.seen_state
    if previous in ENDED_STATES and state in OPEN_STATES:
        progress.epoch = plan.epoch + 1
        progress.reopened_at = plan.now
        progress.maintenance.resolved_at = None
        progress.closure.closed = False
        progress.closure.closed_at = None
        plan.event("reopened", state)
    progress.seen_state = state
    if ownership.observe(plan, "stage", ticket.stage):
        progress.stage_human_at = plan.now
    elif ticket.stage and "stage" not in plan.record.ownership.owned:
        # a stage set while the planner never wrote one: a human's
        ownership.adopt(plan, "stage", ticket.stage, by="human")
        progress.stage_human_at = plan.now
        plan.event("stage", ticket.stage, by="human")
    containment, resolution = progress.containment, progress.resolution
    for name in ("assignment_group", "assignee"):
        if ownership.observe(plan, name, getattr(ticket, name)):
            if name == "assignee":
                containment.manager = ticket.assignee
                containment.manager_source = "human"
            else:
                containment.team = ticket.assignment_group
    if ticket.change and ticket.change != resolution.change:
        resolution.change = ticket.change
        if resolution.change_linked_at is None:
            resolution.change_linked_at = plan.now
        plan.event("change_linked", ticket.change)
    if ticket.change and plan.ctx.tickets.get(ticket.change) is not None:
        # the platform exposes the change as a ticket: follow its state
        plan.record.followup.change_state = plan.ctx.tickets[ticket.change].state


def desired_stage(plan: IncidentPlan) -> tuple[str, datetime | None]:
    """The stage the process is in, and when the event that put it there was observed."""
    progress, state = plan.progress, plan.value("state") or "new"
    events = progress.stage_events
    if state in ("closed", "canceled"):
        if not progress.closure.closed:
            return "maintenance", events.maintenance.get(plan.epoch)
        return "closed", events.closed.get(plan.epoch)
    if state == "resolved":
        return "maintenance", events.maintenance.get(plan.epoch)
    reopened = progress.reopened_at if plan.epoch else None
    if progress.resolution.entered:
        return "resolution", max(filter(None, [events.resolution, reopened]), default=None)
    if progress.containment.contained:
        return "containment", max(filter(None, [events.containment, reopened]), default=None)
    return "identification", events.identification


def write_stage(plan: IncidentPlan) -> None:
    """Write the stage the process is in, once per stage (and per reopening); never over a human's stage
    set after the event that would move it."""
    stage, event_at = desired_stage(plan)
    current = plan.value("stage")
    planned = plan.progress.stage_keys
    key = ActionKey.stage(plan.mid, stage, plan.epoch)
    plan.record.stage = current or stage
    if key in planned:
        return
    planned.append(key)
    human_at = plan.progress.stage_human_at
    if current == stage or (human_at and (event_at is None or event_at < human_at)):
        return
    ownership.wrote(plan, "stage", stage, current)
    plan.actions.append(SetStage(key=key, target=plan.target, rule=plan.record.rule,
                                 reason=f"stage {stage}", stage=stage))
    plan.event("stage", stage)
    plan.record.stage = stage


__all__ = ["STAGES", "RANK", "ENDED_STATES", "first_sight", "observe_platform", "desired_stage", "write_stage"]
