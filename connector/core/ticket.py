"""The canonical ticket: the platform-neutral shape every rule, the engine and the backtest work on."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class State(str, Enum):
    """Canonical lifecycle state of a ticket."""

    new = "new"
    in_progress = "in_progress"
    on_hold = "on_hold"
    resolved = "resolved"
    closed = "closed"
    canceled = "canceled"


OPEN_STATES = frozenset({State.new.value, State.in_progress.value, State.on_hold.value})
"""States in which a ticket is still being worked on (as plain strings, the way tickets hold them)."""


class Major(str, Enum):
    """Where a ticket stands in the major incident lifecycle."""

    none = "none"
    proposed = "proposed"
    accepted = "accepted"
    rejected = "rejected"
    canceled = "canceled"


class Stage(str, Enum):
    """The connector's major incident stages, as written to the platform."""

    identification = "identification"
    containment = "containment"
    resolution = "resolution"
    maintenance = "maintenance"
    closed = "closed"


CANONICAL_FIELDS = (
    "id", "key", "url", "title", "description", "service", "ci", "category", "subcategory", "location",
    "priority", "impact", "urgency", "state", "opened_at", "updated_at", "resolved_at", "caller",
    "assignment_group", "assignee", "parent", "major", "stage", "marker", "change",
)
"""Every canonical field name; rules may only use these."""

TIME_FIELDS = frozenset({"opened_at", "updated_at", "resolved_at"})
INT_FIELDS = frozenset({"priority", "impact", "urgency"})


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class Ticket(BaseModel):
    """A platform ticket in canonical form.

    ``id`` is the stable platform id (ServiceNow sys_id, Jira issue id); ``key`` the human one
    (INC0012345, ITSM-123). ``parent`` is the *id* of the major incident the ticket is linked to.
    ``marker`` carries what the connector left on the platform (e.g. ``mim:service-surge``) so that a
    lost state file never causes a second major incident. ``change`` is the id of the change linked to a
    major incident (its resolution plan). ``raw`` keeps the platform record.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=True, validate_default=True)

    id: str = Field(min_length=1)
    key: str | None = None
    url: str | None = None
    title: str | None = None
    description: str | None = None
    service: str | None = None
    ci: str | None = None
    category: str | None = None
    subcategory: str | None = None
    location: str | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    impact: int | None = Field(default=None, ge=1, le=5)
    urgency: int | None = Field(default=None, ge=1, le=5)
    state: State = State.new.value  # type: ignore[assignment]
    opened_at: datetime
    updated_at: datetime | None = None
    resolved_at: datetime | None = None
    caller: str | None = None
    assignment_group: str | None = None
    assignee: str | None = None
    parent: str | None = None
    major: Major = Major.none.value  # type: ignore[assignment]
    stage: Stage | None = None
    marker: str | None = None
    change: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @field_validator("opened_at", "updated_at", "resolved_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @field_validator(
        "key", "url", "title", "description", "service", "ci", "category", "subcategory", "location",
        "caller", "assignment_group", "assignee", "parent", "marker", "change", mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @classmethod
    def trusted(cls, **data: Any) -> "Ticket":
        """Build a ticket from values that are already converted and checked (the mapping does this),
        skipping validation: reading a large export is dominated by it otherwise."""
        return cls.trusted_from({k: v for k, v in data.items() if k != "raw"}, data.get("raw") or {})

    @classmethod
    def trusted_from(cls, data: dict[str, Any], raw: dict[str, Any]) -> "Ticket":
        """:meth:`trusted` without keyword packing, for the hot path of a large export."""
        values = _DEFAULTS.copy()
        values.update(data)
        values["raw"] = raw
        ticket = cls.__new__(cls)
        object.__setattr__(ticket, "__dict__", values)
        object.__setattr__(ticket, "__pydantic_fields_set__", set(data))
        object.__setattr__(ticket, "__pydantic_extra__", None)
        object.__setattr__(ticket, "__pydantic_private__", None)
        return ticket

    @property
    def is_open(self) -> bool:
        """True while the ticket is not resolved, closed or canceled."""
        return self.state in OPEN_STATES

    @property
    def label(self) -> str:
        """The human key when there is one, else the id."""
        return self.key or self.id

    def value(self, field: str) -> Any:
        """The canonical value of ``field`` as rules see it (enums as their string values)."""
        value = getattr(self, field)
        if isinstance(value, Enum):
            return value.value
        return value

    def canonical_dict(self) -> dict[str, Any]:
        """The canonical fields as JSON-ready values (no ``raw``)."""
        out: dict[str, Any] = {}
        for name in CANONICAL_FIELDS:
            value = self.value(name)
            if isinstance(value, datetime):
                value = value.isoformat()
            if value is not None:
                out[name] = value
        return out


_DEFAULTS: dict[str, Any] = {
    name: info.get_default(call_default_factory=True) for name, info in Ticket.model_fields.items() if not info.is_required()
}
