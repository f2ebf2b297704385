"""Markers: what the connector leaves on a major incident it declared (``mim:<rule>[:<new id>]``), and the
registry rebuilt from them when the state is lost (pure)."""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

from connector.core.ticket import Ticket
from connector.detection.engine import MajorIncident
from connector.detection.rules import Rule


def marker_for(rule: str, mi_id: str | None = None) -> str:
    """The marker the connector leaves on a major incident it declared (``mim:<rule>[:<new id>]``)."""
    return f"mim:{rule}" if not mi_id or not mi_id.startswith("new-") else f"mim:{rule}:{mi_id}"


def parse_marker(marker: str | None) -> tuple[str, str | None] | None:
    """``(rule, synthetic id or None)`` from a marker, or None when it is not ours."""
    if not marker or not marker.startswith("mim:"):
        return None
    parts = marker.split(":")
    if len(parts) < 2 or not parts[1]:
        return None
    return parts[1], (parts[2] if len(parts) > 2 and parts[2] else None)


def major_incidents_from_tickets(tickets: Iterable[Ticket], rules: Sequence[Rule]) -> list[MajorIncident]:
    """Rebuild the major incidents the connector declared from the markers it left on the platform, so
    that a lost state file never causes a second declaration. Children are the tickets whose ``parent``
    points at a major incident."""
    by_rule = {r.id: r for r in rules}
    found: dict[str, MajorIncident] = {}
    ticket_list = list(tickets)
    for t in ticket_list:
        parsed = parse_marker(t.marker)
        if parsed is None or t.major == "none":
            continue
        rule = by_rule.get(parsed[0])
        if rule is None:
            continue
        group = tuple(str(getattr(t, f) or "") for f in rule.group_by)
        if t.major in ("rejected", "canceled"):
            status: Literal["open", "rejected", "closed"] = "rejected"
        elif t.is_open:
            status = "open"
        else:
            status = "closed"
        declared = t.updated_at or t.opened_at
        found[t.id] = MajorIncident(t.id, rule.id, group, t.opened_at, declared, status, key=t.key)
    for t in ticket_list:
        if t.parent in found:
            found[t.parent].children.add(t.id)
    return list(found.values())


__all__ = ["marker_for", "parse_marker", "major_incidents_from_tickets"]
