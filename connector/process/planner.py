"""The major incident process as a pure planner: stages, their duties, and what humans changed.

``identification -> containment -> resolution -> maintenance -> closed``

| stage          | entered when                                              | duties planned                                        | module |
|----------------|-----------------------------------------------------------|-------------------------------------------------------|--------|
| identification | declared (identification.py writes the stage and note)    | ``declared`` message                                  | :mod:`~connector.process.communications` |
| containment    | team and manager assigned, by us or by a human            | team group, manager (rota or on call), priority; out-of-hours children routed | :mod:`~connector.process.containment`, :mod:`~connector.process.assignment` |
| resolution     | a change is linked, or a human sets the stage             | a change from the template when none is linked        | :mod:`~connector.process.resolution` |
| maintenance    | the major incident is resolved                            | open children resolved, review tasks, metrics note, ``resolved`` message | :mod:`~connector.process.maintenance` |
| closed         | the major incident is closed and its review tasks are done | final note, ``closed`` message | :mod:`~connector.process.maintenance` |

This module is the entry point (:func:`plan_process`) and the order of the duties in one pass; the stage
machine (first sight, what changed on the platform, the stage written back) is
:mod:`~connector.process.lifecycle`, what humans changed is :mod:`~connector.process.ownership`, the
``update`` cadence is :mod:`~connector.process.communications`, and :class:`~connector.process.incident.IncidentPlan`
is the view of one incident they all work on.

The change and the review tasks are read back by the sync cycle (``Platform.fetch_followups``, when due)
into the record's :class:`~connector.detection.process_state.FollowUp` (change state, review tasks done/total,
those still open); the planner only reads them. A closed incident whose review tasks are still open stays in
maintenance (noted once, with the tasks that remain). Every change state seen is a timeline event; a change
resolved or closed while the incident is in resolution is noted on the incident once.

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

**Idempotent.** Every action key is deterministic, built by :class:`~connector.core.actions.ActionKey`
(``assign:<mi>``, ``stage:<mi>:containment``, ``change:<mi>``, ``task:<mi>:<n>``, ``resolve:<child>:<mi>``,
``comms:<mi>:declared``, ``comms:<mi>:update:<n>``...); after a reopen, keys of repeated duties carry
``:r<n>``. A duty is planned once: a second pass over the same state plans nothing new.

**Humans win.** For the stage, the assignment group and the assignee, the planner remembers what it wrote
and the value it last saw. A different value on the platform is a human's: it is recorded (timeline, the
manager shown in reports) and never written over. The stage still moves on when something *new* happens
after the human's edit (the incident is resolved, closed or reopened). A rebuilt state (lost state file)
adopts the stage found on the platform and does not redo the duties of the stages already passed.
"""

from __future__ import annotations

from connector.core.actions import Action
from connector.core.ticket import OPEN_STATES
from connector.detection.registry import MIRecord
from connector.process import communications, containment, lifecycle, maintenance, resolution
from connector.process.assignment import calendar_for, rota_position
from connector.process.context import ProcessContext
from connector.process.incident import IncidentPlan, PlanningPass


def plan_process(ctx: ProcessContext) -> list[Action]:
    """Process planner for the sync cycle: every duty due this cycle for every tracked major incident."""
    records = sorted(ctx.records, key=lambda r: (r.declared_at, r.id))
    run = PlanningPass(ctx, calendar_for(ctx.process), *rota_position(records, ctx.rota_start), ctx.declared)
    actions: list[Action] = []
    for record in records:
        if record.status == "rejected" or record.progress.done:
            continue  # finished: not even a cache read
        actions += plan_incident(run, record)
    return actions


def plan_incident(run: PlanningPass, record: MIRecord) -> list[Action]:
    """The duties of one major incident in one pass, in order (``record`` is updated in place)."""
    plan = IncidentPlan(run, record)
    if not plan.progress.started:
        lifecycle.first_sight(plan)
    lifecycle.observe_platform(plan)
    state = plan.value("state") or "new"
    if state in OPEN_STATES:
        communications.add_stakeholders(plan)
        communications.announce_declared(plan)
        containment.contain(plan)
        containment.route_out_of_hours(plan)
        containment.list_services(plan)
        resolution.enter_resolution(plan)
    elif state == "resolved":
        containment.contain_by_human_only(plan)
        maintenance.maintain(plan)
    else:
        maintenance.maintain(plan, canceled=state == "canceled")
        if maintenance.reviews_done(plan):
            maintenance.close(plan)
        else:
            maintenance.wait_for_reviews(plan)
    resolution.follow_change(plan, state)
    lifecycle.write_stage(plan)
    if state in OPEN_STATES:
        communications.send_update(plan)
    if plan.progress.closure.closed:
        plan.progress.done = True
    return plan.actions


__all__ = ["plan_process", "plan_incident"]
