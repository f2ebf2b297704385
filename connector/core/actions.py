"""Actions: what the connector wants written to the platform, each with a deterministic key.

The key is what makes a write idempotent: the action ledger records it, and adapters read the platform
before writing and skip what is already true. Targets are canonical ticket ids; a parent the connector
creates is addressed by its synthetic id (``new-…``) until the platform gives it a real one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

KEY_KINDS = ("declare", "create", "link", "note", "stage", "assign", "ooh", "change", "task", "resolve", "comms",
             "stakeholders", "services", "review")
"""The kinds of action key, each with its one written form (see :class:`ActionKey`)."""

_ROUND = re.compile(r"r([1-9][0-9]*)")
_NUMBER = re.compile(r"[1-9][0-9]*|0")
_WORD = re.compile(r"[a-z][a-z_]*")


class KeyParts(NamedTuple):
    """The parts of an action key. ``mi`` is the major incident, ``child`` a ticket linked to it; ``topic`` the
    note topic, the stage or the message; ``number`` a review task's or an update's number; ``round`` the
    reopening the duty belongs to (0 before any); ``channel`` a message's ``public`` or ``hook:<name>`` copy."""

    kind: str
    mi: str | None = None
    child: str | None = None
    topic: str | None = None
    number: int | None = None
    round: int = 0
    channel: str | None = None


def _id(value: str, what: str) -> str:
    if not value or ":" in value:
        raise ValueError(f"{what} {value!r} cannot be part of an action key (empty, or holds ':')")
    return value


def _format(parts: KeyParts) -> str:
    kind, mi, child, topic, number, rnd, channel = parts
    if kind in ("declare", "create", "assign", "change", "stakeholders", "review"):
        out = [kind, _id(mi or "", "major incident id")]
    elif kind in ("link", "ooh", "resolve"):
        out = [kind, _id(child or "", "ticket id"), _id(mi or "", "major incident id")]
    elif kind in ("task", "services"):
        out = [kind, _id(mi or "", "major incident id"), _count(number)]
    elif kind == "note" and topic == "ooh":
        out = [kind, _id(child or "", "ticket id"), topic]
    elif kind in ("note", "stage", "comms"):
        out = [kind, _id(mi or "", "major incident id"), topic or ""]
        if not _WORD.fullmatch(out[2]):
            raise ValueError(f"{kind} topic {topic!r} is not a lower-case word")
        if kind == "comms" and topic == "update":
            out.append(_count(number))
    else:
        raise ValueError(f"unknown action key kind {kind!r}")
    if number is not None and kind not in ("task", "services", "comms") or (kind == "comms" and topic != "update" and number is not None):
        raise ValueError(f"a {kind} key has no number")
    if rnd:
        out.append(f"r{rnd}")
    if channel:
        out.append(channel)
    return ":".join(out)


def _count(number: int | None) -> str:
    if number is None or number < 0:
        raise ValueError(f"{number!r} is not a count")
    return str(number)


def _split(text: str) -> KeyParts:
    """The one parser of action keys: the parts of ``text``, which must be exactly their written form."""
    kind, *rest = text.split(":")
    parts: KeyParts | None = None
    if kind in ("declare", "create", "assign", "change", "stakeholders", "review") and len(rest) == 1:
        parts = KeyParts(kind, mi=rest[0])
    elif kind in ("link", "ooh") and len(rest) == 2:
        parts = KeyParts(kind, child=rest[0], mi=rest[1])
    elif kind == "resolve" and len(rest) in (2, 3):
        parts = KeyParts(kind, child=rest[0], mi=rest[1], round=_round(rest[2:]))
    elif kind in ("task", "services") and len(rest) == 2 and _NUMBER.fullmatch(rest[1]):
        parts = KeyParts(kind, mi=rest[0], number=int(rest[1]))
    elif kind == "note" and len(rest) == 2 and rest[1] == "ooh":
        parts = KeyParts(kind, child=rest[0], topic="ooh")
    elif kind in ("note", "stage") and len(rest) in (2, 3) and _WORD.fullmatch(rest[1]):
        parts = KeyParts(kind, mi=rest[0], topic=rest[1], round=_round(rest[2:]))
    elif kind == "comms" and len(rest) >= 2 and _WORD.fullmatch(rest[1]):
        mi, topic, *tail = rest
        number = None
        if topic == "update":
            if not tail or not _NUMBER.fullmatch(tail[0]):
                raise ValueError(f"not an action key: {text!r} (an update has a number)")
            number, tail = int(tail[0]), tail[1:]
        rnd = 0
        if tail and _ROUND.fullmatch(tail[0]):
            rnd, tail = _round(tail[:1]), tail[1:]
        channel = None
        if tail == ["public"]:
            channel = "public"
        elif len(tail) >= 2 and tail[0] == "hook" and any(tail[1:]):
            channel = ":".join(tail)  # a stakeholder's name may hold ':'
        elif tail:
            raise ValueError(f"not an action key: {text!r}")
        parts = KeyParts(kind, mi=mi, topic=topic, number=number, round=rnd, channel=channel)
    if parts is None:
        raise ValueError(f"not an action key: {text!r}")
    try:
        again = _format(parts)
    except ValueError as exc:
        raise ValueError(f"not an action key: {text!r} ({exc})") from None
    if again != text:
        raise ValueError(f"not an action key: {text!r}")
    return parts


def _round(tail: list[str]) -> int:
    if not tail:
        return 0
    match = _ROUND.fullmatch(tail[0])
    if match is None:
        raise ValueError(f"not an action key: {tail[0]!r} is not a round (r1, r2...)")
    return int(match.group(1))


class ActionKey(str):
    """The deterministic key of an action: a string in exactly one written form per kind, built by the named
    constructors below and read back by :meth:`parse`. The string itself is what the ledger stores and what
    :func:`connector.platforms.base.marker_tag` hashes into the platform's markers, so its form never changes.

    | kind      | form                                             | constructor                   |
    |-----------|--------------------------------------------------|-------------------------------|
    | `declare` | ``declare:<mi>``                                 | :meth:`declare`               |
    | `create`  | ``create:<mi>`` (a synthetic ``new-…`` id)       | :meth:`create`                |
    | `link`    | ``link:<child>:<mi>``                            | :meth:`link`                  |
    | `note`    | ``note:<mi>:<topic>[:r<n>]``, ``note:<child>:ooh`` | :meth:`note`, :meth:`ooh_note` |
    | `stage`   | ``stage:<mi>:<stage>[:r<n>]``                    | :meth:`stage`                 |
    | `assign`  | ``assign:<mi>``                                  | :meth:`assign`                |
    | `ooh`     | ``ooh:<child>:<mi>``                             | :meth:`ooh`                   |
    | `change`  | ``change:<mi>``                                  | :meth:`change`                |
    | `task`    | ``task:<mi>:<n>``                                | :meth:`task`                  |
    | `resolve` | ``resolve:<child>:<mi>[:r<n>]``                  | :meth:`resolve`               |
    | `comms`   | ``comms:<mi>:<message>[:<n>][:r<n>][:<channel>]`` | :meth:`comms`, :meth:`public`, :meth:`hook` |
    | `stakeholders` | ``stakeholders:<mi>``                       | :meth:`stakeholders`          |
    | `services` | ``services:<mi>:<n>`` (``n`` services known)    | :meth:`services`              |
    | `review`  | ``review:<mi>``                                  | :meth:`review`                |

    ``:r<n>`` marks a duty repeated after the ``n``-th reopening; a message's ``<n>`` is an update's number and
    its channel ``public`` (the public comment) or ``hook:<stakeholder>`` (a webhook). Ticket ids never hold ``:``.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> "ActionKey":
        _split(text)
        return super().__new__(cls, text)

    @classmethod
    def parse(cls, text: str) -> "ActionKey":
        """The key written as ``text``; :class:`ValueError` when it is not in one of the forms above."""
        return text if isinstance(text, ActionKey) else cls(text)

    @classmethod
    def of(cls, parts: KeyParts) -> "ActionKey":
        """The key with these parts."""
        return cls(_format(parts))

    # -- named constructors --------------------------------------------------------------------------------

    @classmethod
    def declare(cls, mi: str) -> "ActionKey":
        """Declare the existing ticket ``mi`` a major incident."""
        return cls.of(KeyParts("declare", mi=mi))

    @classmethod
    def create(cls, mi: str) -> "ActionKey":
        """Create the parent ticket of the synthetic id ``mi``."""
        return cls.of(KeyParts("create", mi=mi))

    @classmethod
    def link(cls, child: str, mi: str) -> "ActionKey":
        """Link ``child`` to the major incident ``mi``."""
        return cls.of(KeyParts("link", mi=mi, child=child))

    @classmethod
    def note(cls, mi: str, topic: str, round: int = 0) -> "ActionKey":
        """A work note on the major incident (``declared``, ``metrics``, ``waiting``, ``change_done``,
        ``closed``)."""
        return cls.of(KeyParts("note", mi=mi, topic=topic, round=round))

    @classmethod
    def ooh_note(cls, child: str) -> "ActionKey":
        """The note on a child routed out of hours."""
        return cls.of(KeyParts("note", child=child, topic="ooh"))

    @classmethod
    def stage(cls, mi: str, stage: str, round: int = 0) -> "ActionKey":
        """Write ``stage`` on the major incident."""
        return cls.of(KeyParts("stage", mi=mi, topic=stage, round=round))

    @classmethod
    def assign(cls, mi: str) -> "ActionKey":
        """Assign the major incident team and manager."""
        return cls.of(KeyParts("assign", mi=mi))

    @classmethod
    def ooh(cls, child: str, mi: str) -> "ActionKey":
        """Route the out-of-hours ``child`` of ``mi`` to the out-of-hours group."""
        return cls.of(KeyParts("ooh", mi=mi, child=child))

    @classmethod
    def change(cls, mi: str) -> "ActionKey":
        """Create the change implementing the resolution of ``mi``."""
        return cls.of(KeyParts("change", mi=mi))

    @classmethod
    def task(cls, mi: str, number: int) -> "ActionKey":
        """Create review task ``number`` (from 1) of ``mi``."""
        return cls.of(KeyParts("task", mi=mi, number=number))

    @classmethod
    def resolve(cls, child: str, mi: str, round: int = 0) -> "ActionKey":
        """Resolve ``child`` with its major incident ``mi``."""
        return cls.of(KeyParts("resolve", mi=mi, child=child, round=round))

    @classmethod
    def comms(cls, mi: str, message: str, number: int | None = None, round: int = 0) -> "ActionKey":
        """Message ``message`` (``declared``, ``update`` with its ``number``, ``resolved``, ``closed``) of ``mi``,
        as the internal work note; :meth:`public` and :meth:`hook` name its other copies."""
        return cls.of(KeyParts("comms", mi=mi, topic=message, number=number, round=round))

    @classmethod
    def stakeholders(cls, mi: str) -> "ActionKey":
        """Add the process file's stakeholders to the major incident ``mi`` (where the platform has them)."""
        return cls.of(KeyParts("stakeholders", mi=mi))

    @classmethod
    def services(cls, mi: str, count: int) -> "ActionKey":
        """List the ``count`` services affected by ``mi`` and its children on it."""
        return cls.of(KeyParts("services", mi=mi, number=count))

    @classmethod
    def review(cls, mi: str) -> "ActionKey":
        """Create the post-incident review record of ``mi`` (where the platform models one)."""
        return cls.of(KeyParts("review", mi=mi))

    def public(self) -> "ActionKey":
        """The public comment of this message."""
        return self.of(self._message()._replace(channel="public"))

    def hook(self, stakeholder: str) -> "ActionKey":
        """The webhook copy of this message for ``stakeholder``."""
        if not stakeholder:
            raise ValueError("a webhook stakeholder has a name")
        return self.of(self._message()._replace(channel=f"hook:{stakeholder}"))

    def _message(self) -> KeyParts:
        parts = self.parts
        if parts.kind != "comms" or parts.channel is not None:
            raise ValueError(f"{self!s} is not the key of a message's work note")
        return parts

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def parts(self) -> KeyParts:
        """Every part of the key."""
        return _split(self)

    @property
    def kind(self) -> str:
        """``declare``, ``link``, ``stage``... (one of :data:`KEY_KINDS`)."""
        return self.split(":", 1)[0]

    @property
    def mi(self) -> str | None:
        """The major incident the key is about (None for a routed child's note)."""
        return self.parts.mi


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
class AddStakeholders(Action):
    """Make ``people`` stakeholders of the major incident ``target`` (the platform informs them of it)."""

    people: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SetServices(Action):
    """List ``services`` (canonical service names, the major incident's and its children's) as the affected
    services of the major incident ``target``."""

    services: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class CreateReview(Action):
    """Create the post-incident review record of the major incident ``target``, which holds its review tasks."""

    title: str
    description: str = ""
    owner: str | None = None


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
    AddStakeholders: "add_stakeholders",
    SetServices: "set_services",
    CreateReview: "create_review",
}


def action_from_dict(data: dict[str, Any]) -> Action:
    """Rebuild an action from :meth:`Action.to_dict` (the ledger re-drives pending actions this way)."""
    by_kind = {kind: cls for cls, kind in KINDS.items()}
    payload = dict(data)
    cls = by_kind[payload.pop("kind")]
    if "due" in payload and isinstance(payload["due"], str):
        payload["due"] = datetime.fromisoformat(payload["due"])
    return cls(**payload)
