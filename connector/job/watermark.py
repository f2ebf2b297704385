"""The delta poll's watermark, not trusting the platform's clock: a record whose ``updated_at`` lies beyond now
plus a small skew never moves it.

One record with ``sys_updated_on`` in 2099 used to become the watermark: every later cycle asked for records
updated after 2099, read none, exited 0, and the connector was blind for good. Such a record is still read
and processed (it may be a real incident with a broken clock), but the watermark stays where the trustworthy
records put it, so the record is read again each cycle and reported each time, until someone fixes it. A
watermark already in the future (left by an older version) is not used: the poll starts from the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from connector.core.ticket import Ticket
from connector.platforms.base import Platform, Watermark

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of the connector's clock a platform's timestamp may be and still count (clock skew)."""


@dataclass(frozen=True)
class FutureRecord:
    """A record updated (or opened) after now + :data:`FUTURE_SKEW`."""

    label: str
    field: str
    at: datetime

    def __str__(self) -> str:
        return f"{self.label}: {self.field} {self.at.isoformat()} is in the future; it does not move the watermark"


def trusted_start(mark: Watermark | None, now: datetime) -> tuple[Watermark | None, str | None]:
    """The stored watermark when it can be trusted, else None (poll from the horizon) and why."""
    if mark is not None and mark.updated_at > now + FUTURE_SKEW:
        return None, (f"the stored watermark {mark.updated_at.isoformat()} is in the future; "
                      "polling from the horizon instead")
    return mark, None


def future_records(tickets: Iterable[Ticket], now: datetime) -> list[FutureRecord]:
    """Tickets whose ``updated_at`` or ``opened_at`` lies beyond now + :data:`FUTURE_SKEW`."""
    limit = now + FUTURE_SKEW
    found = []
    for ticket in tickets:
        for name in ("updated_at", "opened_at"):
            value = getattr(ticket, name)
            if value is not None and value > limit:
                found.append(FutureRecord(ticket.label, name, value))
                break
    return found


def advance(tickets: Sequence[Ticket], current: Watermark | None, now: datetime) -> Watermark | None:
    """The latest ``(updated_at, id)`` of ``tickets`` and ``current``, leaving out every time beyond now +
    :data:`FUTURE_SKEW`."""
    limit = now + FUTURE_SKEW
    best = current
    for ticket in tickets:
        if ticket.updated_at is None or ticket.updated_at > limit:
            continue
        mark = Watermark(ticket.updated_at, ticket.id)
        if best is None or mark > best:
            best = mark
    return best


def future_on_platform(platform: Platform, now: datetime) -> list[FutureRecord]:
    """Records the platform shows as updated after now + :data:`FUTURE_SKEW` (one delta query; for ``mim
    doctor``). A record the mapping cannot read is left out; a failed query raises
    :class:`~connector.platforms.errors.PlatformError`."""
    found = []
    for raw in platform.fetch_changed(Watermark(now + FUTURE_SKEW, ""), now):
        try:
            found.append(platform.to_ticket(raw))
        except ValueError:  # MappingError: reported by the sync cycle, not a clock problem
            continue
    return future_records(found, now)


__all__ = ["FUTURE_SKEW", "FutureRecord", "advance", "future_on_platform", "future_records", "trusted_start"]
