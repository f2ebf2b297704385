"""A ``matches:`` pattern that can take exponential time is refused at its line and column with the fix (Python's
re has no timeout: one hostile title would hold every sync), and the usual patterns, their possessive and atomic
forms included, load as before."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from connector.detection.regexes import exponential_problem
from tests.test_hostile_files import check, rule_file

HOSTILE_TITLE = "a" * 28 + "!"


@pytest.mark.parametrize("pattern", [
    r"(\w+\s?)+$", r"(a+)+b", r"(a*)*b", r"^(\d+)*x", r"(?:x|(y+))+z", r"((ab)+c?)+d", r"(.*,){2,}end",
    r"(?=(a+)+b)", r"(\w+?)+$",
])
def test_a_repeat_inside_a_repeat_is_refused(pattern: str) -> None:
    assert exponential_problem(pattern) is not None


@pytest.mark.parametrize("pattern", [
    r"(?i)outage|down", r"^INC\d+$", r"(foo|bar)+", r"(\w++\s?)+$", r"(?>\w+\s?)+$", r"\d{3}-\d{4}", r"(ab)+",
    r"(a+)?b", r"(?:checkout|payment)s? (?:fails|broken)", r"(a{1})+",
])
def test_usual_and_possessive_patterns_load(pattern: str) -> None:
    assert exponential_problem(pattern) is None


def test_the_possessive_form_of_a_refused_pattern_answers_at_once() -> None:
    started = time.perf_counter()
    assert re.search(r"^(\w++\s?)+$", "checkout fails again") is not None  # the texts the refused form matches
    assert re.search(r"^(\w++\s?)+$", HOSTILE_TITLE) is None  # "!" is not a word character
    assert time.perf_counter() - started < 0.5  # the refused form takes minutes on this title


def test_rules_check_reports_the_pattern_at_its_line_and_column_with_the_fix(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    when:\n      title: {matches: '^(\\w+\\s?)+$'}\n      service: {matches: '(a*)*'}\n"
                               "    declare: {parent: self}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert [(line, col) for line, col, _ in errors] == [(5, 24), (6, 26)]
    assert all("exponential time" in message and "possessive" in message and "(?>...)" in message
               for _, _, message in errors)
