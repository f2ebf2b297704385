"""Per-group baselines (connector/detection/baseline.py): the tails, the estimate, causal learning, storms,
the fallback, persistence and the memory bound; and the engine deciding with them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.core.ticket import Ticket
from connector.detection.baseline import (
    HOURS_PER_WEEK,
    Baselines,
    RuleBaseline,
    encode_key,
    learn_tickets,
    nbinom_tail,
    poisson_tail,
)
from connector.detection.engine import Declaration, Detector, LateLink
from connector.detection.rules import Rule

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC


def rule(window: str = "15m", threshold: int = 8, floor: int = 5, probability: float = 1e-6, **baseline: Any) -> Rule:
    return Rule.model_validate({"id": "ci-surge", "surge": {"group_by": ["ci"], "window": window, "threshold": threshold,
                                                            "distinct": "caller",
                                                            "baseline": {"probability": probability, "floor": floor,
                                                                         **baseline}},
                                "late_children": {"while": "surge", "tail": "15m"}})


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def steady(model: RuleBaseline, start: datetime, weeks: int, per_hour: dict[str, Any]) -> None:
    """Fold ``weeks`` of hours: ``per_hour[group]`` is a count, or a function of the hour's datetime."""
    first = hour_of(start)
    for hour in range(first, first + weeks * HOURS_PER_WEEK):
        at = datetime.fromtimestamp(hour * 3600, UTC)
        counts = {g: (c(at) if callable(c) else c) for g, c in per_hour.items()}
        model.fold(hour, {g: c for g, c in counts.items() if c})
    model.advance(first + weeks * HOURS_PER_WEEK)


# -- tails ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "mu"), [(1, 0.5), (3, 2.0), (10, 4.0), (0, 3.0), (25, 1.0), (40, 30.0), (200, 150.0)])
def test_poisson_tail_matches_the_closed_form(n: int, mu: float) -> None:
    from fractions import Fraction

    # exact rational terms (mu is a binary fraction), rounded once at the end
    term, cdf = Fraction(1), Fraction(0)
    for k in range(n):
        cdf += term
        term = term * Fraction(mu) / (k + 1)
    exact = 1.0 - float(cdf) * math.exp(-mu) if n else 1.0
    assert poisson_tail(n, mu) == pytest.approx(max(exact, 0.0), rel=1e-9, abs=1e-14)


def test_tiny_poisson_tails_keep_their_precision() -> None:
    # 1 - cdf would round to 0; the upward sum keeps the value
    assert poisson_tail(8, 0.01) == pytest.approx(0.01 ** 8 / math.factorial(8) * math.exp(-0.01), rel=1e-6)


def test_negative_binomial_tail_is_poisson_without_overdispersion_and_heavier_with_it() -> None:
    assert nbinom_tail(6, 1.5, 1.0) == poisson_tail(6, 1.5)
    assert nbinom_tail(6, 1.5, 3.0) > poisson_tail(6, 1.5) * 10
    total = sum(nbinom_tail(k, 2.0, 2.5) - nbinom_tail(k + 1, 2.0, 2.5) for k in range(400))
    assert total == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("mu", [0.0, 0.01, 0.4, 1.5, 7.0, 40.0, 300.0])
@pytest.mark.parametrize("probability", [1e-3, 1e-6, 1e-10])
def test_the_count_that_fires_is_the_smallest_improbable_one(mu: float, probability: float) -> None:
    n = RuleBaseline.smallest_improbable(mu, 1.0, 5, probability)
    assert n >= 5
    assert poisson_tail(n, mu) < probability or mu == 0.0
    if n > 5:
        assert poisson_tail(n - 1, mu) >= probability


# -- the estimate ----------------------------------------------------------------------------------------------


def test_a_steady_group_is_expected_at_its_rate_and_a_never_seen_one_at_zero() -> None:
    model = RuleBaseline(rule(window="15m"))
    steady(model, MONDAY - timedelta(weeks=4), 4, {"db1": 8})
    at = (MONDAY + timedelta(hours=10)).timestamp()
    assert model.expected("db1", at)[0] == pytest.approx(2.0, rel=1e-9)  # 8 an hour, a 15-minute window
    assert model.expected("never", at)[0] == 0.0
    assert model.limit("never", at) == 5  # the floor
    assert model.limit("db1", at) > 8


def test_hour_of_week_seasonality_expects_the_busy_monday_morning_and_the_quiet_night() -> None:
    model = RuleBaseline(rule(window="1h"))
    steady(model, MONDAY - timedelta(weeks=3), 3, {"db1": lambda at: 30 if at.weekday() == 0 and at.hour == 10 else 1})
    monday_ten = (MONDAY + timedelta(hours=10, minutes=30)).timestamp()
    tuesday_three = (MONDAY + timedelta(days=1, hours=3)).timestamp()
    assert model.expected("db1", monday_ten)[0] == pytest.approx(30.0, rel=0.05)
    assert model.expected("db1", tuesday_three)[0] == pytest.approx(1.0, rel=0.2)
    assert model.limit("db1", monday_ten) > 45 and model.limit("db1", tuesday_three) < 15


def test_without_seasonality_every_hour_expects_the_groups_mean_hour() -> None:
    model = RuleBaseline(rule(window="1h", seasonality="none"))
    steady(model, MONDAY - timedelta(weeks=2), 2, {"db1": lambda at: 3 if at.hour in (10, 11) else 0})
    assert model.expected("db1", (MONDAY + timedelta(hours=3)).timestamp())[0] == pytest.approx(0.25, rel=1e-9)


def test_learned_rates_are_bias_corrected_after_a_single_week() -> None:
    model = RuleBaseline(rule(window="1h", history="4w"))
    steady(model, MONDAY - timedelta(weeks=1), 1, {"db1": 6})
    assert model.expected("db1", (MONDAY + timedelta(hours=5)).timestamp())[0] == pytest.approx(6.0, rel=1e-9)


def test_recent_weeks_weigh_more_than_old_ones() -> None:
    model = RuleBaseline(rule(window="1h", history="1w"))
    steady(model, MONDAY - timedelta(weeks=4), 3, {"db1": 10})
    steady(model, MONDAY - timedelta(weeks=1), 1, {"db1": 2})
    expected = model.expected("db1", (MONDAY + timedelta(hours=5)).timestamp())[0]
    weights = [math.exp(-j) for j in range(4)]
    assert expected == pytest.approx((2 * weights[0] + 10 * sum(weights[1:])) / sum(weights), rel=1e-6)


def test_a_storm_hour_teaches_at_most_four_times_the_expected_count() -> None:
    model = RuleBaseline(rule(window="1h", floor=5, seasonality="none"))
    steady(model, MONDAY - timedelta(weeks=2), 2, {"db1": 2})
    storm_hour = hour_of(MONDAY)
    slot, week = RuleBaseline.slot_of(storm_hour)
    before = model.by_slot[slot]["db1"]
    model.fold(storm_hour, {"db1": 400, "new-ci": 60})
    scale = math.exp((week - model.base_week) * model.k_week)
    assert (model.by_slot[slot]["db1"] - before) / scale == pytest.approx(4 * 2.0)  # 4 x its expected 2
    assert model.by_slot[slot]["new-ci"] / scale == pytest.approx(5.0)  # a group never seen: the floor


def test_until_min_history_the_fixed_threshold_applies_too() -> None:
    model = RuleBaseline(rule(threshold=8, floor=5, min_history="1w"))
    at = MONDAY.timestamp()
    assert model.limit("db1", at) == 8  # nothing learned yet
    for hour in range(hour_of(MONDAY) - 6, hour_of(MONDAY)):
        model.fold(hour, {"busy": 200})  # its first hour teaches the floor; the cap follows it up
    model.advance(hour_of(MONDAY))
    assert not model.usable
    assert model.limit("quiet", at) == 8  # the fixed threshold, though the floor is 5
    assert model.limit("busy", at) > 40  # and what the young baseline already asks of a busy group


def test_a_first_sync_warm_up_from_quiet_history_makes_the_baseline_usable() -> None:
    baselines = Baselines([rule()])
    learn_tickets(baselines, [rule()], [], until=MONDAY, since=MONDAY - timedelta(weeks=4))
    model = baselines.get("ci-surge")
    assert model is not None and model.usable and model.learned_hours == 4 * HOURS_PER_WEEK
    assert model.limit("anything", MONDAY.timestamp()) == 5


def test_warm_up_leaves_out_lifecycle_conditions_and_keeps_the_others() -> None:
    r = Rule.model_validate({"id": "ci-surge", "when": {"state": {"in": ["new"]}, "priority": {"lte": 3}},
                             "surge": {"group_by": ["ci"], "window": "1h", "threshold": 8,
                                       "baseline": {"seasonality": "none"}}})
    baselines = Baselines([r])
    start = MONDAY - timedelta(weeks=1)
    tickets = [Ticket(id=f"t{i}", ci="db1", state="closed", priority=3 if i % 2 else 5,
                      opened_at=start + timedelta(minutes=30 * i)) for i in range(2 * HOURS_PER_WEEK)]
    learn_tickets(baselines, [r], tickets, until=MONDAY, since=start)
    model = baselines.get("ci-surge")
    assert model is not None
    # closed now, but new when they arrived: counted; priority 5 is not: half of the two tickets an hour
    assert model.expected("db1", MONDAY.timestamp())[0] == pytest.approx(1.0, rel=1e-9)


def test_the_hour_of_week_follows_the_configured_time_zone() -> None:
    model = RuleBaseline(rule(time_zone="Europe/Amsterdam"))
    summer = datetime(2026, 7, 6, 8, tzinfo=UTC)  # Monday 10:00 in Amsterdam (UTC+2)
    winter = datetime(2026, 1, 5, 9, tzinfo=UTC)  # Monday 10:00 in Amsterdam (UTC+1)
    assert model.slot_at(summer.timestamp()) == model.slot_at(winter.timestamp()) == 10


# -- state ------------------------------------------------------------------------------------------------------


def test_state_round_trips_with_identical_decisions() -> None:
    model = RuleBaseline(rule(window="20m"))
    steady(model, MONDAY - timedelta(weeks=2), 2, {"db1": lambda at: 1 + at.hour % 5, ("x" * 3): 2})
    copy = RuleBaseline(rule(window="20m"))
    groups = [(encode_key(k), model.group_state(k)) for k in model.groups()]
    assert copy.load(model.meta(), groups) == (True, [])
    for hours in range(0, 48, 5):
        at = (MONDAY + timedelta(hours=hours)).timestamp()
        for key in ("db1", "xxx", "never"):
            assert copy.expected(key, at) == model.expected(key, at)
            assert copy.limit(key, at) == model.limit(key, at)


def test_a_baseline_learned_for_another_version_of_the_rule_is_not_reused() -> None:
    model = RuleBaseline(rule())
    steady(model, MONDAY - timedelta(weeks=1), 1, {"db1": 3})
    other = Rule.model_validate({"id": "ci-surge", "when": {"priority": 1},
                                 "surge": {"group_by": ["ci"], "window": "15m", "threshold": 8, "baseline": {}}})
    assert RuleBaseline(other).load(model.meta(), []) == (False, [])
    assert RuleBaseline(rule(probability=1e-3)).load(model.meta(), []) == (True, [])  # sensitivity is no part of it


def test_memory_is_bounded_by_groups_times_hours_of_the_week_and_decayed_groups_are_forgotten() -> None:
    model = RuleBaseline(rule(history="1d"))
    steady(model, MONDAY - timedelta(weeks=3), 3, {f"ci{i}": 1 for i in range(20)})
    assert model.slots() <= 20 * HOURS_PER_WEEK
    assert len(model.groups()) == 20
    quiet_since = hour_of(MONDAY)
    model.fold(quiet_since, {"ci0": 1})
    model.advance(quiet_since + 40 * HOURS_PER_WEEK)
    model.prune()
    assert model.groups() == set()  # 40 weeks of silence with a one-day memory: nothing left to recall


def test_rebasing_the_scaled_sums_changes_no_estimate() -> None:
    model = RuleBaseline(rule(window="1h", history="1h"))
    steady(model, MONDAY - timedelta(weeks=2), 1, {"db1": lambda at: 3 if at.hour == 9 else 1})
    before = [model.expected("db1", (MONDAY - timedelta(weeks=1) + timedelta(hours=h)).timestamp())[0] for h in range(30)]
    model._rebase((model.learned_to or 0) - 1)
    after = [model.expected("db1", (MONDAY - timedelta(weeks=1) + timedelta(hours=h)).timestamp())[0] for h in range(30)]
    assert after == pytest.approx(before, rel=1e-9, abs=1e-300)


# -- the engine with baselines ----------------------------------------------------------------------------------


def quiet_then(model_rule: Rule, weeks: int = 2, busy: dict[str, int] | None = None) -> tuple[Detector, Baselines]:
    baselines = Baselines([model_rule])
    model = baselines.get(model_rule.id)
    assert model is not None
    steady(model, MONDAY - timedelta(weeks=weeks), weeks, busy or {})
    return Detector([model_rule], baselines=baselines), baselines


def test_a_busy_group_with_steady_traffic_far_above_five_in_fifteen_minutes_declares_nothing() -> None:
    detector, _ = quiet_then(rule(window="15m"), busy={"payments-db": 60})
    events = []
    for i in range(240):  # four hours at its usual pace: 15 calls in every 15 minutes
        events += detector.feed(Ticket(id=f"b{i}", ci="payments-db", caller=f"c{i}",
                                       opened_at=MONDAY + timedelta(minutes=i)))
    assert events == []


def test_a_quiet_group_that_suddenly_gets_eight_distinct_callers_in_ten_minutes_is_declared() -> None:
    detector, _ = quiet_then(rule(window="15m"), busy={"payments-db": 60})
    events = [e for i in range(8) for e in detector.feed(
        Ticket(id=f"q{i}", ci="hr-portal", caller=f"c{i}", opened_at=MONDAY + timedelta(minutes=10 * i / 7)))]
    declared = [e for e in events if isinstance(e, Declaration)]
    assert len(declared) == 1 and declared[0].group == ("hr-portal",)
    assert [e.ticket.id for e in events if isinstance(e, LateLink)] == ["q5", "q6", "q7"]


def test_the_engine_learns_an_hour_only_once_its_tickets_left_the_window() -> None:
    model_rule = rule(window="20m")
    detector = Detector([model_rule])
    model = detector.baselines.get("ci-surge")
    assert model is not None
    detector.feed(Ticket(id="a", ci="db1", opened_at=MONDAY + timedelta(minutes=10)))
    detector.feed(Ticket(id="b", ci="db1", opened_at=MONDAY + timedelta(hours=1, minutes=19)))
    assert model.learned_to is None  # 01:19 < 00:00 + 1h + 20m: hour 00 may still be counted in a window
    detector.feed(Ticket(id="c", ci="db2", opened_at=MONDAY + timedelta(hours=1, minutes=20)))
    assert model.learned_to == hour_of(MONDAY) + 1 and model.known("db1") and not model.known("db2")


def test_tickets_a_major_incident_took_are_learned_too_and_capped() -> None:
    model_rule = rule(window="15m", threshold=3, floor=3, min_history="1h")
    detector = Detector([model_rule])
    for i in range(30):  # a storm of 30 on a group never seen, consumed by the major incident it declares
        detector.feed(Ticket(id=f"s{i}", ci="db1", caller=f"c{i}", opened_at=MONDAY + timedelta(minutes=i)))
    detector.feed(Ticket(id="later", ci="db9", opened_at=MONDAY + timedelta(hours=2)))
    model = detector.baselines.get("ci-surge")
    assert model is not None and model.known("db1")
    assert model.expected("db1", (MONDAY + timedelta(hours=2)).timestamp())[0] < 3.0


def test_a_rule_with_a_fixed_threshold_is_unchanged_by_baselines_of_other_rules() -> None:
    fixed = Rule.model_validate({"id": "fixed", "order": 0, "surge": {"group_by": ["service"], "window": "15m",
                                                                     "threshold": 3}})
    detector = Detector([fixed, rule()])
    events = [detector.feed(Ticket(id=f"t{i}", service="vpn", opened_at=MONDAY + timedelta(minutes=i))) for i in range(3)]
    assert isinstance(events[2][0], Declaration) and events[2][0].rule == "fixed"


def test_a_stray_ticket_decades_before_the_history_does_not_teach_that_the_desk_was_quiet() -> None:
    # One ticket dated 1970 in an export was learned as 56 years of silence: every group's rate fell to zero,
    # the baseline counted as learned at once, and a steady busy CI declared 729 times in a backtest.
    def replay(stream: list[Ticket]) -> list[Declaration]:
        detector = Detector([rule(window="15m", min_history="1h")])
        return [e for t in stream for e in detector.feed(t) if isinstance(e, Declaration)]

    steady_days = [Ticket(id=f"b{i}", ci="payments-db", caller=f"c{i}", opened_at=MONDAY + timedelta(minutes=2 * i))
                   for i in range(3 * 24 * 30)]  # three days at 30 calls an hour
    stray = Ticket(id="stray", ci="payments-db", caller="x", opened_at=datetime(1970, 1, 1, tzinfo=UTC))

    assert len(replay([stray, *steady_days])) == len(replay(steady_days)) <= 1


def test_a_hole_in_the_stream_longer_than_the_history_starts_the_learning_again() -> None:
    detector = Detector([rule(min_history="1h")])
    model = detector.baselines.get("ci-surge")
    assert model is not None
    for i in range(2 * 7 * 24):  # two weeks, a ticket an hour
        detector.feed(Ticket(id=f"a{i}", ci="db1", caller=f"c{i}", opened_at=MONDAY + timedelta(hours=i)))
    assert model.usable
    after = MONDAY + timedelta(weeks=2 + 5)  # then nothing at all for five weeks: a hole in the history
    detector.feed(Ticket(id="b0", ci="db1", caller="x", opened_at=after))
    assert model.start is None and not model.usable and model.groups() == set()


def test_a_rule_that_rarely_fires_keeps_its_baseline_while_the_stream_goes_on() -> None:
    # only a hole in the whole stream is one: a narrow rule with a ticket every five weeks among steady other
    # traffic learns its quiet weeks, in the engine and in a warm-up from a file alike (backtest --from)
    narrow = Rule.model_validate({"id": "ci-surge", "when": {"service": "payroll"},
                                  "surge": {"group_by": ["ci"], "window": "15m", "threshold": 20,
                                            "baseline": {"floor": 3, "min_history": "1h"}}})
    stream = [Ticket(id=f"o{i}", ci="other", service="mail", opened_at=MONDAY + timedelta(hours=i))
              for i in range(12 * 7 * 24)]
    stream += [Ticket(id=f"p{w}", ci="payroll-db", service="payroll", opened_at=MONDAY + timedelta(weeks=5 * w))
               for w in range(3)]
    stream.sort(key=lambda t: t.opened_at)
    detector = Detector([narrow])
    for ticket in stream:
        detector.feed(ticket)
    learned = Baselines([narrow])
    learn_tickets(learned, [narrow], stream, MONDAY + timedelta(weeks=12), stream[0].opened_at)
    for model in (detector.baselines.get("ci-surge"), learned.get("ci-surge")):
        assert model is not None and model.start == hour_of(MONDAY) and model.usable


def test_a_loaded_baseline_is_kept_when_the_stream_starts_weeks_after_it_was_learned() -> None:
    # mim explain replays today's window with what the state learned five weeks ago: no hole in its own stream
    detector, baselines = quiet_then(rule(window="15m", min_history="1h"), busy={"payments-db": 30})
    model = baselines.get("ci-surge")
    assert model is not None and model.usable
    detector.feed(Ticket(id="t", ci="payments-db", caller="c", opened_at=MONDAY + timedelta(weeks=5)))
    assert model.usable and model.start is not None
