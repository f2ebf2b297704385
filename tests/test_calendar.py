"""Business calendar: opening hours, holidays and DST in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from connector.process.calendar import WEEKDAYS, BusinessCalendar, parse_weekday

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_ONLY = ["mon", "tue", "wed", "thu", "fri"]


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def office() -> BusinessCalendar:
    """Mon-Fri 08:00-18:00 Berlin with Christmas Eve as an explicit holiday."""
    return BusinessCalendar(
        time_zone="Europe/Berlin",
        days=WEEKDAYS_ONLY,
        start=time(8, 0),
        end=time(18, 0),
        holidays=[date(2026, 12, 24)],
    )


@pytest.fixture
def german_office() -> BusinessCalendar:
    """Mon-Fri 08:00-18:00 Berlin plus German public holidays."""
    return BusinessCalendar("Europe/Berlin", WEEKDAYS_ONLY, time(8), time(18), [], country="DE")


@pytest.fixture
def night_window() -> BusinessCalendar:
    """Every day 02:00-05:00 Berlin: a window that contains both DST changes."""
    return BusinessCalendar("Europe/Berlin", list(WEEKDAYS), time(2), time(5))


# --- in / out of hours ---


def test_sunday_0300_in_berlin_is_out_of_hours(office: BusinessCalendar) -> None:
    assert not office.is_business_time(berlin(2026, 3, 15, 3, 0))


def test_monday_0900_in_berlin_is_in_hours(office: BusinessCalendar) -> None:
    assert office.is_business_time(berlin(2026, 3, 16, 9, 0))


@pytest.mark.parametrize(
    ("local_time", "expected"),
    [
        (time(7, 59), False),
        (time(8, 0), True),
        (time(17, 59), True),
        (time(18, 0), False),
    ],
    ids=["07:59-before-opening", "08:00-opening-is-in", "17:59-still-in", "18:00-closing-is-out"],
)
def test_opening_hours_boundaries(
    office: BusinessCalendar, local_time: time, expected: bool
) -> None:
    at = datetime.combine(date(2026, 3, 16), local_time, tzinfo=BERLIN)
    assert office.is_business_time(at) is expected


def test_hours_are_judged_in_local_time_not_utc(office: BusinessCalendar) -> None:
    # 07:30 UTC is 09:30 in Berlin summer time.
    assert office.is_business_time(utc(2026, 7, 6, 7, 30))
    # 16:30 UTC is 18:30 in Berlin summer time.
    assert not office.is_business_time(utc(2026, 7, 6, 16, 30))


def test_explicit_holiday_is_out_of_hours(office: BusinessCalendar) -> None:
    assert office.is_holiday(date(2026, 12, 24))
    assert not office.is_business_time(berlin(2026, 12, 24, 10, 0))
    assert office.is_business_time(berlin(2026, 12, 23, 10, 0))


@pytest.mark.parametrize(
    "holiday",
    [date(2026, 12, 25), date(2026, 10, 3), date(2026, 4, 3), date(2026, 5, 1)],
    ids=["christmas-day", "german-unity-day", "good-friday", "labour-day"],
)
def test_german_public_holiday_from_country_is_a_holiday(
    german_office: BusinessCalendar, holiday: date
) -> None:
    assert german_office.is_holiday(holiday)
    assert not german_office.is_business_time(datetime.combine(holiday, time(10), tzinfo=BERLIN))


def test_german_unity_day_closes_a_seven_day_calendar() -> None:
    # 2026-10-03 is a Saturday, so only a calendar that opens on Saturdays shows the difference.
    every_day = BusinessCalendar("Europe/Berlin", list(WEEKDAYS), time(8), time(18), country="DE")
    assert not every_day.is_business_time(berlin(2026, 10, 3, 10, 0))
    assert every_day.is_business_time(berlin(2026, 10, 10, 10, 0))


def test_ordinary_day_is_not_a_german_holiday(german_office: BusinessCalendar) -> None:
    assert not german_office.is_holiday(date(2026, 12, 22))


def test_subdivision_adds_regional_holidays() -> None:
    bavaria = BusinessCalendar("Europe/Berlin", WEEKDAYS_ONLY, country="DE", subdivision="BY")
    berlin_state = BusinessCalendar("Europe/Berlin", WEEKDAYS_ONLY, country="DE", subdivision="BE")
    assert bavaria.is_holiday(date(2026, 1, 6))  # Epiphany
    assert not berlin_state.is_holiday(date(2026, 1, 6))


# --- DST ---


def test_spring_forward_window_starts_when_clocks_jump(night_window: BusinessCalendar) -> None:
    # 2026-03-29 02:00-03:00 does not exist in Berlin; the 02:00-05:00 window opens at the jump
    # (03:00 CEST = 01:00 UTC) and is two hours long.
    assert not night_window.is_business_time(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert night_window.is_business_time(utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert night_window.next_business_start(utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)
    assert night_window.business_intervals(date(2026, 3, 29)) == [
        (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 3, 0))
    ]


def test_nonexistent_local_time_is_read_as_pep_495_says(night_window: BusinessCalendar) -> None:
    # 02:30 on 2026-03-29 does not exist; zoneinfo reads it with the pre-jump offset (01:30 UTC).
    nonexistent = berlin(2026, 3, 29, 2, 30)
    assert nonexistent.astimezone(UTC) == utc(2026, 3, 29, 1, 30)
    assert night_window.is_business_time(nonexistent)


def test_due_date_on_a_nonexistent_wall_time_is_the_jump(night_window: BusinessCalendar) -> None:
    due = night_window.add_business_days(berlin(2026, 3, 28, 2, 30), 1)
    assert due == utc(2026, 3, 29, 1, 0)


@pytest.mark.parametrize(
    "at",
    [berlin(2026, 10, 25, 2, 30, fold=0), berlin(2026, 10, 25, 2, 30, fold=1)],
    ids=["first-0230-cest", "second-0230-cet"],
)
def test_fall_back_hour_counts_both_times(night_window: BusinessCalendar, at: datetime) -> None:
    assert night_window.is_business_time(at)


def test_fall_back_window_is_an_hour_longer(night_window: BusinessCalendar) -> None:
    # 02:00 CEST (00:00 UTC) to 05:00 CET (04:00 UTC).
    assert night_window.business_intervals(date(2026, 10, 25)) == [
        (utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 4, 0))
    ]
    day = (utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 23, 0))
    assert night_window.business_hours_between(*day) == timedelta(hours=4)


def test_spring_forward_window_is_an_hour_shorter(night_window: BusinessCalendar) -> None:
    day = (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0))
    assert night_window.business_hours_between(*day) == timedelta(hours=2)


def test_closing_time_repeated_by_fall_back_reopens_for_the_repeat() -> None:
    # Closing at 02:30: the first 02:30 closes, the clocks go back to 02:00, and local time is
    # inside 01:00-02:30 again until the second 02:30.
    calendar = BusinessCalendar("Europe/Berlin", list(WEEKDAYS), time(1), time(2, 30))
    assert calendar.business_intervals(date(2026, 10, 25)) == [
        (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30)),
    ]
    assert not calendar.is_business_time(utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert calendar.is_business_time(utc(2026, 10, 25, 1, 15))  # 02:15 CET


# --- next business start ---


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (berlin(2026, 3, 16, 9, 0), utc(2026, 3, 16, 8, 0)),
        (berlin(2026, 3, 16, 6, 0), utc(2026, 3, 16, 7, 0)),
        (berlin(2026, 3, 13, 18, 0), utc(2026, 3, 16, 7, 0)),
        (berlin(2026, 3, 14, 12, 0), utc(2026, 3, 16, 7, 0)),
        (berlin(2026, 12, 23, 19, 0), utc(2026, 12, 25, 7, 0)),
        (berlin(2026, 3, 27, 18, 30), utc(2026, 3, 30, 6, 0)),
    ],
    ids=[
        "in-hours-is-itself",
        "early-morning-opens-same-day",
        "friday-closing-opens-monday",
        "saturday-opens-monday",
        "skips-christmas-eve-holiday",
        "across-spring-forward-opens-0800-cest",
    ],
)
def test_next_business_start(office: BusinessCalendar, at: datetime, expected: datetime) -> None:
    result = office.next_business_start(at)
    assert result == expected
    assert result.tzinfo is UTC


# --- add_business_days ---


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (berlin(2026, 3, 16, 10, 0), 0, utc(2026, 3, 16, 9, 0)),
        (berlin(2026, 3, 16, 10, 0), 2, utc(2026, 3, 18, 9, 0)),
        (berlin(2026, 3, 13, 10, 0), 1, utc(2026, 3, 16, 9, 0)),
        (berlin(2026, 3, 12, 10, 0), 5, utc(2026, 3, 19, 9, 0)),
        (berlin(2026, 12, 23, 10, 0), 1, utc(2026, 12, 25, 9, 0)),
        (berlin(2026, 3, 27, 10, 0), 1, utc(2026, 3, 30, 8, 0)),
        (berlin(2026, 10, 23, 10, 0), 1, utc(2026, 10, 26, 9, 0)),
        (berlin(2026, 3, 13, 19, 0), 1, utc(2026, 3, 17, 7, 0)),
        (berlin(2026, 3, 14, 11, 0), 1, utc(2026, 3, 17, 7, 0)),
        (berlin(2026, 3, 16, 6, 0), 0, utc(2026, 3, 16, 7, 0)),
    ],
    ids=[
        "zero-days-is-start",
        "two-days-midweek",
        "friday-plus-one-is-monday",
        "across-a-weekend",
        "across-christmas-eve-holiday",
        "across-spring-forward-keeps-1000-local",
        "across-fall-back-keeps-1000-local",
        "out-of-hours-friday-evening-counts-from-monday-opening",
        "out-of-hours-saturday-counts-from-monday-opening",
        "out-of-hours-zero-days-is-next-opening",
    ],
)
def test_add_business_days(
    office: BusinessCalendar, start: datetime, days: int, expected: datetime
) -> None:
    due = office.add_business_days(start, days)
    assert due == expected
    assert due.tzinfo is UTC


def test_friday_before_spring_forward_plus_one_day_is_monday_1000_berlin(
    office: BusinessCalendar,
) -> None:
    due = office.add_business_days(berlin(2026, 3, 27, 10, 0), 1)
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 30, 10, 0)
    assert due == utc(2026, 3, 30, 8, 0)


@pytest.mark.parametrize(
    "holiday_eve",
    [berlin(2026, 12, 24, 10, 0), berlin(2026, 4, 2, 10, 0)],
    ids=["christmas", "easter"],
)
def test_add_business_days_skips_public_holidays(
    german_office: BusinessCalendar, holiday_eve: datetime
) -> None:
    due = german_office.add_business_days(holiday_eve, 1)
    expected = {24: berlin(2026, 12, 28, 10, 0), 2: berlin(2026, 4, 7, 10, 0)}[holiday_eve.day]
    assert due == expected.astimezone(UTC)


def test_negative_business_days_rejected(office: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="negative"):
        office.add_business_days(berlin(2026, 3, 16, 10, 0), -1)


# --- business_hours_between ---


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (berlin(2026, 3, 16, 9, 0), berlin(2026, 3, 16, 11, 30), timedelta(hours=2, minutes=30)),
        (berlin(2026, 3, 16, 17, 0), berlin(2026, 3, 17, 9, 0), timedelta(hours=2)),
        (berlin(2026, 3, 13, 17, 0), berlin(2026, 3, 16, 9, 0), timedelta(hours=2)),
        (berlin(2026, 3, 14, 9, 0), berlin(2026, 3, 15, 20, 0), timedelta(0)),
        (berlin(2026, 3, 16, 0, 0), berlin(2026, 3, 21, 0, 0), timedelta(hours=50)),
        (berlin(2026, 3, 16, 11, 30), berlin(2026, 3, 16, 9, 0), -timedelta(hours=2, minutes=30)),
    ],
    ids=[
        "same-day",
        "overnight",
        "over-weekend",
        "weekend-only",
        "full-week",
        "reversed-is-negative",
    ],
)
def test_business_hours_between(
    office: BusinessCalendar, a: datetime, b: datetime, expected: timedelta
) -> None:
    assert office.business_hours_between(a, b) == expected


# --- validation ---


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.is_business_time(datetime(2026, 3, 16, 9, 0)),
        lambda c: c.next_business_start(datetime(2026, 3, 16, 9, 0)),
        lambda c: c.add_business_days(datetime(2026, 3, 16, 9, 0), 1),
        lambda c: c.business_hours_between(datetime(2026, 3, 16), datetime(2026, 3, 17)),
    ],
    ids=["is_business_time", "next_business_start", "add_business_days", "business_hours_between"],
)
def test_naive_datetime_rejected(office: BusinessCalendar, call: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(office)  # type: ignore[operator]


def test_unknown_time_zone_rejected_with_clear_message() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        BusinessCalendar("Europe/Atlantis")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": time(18), "end": time(8)}, "must be before end"),
        ({"start": time(8), "end": time(8)}, "must be before end"),
        ({"days": []}, "at least one working day"),
        ({"days": ["mon", "funday"]}, "unknown weekday 'funday'"),
        ({"holidays": [datetime(2026, 12, 24)]}, "holidays must be dates"),
        ({"country": "XX"}, "no public holidays known"),
        ({"country": "DE", "subdivision": "ZZ"}, "no public holidays known"),
        ({"subdivision": "BY"}, "subdivision needs a country"),
    ],
    ids=[
        "end-before-start",
        "empty-window",
        "no-days",
        "bad-weekday",
        "datetime-as-holiday",
        "unknown-country",
        "unknown-subdivision",
        "subdivision-without-country",
    ],
)
def test_bad_configuration_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar("Europe/Berlin", **kwargs)  # type: ignore[arg-type]


def test_calendar_is_hashable_and_compares_by_configuration() -> None:
    first = BusinessCalendar("Europe/Berlin", ["Monday", "tue"], holidays=[date(2026, 1, 2)])
    second = BusinessCalendar("Europe/Berlin", ("tue", "mon"), holidays=(date(2026, 1, 2),))
    assert first == second
    assert hash(first) == hash(second)
    assert first.days == ("mon", "tue")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("mon", 0), ("Sunday", 6), (" FRI ", 4), (3, 3)],
    ids=["short", "full-name", "padded-upper", "number"],
)
def test_parse_weekday(value: str | int, expected: int) -> None:
    assert parse_weekday(value) == expected
