"""Time as Jira writes it: UTC, millisecond precision, ``2023-06-24T19:24:50.000+0000``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

UTC = timezone.utc


def jira_time(value: datetime) -> str:
    """Format an aware datetime the way Jira does: ``2023-06-24T19:24:50.000+0000`` (UTC, milliseconds)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch, exactly."""
    # Integer arithmetic: float timestamps are off by one millisecond for some values.
    return (value - _EPOCH) // timedelta(milliseconds=1)


def truncate_ms(value: datetime) -> datetime:
    """``value`` without its sub-millisecond part (Jira stores milliseconds)."""
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def parse_iso(value: str | datetime) -> datetime:
    """An ISO 8601 text or a datetime as an aware UTC datetime at millisecond precision (naive means UTC)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return truncate_ms(parsed.astimezone(UTC))
