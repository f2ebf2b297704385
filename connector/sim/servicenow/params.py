"""Request parameters and bodies read the way an instance reads them."""

from __future__ import annotations

from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.servicenow.errors import error
from connector.sim.servicenow.query import Condition, EncodedQuery, parse_encoded_query


def flag(request: SimRequest, name: str) -> bool:
    """A boolean ``sysparm_*`` parameter."""
    # pysnow sends Python-style "True"/"False".
    return (request.arg(name) or "").strip().lower() == "true"


def display_mode(request: SimRequest) -> str:
    """``sysparm_display_value``: ``true``, ``all`` or ``false``."""
    mode = (request.arg("sysparm_display_value") or "").strip().lower()
    return mode if mode in ("true", "all") else "false"


def int_arg(request: SimRequest, name: str, default: int) -> int:
    """An integer parameter; ``default`` when absent or not a number."""
    try:
        return int(request.arg(name) or default)
    except ValueError:
        return default


def accepts_json(request: SimRequest) -> bool:
    """Whether the ``Accept`` header allows JSON (no header does)."""
    accept = (request.header("Accept") or "").lower()
    return not accept or any(kind in accept for kind in ("json", "*/*", "application/*"))


def json_object(request: SimRequest) -> dict[str, Any] | SimResponse:
    """The body as a JSON object (``{}`` when empty), or the 400 to answer."""
    try:
        body = request.json()
    except ValueError:
        return error(400, "Exception while reading request", "The payload is not valid JSON.")
    if body is None:
        return {}
    if not isinstance(body, dict):
        return error(400, "Exception while reading request", "The payload must be a JSON object.")
    return body


def query_of(request: SimRequest) -> tuple[EncodedQuery, list[Condition]]:
    """The encoded ``sysparm_query`` of a read and its plain ``name=value`` parameters as conditions."""
    query = parse_encoded_query(request.arg("sysparm_query") or "")
    plain = [Condition(name, "=", values[0]) for name, values in request.query.items()
             if not name.startswith("sysparm_") and values]
    return query, plain
