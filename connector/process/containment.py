"""Containment (pure): the major incident team and manager (rota in business hours, on call out of hours),
the priority raised, and children that arrive out of hours routed to the out-of-hours group with raised
urgency and a note. A human's assignment counts as containment; the connector never assigns over it."""

from __future__ import annotations

from typing import Any

from connector.core.actions import ActionKey, AddNote, SetFields, SetServices
from connector.core.templating import TemplateError, render
from connector.detection.process_state import InitialAssignment, RotaTurn
from connector.process import messages, ownership
from connector.process.assignment import choose_assignment
from connector.process.incident import IncidentPlan


def contain(plan: IncidentPlan) -> None:
    """Assign the team and the manager, and raise the priority, once; or take a human's assignment as it is."""
    containment = plan.progress.containment
    if containment.contained:
        return
    ticket = plan.ticket
    human = plan.record.ownership.human
    if "assignee" in human or "assignment_group" in human:
        contained(plan, "human")
        return
    process = plan.process
    assignment, after = choose_assignment(process, plan.run.calendar, plan.record.declared_at, plan.run.position)
    fields: dict[str, Any] = {}
    if assignment.group:
        fields["assignment_group"] = assignment.group
    if assignment.manager:
        fields["assignee"] = assignment.manager
    raise_to = process.team.raise_priority if process.team else None
    current_priority = plan.value("priority")
    if raise_to is not None and (current_priority is None or current_priority > raise_to):
        fields["priority"] = raise_to
    fields = {name: value for name, value in fields.items() if name in plan.ctx.writable}
    if not fields.keys() & {"assignment_group", "assignee"}:
        # nothing to assign from the process file: containment waits for a human to assign
        if containment.initial is None:
            containment.initial = InitialAssignment(assignment_group=plan.value("assignment_group"),
                                                    assignee=plan.value("assignee"))
        initial = containment.initial
        if ticket is not None and (ticket.assignee != initial.assignee
                                   or ticket.assignment_group != initial.assignment_group):
            containment.manager = ticket.assignee
            containment.team = ticket.assignment_group
            containment.manager_source = "human"
            contained(plan, "human")
        return
    if assignment.source == "rota":
        plan.run.position = after
        plan.run.sequence += 1
        containment.rota = RotaTurn(seq=plan.run.sequence, next=after)
    containment.manager = assignment.manager
    containment.manager_source = assignment.source
    containment.team = assignment.group
    for name in ("assignment_group", "assignee"):
        if name in fields:
            ownership.wrote(plan, name, fields[name], plan.value(name))
    why = ("out of hours: on-call manager" if assignment.source == "on_call" else
           "round-robin rota" if assignment.source == "rota" else "team")
    plan.actions.append(SetFields(key=ActionKey.assign(plan.mid), target=plan.target, rule=plan.record.rule,
                                  reason=f"containment: major incident team and manager ({why})", fields=fields))
    contained(plan, "connector")


def contain_by_human_only(plan: IncidentPlan) -> None:
    """An incident resolved before the connector assigned anyone is not assigned after the fact."""
    if not plan.progress.containment.contained and plan.record.ownership.human:
        contained(plan, "human")


def contained(plan: IncidentPlan, by: str) -> None:
    """The incident is contained, ``by`` the connector or a human."""
    containment = plan.progress.containment
    containment.contained = True
    containment.contained_at = plan.now
    plan.progress.stage_events.containment = plan.now
    plan.event("contained", containment.manager, by=by)


def route_out_of_hours(plan: IncidentPlan) -> None:
    """Children that arrived out of hours go to the out-of-hours group with raised urgency, with a note; each
    child is checked once, when its ticket is known."""
    ooh = plan.process.out_of_hours
    if ooh is None or not plan.record.children:
        return
    checked = plan.progress.containment.ooh_checked
    routed = plan.progress.containment.ooh_routed
    pending = [c for c in plan.record.children if c not in checked and c != plan.record.id]
    if not pending:
        return
    children = plan.run.tickets(pending)
    values: dict[str, object] | None = None
    for child_id in pending:
        child = children.get(child_id)
        if child is None:
            continue  # not seen yet; checked when it is
        checked.append(child_id)
        if not child.is_open or plan.run.calendar.is_business_time(child.opened_at):
            continue
        if "assignment_group" not in plan.ctx.writable:
            continue  # the platform has nowhere to route to: nothing to write or say
        fields: dict[str, Any] = {"assignment_group": ooh.group}
        if "urgency" in plan.ctx.writable:
            if ooh.urgency is not None and (child.urgency is None or child.urgency > ooh.urgency):
                fields["urgency"] = ooh.urgency
        elif "priority" in plan.ctx.writable:
            # a platform without an urgency (Jira) raises the priority instead
            raised = ooh.priority or ooh.urgency
            if raised is not None and (child.priority is None or child.priority > raised):
                fields["priority"] = raised
        if values is None:
            values = messages.template_values(plan.values())
        try:
            text = render(ooh.note, values)
        except TemplateError:
            text = f"Arrived out of hours: routed to {ooh.group} with raised urgency."
        local = child.opened_at.astimezone(plan.run.calendar.zone)
        reason = f"arrived out of hours ({local:%a %H:%M} {plan.process.business_hours.time_zone})"
        plan.actions.append(SetFields(key=ActionKey.ooh(child_id, plan.mid), target=child_id, rule=plan.record.rule,
                                      reason=reason, fields=fields))
        plan.actions.append(AddNote(key=ActionKey.ooh_note(child_id), target=child_id, rule=plan.record.rule,
                                    reason=reason, text=text))
        routed.append(child_id)


def list_services(plan: IncidentPlan) -> None:
    """The services of the incident and of its children listed on it as affected, where the platform has such a
    list (JSM's Affected services): written again, whole, each time a child brings a service not listed yet."""
    if "services" not in plan.ctx.duties or plan.target.startswith("new-"):
        return
    listed = plan.progress.containment.services
    tickets = plan.run.tickets([plan.record.id, *plan.record.children])
    found = {t.service for t in tickets.values() if t.service}
    if plan.record.declaration.service:
        found.add(plan.record.declaration.service)
    if not found or found <= set(listed):
        return
    services = sorted(found | set(listed))
    plan.progress.containment.services = services
    plan.actions.append(SetServices(key=ActionKey.services(plan.mid, len(services)), target=plan.target,
                                    rule=plan.record.rule, reason="affected services: the incident's and its "
                                    "children's", services=services))


__all__ = ["contain", "contain_by_human_only", "contained", "list_services", "route_out_of_hours"]
