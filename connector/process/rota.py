"""Choosing the major incident manager: round robin over the rota and weekly on-call patterns.

Pure selection logic only: callers load the rota, pass the current time in, and persist the round
robin position themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from connector.process.calendar import load_time_zone, parse_weekday, require_aware

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class RotaMember:
    """Someone in the manager rota; ``available=False`` takes them out of the round robin."""

    id: str
    name: str
    available: bool = True


def pick_round_robin(people: Sequence[RotaMember], position: int) -> tuple[RotaMember | None, int]:
    """Pick the first available person at or after ``position`` (taken modulo ``len(people)``).

    Returns the person and the position to persist for the next pick: the chosen index + 1. It is
    deliberately not wrapped, so if people are appended before the next pick the turn passes to
    them rather than jumping back to the start. If nobody is available (or ``people`` is empty)
    returns ``(None, position)`` so the stored position is left unchanged.
    """
    count = len(people)
    for step in range(count):
        index = (position + step) % count
        if people[index].available:
            return people[index], index + 1
    return None, position


class WeeklyEntry(NamedTuple):
    """One weekly on-call window in local wall-clock time.

    The window starts on ``weekday`` (Monday is 0) at ``start``. If ``end`` is after ``start`` it
    ends the same day; otherwise it ends at ``end`` on the following day, so ``18:00 -> 08:00`` is
    an overnight window, ``18:00 -> 00:00`` runs to midnight and ``00:00 -> 00:00`` is a whole day.
    """

    weekday: int
    start: time
    end: time
    person: str

    def elapsed(self, weekday: int, wall: time) -> timedelta | None:
        """Wall-clock time since this window opened, or None if the moment is outside it."""
        start, end, now = _as_delta(self.start), _as_delta(self.end), _as_delta(wall)
        if weekday == self.weekday and now >= start and (now < end or end <= start):
            return now - start
        if end <= start and weekday == (self.weekday + 1) % 7 and now < end:
            return _ONE_DAY - start + now
        return None


def _as_delta(wall: time) -> timedelta:
    return timedelta(
        hours=wall.hour, minutes=wall.minute, seconds=wall.second, microseconds=wall.microsecond
    )


@dataclass(frozen=True)
class WeeklyOnCall:
    """A repeating weekly on-call pattern in one time zone.

    ``entries`` are ``(weekday, start, end, person)`` tuples (weekday as ``"fri"``, ``"Friday"`` or
    0-6); see :class:`WeeklyEntry` for how ``end <= start`` crosses midnight. Windows are local
    wall-clock times, so they follow DST: a window that ends at 08:00 ends at 08:00 local time on
    both sides of a clock change, and an hour that happens twice belongs to the same person both
    times. Construction raises :class:`ValueError` on a bad zone or entry.
    """

    time_zone: str
    entries: Sequence[tuple[str | int, time, time, str]]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _entries: tuple[WeeklyEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        zone = load_time_zone(self.time_zone)
        normalised: list[WeeklyEntry] = []
        for number, entry in enumerate(self.entries, start=1):
            try:
                weekday, start, end, person = entry
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"on-call entry {number} must be (weekday, start, end, person), not {entry!r}"
                ) from exc
            for name, value in (("start", start), ("end", end)):
                if not isinstance(value, time) or value.tzinfo is not None:
                    raise ValueError(
                        f"on-call entry {number}: {name} must be a local time without tzinfo, "
                        f"not {value!r}"
                    )
            if not isinstance(person, str) or not person:
                raise ValueError(f"on-call entry {number}: person must be a non-empty string")
            normalised.append(WeeklyEntry(parse_weekday(weekday), start, end, person))
        object.__setattr__(self, "entries", tuple(normalised))
        object.__setattr__(self, "_entries", tuple(normalised))
        object.__setattr__(self, "_zone", zone)

    def entry_at(self, at: datetime) -> WeeklyEntry | None:
        """The entry covering the aware instant ``at``, or None.

        Of overlapping entries the one that opened most recently wins; on a tie the later entry.
        """
        require_aware(at, "at")
        local = at.astimezone(self._zone)
        weekday, wall = local.weekday(), local.time()
        best: WeeklyEntry | None = None
        best_elapsed: timedelta | None = None
        for entry in self._entries:
            elapsed = entry.elapsed(weekday, wall)
            if elapsed is not None and (best_elapsed is None or elapsed <= best_elapsed):
                best, best_elapsed = entry, elapsed
        return best

    def who_at(self, at: datetime) -> str | None:
        """The person on call at the aware instant ``at``, or None if nobody is."""
        entry = self.entry_at(at)
        return entry.person if entry is not None else None
