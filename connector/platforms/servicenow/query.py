"""Encoded-query syntax: values, column names and times as a ServiceNow encoded query takes them.

ServiceNow has no escape character in encoded queries, so a value that could change the query is refused
rather than escaped (:class:`QueryValueError`).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any

QUERY_TIME = "%Y-%m-%d %H:%M:%S"
"""How a time is written in an encoded query: UTC, second resolution (plain dates in a query are UTC)."""

COLUMN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
"""A column name, or a dot-walked path of them."""
PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What may stand in a record URL (``/table/<table>/<sys_id>``)."""
SYS_ID = re.compile(r"[0-9a-f]{32}")


class QueryValueError(ValueError):
    """A value that cannot be put into an encoded query safely (ServiceNow has no escape for ``^``)."""


def query_value(value: object, *, in_list: bool = False) -> str:
    """``value`` as text for an encoded query, or :class:`QueryValueError` if it could change the query.

    ServiceNow has no escape character: a ``^`` inside a value would start a new condition (``^OR``, ``^NQ``
    turn a filter into "or everything"), and a line break ends the parameter on some instances. Inside an
    ``IN`` list a comma would split the value.
    """
    text = value.value if isinstance(value, Enum) else value
    text = str(text)
    if "^" in text or "\n" in text or "\r" in text:
        raise QueryValueError(f"value {shorten(text)!r} contains '^' or a line break, which ServiceNow encoded "
                              f"queries cannot escape; refusing to build the query")
    if text.lstrip().lower().startswith("javascript:"):
        # some instances evaluate a javascript: value inside a query on the server
        raise QueryValueError(f"value {shorten(text)!r} starts with 'javascript:'; refusing to build the query")
    if in_list and "," in text:
        raise QueryValueError(f"value {shorten(text)!r} contains ',' and cannot be part of an IN list")
    return text


def query_in(values: Any) -> str:
    """Values as the comma-separated list of an ``IN`` condition (each checked by :func:`query_value`)."""
    return ",".join(query_value(v, in_list=True) for v in values)


def query_field(name: str) -> str:
    """A column name checked for use in an encoded query or a field list."""
    if not COLUMN.fullmatch(name):
        raise QueryValueError(f"{name!r} is not a valid ServiceNow column name")
    return name


def query_time(moment: datetime) -> str:
    """An aware datetime as an encoded-query time (UTC, ``YYYY-MM-DD HH:MM:SS``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(QUERY_TIME)


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[:limit] + "..."


def stored_text(value: Any) -> str:
    """A canonical value as the string ServiceNow stores."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return query_time(value)
    return str(value)


__all__ = ["COLUMN", "PATH_ID", "QUERY_TIME", "SYS_ID", "QueryValueError", "query_field", "query_in", "query_time",
           "query_value", "shorten", "stored_text"]
