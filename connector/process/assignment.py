"""Who takes a major incident (pure): the team, and a manager from the rota (round robin) in business hours
or the on-call person out of hours; where the rota stands between incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from connector.detection.registry import MIRecord
from connector.process.calendar import BusinessCalendar
from connector.process.processfile import ProcessFile
from connector.process.rota import RotaMember, WeeklyOnCall, pick_round_robin


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


def rota_position(records: Iterable[MIRecord], counter: Any) -> tuple[int, int]:
    """``(position, sequence)`` of the rota: where the latest rota assignment left it, else ``counter`` (where
    the rota starts before any incident used it).

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


__all__ = ["Assignment", "calendar_for", "choose_assignment", "on_call_at", "rota_position"]
