"""The contract every platform adapter fulfils. Adapters hold transport and syntax only: query building,
paging, auth, retries and write verbs. What to write, and when, is decided by the engine and the sync cycle.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import (
    Any,
    Callable,
    Iterator,
    Literal,
    Protocol,
    Sequence,
    runtime_checkable,
)

from connector.core.actions import Action
from connector.core.mapping import Mapping
from connector.core.ticket import Ticket


@dataclass(frozen=True, order=True)
class Watermark:
    """How far the delta poll has read: the last ``(updated_at, id)`` seen."""

    updated_at: datetime
    id: str


@dataclass
class ApplyResult:
    """What happened to one action. ``created_id``/``created_key`` name a record the action created."""

    key: str
    status: Literal["applied", "skipped", "failed"]
    created_id: str | None = None
    created_key: str | None = None
    detail: str = ""
    retryable: bool = True


Resolver = Callable[[str], "str | None"]
"""Maps a target id to the platform id: synthetic ``new-…`` ids of parents created earlier become real."""


DoctorCheck = tuple[str, bool, str, str]
"""``(name, ok, detail, fix)``: one line of ``mim doctor``."""


@dataclass(frozen=True)
class ProcessNeeds:
    """What the configured rules and process file need from the platform, for ``mim doctor``: the people and
    groups the process file names (they must exist), and whether a rule declares with mode ``accept`` (on
    ServiceNow that needs the ``major_incident_manager`` role)."""

    people: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    accepts: bool = False


@runtime_checkable
class ChecksProcessNeeds(Protocol):
    """An adapter that can check :class:`ProcessNeeds` (read only) for ``mim doctor``: the one hook through which
    both adapters check roles or permissions, and that the process file's people and groups exist."""

    def needs_checks(self, needs: ProcessNeeds) -> list[DoctorCheck]:
        """``(name, ok, detail, fix)`` per need: roles and permissions, people, groups."""
        ...


def doctor_check(name: str, check: Callable[[], str], fix: str) -> DoctorCheck:
    """Run one read-only check; a platform error (or a value the adapter refuses) is the finding."""
    from connector.platforms.errors import PlatformError

    try:
        return name, True, check(), ""
    except (PlatformError, ValueError) as exc:
        return name, False, str(exc), fix


def marker_tag(action_key: str) -> str:
    """A short, stable tag for an action key, left on the platform (in a note, a label or a correlation id)
    so that a rerun after a crash or a lost state file can tell the write was already made."""
    return "mim-" + hashlib.sha1(action_key.encode("utf-8")).hexdigest()[:12]


@runtime_checkable
class Platform(Protocol):
    """A ticketing platform as the sync cycle sees it."""

    name: str
    mapping: Mapping
    base_url: str

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (Batch API calls count once)."""
        ...

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Site facts the adapter needs (field ids, link types, whether the stage field exists...).

        With ``cached`` (unexpired, from the state store) it sends no request and returns it. The result is
        JSON-serialisable; the cycle stores it with an expiry.
        """
        ...

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        """Raw records updated at or after ``since`` minus a small overlap (or, without a watermark, since
        ``horizon``), in ``(updated_at, id)`` order, every page. A quiet poll sends exactly one request."""
        ...

    def fetch_marked(self) -> list[dict[str, Any]]:
        """Raw records the connector marked as major incidents that are not closed (state rebuild)."""
        ...

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: "dict[str, str | None] | None" = None) -> dict[str, dict[str, Any]]:
        """The change and the review tasks of each major incident in ``mi_ids``, read back (read only):
        ``{mi_id: {"change": {"id", "key", "state"} | None, "tasks": [{"id", "key", "state", "title"}]}}``
        with canonical states (new / in_progress / on_hold / resolved / closed / canceled). ``changes``, when
        given, names the change each incident is known to link (from the polled tickets), so the adapter
        need not read the incidents again. A few requests for all the incidents together, never one each."""
        ...

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        """A raw record as a canonical ticket (through the mapping); raises ``MappingError``."""
        ...

    def apply(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` in order, idempotently, and report each one.

        ``uncertain`` holds the keys of actions that may already have reached the platform (a crash after
        sending, a lost state file): for those the adapter reads before it writes (a note's marker tag,
        a created record's marker) and skips what is already there. Other actions are new and are written
        directly. Adapters may combine writes (one PATCH for several field changes, the Batch API for
        many links) but report every action separately. A failure of one action does not stop the others
        unless they depend on it (links to a parent whose creation failed).
        """
        ...

    def doctor_checks(self, discovery: dict[str, Any]) -> list[tuple[str, bool, str, str]]:
        """Read-only checks for ``mim doctor``: ``(name, ok, detail, fix)`` for every table / issue type the
        connector reads or writes, the permissions it needs and every mapped field."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
