"""Business-hours calendars: working days, opening hours, holidays, all DST-correct.

Every question is answered in the calendar's local wall-clock time: an instant is converted to the
calendar's zone with :mod:`zoneinfo`, reasoned about there, and any instant that is returned is
converted back to UTC. Nothing here reads the clock; callers pass the current time in.

Two DST rules apply throughout:

* A local wall time that happens twice (autumn fall-back) stands for its first occurrence; both
  occurrences count as business time when the wall time is inside opening hours.
* A local wall time that does not exist (spring-forward gap) stands for the first instant at which
  the local clock reads at least that time, i.e. the moment the clocks jump forward.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Canonical short weekday names, indexed like :meth:`datetime.date.weekday` (Monday is 0)."""

_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# A run of this many consecutive non-business days means the configuration can never be satisfied
# (e.g. every working day listed as a holiday); give up instead of looping for ever.
MAX_SEARCH_DAYS = 3660

_ONE_DAY = timedelta(days=1)
_EPSILON = timedelta(microseconds=1)


def parse_weekday(value: str | int) -> int:
    """Return the weekday number (Monday is 0) for ``"mon"``, ``"Monday"`` or an int 0-6.

    Raises :class:`ValueError` for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"weekday must be a name like 'mon' or a number 0-6, not {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise ValueError(f"weekday number must be 0 (Monday) to 6 (Sunday), not {value}")
    if not isinstance(value, str):
        raise ValueError(f"weekday must be a name like 'mon', not {type(value).__name__}")
    key = value.strip().lower()
    for index, full in enumerate(_FULL_WEEKDAYS):
        if key in (full, full[:3]):
            return index
    raise ValueError(f"unknown weekday {value!r}; expected one of {', '.join(WEEKDAYS)}")


def load_time_zone(name: str) -> ZoneInfo:
    """Return the :class:`ZoneInfo` for the IANA zone ``name`` (e.g. ``"Europe/Berlin"``).

    Raises :class:`ValueError` with a readable message for an unknown or malformed name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"time zone must be an IANA name like 'Europe/Berlin', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}; expected an IANA name like 'Europe/Berlin'"
        ) from exc


def require_aware(value: datetime, what: str = "datetime") -> None:
    """Raise :class:`ValueError` unless ``value`` is a timezone-aware datetime.

    A value that is not a datetime at all raises :class:`TypeError`. ``what`` names the argument
    in the message.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware, got naive {value.isoformat()}; "
            "attach a zone (e.g. tzinfo=timezone.utc)"
        )


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    # ZoneInfo always yields an offset; the fallback only satisfies the type checker.
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(before, after]`` whose UTC offset is that of ``after``.

    Assumes exactly one offset change in the range, which holds for any span of a day or less.
    """
    target = _offset(after, zone)
    low, high = before, after
    while high - low > _EPSILON:
        middle = low + (high - low) / 2
        if _offset(middle, zone) == target:
            high = middle
        else:
            low = middle
    return high


def first_instant_at(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock in ``zone`` reads at least ``wall``.

    ``wall`` is a naive local wall-clock time. For a time that happens twice this is its first
    occurrence; for a time skipped by a DST jump it is the instant of the jump.
    """
    wall = wall.replace(tzinfo=None, fold=0)
    fold0 = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    fold1 = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if fold0.astimezone(zone).replace(tzinfo=None) == wall:
        return min(fold0, fold1)
    # In a gap the two folds straddle the jump; the jump itself is the answer.
    return _transition(min(fold0, fold1), max(fold0, fold1), zone)


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and opening hours in one time zone, minus holidays.

    Business time on a working day that is not a holiday is the local wall-clock range
    ``[start, end)``: with 08:00-18:00, 08:00 is in hours and 18:00 is not.

    Holidays are the explicit ``holidays`` dates plus, when ``country`` is set, that country's
    public holidays from the ``holidays`` package (``subdivision`` selects a state or province,
    e.g. ``country="DE", subdivision="BY"``).

    Construction validates everything and raises :class:`ValueError` on bad configuration.
    """

    time_zone: str
    days: Sequence[str] = ("mon", "tue", "wed", "thu", "fri")
    start: time = time(8, 0)
    end: time = time(18, 0)
    holidays: Collection[date] = ()
    country: str | None = None
    subdivision: str | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _weekdays: frozenset[int] = field(init=False, repr=False, compare=False)
    _public_holidays: holidays_lib.HolidayBase | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        zone = load_time_zone(self.time_zone)

        if isinstance(self.days, str):
            raise ValueError(f"days must be a list of weekday names, not the string {self.days!r}")
        weekdays = frozenset(parse_weekday(day) for day in self.days)
        if not weekdays:
            raise ValueError("days must name at least one working day")

        for name, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, time):
                raise ValueError(f"{name} must be a time like 08:00, not {value!r}")
            if value.tzinfo is not None:
                raise ValueError(f"{name} must be a local wall time without tzinfo, not {value!r}")
        if not self.start < self.end:
            raise ValueError(
                f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})"
            )

        explicit: set[date] = set()
        for day in self.holidays:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise ValueError(f"holidays must be dates (YYYY-MM-DD), not {day!r}")
            explicit.add(day)

        public: holidays_lib.HolidayBase | None = None
        if self.country is not None:
            try:
                public = holidays_lib.country_holidays(self.country, subdiv=self.subdivision)
            except NotImplementedError as exc:
                raise ValueError(
                    f"no public holidays known for country={self.country!r}"
                    f" subdivision={self.subdivision!r}: {exc}"
                ) from exc
        elif self.subdivision is not None:
            raise ValueError("subdivision needs a country")

        # Normalised copies keep the dataclass hashable and comparable however it was built.
        object.__setattr__(self, "days", tuple(WEEKDAYS[i] for i in sorted(weekdays)))
        object.__setattr__(self, "holidays", frozenset(explicit))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_weekdays", weekdays)
        object.__setattr__(self, "_public_holidays", public)

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return self._zone

    def is_holiday(self, day: date) -> bool:
        """True if the local date ``day`` is an explicit or public holiday."""
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TypeError(f"is_holiday takes a date, not {type(day).__name__}")
        if day in self.holidays:
            return True
        return self._public_holidays is not None and day in self._public_holidays

    def is_business_day(self, day: date) -> bool:
        """True if the local date ``day`` is a working day and not a holiday."""
        return day.weekday() in self._weekdays and not self.is_holiday(day)

    def is_business_time(self, at: datetime) -> bool:
        """True if the aware instant ``at`` falls inside business hours."""
        require_aware(at, "at")
        local = at.astimezone(self._zone)
        return self.start <= local.time() < self.end and self.is_business_day(local.date())

    def next_business_start(self, at: datetime) -> datetime:
        """The first business instant at or after ``at``, in UTC.

        If ``at`` is already business time, that is ``at`` itself.
        """
        require_aware(at, "at")
        instant = at.astimezone(UTC)
        day = at.astimezone(self._zone).date()
        for _ in range(MAX_SEARCH_DAYS):
            for opens, closes in self.business_intervals(day):
                if closes > instant:
                    return max(opens, instant)
            day += _ONE_DAY
        raise ValueError(f"no business time within {MAX_SEARCH_DAYS} days after {at.isoformat()}")

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """A due date: the same local wall time ``days`` business days after ``start``, in UTC.

        If ``start`` is out of hours, counting starts from the next business start (so Friday
        20:00 plus one business day is Tuesday at opening time). Days are counted in local dates,
        so the wall time survives DST changes; if it does not exist on the target day the result
        is the moment the clocks jump forward.
        """
        require_aware(start, "start")
        if isinstance(days, bool) or not isinstance(days, int):
            raise TypeError(f"days must be an int, not {type(days).__name__}")
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        local = self.next_business_start(start).astimezone(self._zone)
        day = local.date()
        remaining = days
        skipped = 0
        while remaining:
            day += _ONE_DAY
            if self.is_business_day(day):
                remaining -= 1
                skipped = 0
            else:
                skipped += 1
                if skipped > MAX_SEARCH_DAYS:
                    raise ValueError(f"no business day within {MAX_SEARCH_DAYS} days after {day}")
        return first_instant_at(datetime.combine(day, local.time()), self._zone)

    def business_hours_between(self, a: datetime, b: datetime) -> timedelta:
        """The business time elapsed between the instants ``a`` and ``b``.

        Real elapsed time is counted, so an opening-hours span that contains a DST change is an
        hour shorter or longer. Negative if ``b`` is before ``a``.
        """
        require_aware(a, "a")
        require_aware(b, "b")
        if b < a:
            return -self.business_hours_between(b, a)
        first, last = a.astimezone(UTC), b.astimezone(UTC)
        total = timedelta(0)
        day = a.astimezone(self._zone).date()
        last_day = b.astimezone(self._zone).date()
        while day <= last_day:
            for opens, closes in self.business_intervals(day):
                overlap = min(closes, last) - max(opens, first)
                if overlap > timedelta(0):
                    total += overlap
            day += _ONE_DAY
        return total

    def business_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The business time of local date ``day`` as half-open ``(open, close)`` UTC ranges.

        Usually one range or none. A DST change inside opening hours makes the range an hour
        shorter or longer; a fall-back that repeats the closing time yields a second range.
        """
        if not self.is_business_day(day):
            return []
        day_start = first_instant_at(datetime.combine(day, time()), self._zone)
        day_end = first_instant_at(datetime.combine(day + _ONE_DAY, time()), self._zone)
        # Split the day where the offset changes: within each piece local time = UTC + offset.
        pieces = [(day_start, day_end)]
        if _offset(day_start, self._zone) != _offset(day_end - _EPSILON, self._zone):
            jump = _transition(day_start, day_end - _EPSILON, self._zone)
            pieces = [(day_start, jump), (jump, day_end)]
        opens_wall = datetime.combine(day, self.start)
        closes_wall = datetime.combine(day, self.end)
        intervals: list[tuple[datetime, datetime]] = []
        for piece_start, piece_end in pieces:
            offset = _offset(piece_start, self._zone)
            opens = max(piece_start, (opens_wall - offset).replace(tzinfo=UTC))
            closes = min(piece_end, (closes_wall - offset).replace(tzinfo=UTC))
            if opens >= closes:
                continue
            if intervals and intervals[-1][1] == opens:
                intervals[-1] = (intervals[-1][0], closes)
            else:
                intervals.append((opens, closes))
        return intervals
