"""Identification: turn the engine's decisions into platform actions (pure).

A declaration becomes: declare (or create) the parent, link every other triggering ticket, write the
declaration work note (rule, triggering tickets, group) and the stage ``identification``. A late ticket
becomes a link and a short note on the child.
"""

from __future__ import annotations

from typing import Sequence

from connector.core.actions import Action, ActionKey, AddNote, CreateParent, DeclareMajor, LinkChild, SetStage
from connector.detection.engine import Decisions, Declaration, LateLink
from connector.detection.markers import marker_for
from connector.detection.rules import Rule

PARENT_COPY = ("service", "ci", "category", "subcategory", "location", "priority", "impact", "urgency")


def group_text(decl: Declaration) -> str:
    """``service=web-shop`` style description of the group that surged."""
    return ", ".join(f"{k}={v}" for k, v in zip(decl.group_fields, decl.group)) or "single ticket"


def declaration_note(decl: Declaration, rule: Rule | None) -> str:
    """The work note written on a newly declared major incident."""
    keys = [t.label for t in decl.tickets]
    shown = ", ".join(keys[:25]) + (f" and {len(keys) - 25} more" if len(keys) > 25 else "")
    why = f" ({rule.description})" if rule and rule.description else ""
    verb = "proposed" if decl.mode == "propose" else "declared"
    return (f"Major incident {verb} by rule {decl.rule}{why}.\n"
            f"Group: {group_text(decl)}. Triggering tickets ({len(keys)}): {shown}.\n"
            f"First ticket opened {decl.started_at:%Y-%m-%d %H:%M} UTC; threshold reached {decl.detected_at:%Y-%m-%d %H:%M} UTC.\n"
            f"Stage: identification.")


def new_parent_fields(decl: Declaration) -> dict[str, object]:
    """Canonical fields of a parent the connector creates: copied from the earliest triggering ticket."""
    first = decl.tickets[0]
    fields: dict[str, object] = {"title": f"Major incident: {group_text(decl)}"}
    for name in PARENT_COPY:
        value = getattr(first, name)
        if value is not None:
            fields[name] = value
    fields["description"] = (f"Created by the major incident connector (rule {decl.rule}) for "
                             f"{len(decl.tickets)} tickets on {group_text(decl)}.")
    fields.update(decl.set_fields)
    return fields


def declaration_actions(decl: Declaration, rule: Rule | None) -> list[Action]:
    """Actions for one declaration, in the order they must be applied."""
    mi = decl.mi_id
    marker = marker_for(decl.rule, mi)
    actions: list[Action] = []
    reason = f"rule {decl.rule}: {len(decl.tickets)} tickets on {group_text(decl)}"
    if decl.new_parent:
        actions.append(CreateParent(key=ActionKey.create(mi), target=mi, rule=decl.rule, reason=reason,
                                    mode=decl.mode, marker=marker, fields=new_parent_fields(decl)))
    else:
        actions.append(DeclareMajor(key=ActionKey.declare(mi), target=mi, rule=decl.rule, reason=reason,
                                    mode=decl.mode, marker=marker, fields=dict(decl.set_fields)))
    for child in decl.children:
        actions.append(LinkChild(key=ActionKey.link(child.id, mi), target=child.id, parent=mi, rule=decl.rule,
                                 reason=f"part of the surge that triggered {decl.rule}"))
    actions.append(AddNote(key=ActionKey.note(mi, "declared"), target=mi, rule=decl.rule, reason="declaration note",
                           text=declaration_note(decl, rule)))
    actions.append(SetStage(key=ActionKey.stage(mi, "identification"), target=mi, rule=decl.rule,
                            reason="major incident declared", stage="identification"))
    return actions


def late_link_actions(link: LateLink) -> list[Action]:
    """A late ticket joins the open major incident."""
    return [LinkChild(key=ActionKey.link(link.ticket.id, link.mi_id), target=link.ticket.id, parent=link.mi_id, rule=link.rule,
                      reason=f"arrived at {link.at:%H:%M} UTC while major incident {link.mi_id} was open "
                             f"({', '.join(link.group)})")]


def identification_actions(decisions: Decisions, rules: Sequence[Rule]) -> list[Action]:
    """Every action for one cycle's decisions: declarations first, then late links."""
    by_id = {r.id: r for r in rules}
    actions: list[Action] = []
    for decl in decisions.declarations:
        actions.extend(declaration_actions(decl, by_id.get(decl.rule)))
    for link in decisions.late_links:
        actions.extend(late_link_actions(link))
    return actions
