"""The encoded-query subset of ``sysparm_query``: conditions, ``^OR``, ``^NQ``, ``ORDERBY``, and the value
ordering an instance sorts by (numbers as numbers, empty first)."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from connector.sim.servicenow.schema import INTEGER, NUMBER_PREFIXES

_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "ANYTHING", "EMPTYSTRING", "NOT IN", "NOT LIKE", "NOTIN", "NOTLIKE",
              "INSTANCEOF", "IN", "LIKE", "STARTSWITH", "ENDSWITH", "BETWEEN", "!=", ">=", "<=", "=", ">", "<")
_CONDITION = re.compile(r"(?P<field>[a-z0-9_.]+)(?P<op>" + "|".join(re.escape(op) for op in _OPERATORS)
                        + r")(?P<value>.*)", re.S)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                     "<=": operator.le}
_DATE_GENERATE = re.compile(r"javascript:\s*gs\.dateGenerate\(\s*'([^']*)'\s*,\s*'([^']*)'\s*\)")


@dataclass(frozen=True)
class Condition:
    """One ``<field><op><value>`` term of an encoded query."""

    field: str
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        """Whether a stored value satisfies the condition.

        Negative operators (``!=``, ``NOT IN``, ``NOT LIKE``) and comparisons never match an empty value,
        like SQL NULL on an instance (the "NULL trap").
        """
        op, value = self.op, self.value
        if op == "=":
            return actual == value
        if op in ("ISEMPTY", "EMPTYSTRING"):
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op == "ANYTHING":
            return True
        if op == "INSTANCEOF":
            # No class hierarchy here beyond "every numbered table extends task".
            return actual == value or (value == "task" and actual in NUMBER_PREFIXES)
        if op == "IN":
            return actual in value.split(",")
        if op == "LIKE":
            return value.lower() in actual.lower()
        if op == "STARTSWITH":
            return actual.lower().startswith(value.lower())
        if op == "ENDSWITH":
            return actual.lower().endswith(value.lower())
        if actual == "":
            return False
        if op == "!=":
            return actual != value
        if op in ("NOT IN", "NOTIN"):
            return actual not in value.split(",")
        if op in ("NOT LIKE", "NOTLIKE"):
            return value.lower() not in actual.lower()
        if op == "BETWEEN":
            low, _, high = value.partition("@")
            return _compare(actual, ">=", low) and _compare(actual, "<=", high)
        return _compare(actual, op, value)


def _compare(actual: str, op: str, value: str) -> bool:
    compare = _COMPARISONS.get(op)
    if compare is None:
        return False
    if INTEGER.fullmatch(actual) and INTEGER.fullmatch(value):
        return compare(int(actual), int(value))
    return compare(actual, value)


@dataclass
class EncodedQuery:
    """A parsed ``sysparm_query``: ``groups`` are OR'ed (``^NQ``); a group is a list of clauses that are
    AND'ed (``^``); a clause is a list of conditions that are OR'ed (``^OR``). ``order`` holds
    ``(field, descending)`` in the order given."""

    groups: list[list[list[Condition]]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)


def parse_encoded_query(text: str) -> EncodedQuery:
    """Parse the encoded-query subset the simulator supports.

    ``^`` AND, ``^OR`` OR with the previous condition, ``^NQ`` a new OR'ed group, ``ORDERBY<f>`` /
    ``ORDERBYDESC<f>``; operators ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``IN``, ``NOT IN``, ``LIKE``,
    ``NOT LIKE``, ``STARTSWITH``, ``ENDSWITH``, ``ISEMPTY``, ``ISNOTEMPTY``, ``ANYTHING``, ``EMPTYSTRING``,
    ``BETWEEN a@b``, ``INSTANCEOF``; ``javascript:gs.dateGenerate('d','t')`` values (the simulated user's zone is UTC).
    Terms it cannot parse are ignored, like unknown fields on an instance. ServiceNow has no escape for
    ``^`` inside values, so neither does this parser.
    """
    query = EncodedQuery()
    seen_order: set[str] = set()
    for group_text in text.split("^NQ"):
        clauses: list[list[Condition]] = []
        for token in group_text.split("^"):
            if token in ("", "EQ"):
                continue
            if token.startswith("ORDERBY"):
                descending = token.startswith("ORDERBYDESC")
                name = token[len("ORDERBYDESC"):] if descending else token[len("ORDERBY"):]
                if name and name not in seen_order:
                    seen_order.add(name)
                    query.order.append((name, descending))
                continue
            is_or = token.startswith("OR")
            condition = _parse_condition(token[2:] if is_or else token)
            if condition is None:
                continue
            if is_or and clauses:
                clauses[-1].append(condition)
            else:
                clauses.append([condition])
        query.groups.append(clauses)
    return query


def _parse_condition(token: str) -> Condition | None:
    match = _CONDITION.fullmatch(token)
    if match is None:
        return None
    value = _DATE_GENERATE.sub(lambda m: f"{m.group(1)} {_day_time(m.group(2))}", match["value"])
    return Condition(match["field"], match["op"], value)


def _day_time(text: str) -> str:
    return {"start": "00:00:00", "end": "23:59:59"}.get(text, text)


def sort_key(values: list[str]) -> Callable[[str], tuple[int, int | str]]:
    """The sort key of a column with these ``values``: numbers as numbers when all are, empty values first."""
    numeric = all(INTEGER.fullmatch(v) for v in values if v)

    def key(value: str) -> tuple[int, int | str]:
        if value == "":
            return (0, 0 if numeric else "")
        return (1, int(value) if numeric else value)

    return key
