"""Request parameters and bodies read the way Jira reads them (a bad one is a 400, raised as
:class:`~connector.sim.jira.errors.HttpError`)."""

from __future__ import annotations

from typing import Any, Iterable

from connector.sim.base import SimRequest
from connector.sim.jira.errors import fail


def split_list(values: Iterable[Any] | None) -> list[str]:
    """Flatten ``["a,b", "c"]`` (repeated or comma-separated parameters) into ``["a", "b", "c"]``."""
    out: list[str] = []
    for value in values or []:
        for part in str(value).split(","):
            part = part.strip()
            if part:
                out.append(part)
    return out


def int_arg(value: Any, default: int, name: str) -> int:
    """An integer parameter (``default`` when absent)."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise fail(400, f"The value '{value}' of '{name}' is not a valid integer.") from None


def bool_arg(value: Any, default: bool = False) -> bool:
    """A boolean parameter: ``true`` in any case is true."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def json_body(request: SimRequest) -> Any:
    """The request body as JSON (``None`` when empty)."""
    try:
        return request.json()
    except ValueError as exc:
        raise fail(400, f"Unexpected character in the request body: {exc}")
