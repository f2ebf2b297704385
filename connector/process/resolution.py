"""Resolution (pure): entered when a change is linked or a human sets the stage; without a linked change, one
is created from the process file's template (the resolution plan). The change's state, as read back, is
followed: every new state on the timeline, and a change done while the incident is still open noted once."""

from __future__ import annotations

from connector.core.actions import ActionKey, AddNote, CreateChange
from connector.core.templating import TemplateError, render
from connector.core.ticket import OPEN_STATES
from connector.process import messages
from connector.process.incident import IncidentPlan


def enter_resolution(plan: IncidentPlan) -> None:
    """Enter resolution once there is a reason to, then plan the change unless one is linked."""
    resolution = plan.progress.resolution
    stage = plan.record.ownership.owned.get("stage")
    ours = stage.ours if stage is not None else []
    human_stage = plan.value("stage") == "resolution" and "resolution" not in ours
    if not resolution.entered:
        if not (plan.value("change") or resolution.change or human_stage):
            return
        resolution.entered = True
        resolution.entered_at = plan.now
        plan.progress.stage_events.resolution = plan.now
        plan.event("resolution", "change linked" if (plan.value("change") or resolution.change) else "stage set",
                   by="connector" if plan.value("change") else "human")
    if resolution.change_planned or plan.value("change") or resolution.change:
        return
    resolution.change_planned = True
    template = plan.process.change
    values = messages.template_values(plan.values("resolution"))
    try:
        title, description = render(template.title, values), render(template.description, values)
    except TemplateError:
        title = f"Resolution plan for {values['key']}"
        description = f"Implements the resolution of major incident {values['key']}."
    group = plan.process.team.group if (template.assign_to_team and plan.process.team) else None
    plan.actions.append(CreateChange(key=ActionKey.change(plan.mid), target=plan.target, rule=plan.record.rule,
                                     reason="resolution stage: the resolution plan is implemented as a change",
                                     title=title, description=description, group=group,
                                     change_type=template.type))
    resolution.change_title = title
    plan.event("change_planned", title)


def follow_change(plan: IncidentPlan, state: str) -> None:
    """The change's state as read back: every new state is a timeline event; a change resolved or closed
    while the incident is in resolution is noted on the incident, once."""
    resolution = plan.progress.resolution
    change_state = plan.record.followup.change_state
    if not change_state:
        return
    if change_state != resolution.change_state_seen:
        resolution.change_state_seen = change_state
        plan.event("change_state", change_state, by="platform")
    if (change_state in ("resolved", "closed") and state in OPEN_STATES and resolution.entered
            and not resolution.change_done_noted):
        resolution.change_done_noted = True
        change = (plan.record.followup.change_key or resolution.change_title or resolution.change
                  or "the change")
        plan.actions.append(AddNote(
            key=ActionKey.note(plan.mid, "change_done"), target=plan.target, rule=plan.record.rule,
            reason=f"resolution: the change is {change_state}",
            text=f"The change {change} implementing the resolution of major incident {plan.label} is {change_state}. "
                 f"Resolve the major incident once the service is confirmed restored."))


__all__ = ["enter_resolution", "follow_change"]
