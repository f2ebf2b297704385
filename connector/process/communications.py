"""Communications (pure): the ``declared`` message once, then an ``update`` every
``communications.update_every`` while the incident is open. The ``resolved`` and ``closed`` messages belong to
maintenance and closure; rendering and delivery channels are :mod:`connector.process.messages`."""

from __future__ import annotations

from connector.core.actions import ActionKey, AddStakeholders
from connector.process import containment
from connector.process.incident import IncidentPlan


def add_stakeholders(plan: IncidentPlan) -> None:
    """The people of the process file's stakeholders added to the incident as its stakeholders, once, where the
    platform has stakeholders (JSM): the platform then keeps them informed as well."""
    comms = plan.progress.comms
    if comms.stakeholders_added or "stakeholders" not in plan.ctx.duties or plan.target.startswith("new-"):
        return
    comms.stakeholders_added = True
    people = list(dict.fromkeys(p for s in plan.process.communications.stakeholders for p in s.people))
    if people:
        plan.actions.append(AddStakeholders(key=ActionKey.stakeholders(plan.mid), target=plan.target,
                                            rule=plan.record.rule, reason="the process file's stakeholders",
                                            people=people))


def announce_declared(plan: IncidentPlan) -> None:
    """The ``declared`` message, once (after the team and manager are chosen, so it can name them)."""
    if plan.progress.comms.declared_sent:
        return
    containment.contain(plan)
    if plan.target.startswith("new-"):
        return  # a parent still to be created has no number to announce yet: next cycle
    plan.progress.comms.declared_sent = True
    plan.message("declared", ActionKey.comms(plan.mid, "declared"), stage="identification")


def send_update(plan: IncidentPlan) -> None:
    """The latest ``update`` message due, if one is."""
    every = plan.process.communications.update_every
    comms = plan.progress.comms
    if not every or not plan.process.communications.stakeholders or not comms.declared_sent:
        return
    due = int((plan.now - plan.record.declared_at) / every)
    if due < 1 or due <= comms.last_update:
        return
    # only the latest due update goes out: after downtime nobody wants the missed ones in a burst
    comms.last_update = due
    comms.updates_sent += 1
    plan.message("update", ActionKey.comms(plan.mid, "update", due), stage=plan.record.stage)
    plan.event("update", due)


__all__ = ["add_stakeholders", "announce_declared", "send_update"]
