"""Refusing ``matches:`` patterns that can take exponential time.

Python's ``re`` has no timeout. A pattern with a repeat inside a repeat, such as ``(\\w+\\s?)+$``, tries every
way of splitting a text between the two when the match fails, and a caller's 30-character title can then hold
the whole sync cycle for minutes: every later ticket waits. ``mim rules check`` and the loader refuse such a
pattern, at its line and column, and say how to write it safely: a possessive inner repeat (``\\w++``) or an
atomic group (``(?>...)``) gives back nothing once matched, so there is nothing to try again.

The check is structural (the parsed pattern, not a run against test strings): it flags every repeat of more
than one that holds another repeat of more than one, unless the inner one is possessive or inside an atomic
group. Some flagged patterns would be harmless on real text (``(ab+)+``); their possessive form matches the
same tickets.
"""

from __future__ import annotations

import importlib
from typing import Any

_parser: Any = importlib.import_module("re._parser")  # re's own parser (sre_parse before 3.11)
_c: Any = importlib.import_module("re._constants")

_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT)


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns directly under one parsed item."""
    if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
        return [av[2]]
    if op == _c.SUBPATTERN:
        return [av[3]]
    if op == _c.BRANCH:
        return list(av[1])
    if op == _c.ATOMIC_GROUP:
        return [av]
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return [av[1]]
    if op == _c.GROUPREF_EXISTS:
        return [p for p in av[1:] if p is not None]
    return []


def _backtracking_repeat(items: Any) -> bool:
    """Whether ``items`` hold a repeat of more than one that can give back what it matched (not possessive,
    not inside an atomic group)."""
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            return True
        if op == _c.ATOMIC_GROUP or op == _c.POSSESSIVE_REPEAT:
            continue
        if any(_backtracking_repeat(child) for child in _children(op, av)):
            return True
    return False


def _nested(items: Any) -> str | None:
    for op, av in items:
        if op in _REPEATS and av[1] > 1 and _backtracking_repeat(av[2]):
            return "a repeat inside a repeat"
        for child in _children(op, av):
            found = _nested(child)
            if found is not None:
                return found
    return None


def exponential_problem(pattern: str) -> str | None:
    """Why ``pattern`` (already known to compile) can take exponential time on a failing match, with the fix;
    None when it cannot."""
    try:
        parsed = _parser.parse(pattern)
    except Exception:  # compiling reports it
        return None
    what = _nested(parsed)
    if what is None:
        return None
    return (f"{what} can take exponential time on a ticket it does not match (Python's re has no timeout, so one "
            "hostile title would hold every sync); make the inner repeat possessive (\\w++ instead of \\w+) or the "
            "group atomic ((?>...) instead of (...))")
