"""A ``matches:`` search is bounded (connector/detection/rules.py, MATCH_TIMEOUT): Python's re has no timeout, and a
pattern with nested or overlapping repeats could take minutes on one hostile title and hold every sync. The
search runs on the ``regex`` module with a timeout; a ticket whose text takes longer counts as not matching. The
patterns admins write (addresses, lists, host names, "across lines") load and match as before."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.core.ticket import Ticket
from connector.detection.engine import Detector
from connector.detection.rules import MATCH_TIMEOUT, Rule, compile_fields_when
from tests.test_hostile_files import check, rule_file

CATASTROPHIC = [r"(?:x|x)+y", r"down(.|\s)*database", r"(\w+\s?)+$", r"(a+)+b", r"(a|a)*b", r"^(a|a?)+$"]


def predicate(pattern: str):
    rule = Rule.model_validate({"id": "r", "when": {"title": {"matches": pattern}}, "declare": {"parent": "self"}})
    return compile_fields_when(rule.when)


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_pattern_on_a_hostile_title_answers_within_its_bound(pattern: str) -> None:
    holds = predicate(pattern)
    for hostile in ("x" * 40, "down" + " " * 40, "a" * 40 + "!", "aaaa " * 12 + "!"):
        started = time.perf_counter()
        holds({"title": hostile})
        assert time.perf_counter() - started < MATCH_TIMEOUT + 0.5


def test_a_search_that_times_out_counts_as_no_match_and_the_stream_goes_on() -> None:
    rule = Rule.model_validate({"id": "db", "when": {"title": {"matches": r"down(.|\s)*database"}},
                                "declare": {"parent": "self"}})
    detector = Detector([rule])
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    hostile = Ticket(id="t1", title="down" + " " * 60, opened_at=at)
    real = Ticket(id="t2", title="down since 9: the payments database", opened_at=at)
    assert detector.feed(hostile) == []
    assert [e.mi_id for e in detector.feed(real)] == ["t2"]


@pytest.mark.parametrize(("pattern", "text"), [
    (r"(?:\d{1,3}\.){3}\d{1,3}", "ping 10.2.33.4 fails"),
    (r"^(?:ERR-\d+, )+ERR-\d+$", "ERR-1, ERR-22, ERR-3"),
    (r"^(?:[a-z0-9-]+\.)+example\.com$", "db-1.eu.example.com"),
    (r"(?i)checkout|payment", "Payment page blank"),
    (r"down(.|\s)*database", "down\nthe database"),
])
def test_the_patterns_admins_write_load_and_match(tmp_path: Path, pattern: str, text: str) -> None:
    assert predicate(pattern)({"title": text})
    path = rule_file(tmp_path, f"    when: {{title: {{matches: '{pattern}'}}}}\n    declare: {{parent: self}}\n")
    code, errors, _ = check(path)
    assert (code, errors) == (0, [])
