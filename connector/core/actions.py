"""Actions: what the connector wants written to the platform, each with a deterministic key.

The key is what makes a write idempotent: the action ledger records it, and adapters read the platform
before writing and skip what is already true. Targets are canonical ticket ids; a parent the connector
creates is addressed by its synthetic id (``new-…``) until the platform gives it a real one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Action:
    """Base of every action: ``key`` (deterministic), ``target`` (ticket id), the rule behind it and why."""

    key: str
    target: str
    rule: str | None = None
    reason: str = ""

    @property
    def kind(self) -> str:
        """Short name of the action type (``declare``, ``link``...)."""
        return KINDS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the ledger and ``--dry-run`` output."""
        data = {"kind": self.kind}
        for name, value in asdict(self).items():
            data[name] = value.isoformat() if isinstance(value, datetime) else value
        return data


@dataclass(frozen=True, kw_only=True)
class DeclareMajor(Action):
    """Make ``target`` a major incident (``mode`` propose or accept), setting canonical ``fields``."""

    mode: str
    marker: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CreateParent(Action):
    """Create a new major incident ticket from canonical ``fields``; ``target`` is its synthetic id."""

    mode: str
    marker: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LinkChild(Action):
    """Link ``target`` as a child of the major incident ``parent``."""

    parent: str


@dataclass(frozen=True, kw_only=True)
class AddNote(Action):
    """Add a work note (internal) or a public comment to ``target``."""

    text: str
    internal: bool = True


@dataclass(frozen=True, kw_only=True)
class SetFields(Action):
    """Set canonical fields (priority, urgency, assignment_group, assignee, state...) on ``target``."""

    fields: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class SetStage(Action):
    """Write the major incident stage of ``target``."""

    stage: str


@dataclass(frozen=True, kw_only=True)
class CreateTask(Action):
    """Create a review task for the major incident ``target``."""

    title: str
    description: str = ""
    owner: str | None = None
    due: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class CreateChange(Action):
    """Create a change linked to the major incident ``target`` (its resolution plan)."""

    title: str
    description: str = ""
    group: str | None = None
    change_type: str = "normal"


@dataclass(frozen=True, kw_only=True)
class ResolveChild(Action):
    """Resolve the open child ``target`` with the parent's resolution ``notes``."""

    parent: str
    notes: str = ""


@dataclass(frozen=True, kw_only=True)
class Notify(Action):
    """Send ``payload`` to the webhook ``channel`` (not a platform write)."""

    channel: str
    url: str
    payload: dict[str, Any] = field(default_factory=dict)


KINDS: dict[type, str] = {
    DeclareMajor: "declare",
    CreateParent: "create_parent",
    LinkChild: "link",
    AddNote: "note",
    SetFields: "set_fields",
    SetStage: "set_stage",
    CreateTask: "create_task",
    CreateChange: "create_change",
    ResolveChild: "resolve_child",
    Notify: "notify",
}


def action_from_dict(data: dict[str, Any]) -> Action:
    """Rebuild an action from :meth:`Action.to_dict` (the ledger re-drives pending actions this way)."""
    by_kind = {kind: cls for cls, kind in KINDS.items()}
    payload = dict(data)
    cls = by_kind[payload.pop("kind")]
    if "due" in payload and isinstance(payload["due"], str):
        payload["due"] = datetime.fromisoformat(payload["due"])
    return cls(**payload)
