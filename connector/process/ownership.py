"""Humans win (pure): for each field the connector writes (the stage, the assignment group, the assignee) it
remembers what it wrote and the value it last saw; a different value on the platform is a human's, recorded
(the timeline, the manager shown in reports) and never written over."""

from __future__ import annotations

from connector.detection.process_state import OwnedField
from connector.process.incident import IncidentPlan


def wrote(plan: IncidentPlan, name: str, value: str | None, before: str | None) -> None:
    """The connector plans to write ``value`` over ``before`` into ``name``."""
    owned = plan.record.ownership.owned
    ours = list(owned[name].ours) if name in owned else []
    owned[name] = OwnedField(written=value, ours=ours + [value], before=before, landed=False, seen=None,
                             by="connector", at=plan.now)


def adopt(plan: IncidentPlan, name: str, value: str | None, by: str) -> None:
    """Take ``value`` found on the platform as the known value of ``name``, set ``by`` a human or the platform."""
    plan.record.ownership.owned[name] = OwnedField(written=value, ours=[], before=value, landed=True, seen=value,
                                                   by=by, at=plan.now)


def observe(plan: IncidentPlan, name: str, current: str | None) -> bool:
    """Track ``name`` against what we wrote; True when a human changed it (recorded, never overwritten).

    Until our write shows on the platform, the old value (or an earlier value of ours) means "not there
    yet". A reference field may come back spelled the platform's way (a user name written, a sys_id
    read), so the first other value seen is taken as ours; stage values are canonical, so for the stage
    any value we never wrote is a human's.
    """
    ownership = plan.record.ownership
    owned = ownership.owned.get(name)
    if owned is None or plan.ticket is None:
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
    owned.landed, owned.seen, owned.by, owned.at = True, current, "human", plan.now
    ownership.human[name] = current
    ownership.human_at[name] = plan.now
    plan.event(name, current, by="human")
    return True


__all__ = ["wrote", "adopt", "observe"]
