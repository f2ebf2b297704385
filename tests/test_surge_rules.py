"""The rule syntax of issue 10 -- ``surge.baseline`` and ``late_children`` as ``{for | while: surge, tail, max,
probability, same}`` -- validated with located errors, and the engine's late children that belong: joining
while the surge lasts plus a tail (not a fixed period), capped, sharing ``same`` fields, and an existing rule
file's ``late_children: 4h`` unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.core.ticket import Ticket
from connector.detection.engine import Declaration, Detector, LateLink, MajorIncident, decide
from connector.detection.rules import Rule
from tests.test_rule_files import RULE_HEAD, rules_check

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SURGE = "    surge: {group_by: [ci], window: 15m, threshold: 3"


@pytest.mark.parametrize(("body", "line", "at", "fragment"), [
    pytest.param(SURGE + ", baseline: {probability: 2}}\n", 4, "2}}", "less than 1", id="probability-above-one"),
    pytest.param(SURGE + ", baseline: {probability: 0}}\n", 4, "0}}", "greater than 0", id="probability-zero"),
    pytest.param(SURGE + ", baseline: {floor: 0}}\n", 4, "0}}", "greater than or equal to 1", id="floor-zero"),
    pytest.param(SURGE + ", baseline: {history: 30m}}\n", 4, "30m", "history must be at least 1h", id="history-short"),
    pytest.param(SURGE + ", baseline: {history: 4}}\n", 4, "4}}", "needs a unit", id="history-without-unit"),
    pytest.param(SURGE + ", baseline: {model: gamma}}\n", 4, "gamma", "'poisson' or 'negative_binomial'",
                 id="unknown-model"),
    pytest.param(SURGE + ", baseline: {time_zone: Mars/Olympus}}\n", 4, "Mars", "unknown time zone", id="bad-zone"),
    pytest.param(SURGE + ", baseline: {sensitivity: 3}}\n", 4, "sensitivity", "unknown key 'sensitivity'",
                 id="unknown-key"),
    pytest.param(SURGE + "}\n    late_children: {while: surge, same: [colour]}\n", 5, "colour",
                 "unknown canonical field 'colour' in same", id="unknown-same-field"),
    pytest.param(SURGE + "}\n    late_children: {while: surge, for: 4h}\n", 5, "{while",
                 "either 'for' (a duration) or 'while: surge'", id="both-for-and-while"),
    pytest.param(SURGE + "}\n    late_children: {for: 4h, tail: 10m}\n", 5, "{for",
                 "tail only apply to 'while: surge'", id="tail-with-for"),
    pytest.param(SURGE + "}\n    late_children: {while: storm}\n", 5, "storm", "Input should be 'surge'",
                 id="while-something-else"),
    pytest.param("    when: {priority: 1}\n    declare: {parent: self}\n    join_by: [service]\n"
                 "    late_children: {while: surge}\n", 3, "id: r", "'while: surge' needs a surge",
                 id="while-without-surge"),
    pytest.param(SURGE + "}\n    late_children: 4\n", 5, "4", "needs a unit", id="short-form-without-unit"),
    pytest.param(SURGE + "}\n    late_children: {while: surge, tail: 2h, max: 30m}\n", 5, "{while",
                 "max (30m) is shorter than tail (2h)", id="max-shorter-than-tail"),
    pytest.param(SURGE + "}\n    late_children: {while: surge, max: 0s}\n", 5, "{while",
                 "max must be longer than 0s", id="max-zero"),
    pytest.param(SURGE + ", baseline: {floor: 100000000000000000000}}\n", 4, "1000", "less than or equal to 100000",
                 id="floor-beyond-any-count"),
])
def test_a_mistake_in_the_new_rule_syntax_is_located(tmp_path: Path, body: str, line: int, at: str,
                                                     fragment: str) -> None:
    path = tmp_path / "rules" / "r.yaml"
    path.parent.mkdir()
    text = RULE_HEAD + body
    path.write_text(text, encoding="utf-8")
    col = text.splitlines()[line - 1].index(at) + 1

    code, errors, stdout = rules_check(path)

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), line, col), errors
    assert fragment in errors[0][3], errors


def test_the_shipped_rules_and_their_tests_check_clean() -> None:
    root = Path(__file__).resolve().parent.parent
    code, errors, stdout = rules_check(root / "rules")
    assert code == 0 and errors == [], stdout


# -- late children that belong --------------------------------------------------------------------------------


def surging(**late: Any) -> Rule:
    return Rule.model_validate({"id": "ci-surge", "surge": {"group_by": ["ci"], "window": "10m", "threshold": 3},
                                "late_children": {"while": "surge", **late}})


def tickets(minutes: list[float], prefix: str = "t", **fields: Any) -> list[Ticket]:
    return [Ticket(id=f"{prefix}{n:02d}", ci="db1", opened_at=T0 + timedelta(minutes=m), **fields)
            for n, m in enumerate(minutes)]


def linked(events: list[Any]) -> list[str]:
    return [e.ticket.id for e in events if isinstance(e, LateLink)]


@pytest.mark.parametrize(("minutes", "joined"), [
    pytest.param([0, 1, 2, 5, 9, 14, 20, 26], ["t03", "t04", "t05", "t06", "t07"], id="joins-while-tickets-keep-coming"),
    pytest.param([0, 1, 2, 16], [], id="a-ticket-after-the-tail-does-not-join"),
    pytest.param([0, 1, 2, 12], ["t03"], id="within-the-tail-it-joins"),
    pytest.param([0, 1, 2, 12, 21], ["t03", "t04"], id="each-joiner-extends-the-tail"),
    pytest.param([0, 1, 2, 12, 23], ["t03"], id="a-lone-joiner-is-no-surge-and-extends-nothing"),
])
def test_late_tickets_join_while_the_surge_lasts_plus_a_tail(minutes: list[float], joined: list[str]) -> None:
    detector = Detector([surging(tail="10m")])
    events = [e for t in tickets(minutes) for e in detector.feed(t)]
    assert linked(events) == joined


def test_the_surge_collects_for_max_after_declaration_at_most() -> None:
    detector = Detector([surging(tail="10m", max="30m")])
    events = [e for t in tickets([0, 1, 2, *range(4, 60, 2)]) for e in detector.feed(t)]
    first = next(e for e in events if isinstance(e, Declaration))
    times = [e.at for e in events if isinstance(e, LateLink) and e.mi_id == first.mi_id]
    assert times and max(times) <= T0 + timedelta(minutes=2 + 30) < T0 + timedelta(minutes=58)


def test_a_late_child_must_share_the_same_fields() -> None:
    detector = Detector([surging(tail="30m", same=["category"])])
    storm = tickets([0, 1, 2], category="network")
    events = [e for t in storm for e in detector.feed(t)]
    (decl,) = [e for e in events if isinstance(e, Declaration)]
    assert decl.same == {"category": "network"}
    other = detector.feed(Ticket(id="o", ci="db1", category="printing", opened_at=T0 + timedelta(minutes=4)))
    same = detector.feed(Ticket(id="s", ci="db1", category="network", opened_at=T0 + timedelta(minutes=5)))
    assert linked(other) == [] and linked(same) == ["s"]


def test_a_busy_groups_surge_ends_when_its_count_is_usual_again() -> None:
    from connector.detection.baseline import Baselines, learn_tickets

    rule = Rule.model_validate({"id": "ci-surge", "surge": {"group_by": ["ci"], "window": "10m", "threshold": 3,
                                                            "baseline": {"floor": 3, "seasonality": "none"}},
                                "late_children": {"while": "surge", "tail": "5m"}})
    baselines = Baselines([rule])
    # two weeks of one call every two minutes teach db1 its normal: 30 an hour, 5 in a window
    learn_tickets(baselines, [rule], tickets([-14 * 24 * 60 + 2 * i for i in range(14 * 24 * 30)], prefix="h"),
                  until=T0, since=T0 - timedelta(weeks=2))
    detector = Detector([rule], baselines=baselines)
    burst = tickets([0.2 * i for i in range(25)], prefix="b")  # 25 in five minutes: a surge
    events = [e for t in burst for e in detector.feed(t)]
    assert any(isinstance(e, Declaration) for e in events)
    after = tickets([6 + 2 * i for i in range(15)], prefix="a")  # back to one every two minutes
    joined = linked([e for t in after for e in detector.feed(t)])
    # the first ones join while the window still holds the burst, then its tail; the usual rate does not
    assert 0 < len(joined) <= 8 and joined == [t.id for t in after[:len(joined)]]


def test_an_existing_rule_files_late_children_duration_keeps_its_meaning() -> None:
    rule = Rule.model_validate({"id": "old", "surge": {"group_by": ["ci"], "window": "15m", "threshold": 3},
                                "late_children": "4h"})
    assert rule.late_period == timedelta(hours=4) and rule.late_children is not None and rule.late_children.fixed
    detector = Detector([rule])
    events = [e for t in tickets([0, 1, 2, 200, 239, 245]) for e in detector.feed(t)]
    assert linked(events) == ["t03", "t04"]  # joined up to declaration + 4 hours, whatever the rate


def test_a_known_incidents_until_from_the_registry_is_kept_across_cycles() -> None:
    rule = surging(tail="10m")
    known = MajorIncident("mi", "ci-surge", ("db1",), T0, T0 + timedelta(minutes=2),
                          until=T0 + timedelta(minutes=40))
    joined = decide(tickets([35, 36], prefix="late"), [known], [rule], T0 + timedelta(hours=1))
    assert [link.ticket.id for link in joined.late_links] == ["late00", "late01"]
    # one late ticket is no surge (half the threshold of 3 is two in the window); two are: 36 + 10 minutes
    assert joined.until["mi"] == T0 + timedelta(minutes=46)
    gone = decide(tickets([45], prefix="later"), [known], [rule], T0 + timedelta(hours=1))
    assert gone.late_links == [] and "mi" not in gone.until  # its period is over: it collects no more


def test_tickets_already_linked_keep_the_surge_going() -> None:
    # (a sync cycle replays its window: the tickets it linked earlier come back with their parent set)
    rule = surging(tail="10m")
    known = MajorIncident("mi", "ci-surge", ("db1",), T0, T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=12))
    stream = [Ticket(id=f"c{n}", ci="db1", parent="mi", opened_at=T0 + timedelta(minutes=m))
              for n, m in enumerate([10, 11, 17, 18, 24, 25])]
    stream.append(Ticket(id="new", ci="db1", opened_at=T0 + timedelta(minutes=33)))
    result = decide(stream, [known], [rule], T0 + timedelta(hours=1))
    assert [link.ticket.id for link in result.late_links] == ["new"]
