"""What the process planner is handed by the sync cycle each cycle (plain data; the planner reads nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connector.core.ticket import CANONICAL_FIELDS, Ticket
from connector.detection.registry import MIRecord
from connector.process.processfile import ProcessFile


@dataclass
class ProcessContext:
    """The cycle's view for the process planner: ``now``, the process file, every tracked major incident and
    the latest known ticket of each incident and child (the cycle reads children of long-running incidents
    from the state store, outside the poll window)."""

    now: datetime
    process: ProcessFile
    records: list[MIRecord]
    tickets: dict[str, Ticket]
    declared: frozenset[str] = field(default_factory=frozenset)
    """Ids of the major incidents declared in this very cycle (identification writes their stage and note)."""
    writable: frozenset[str] = frozenset(CANONICAL_FIELDS)
    """Canonical fields the platform's mapping can write (Jira has no urgency, for instance)."""
    duties: frozenset[str] = frozenset()
    """Duties only some platforms model (:data:`connector.core.write_settings.PLATFORM_DUTIES`): ``stakeholders``
    (people added to the incident as its stakeholders), ``services`` (the affected services listed on it),
    ``review`` (a post-incident review record that holds the review tasks). ServiceNow has none of them."""
    rota_start: int = 0
    """Where the manager rota starts when no incident has used it yet."""


__all__ = ["ProcessContext"]
