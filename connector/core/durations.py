"""Durations with units (``30s``, ``15m``, ``4h``, ``5d``, ``1w``, or combined ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=366)
"""The longest duration a setting may have: anything longer is a typo (``3000000w``), and time arithmetic with
it would overflow the calendar."""
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: Any) -> timedelta:
    """Parse ``value`` (``"15m"``, ``"1h30m"``, a ``timedelta``) into a timedelta.

    A bare number is rejected on purpose: a window stored as seconds and read as minutes is how a
    one-hour dedup window becomes sixty hours.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or isinstance(value, (int, float)):
        raise ValueError(f"duration {value!r} needs a unit, e.g. '{value}m' (units: s, m, h, d, w)")
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string like '15m', not {type(value).__name__}")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("duration is empty")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            raise ValueError(f"duration {value!r} needs a unit, e.g. '{text}m' (units: s, m, h, d, w)")
        raise ValueError(f"invalid duration {value!r}; use a number and a unit, e.g. 30s, 15m, 4h, 5d, 1w")
    if not total <= MAX_DURATION.total_seconds():  # also catches an overflow to infinity
        raise ValueError(f"duration {value!r} is longer than the limit of {MAX_DURATION.days}d")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """Render a timedelta compactly (``1h30m``); the inverse of :func:`parse_duration`."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
"""A pydantic field type for durations that must carry a unit."""
