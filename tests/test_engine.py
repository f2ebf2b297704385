"""The pure detection engine as tables: tickets + known major incidents + rules + now -> decisions."""

from __future__ import annotations

import random
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.core.ticket import Ticket
from connector.detection.engine import (
    Decisions,
    Declaration,
    Detector,
    LateLink,
    MajorIncident,
    decide,
    new_parent_id,
    window_horizon,
)
from connector.detection.markers import major_incidents_from_tickets, marker_for, parse_marker
from connector.detection.rules import Rule, load_rules, ordered

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ticket(id: str, minute: float, **fields: Any) -> Ticket:
    """A new ticket opened ``minute`` minutes after T0."""
    fields.setdefault("state", "new")
    return Ticket(id=id, opened_at=at(minute), **fields)


def surge(id: str = "surge", group_by: tuple[str, ...] = ("service",), window: str = "15m", threshold: int = 3,
          distinct: str | None = None, parent: str = "earliest", late: str | None = None,
          when: dict[str, Any] | None = None, **extra: Any) -> Rule:
    spec: dict[str, Any] = {"group_by": list(group_by), "window": window, "threshold": threshold}
    if distinct:
        spec["distinct"] = distinct
    return Rule.model_validate({"id": id, "when": when or {}, "surge": spec, "declare": {"parent": parent},
                                **({"late_children": late} if late else {}), **extra})


def single(id: str, when: dict[str, Any], **extra: Any) -> Rule:
    """A rule that declares one matching ticket by itself."""
    return Rule.model_validate({"id": id, "when": when, "declare": {"parent": "self"}, **extra})


def summary(decisions: Decisions) -> list[tuple[str, str, list[str]]]:
    """(parent, rule, sorted children) per declaration, in declaration order."""
    return [(d.mi_id, d.rule, sorted(t.id for t in d.children)) for d in decisions.declarations]


def links(decisions: Decisions) -> list[tuple[str, str]]:
    """(ticket, major incident) per late link."""
    return [(link.ticket.id, link.mi_id) for link in decisions.late_links]


def on_service(service: str, minutes: list[float], prefix: str = "t", **fields: Any) -> list[Ticket]:
    """One ticket per minute offset on ``service``, each from a different caller."""
    return [ticket(f"{prefix}{i + 1}", m, service=service, caller=f"{prefix}-caller-{i + 1}", **fields)
            for i, m in enumerate(minutes)]


# -- rolling window and threshold ----------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "expected"), [
    pytest.param([0, 5, 10], [("t1", "surge", ["t2", "t3"])], id="three-within-window"),
    pytest.param([0, 5, 15], [("t1", "surge", ["t2", "t3"])], id="third-exactly-at-window-edge-counts"),
    pytest.param([0, 5, 15 + 1 / 60], [], id="third-one-second-past-edge-does-not"),
    pytest.param([0, 10, 16, 20], [("t2", "surge", ["t3", "t4"])], id="expired-first-ticket-left-out"),
    pytest.param([0, 60, 120, 180], [], id="slow-trickle"),
])
def test_rolling_window_boundaries(minutes: list[float], expected: list[tuple[str, str, list[str]]]) -> None:
    decisions = decide(on_service("web-shop", minutes), [], [surge(window="15m", threshold=3)], NOW)

    assert summary(decisions) == expected


@pytest.mark.parametrize(("count", "threshold", "declared_by"), [
    pytest.param(2, 3, None, id="one-below-threshold"),
    pytest.param(3, 3, "t3", id="at-threshold-declared-by-third"),
    pytest.param(5, 5, "t5", id="threshold-five"),
    pytest.param(1, 1, "t1", id="threshold-one-fires-on-first"),
])
def test_threshold_is_reached_by_the_nth_ticket(count: int, threshold: int, declared_by: str | None) -> None:
    tickets = on_service("web-shop", [float(i) for i in range(count)])
    detector = Detector([surge(threshold=threshold)])

    fired = [t.id for t in tickets if detector.feed(t)]

    assert fired == ([declared_by] if declared_by else [])


def test_declaration_records_start_detection_and_triggering_tickets() -> None:
    rule = Rule.model_validate({"id": "surge", "surge": {"group_by": ["service"], "window": "15m", "threshold": 3},
                                "declare": {"mode": "accept", "parent": "earliest", "set": {"priority": 1}}})

    (decl,) = decide(on_service("web-shop", [1, 4, 9]), [], [rule], NOW).declarations

    assert (decl.started_at, decl.detected_at) == (at(1), at(9))
    assert decl.triggered_by == ["t1", "t2", "t3"]
    assert (decl.mode, decl.parent_mode, decl.set_fields) == ("accept", "earliest", {"priority": 1})
    assert (decl.group_fields, decl.group) == (("service",), ("web-shop",))
    assert decl.parent is not None and decl.parent.id == "t1" and not decl.new_parent


def test_the_rest_of_a_surge_joins_its_incident_even_without_late_children() -> None:
    # without late_children the incident still collects its own surge for one window, so one outage
    # never becomes two major incidents of the same group
    tickets = on_service("web-shop", [0, 1, 2, 3, 4, 5])

    decisions = decide(tickets, [], [surge(threshold=3)], NOW)

    assert summary(decisions) == [("t1", "surge", ["t2", "t3"])]
    assert links(decisions) == [("t4", "t1"), ("t5", "t1"), ("t6", "t1")]


def test_a_new_surge_of_the_same_group_after_the_window_is_a_new_incident_without_late_children() -> None:
    tickets = on_service("web-shop", [0, 1, 2]) + on_service("web-shop", [40, 41, 42], prefix="u")

    decisions = decide(tickets, [], [surge(threshold=3)], NOW)

    assert summary(decisions) == [("t1", "surge", ["t2", "t3"]), ("u1", "surge", ["u2", "u3"])]


def test_an_incident_whose_declaration_has_not_landed_is_not_linked_to_itself() -> None:
    tickets = on_service("web-shop", [0, 1, 2])
    known = MajorIncident("t1", "surge", ("web-shop",), tickets[0].opened_at, tickets[2].opened_at)

    decisions = decide(tickets, [known], [surge(threshold=3, late="4h")], NOW)

    assert ("t1", "t1") not in links(decisions)
    assert links(decisions) == [("t2", "t1"), ("t3", "t1")]
    assert known.children == set(), "decide() must not modify the incidents it is given"


# -- distinct counting ---------------------------------------------------------------------------


@pytest.mark.parametrize(("callers", "declared"), [
    pytest.param(["ann", "ann", "ann", "ann"], False, id="one-caller-four-times"),
    pytest.param(["ann", "ben", "ann", "ben"], False, id="two-callers"),
    pytest.param(["ann", "ben", "ann", "cid"], True, id="third-distinct-caller"),
    pytest.param([None, None, None], True, id="missing-caller-counts-as-its-own"),
    pytest.param(["ann", None, "ann"], False, id="missing-caller-plus-one-caller"),
    pytest.param(["ann", "", "ann", " "], True, id="blank-callers-are-missing-and-each-their-own"),
])
def test_distinct_counts_callers_not_tickets(callers: list[str | None], declared: bool) -> None:
    tickets = [ticket(f"t{i}", i, service="web-shop", caller=c) for i, c in enumerate(callers)]

    decisions = decide(tickets, [], [surge(threshold=3, distinct="caller")], NOW)

    assert bool(decisions.declarations) is declared


def test_blank_caller_from_a_trusted_mapping_counts_as_its_own_caller() -> None:
    tickets = [Ticket.trusted(id=f"t{i}", opened_at=at(i), service="web-shop", caller="") for i in range(3)]

    decisions = decide(tickets, [], [surge(threshold=3, distinct="caller")], NOW)

    assert summary(decisions) == [("t0", "surge", ["t1", "t2"])]


def test_repeat_callers_are_children_of_a_distinct_surge() -> None:
    callers = ["ann", "ann", "ben", "ben", "cid"]
    tickets = [ticket(f"t{i}", i, service="web-shop", caller=c) for i, c in enumerate(callers)]

    decisions = decide(tickets, [], [surge(threshold=3, distinct="caller")], NOW)

    assert summary(decisions) == [("t0", "surge", ["t1", "t2", "t3", "t4"])]


# -- group keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("places", "expected_group"), [
    pytest.param([("net", "berlin")] * 3, ("net", "berlin"), id="same-category-and-location"),
    pytest.param([("net", "berlin"), ("net", "paris"), ("net", "berlin")], None, id="location-differs"),
    pytest.param([("net", "berlin"), ("db", "berlin"), ("net", "berlin")], None, id="category-differs"),
    pytest.param([("net", "berlin"), ("net", None), ("net", "berlin")], None, id="location-missing-on-one"),
])
def test_multi_field_group_key(places: list[tuple[str, str | None]], expected_group: tuple[str, str] | None) -> None:
    tickets = [ticket(f"t{i}", i, category=c, location=loc) for i, (c, loc) in enumerate(places)]

    decisions = decide(tickets, [], [surge(group_by=("category", "location"), threshold=3)], NOW)

    assert [d.group for d in decisions.declarations] == ([expected_group] if expected_group else [])


def test_tickets_without_the_group_key_are_not_grouped() -> None:
    tickets = [ticket(f"t{i}", i, caller=f"c{i}") for i in range(6)]

    assert decide(tickets, [], [surge(threshold=3)], NOW).declarations == []


def test_groups_are_counted_separately() -> None:
    tickets = [*on_service("web-shop", [0, 2], prefix="w"), *on_service("email", [1, 3], prefix="e")]

    assert decide(tickets, [], [surge(threshold=3)], NOW).declarations == []


def test_integer_group_value_is_a_group_key() -> None:
    tickets = [ticket(f"t{i}", i, priority=2) for i in range(3)]

    (decl,) = decide(tickets, [], [surge(group_by=("priority",), threshold=3)], NOW).declarations

    assert decl.group == ("2",)


# -- when conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "fields", "matches"), [
    pytest.param({"state": {"in": ["new", "in_progress"]}}, {"state": "in_progress"}, True, id="state-in"),
    pytest.param({"state": {"in": ["new", "in_progress"]}}, {"state": "resolved"}, False, id="state-not-in"),
    pytest.param({"priority": {"lte": 2}}, {"priority": 2}, True, id="lte-equal"),
    pytest.param({"priority": {"lte": 2}}, {"priority": 3}, False, id="lte-above"),
    pytest.param({"priority": {"lte": 2}}, {}, False, id="lte-missing-value"),
    pytest.param({"priority": {"gt": 1, "lt": 4}}, {"priority": 3}, True, id="range"),
    pytest.param({"priority": 1}, {"priority": 1}, True, id="shorthand-equality"),
    pytest.param({"service": ["a", "b"]}, {"service": "b"}, True, id="shorthand-list"),
    pytest.param({"service": {"ne": "a"}}, {}, True, id="ne-missing-value"),
    pytest.param({"service": {"not_in": ["a"]}}, {"service": "a"}, False, id="not-in"),
    pytest.param({"service": {"exists": True}}, {}, False, id="exists-true-missing"),
    pytest.param({"service": {"exists": False}}, {}, True, id="exists-false-missing"),
    pytest.param({"title": {"contains": "DOWN"}}, {"title": "Site is down again"}, True, id="contains-ignores-case"),
    pytest.param({"title": {"matches": r"^VPN\b"}}, {"title": "VPN drops"}, True, id="matches"),
    pytest.param({"title": {"matches": r"^VPN\b"}}, {}, False, id="matches-missing-value"),
    pytest.param({"priority": 1, "service": "pay"}, {"priority": 1, "service": "web"}, False, id="all-conditions-anded"),
])
def test_when_conditions(when: dict[str, Any], fields: dict[str, Any], matches: bool) -> None:
    fields.setdefault("state", "new")
    decisions = decide([Ticket(id="t", opened_at=T0, **fields)], [], [single("r", when)], NOW)

    assert bool(decisions.declarations) is matches


# -- rule order and consumption ------------------------------------------------------------------


def test_rules_without_order_keep_file_order_after_ordered_ones() -> None:
    a = single("a", {"priority": 1})
    b = single("b", {"priority": 1}, order=5)
    c = single("c", {"priority": 1})
    d = single("d", {"priority": 1}, order=2000)
    off = single("off", {"priority": 1}, order=1, enabled=False)

    assert [r.id for r in ordered([a, b, c, d, off])] == ["b", "a", "c", "d"]


@pytest.mark.parametrize(("orders", "winner"), [
    pytest.param((None, None), "first", id="file-order"),
    pytest.param((20, 10), "second", id="lower-order-first"),
    pytest.param((10, 10), "first", id="equal-order-keeps-file-order"),
    pytest.param((None, 999), "second", id="any-order-before-none"),
])
def test_first_rule_in_evaluation_order_declares(tmp_path: Path, orders: tuple[int | None, int | None], winner: str) -> None:
    lines = ["version: 1", "rules:"]
    for name, order in zip(("first", "second"), orders):
        lines += [f"  - id: {name}", "    when: {priority: 1}", "    declare: {parent: self}"]
        if order is not None:
            lines.append(f"    order: {order}")
    (tmp_path / "rules.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ruleset = load_rules([tmp_path])
    assert ruleset.errors == []

    decisions = decide([ticket("p1", 0, priority=1)], [], ruleset.rules, NOW)

    assert summary(decisions) == [("p1", winner, [])]


def test_rule_order_across_files_follows_file_names(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yaml"):
        (tmp_path / name).write_text(f"version: 1\nrules:\n  - id: from-{name[0]}\n    when: {{priority: 1}}\n"
                                     "    declare: {parent: self}\n", encoding="utf-8")

    rules = load_rules([tmp_path]).rules

    assert [r.id for r in rules] == ["from-a", "from-b"]


def test_ticket_consumed_by_one_rule_is_not_counted_by_a_later_rule() -> None:
    by_service = surge("by-service", group_by=("service",), threshold=3)
    by_ci = surge("by-ci", group_by=("ci",), threshold=4)
    first = [ticket(f"s{i}", i, service="web-shop", ci="lb-1") for i in range(3)]
    later = [ticket(f"c{i}", 5 + i, service=f"other-{i}", ci="lb-1") for i in range(3)]

    decisions = decide(first + later, [], [by_service, by_ci], NOW)

    # s0 and s1 sat in the by-ci window too; had they stayed, c0 would have made it four
    assert summary(decisions) == [("s0", "by-service", ["s1", "s2"])]


def test_single_ticket_rule_takes_a_ticket_out_of_earlier_surge_windows() -> None:
    rules = [surge("by-service", threshold=3), single("p1", {"priority": 1})]
    tickets = [ticket("a", 0, service="web-shop"), ticket("b", 1, service="web-shop", priority=1),
               ticket("c", 2, service="web-shop")]

    decisions = decide(tickets, [], rules, NOW)

    assert summary(decisions) == [("b", "p1", [])]


def test_surge_member_of_an_earlier_rule_window_is_taken_by_the_rule_that_fires() -> None:
    rules = [surge("by-service", threshold=4), surge("by-ci", group_by=("ci",), threshold=3)]
    tickets = [ticket(f"t{i}", i, service="web-shop", ci="lb-1") for i in range(4)]

    decisions = decide(tickets, [], rules, NOW)

    # by-ci fires on the third ticket; the fourth alone does not make a by-service surge
    assert summary(decisions) == [("t0", "by-ci", ["t1", "t2"])]


# -- parent selection ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected_parent"), [
    pytest.param("earliest", "a", id="earliest"),
    pytest.param("highest_priority", "c", id="highest-priority"),
])
def test_parent_selection(mode: str, expected_parent: str) -> None:
    tickets = [ticket("a", 0, service="s", priority=3), ticket("b", 1, service="s", priority=2),
               ticket("c", 2, service="s", priority=1), ticket("d", 3, service="s", priority=1)]

    (decl,) = decide(tickets, [], [surge(threshold=4, parent=mode)], NOW).declarations

    assert decl.mi_id == expected_parent
    assert sorted(t.id for t in decl.children) == sorted({"a", "b", "c", "d"} - {expected_parent})


def test_earliest_parent_ties_broken_by_id() -> None:
    tickets = [ticket("z", 0, service="s"), ticket("m", 0, service="s"), ticket("q", 1, service="s")]

    (decl,) = decide(tickets, [], [surge(threshold=3)], NOW).declarations

    assert decl.mi_id == "m"


def test_highest_priority_parent_ignores_tickets_without_priority() -> None:
    tickets = [ticket("a", 0, service="s"), ticket("b", 1, service="s", priority=4), ticket("c", 2, service="s")]

    (decl,) = decide(tickets, [], [surge(threshold=3, parent="highest_priority")], NOW).declarations

    assert decl.mi_id == "b"


def test_new_parent_has_a_deterministic_synthetic_id() -> None:
    tickets = on_service("web-shop", [0, 1, 2], prefix="a")
    rule = surge("svc-new", threshold=3, parent="new")

    (decl,) = decide(tickets, [], [rule], NOW).declarations
    (again,) = decide(list(reversed(tickets)), [], [rule], NOW).declarations

    assert decl.new_parent and decl.parent is None
    # pinned: markers left on the platform carry this id, so it must not change between versions
    assert decl.mi_id == again.mi_id == "new-84c111497c21ded7"
    assert sorted(t.id for t in decl.children) == ["a1", "a2", "a3"]


def test_new_parent_id_differs_per_rule_group_and_first_ticket() -> None:
    base = new_parent_id("r", ("web-shop",), "t1")

    assert len({base, new_parent_id("r2", ("web-shop",), "t1"), new_parent_id("r", ("email",), "t1"),
                new_parent_id("r", ("web-shop",), "t2")}) == 4
    assert new_parent_id("r", ("a", "bc"), "t") != new_parent_id("r", ("ab", "c"), "t")


def test_self_parent_declares_the_ticket_alone() -> None:
    decisions = decide([ticket("p", 0, priority=1, service="pay")], [], [single("p1", {"priority": 1})], NOW)

    (decl,) = decisions.declarations
    assert (decl.mi_id, decl.children, decl.parent_mode) == ("p", [], "self")


# -- late children -------------------------------------------------------------------------------


@pytest.mark.parametrize(("late_minute", "fields", "joins"), [
    pytest.param(30, {}, True, id="half-hour-after"),
    pytest.param(2 + 60, {}, True, id="exactly-at-late-children-end"),
    pytest.param(2 + 60 + 1 / 60, {}, False, id="one-second-after-late-children-end"),
    pytest.param(30, {"service": "email"}, False, id="other-service"),
    pytest.param(30, {"state": "resolved"}, False, id="resolved-ticket"),
    pytest.param(30, {"parent": "x"}, False, id="already-linked-elsewhere"),
])
def test_late_ticket_joins_open_major_incident_within_late_children(late_minute: float, fields: dict[str, Any],
                                                                     joins: bool) -> None:
    fields = {"service": "web-shop", "caller": "late-caller", **fields}
    tickets = [*on_service("web-shop", [0, 1, 2]), ticket("late", late_minute, **fields)]

    decisions = decide(tickets, [], [surge(threshold=3, late="1h")], NOW)

    assert summary(decisions) == [("t1", "surge", ["t2", "t3"])]
    assert links(decisions) == ([("late", "t1")] if joins else [])


def test_late_tickets_join_instead_of_starting_a_second_major_incident() -> None:
    tickets = on_service("web-shop", [0, 1, 2, 10, 11, 12])

    decisions = decide(tickets, [], [surge(threshold=3, late="1h")], NOW)

    assert summary(decisions) == [("t1", "surge", ["t2", "t3"])]
    assert links(decisions) == [("t4", "t1"), ("t5", "t1"), ("t6", "t1")]


def test_after_late_children_a_new_surge_is_a_new_major_incident() -> None:
    tickets = [*on_service("web-shop", [0, 1, 2], prefix="a"), *on_service("web-shop", [70, 71, 72], prefix="b")]

    decisions = decide(tickets, [], [surge(threshold=3, late="1h")], NOW)

    assert summary(decisions) == [("a1", "surge", ["a2", "a3"]), ("b1", "surge", ["b2", "b3"])]
    assert links(decisions) == []


def test_known_open_major_incident_collects_late_children() -> None:
    known = MajorIncident("mi", "surge", ("web-shop",), started_at=at(0), declared_at=at(5))
    tickets = [ticket("in", 60, service="web-shop"), ticket("out", 66, service="web-shop")]

    decisions = decide(tickets, [known], [surge(threshold=3, late="1h")], NOW)

    assert links(decisions) == [("in", "mi")]


def test_single_ticket_rule_with_join_by_collects_late_children() -> None:
    rule = single("p1", {"priority": 1}, join_by=["service"], late_children="4h")
    tickets = [ticket("p", 0, priority=1, service="pay"), ticket("same", 30, priority=3, service="pay"),
               ticket("other", 31, priority=3, service="web"), ticket("after", 4 * 60 + 1, priority=3, service="pay")]

    decisions = decide(tickets, [], [rule], NOW)

    assert summary(decisions) == [("p", "p1", [])]
    assert links(decisions) == [("same", "p")]


def test_rule_without_group_collects_no_late_children() -> None:
    rule = single("p1", {"priority": 1}, late_children="4h")

    decisions = decide([ticket("p", 0, priority=1), ticket("next", 5, priority=3)], [], [rule], NOW)

    assert links(decisions) == []


# -- rejected groups, tickets already in the lifecycle, now ---------------------------------------


@pytest.mark.parametrize(("minutes", "declared"), [
    pytest.param([6, 7, 8], False, id="within-window-of-rejection"),
    pytest.param([17, 18, 19], False, id="last-ticket-just-before-window-end"),
    pytest.param([20, 21, 22], True, id="from-window-end"),
])
def test_rejected_group_is_not_proposed_again_within_its_window(minutes: list[float], declared: bool) -> None:
    rejected = MajorIncident("rej", "surge", ("web-shop",), started_at=at(0), declared_at=at(5), status="rejected")

    decisions = decide(on_service("web-shop", minutes), [rejected], [surge(threshold=3, window="15m")], NOW)

    assert bool(decisions.declarations) is declared


def test_rejection_of_one_group_does_not_suppress_another() -> None:
    rejected = MajorIncident("rej", "surge", ("email",), started_at=at(0), declared_at=at(5), status="rejected")

    decisions = decide(on_service("web-shop", [6, 7, 8]), [rejected], [surge(threshold=3)], NOW)

    assert summary(decisions) == [("t1", "surge", ["t2", "t3"])]


@pytest.mark.parametrize("fields", [
    pytest.param({"parent": "mi-1"}, id="linked"),
    pytest.param({"major": "proposed"}, id="proposed"),
    pytest.param({"major": "accepted"}, id="accepted"),
    pytest.param({"major": "rejected"}, id="rejected"),
    pytest.param({"major": "canceled"}, id="canceled"),
])
def test_tickets_already_linked_or_major_are_left_alone(fields: dict[str, Any]) -> None:
    tickets = [ticket("p", 0, priority=1, **fields), *on_service("web-shop", [1, 2, 3], **fields)]

    decisions = decide(tickets, [], [surge(threshold=3, late="1h"), single("p1", {"priority": 1})], NOW)

    assert (decisions.declarations, decisions.late_links) == ([], [])


def test_tickets_opened_after_now_wait_for_a_later_cycle() -> None:
    tickets = on_service("web-shop", [0, 1, 2])

    assert decide(tickets, [], [surge(threshold=3)], at(1.5)).declarations == []
    assert summary(decide(tickets, [], [surge(threshold=3)], at(2))) == [("t1", "surge", ["t2", "t3"])]


def test_latest_copy_of_a_ticket_wins() -> None:
    old = ticket("t3", 2, service="web-shop", caller="c3", updated_at=at(2))
    new = ticket("t3", 2, service="web-shop", caller="c3", updated_at=at(3), state="resolved")

    decisions = decide([*on_service("web-shop", [0, 1]), new, old], [], [surge(threshold=3, when={"state": "new"})], NOW)

    assert decisions.declarations == []


def test_same_input_in_any_order_gives_the_same_decisions() -> None:
    tickets = [*on_service("web-shop", [0, 1, 1, 2, 30, 31], prefix="w"), *on_service("email", [3, 3, 4], prefix="e"),
               ticket("p", 5, priority=1, service="pay"), ticket("x", 6, service="pay"),
               *[ticket(f"n{i}", i * 7, service=f"noise-{i}") for i in range(10)]]
    rules = [surge("svc", threshold=3, late="1h"), surge("new", group_by=("service",), threshold=2, parent="new"),
             single("p1", {"priority": 1}, join_by=["service"], late_children="1h")]
    expected = decide(tickets, [], rules, NOW)
    assert expected.declarations, "the fixture must declare something"

    for seed in range(5):
        shuffled = tickets[:]
        random.Random(seed).shuffle(shuffled)
        again = decide(shuffled, [], rules, NOW)
        assert (summary(again), links(again)) == (summary(expected), links(expected))


# -- custom thresholds ---------------------------------------------------------------------------


def test_custom_threshold_function_replaces_the_fixed_threshold() -> None:
    calls: list[tuple[str, tuple[str, ...], datetime]] = []

    def baseline(rule: Rule, group: tuple[str, ...], when: datetime) -> int:
        calls.append((rule.id, group, when))
        return 2 if group == ("payments",) else 10

    tickets = [*on_service("payments", [0, 1], prefix="p"), *on_service("web-shop", [2, 3, 4, 5], prefix="w")]
    # an open incident elsewhere: the detector looks for late children before it counts
    elsewhere = MajorIncident("mi", "surge", ("email",), started_at=at(0), declared_at=at(0))

    decisions = decide(tickets, [elsewhere], [surge(threshold=3, late="1h")], NOW, threshold=baseline)

    assert summary(decisions) == [("p1", "surge", ["p2"])]
    assert calls[0] == ("surge", ("payments",), at(0))
    assert calls[-1] == ("surge", ("web-shop",), at(5))


# -- rebuilding major incidents from platform markers ---------------------------------------------


def test_major_incidents_are_rebuilt_from_markers() -> None:
    rules = [surge("service-surge", threshold=3, late="1h")]
    tickets = [
        ticket("mi-open", 0, service="web-shop", major="proposed", marker="mim:service-surge", state="in_progress",
               updated_at=at(4)),
        ticket("c1", 1, service="web-shop", parent="mi-open"),
        ticket("c2", 2, service="web-shop", parent="mi-open"),
        ticket("mi-rejected", 3, service="payments", major="rejected", marker="mim:service-surge"),
        ticket("mi-closed", 4, service="email", major="accepted", marker="mim:service-surge", state="closed"),
        ticket("mi-new", 5, service="vpn", major="accepted", marker="mim:service-surge:new-0123456789abcdef"),
        ticket("foreign", 6, service="web-shop", major="proposed", marker="someone-else"),
        ticket("unknown-rule", 7, service="web-shop", major="proposed", marker="mim:retired-rule"),
        ticket("not-major", 8, service="web-shop", marker="mim:service-surge"),
    ]

    found = {mi.id: mi for mi in major_incidents_from_tickets(tickets, rules)}

    assert {k: (mi.status, mi.rule, mi.group) for k, mi in found.items()} == {
        "mi-open": ("open", "service-surge", ("web-shop",)),
        "mi-rejected": ("rejected", "service-surge", ("payments",)),
        "mi-closed": ("closed", "service-surge", ("email",)),
        "mi-new": ("open", "service-surge", ("vpn",)),
    }
    assert found["mi-open"].children == {"c1", "c2"}
    assert (found["mi-open"].started_at, found["mi-open"].declared_at) == (at(0), at(4))


def test_rebuilt_major_incidents_collect_late_children_and_suppress_rejected_groups() -> None:
    rules = [surge("service-surge", threshold=3, late="1h")]
    platform = [
        ticket("mi-open", 0, service="web-shop", major="proposed", marker="mim:service-surge"),
        ticket("mi-rejected", 0, service="payments", major="rejected", marker="mim:service-surge"),
    ]
    known = major_incidents_from_tickets(platform, rules)
    arriving = [ticket("late", 20, service="web-shop"), *on_service("payments", [5, 6, 7], prefix="p")]

    decisions = decide(platform + arriving, known, rules, NOW)

    assert links(decisions) == [("late", "mi-open")]
    assert decisions.declarations == []


@pytest.mark.parametrize(("marker", "parsed"), [
    pytest.param("mim:service-surge", ("service-surge", None), id="rule-only"),
    pytest.param("mim:svc:new-0123456789abcdef", ("svc", "new-0123456789abcdef"), id="with-new-id"),
    pytest.param("mim:", None, id="no-rule"),
    pytest.param("other:svc", None, id="foreign"),
    pytest.param(None, None, id="none"),
])
def test_parse_marker(marker: str | None, parsed: tuple[str, str | None] | None) -> None:
    assert parse_marker(marker) == parsed


@pytest.mark.parametrize("mi_id", ["INC0012345", "new-0123456789abcdef"])
def test_marker_round_trips(mi_id: str) -> None:
    rule, synthetic = parse_marker(marker_for("service-surge", mi_id)) or ("", None)

    assert rule == "service-surge"
    assert synthetic == (mi_id if mi_id.startswith("new-") else None)


# -- the streaming detector ----------------------------------------------------------------------


def test_detector_feed_returns_events_as_they_happen() -> None:
    detector = Detector([surge(threshold=3, late="1h")])
    tickets = on_service("web-shop", [0, 1, 2, 3])

    events = [detector.feed(t) for t in tickets]

    assert [len(e) for e in events] == [0, 0, 1, 1]
    assert isinstance(events[2][0], Declaration) and events[2][0].mi_id == "t1"
    assert isinstance(events[3][0], LateLink) and (events[3][0].mi_id, events[3][0].at) == ("t1", at(3))


def _peak_memory_of_detector(count: int) -> int:
    """Peak bytes allocated while feeding ``count`` tickets, each on a service never seen again."""
    rule = surge(threshold=3, late="1h")
    tracemalloc.start()
    try:
        detector = Detector([rule])
        for i in range(count):
            detector.feed(Ticket.trusted(id=f"t{i}", opened_at=T0 + timedelta(seconds=30 * i), service=f"svc-{i}"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_detector_memory_does_not_grow_with_the_length_of_the_stream() -> None:
    short, long = _peak_memory_of_detector(5_000), _peak_memory_of_detector(20_000)

    # stale windows are swept, so four times the stream must not cost (nearly) four times the memory
    assert long < short * 1.5, (short, long)


@pytest.mark.parametrize(("rules", "horizon"), [
    pytest.param([], timedelta(0), id="no-rules"),
    pytest.param([surge(window="15m")], timedelta(minutes=15), id="window-only"),
    pytest.param([surge(window="15m", late="4h"), surge("b", window="1h", late="1h")], timedelta(hours=4, minutes=15),
                 id="longest-window-plus-late"),
    pytest.param([single("p1", {"priority": 1}, join_by=["service"], late_children="2h")], timedelta(hours=2),
                 id="single-ticket-late"),
])
def test_window_horizon_covers_every_window_and_late_period(rules: list[Rule], horizon: timedelta) -> None:
    assert window_horizon(rules) == horizon
