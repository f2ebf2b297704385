"""JQL syntax: values as quoted, escaped string literals and times as epoch milliseconds, so a value can never
change a query and a time never depends on a profile's time zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def jql_string(value: object) -> str:
    """``value`` as one quoted JQL string literal: backslash, double quote and control characters are
    escaped, so a quote or `` OR `` inside a value can never change the query."""
    text = str(value)
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def jql_epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware (or UTC-naive) time. Written *unquoted* in JQL it is an
    absolute instant; a quoted local date would be read in the API user's profile time zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - EPOCH) // timedelta(milliseconds=1)


def updated_ms(issue: dict[str, Any]) -> int | None:
    """An issue's ``fields.updated`` (``2024-01-15T14:50:00.000+0000``) in epoch milliseconds, if readable."""
    text = (issue.get("fields") or {}).get("updated")
    if not isinstance(text, str):
        return None
    iso = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", iso):
        iso = iso[:-2] + ":" + iso[-2:]
    try:
        return jql_epoch_ms(datetime.fromisoformat(iso))
    except ValueError:
        return None


__all__ = ["EPOCH", "jql_epoch_ms", "jql_string", "updated_ms"]
