"""What the connector remembers of each major incident besides the engine's view, as typed parts of
:class:`~connector.detection.registry.MIRecord`:

| part          | type                  | written by                                        | holds                                          |
|---------------|-----------------------|---------------------------------------------------|------------------------------------------------|
| ``declaration`` | :class:`Declared`     | the registry, once, when the incident is declared | first ticket, detection time, triggering tickets, group, mode, service |
| ``reading``   | :class:`PlatformReading` | the registry, every time the incident is read  | its ``major`` flag and state; when it was first seen resolved |
| ``followup``  | :class:`FollowUp`     | the sync cycle, when a follow-up read is due      | the change's state and key, the review tasks done/total and those open |
| ``progress``  | :class:`Progress`     | the process planner                               | the stage machine and each stage's duties done |
| ``ownership`` | :class:`Ownership`    | the process planner                               | per field we write: what we wrote, saw, and whether a human took it over |
| ``timeline``  | ``list[TimelineEvent]`` | the process planner                             | what happened when, and by whom (reports draw it) |
| ``decisions`` | ``list[HumanDecision]`` | the registry, when a reading shows a person's verdict | proposals accepted or rejected, incidents canceled: when, on which rule |

Every model refuses unknown fields, both when read and when assigned, so a misspelt name is an error rather
than a silent new key. Times are timezone-aware datetimes, kept as ISO 8601 strings in the state store.
Plain data: no I/O.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def _from_iso(value: object) -> object:
    # the state store's own format (``isoformat()``), read with the standard library so a time reads back
    # with the same tzinfo it was written with
    return datetime.fromisoformat(value) if isinstance(value, str) else value


Moment = Annotated[AwareDatetime, BeforeValidator(_from_iso),
                   PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")]
"""A timezone-aware time, stored as its ``isoformat()``."""
UtcMoment = Annotated[AwareDatetime, BeforeValidator(_from_iso),
                      PlainSerializer(lambda value: value.astimezone(timezone.utc).isoformat(), return_type=str,
                                      when_used="json")]
"""A timezone-aware time, stored in UTC."""

FieldValue = str | None
"""A value of a field the connector writes (stage, assignment group, assignee)."""


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Declared(_State):
    """What was known when the connector declared the major incident (empty for one rebuilt from its marker)."""

    first_opened_at: Moment | None = None
    declared_at: Moment | None = None
    detected_at: Moment | None = None
    triggered_by: list[str] = Field(default_factory=list)
    """Ids of every ticket that made the rule fire."""
    group_fields: list[str] = Field(default_factory=list)
    mode: str | None = None
    """``propose`` or ``accept``."""
    service: str | None = None


class PlatformReading(_State):
    """The incident's own ticket as the registry last read it."""

    major: str | None = None
    state: str | None = None
    resolved_at: Moment | None = None
    """When the platform first said it was resolved (kept across later readings)."""


class ReviewCounts(_State):
    """Review tasks read back from the platform: how many are done (resolved, closed, canceled) of how many."""

    done: int = 0
    total: int = 0


class ReviewTaskReading(_State):
    """One review task as read back: its key, its state, and when it was first read back done (resolved,
    closed or canceled). ``done_at`` is the follow-up read that saw it done, so it is late by at most the
    follow-up interval (``review.follow_every``)."""

    key: str | None = None
    state: str | None = None
    done_at: Moment | None = None


class FollowUp(_State):
    """The change and the review tasks as last read back (``Platform.fetch_followups``)."""

    followed_at: Moment | None = None
    change_state: str | None = None
    """Also set by the planner when the platform exposes the change as a ticket."""
    change_key: str | None = None
    review_tasks: ReviewCounts | None = None
    """None until the tasks were first read back."""
    review_open: list[str] = Field(default_factory=list)
    """Keys (or titles) of the review tasks still open."""
    tasks: dict[str, ReviewTaskReading] = Field(default_factory=dict)
    """Each review task read back, by its platform id (empty in records kept before it was recorded)."""


class StageEvents(_State):
    """When the event that put the process in each stage was observed; maintenance and closed once per round
    (a reopened incident is maintained and closed again)."""

    identification: Moment | None = None
    containment: Moment | None = None
    resolution: Moment | None = None
    maintenance: dict[int, Moment] = Field(default_factory=dict)
    closed: dict[int, Moment] = Field(default_factory=dict)


class Comms(_State):
    """Messages sent: the ``declared`` one, and the updates."""

    declared_sent: bool = False
    last_update: int = 0
    """Number of the latest update planned (updates are numbered from declaration, every ``update_every``)."""
    updates_sent: int = 0
    stakeholders_added: bool = False
    """The process file's stakeholder people were added to the incident (platforms that have stakeholders)."""


class RotaTurn(_State):
    """A manager picked from the rota: the pick's sequence number over all incidents and the rota position after it."""

    seq: int
    next: int


class InitialAssignment(_State):
    """Team and manager found on the incident when the process file had no one to assign."""

    assignment_group: str | None = None
    assignee: str | None = None


class Containment(_State):
    """Team and manager, and the children routed out of hours."""

    contained: bool = False
    contained_at: Moment | None = None
    manager: str | None = None
    manager_source: str | None = None
    """``rota``, ``on_call``, ``none`` (chosen by the connector), ``human`` or ``platform`` (found there)."""
    team: str | None = None
    rota: RotaTurn | None = None
    initial: InitialAssignment | None = None
    ooh_checked: list[str] = Field(default_factory=list)
    """Children checked for an out-of-hours arrival."""
    ooh_routed: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    """The services listed as affected on the incident (its own and its children's), as last planned."""


class Resolution(_State):
    """The resolution stage and its change."""

    entered: bool = False
    entered_at: Moment | None = None
    change: str | None = None
    """The change linked on the platform."""
    change_linked_at: Moment | None = None
    change_planned: bool = False
    change_title: str | None = None
    """Title of the change the connector created (people recognise it; the change's id is opaque)."""
    change_state_seen: str | None = None
    """The change state last put on the timeline."""
    change_done_noted: bool = False


class Maintenance(_State):
    """Maintenance duties, once per round."""

    maintained: list[int] = Field(default_factory=list)
    """Rounds (reopenings) maintained."""
    resolved_at: Moment | None = None
    """When the incident was resolved (cleared when it is reopened)."""
    review_planned: bool = False
    review_tasks_planned: int | None = None
    waiting_noted: list[int] = Field(default_factory=list)
    """Rounds in which "closed, waiting for the review tasks" was noted."""


class Closure(_State):
    """The final stage."""

    closed: bool = False
    closed_at: Moment | None = None


class Progress(_State):
    """The process planner's state machine."""

    started: bool = False
    """The planner has seen the record (it adopts a stage found on the platform at first sight)."""
    epoch: int = 0
    """Reopenings so far; duties repeated after a reopening carry ``:r<epoch>`` in their keys."""
    adopted: str | None = None
    """The stage found on the platform at first sight (a rebuilt state, an upgrade)."""
    seen_state: str | None = None
    """The incident's state at the last pass (a reopening is a move from an ended state to an open one)."""
    reopened_at: Moment | None = None
    stage_keys: list[str] = Field(default_factory=list)
    """Keys of the stage writes planned (each once)."""
    stage_events: StageEvents = Field(default_factory=StageEvents)
    stage_human_at: Moment | None = None
    """When a human last set the stage."""
    done: bool = False
    """Closed and finished: the planner does not look at it any more."""
    comms: Comms = Field(default_factory=Comms)
    containment: Containment = Field(default_factory=Containment)
    resolution: Resolution = Field(default_factory=Resolution)
    maintenance: Maintenance = Field(default_factory=Maintenance)
    closure: Closure = Field(default_factory=Closure)


class OwnedField(_State):
    """A field the connector wrote: what it wrote (and every value of its own so far), what was there before,
    whether the write has shown on the platform, the value last seen, and who set the value last, when."""

    written: FieldValue = None
    ours: list[FieldValue] = Field(default_factory=list)
    before: FieldValue = None
    landed: bool = False
    seen: FieldValue = None
    by: str = "connector"
    """``connector``, ``human`` or ``platform`` (adopted at first sight)."""
    at: Moment


class Ownership(_State):
    """Humans win: the fields the connector wrote, and those a human changed since."""

    owned: dict[str, OwnedField] = Field(default_factory=dict)
    human: dict[str, FieldValue] = Field(default_factory=dict)
    """Field -> the value a human set."""
    human_at: dict[str, Moment] = Field(default_factory=dict)


Verdict = Literal["accepted", "rejected", "canceled"]
"""A person's verdict on a major incident the connector declared (the platform's ``major`` flag)."""


class HumanDecision(_State):
    """A person's verdict on a declared major incident, read back from the platform as it happened: a
    proposal accepted or rejected, an incident canceled (or accepted again after that).

    ``at`` is when the platform last changed the ticket that carried the verdict (its ``updated_at``), so the
    moment of the decision within the polling interval; ``seen_at`` is the cycle that read it."""

    verdict: Verdict
    at: Moment
    seen_at: Moment
    rule: str
    mode: str | None = None
    """The declaration's mode: ``propose`` (a proposal a person judged) or ``accept`` (declared outright)."""
    was: str | None = None
    """The ``major`` flag read before (``proposed``, ``accepted``...; None at the first reading)."""


class TimelineEvent(_State):
    """Something that happened to the major incident: ``event`` (``stage``, ``contained``, ``change_state``...),
    its ``value``, ``by`` whom (``connector``, ``human``, ``platform``)."""

    at: Moment
    event: str
    value: str | int | None = None
    by: str = "connector"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``at`` as ISO 8601), keys in the order reports have always printed them (sorted)."""
        return {"at": self.at.isoformat(), "by": self.by, "event": self.event, "value": self.value}


__all__ = ["Moment", "UtcMoment", "Declared", "PlatformReading", "ReviewCounts", "ReviewTaskReading", "FollowUp",
           "Verdict", "HumanDecision", "StageEvents", "Comms", "RotaTurn",
           "InitialAssignment", "Containment", "Resolution", "Maintenance", "Closure", "Progress", "OwnedField",
           "Ownership", "TimelineEvent"]
