"""One major incident's planning in one cycle: the view every stage module works on (pure).

:class:`PlanningPass` is what one pass over all records shares (the context, the business calendar, the
running rota position); :class:`IncidentPlan` is one record in that pass: its latest ticket, the typed
process state it updates, the actions planned so far, and the named values messages are filled with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable

from connector.core.actions import Action, ActionKey
from connector.core.durations import format_duration
from connector.core.ticket import Ticket
from connector.detection.process_state import Progress, TimelineEvent
from connector.detection.registry import MIRecord
from connector.process import messages, metrics
from connector.process.calendar import BusinessCalendar
from connector.process.context import ProcessContext


@dataclass
class PlanningPass:
    """State shared by one planning pass over every record (the running rota position)."""

    ctx: ProcessContext
    calendar: BusinessCalendar
    position: int
    sequence: int
    declared_now: frozenset[str]

    def tickets(self, ids: Iterable[str]) -> dict[str, Ticket]:
        """Latest known tickets (the cycle hands every open incident's tickets in; the planner reads nothing)."""
        return {i: self.ctx.tickets[i] for i in ids if i and i in self.ctx.tickets}


class IncidentPlan:
    """One major incident in one planning pass: ``record`` is updated in place, ``actions`` collects the duties
    planned. ``mid`` names the incident in action keys (its synthetic id while the connector creates it), and
    ``target`` is the ticket the actions are written to."""

    def __init__(self, run: PlanningPass, record: MIRecord) -> None:
        self.run = run
        self.ctx = run.ctx
        self.process = run.ctx.process
        self.now = run.ctx.now
        self.record = record
        self.mid = record.synthetic_id or record.id
        self.target = record.id
        self.ticket = run.tickets([record.id]).get(record.id)
        self.actions: list[Action] = []

    @property
    def progress(self) -> Progress:
        """The planner's state machine of this incident."""
        return self.record.progress

    @property
    def epoch(self) -> int:
        """Reopenings so far."""
        return self.record.progress.epoch

    @property
    def label(self) -> str:
        """The incident's human key (its id while it has none)."""
        return self.record.key or self.value("key") or self.record.id

    def value(self, name: str) -> Any:
        """A canonical field of the incident's latest ticket (None while the ticket is unknown)."""
        return getattr(self.ticket, name) if self.ticket is not None else None

    def event(self, event: str, value: str | int | None = None, by: str = "connector") -> None:
        """Put ``event`` on the incident's timeline, now."""
        self.record.timeline.append(TimelineEvent(at=self.now, event=event, value=value, by=by))

    def values(self, stage: str | None = None) -> dict[str, object]:
        """The named values a message template may use."""
        record, progress = self.record, self.progress
        change = self.value("change") or progress.resolution.change
        since = self.now - record.declared_at
        triggered = record.declaration.triggered_by
        labels = self.run.tickets(triggered[:10])
        shown = [labels[i].label if i in labels else i for i in triggered[:10]]
        m = metrics.compute(record, self.process, self.now)
        return {
            "key": self.label,
            "title": self.value("title") or f"{record.rule} on {', '.join(record.group)}",
            "rule": record.rule,
            "stage": stage or record.stage or "identification",
            "service": record.declaration.service or self.value("service") or "",
            "group": ", ".join(str(g) for g in record.group),
            "children": len(record.children),
            "manager": progress.containment.manager or "unassigned",
            "team": progress.containment.team or "",
            "declared_at": f"{record.declared_at:%Y-%m-%d %H:%M} UTC",
            "since_declared": format_duration(timedelta(minutes=int(max(since, timedelta(0)).total_seconds() // 60)))
                              if since >= timedelta(minutes=1) else "0m",
            "url": self.value("url") or "",
            "triggered_by": ", ".join(shown) + (f" and {len(triggered) - 10} more" if len(triggered) > 10 else ""),
            "resolution": self.resolution_text(),
            "change": change or "none",
            "updates_sent": progress.comms.updates_sent,
            "impact_minutes": metrics.impact_minutes(record, self.now),
            "cost": metrics.money(m.estimated_cost, m.currency),
        }

    def resolution_text(self) -> str:
        """``resolved at … UTC (resolution plan: …)``, or ``not resolved yet``."""
        resolved = self.progress.maintenance.resolved_at
        if resolved is None:
            return "not resolved yet"
        text = f"resolved at {resolved:%Y-%m-%d %H:%M} UTC"
        # the change's own id is opaque (a sys_id); the title we gave it is what people recognise
        title = self.progress.resolution.change_title
        return text + (f" (resolution plan: {title})" if title else "")

    def message(self, kind: str, key: ActionKey, stage: str | None = None) -> None:
        """Plan message ``kind`` to every stakeholder (:func:`connector.process.messages.message_actions`)."""
        self.actions += messages.message_actions(self.process, kind, key, self.target, self.values(stage),
                                                 rule=self.record.rule)


__all__ = ["PlanningPass", "IncidentPlan"]
