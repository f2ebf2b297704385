"""Manager selection: round robin, on-call shifts and weekly on-call patterns."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from connector.process.rota import (
    RotaMember,
    WeeklyOnCall,
    pick_round_robin,
)

BERLIN = ZoneInfo("Europe/Berlin")

ANNA = RotaMember("u1", "Anna")
BEN = RotaMember("u2", "Ben")
CARA = RotaMember("u3", "Cara")
AWAY = RotaMember("u4", "Dev", available=False)


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- round robin ---


@pytest.mark.parametrize(
    ("people", "position", "expected_person", "expected_next"),
    [
        ([ANNA, BEN, CARA], 0, ANNA, 1),
        ([ANNA, BEN, CARA], 1, BEN, 2),
        ([ANNA, BEN, CARA], 2, CARA, 3),
        ([ANNA, BEN, CARA], 3, ANNA, 1),
        ([ANNA, BEN, CARA], 7, BEN, 2),
        ([ANNA, AWAY, CARA], 1, CARA, 3),
        ([ANNA, BEN, AWAY], 2, ANNA, 1),
        ([AWAY, AWAY, BEN], 0, BEN, 3),
    ],
    ids=[
        "first",
        "second",
        "last-returns-len",
        "position-equal-to-len-wraps",
        "large-position-wraps",
        "skips-unavailable",
        "skips-unavailable-and-wraps",
        "skips-several-unavailable",
    ],
)
def test_round_robin_pick(
    people: list[RotaMember], position: int, expected_person: RotaMember, expected_next: int
) -> None:
    assert pick_round_robin(people, position) == (expected_person, expected_next)


def test_round_robin_persisted_position_cycles_through_everyone() -> None:
    people = [ANNA, BEN, AWAY, CARA]
    position = 0
    picked = []
    for _ in range(6):
        person, position = pick_round_robin(people, position)
        assert person is not None
        picked.append(person.name)
    assert picked == ["Anna", "Ben", "Cara", "Anna", "Ben", "Cara"]


def test_round_robin_newcomer_appended_after_last_pick_gets_the_next_turn() -> None:
    _, position = pick_round_robin([ANNA, BEN], 1)
    person, _ = pick_round_robin([ANNA, BEN, CARA], position)
    assert person == CARA


@pytest.mark.parametrize(
    ("people", "position"),
    [([AWAY, RotaMember("u5", "Eve", available=False)], 1), ([], 4)],
    ids=["everyone-unavailable", "nobody-on-rota"],
)
def test_round_robin_nobody_available_keeps_position(people: list[RotaMember], position: int) -> None:
    assert pick_round_robin(people, position) == (None, position)


# --- weekly on-call ---


@pytest.fixture
def weekly() -> WeeklyOnCall:
    """Days Mon-Fri 08-18 by 'day', weeknights by 'night', Fri 18:00 -> Mon 08:00 by 'weekend'."""
    entries: list[tuple[str | int, time, time, str]] = [
        (day, time(8), time(18), "day") for day in ("mon", "tue", "wed", "thu", "fri")
    ]
    entries += [(day, time(18), time(8), "night") for day in ("mon", "tue", "wed", "thu")]
    entries += [
        ("fri", time(18), time(0), "weekend"),
        ("sat", time(0), time(0), "weekend"),
        ("sunday", time(0), time(0), "weekend"),
        (0, time(0), time(8), "weekend"),
    ]
    return WeeklyOnCall("Europe/Berlin", entries)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (berlin(2026, 3, 16, 9, 0), "day"),
        (berlin(2026, 3, 16, 18, 0), "night"),
        (berlin(2026, 3, 16, 23, 59), "night"),
        (berlin(2026, 3, 17, 0, 0), "night"),
        (berlin(2026, 3, 17, 7, 59), "night"),
        (berlin(2026, 3, 17, 8, 0), "day"),
        (berlin(2026, 3, 20, 17, 59), "day"),
        (berlin(2026, 3, 20, 18, 0), "weekend"),
        (berlin(2026, 3, 21, 0, 0), "weekend"),
        (berlin(2026, 3, 22, 12, 0), "weekend"),
        (berlin(2026, 3, 23, 7, 59), "weekend"),
        (berlin(2026, 3, 23, 8, 0), "day"),
        (berlin(2026, 3, 20, 7, 0), "night"),
    ],
    ids=[
        "monday-day",
        "monday-evening-night-starts",
        "before-midnight",
        "midnight-crossed-into-tuesday",
        "tuesday-0759-still-night",
        "tuesday-0800-day",
        "friday-1759-day",
        "friday-1800-weekend",
        "saturday-midnight",
        "sunday-noon",
        "monday-0759-still-weekend",
        "monday-0800-day",
        "friday-early-morning-thursday-night",
    ],
)
def test_weekly_on_call_across_midnight_and_weekend(
    weekly: WeeklyOnCall, at: datetime, expected: str
) -> None:
    assert weekly.who_at(at) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 30, 5, 59), "weekend"),
        (utc(2026, 3, 30, 6, 0), "day"),
        (utc(2026, 3, 27, 16, 59), "day"),
        (utc(2026, 3, 27, 17, 0), "weekend"),
        (utc(2026, 10, 26, 6, 59), "weekend"),
        (utc(2026, 10, 26, 7, 0), "day"),
        (utc(2026, 10, 23, 15, 59), "day"),
        (utc(2026, 10, 23, 16, 0), "weekend"),
    ],
    ids=[
        "after-spring-forward-0759-cest-weekend",
        "after-spring-forward-0800-cest-day",
        "before-spring-forward-1759-cet-day",
        "before-spring-forward-1800-cet-weekend",
        "after-fall-back-0759-cet-weekend",
        "after-fall-back-0800-cet-day",
        "before-fall-back-1759-cest-day",
        "before-fall-back-1800-cest-weekend",
    ],
)
def test_weekly_on_call_follows_local_time_across_dst(
    weekly: WeeklyOnCall, at: datetime, expected: str
) -> None:
    assert weekly.who_at(at) == expected


def test_weekly_on_call_hour_repeated_by_fall_back_stays_with_one_person() -> None:
    rota = WeeklyOnCall(
        "Europe/Berlin",
        [("sat", time(22), time(2, 30), "late"), ("sun", time(2, 30), time(12), "early")],
    )
    assert rota.who_at(berlin(2026, 10, 25, 2, 15, fold=0)) == "late"
    assert rota.who_at(berlin(2026, 10, 25, 2, 15, fold=1)) == "late"
    assert rota.who_at(berlin(2026, 10, 25, 2, 45, fold=0)) == "early"
    assert rota.who_at(berlin(2026, 10, 25, 2, 45, fold=1)) == "early"


def test_weekly_on_call_skipped_hour_window_hands_over_at_the_jump() -> None:
    rota = WeeklyOnCall(
        "Europe/Berlin",
        [("sat", time(22), time(2, 30), "late"), ("sun", time(2, 30), time(12), "early")],
    )
    # 01:59 CET is the last minute before the clocks jump from 02:00 to 03:00 CEST.
    assert rota.who_at(utc(2026, 3, 29, 0, 59)) == "late"
    assert rota.who_at(utc(2026, 3, 29, 1, 0)) == "early"


def test_weekly_on_call_gap_and_latest_started_entry_wins() -> None:
    rota = WeeklyOnCall(
        "Europe/Berlin",
        [("mon", time(8), time(18), "anna"), ("mon", time(12), time(13), "lunch-cover")],
    )
    assert rota.who_at(berlin(2026, 3, 16, 11, 59)) == "anna"
    assert rota.who_at(berlin(2026, 3, 16, 12, 30)) == "lunch-cover"
    assert rota.who_at(berlin(2026, 3, 16, 13, 0)) == "anna"
    assert rota.who_at(berlin(2026, 3, 16, 19, 0)) is None
    assert rota.who_at(berlin(2026, 3, 17, 9, 0)) is None


def test_weekly_on_call_full_day_entry_spans_exactly_24_hours() -> None:
    rota = WeeklyOnCall("Europe/Berlin", [("wed", time(9), time(9), "anna")])
    start = berlin(2026, 3, 18, 9, 0)
    assert rota.who_at(start - timedelta(minutes=1)) is None
    assert rota.who_at(start) == "anna"
    assert rota.who_at(berlin(2026, 3, 19, 8, 59)) == "anna"
    assert rota.who_at(berlin(2026, 3, 19, 9, 0)) is None


def test_weekly_on_call_sunday_night_wraps_to_monday() -> None:
    rota = WeeklyOnCall("Europe/Berlin", [("sun", time(20), time(6), "anna")])
    assert rota.who_at(berlin(2026, 3, 16, 5, 59)) == "anna"
    assert rota.who_at(berlin(2026, 3, 16, 6, 0)) is None


@pytest.mark.parametrize(
    ("time_zone", "entries", "message"),
    [
        ("Mars/Olympus", [], "unknown time zone"),
        ("Europe/Berlin", [("someday", time(8), time(9), "anna")], "unknown weekday"),
        ("Europe/Berlin", [("mon", "08:00", time(9), "anna")], "start must be a local time"),
        ("Europe/Berlin", [("mon", time(8), time(9))], r"must be \(weekday, start, end, person\)"),
        ("Europe/Berlin", [("mon", time(8), time(9), "")], "person must be"),
    ],
    ids=["bad-zone", "bad-weekday", "string-time", "missing-person", "empty-person"],
)
def test_bad_weekly_configuration_rejected(
    time_zone: str, entries: list[tuple[object, ...]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WeeklyOnCall(time_zone, entries)  # type: ignore[arg-type]


def test_weekly_on_call_naive_time_rejected(weekly: WeeklyOnCall) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly.who_at(datetime(2026, 3, 16, 9, 0))
