"""Six months of major incidents run through the real sync cycle on the fake platform, for the report's
overview: surges that people accept or reject on the platform, a proposal still open, two priority-1 tickets
(one canceled by a person), review tasks closed on time, late or not at all, and a quiet month (April).

:func:`run_story` writes the state and returns, per incident, what the story itself knows (its month, the
verdict it gave, how long it took to identify and resolve, its impact and cost, its review tasks): the tests
compute the expected overview from these facts, never from the report's code.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.store import StateStore
from connector.process.processfile import load_process
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules
PROCESS, _errors = load_process(ROOT / "rules" / "process.yaml")
assert PROCESS is not None and not _errors
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=timezone.utc)
"""When the report of the story is made."""


@dataclass
class Incident:
    """One scripted major incident and what the story knows of it."""

    at: datetime
    rule: str
    service: str
    callers: int
    verdict: str | None = None
    decide_after: timedelta = timedelta(minutes=10)
    """How long after the declaration a person gives the verdict."""
    resolve_after: timedelta | None = None
    tasks_done_after: list[timedelta | None] = field(default_factory=list)
    """Per review task, how long after the incident's resolution it is closed (None: never). Within 2 days is
    before any due date (3 business days at least), 20 days or more after every one (10 business days at most,
    holidays included)."""
    ci: str | None = None
    id: str = ""
    declared_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def month(self) -> str:
        return f"{self.at:%Y-%m}"

    @property
    def mode(self) -> str:
        return "accept" if self.rule == "p1-critical" else "propose"

    @property
    def identify_s(self) -> float:
        assert self.declared_at is not None
        return (self.declared_at - self.at).total_seconds()

    @property
    def resolve_s(self) -> float | None:
        if self.resolved_at is None or self.declared_at is None:
            return None
        return (self.resolved_at - self.declared_at).total_seconds()

    @property
    def impact_s(self) -> float | None:
        if self.verdict in ("rejected", "canceled"):
            return None
        return ((self.resolved_at or NOW) - self.at).total_seconds()

    @property
    def cost(self) -> float | None:
        impact = self.impact_s
        return None if impact is None else impact / 3600 * PROCESS.costs.per_hour(self.service)  # type: ignore[union-attr]

    @property
    def children(self) -> int:
        return self.callers - 1 if self.rule != "p1-critical" else 0


def _day(month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)


H, D = timedelta(hours=1), timedelta(days=1)

STORY = [
    Incident(_day(1, 13), "service-surge", "web-shop", 6, "accepted", resolve_after=2 * H,
             tasks_done_after=[D, D, D]),
    Incident(_day(1, 27, 10), "ci-surge", "printing", 5, "rejected", ci="printer-floor3"),
    Incident(_day(2, 10, 9, 30), "service-surge", "payments", 8, "accepted", decide_after=timedelta(minutes=5),
             resolve_after=1.5 * H, tasks_done_after=[30 * D, 30 * D, 30 * D]),
    Incident(_day(2, 17), "service-surge", "intranet", 5, "rejected", decide_after=timedelta(minutes=25)),
    Incident(_day(3, 3, 14), "p1-critical", "erp", 1, None, resolve_after=3 * H, tasks_done_after=[2 * D, 2 * D, 2 * D]),
    Incident(_day(3, 17), "service-surge", "vpn", 5, "accepted", resolve_after=5 * H,
             tasks_done_after=[D, D, 20 * D]),
    Incident(_day(5, 5), "ci-surge", "email", 6, "accepted", ci="mail-relay-2", resolve_after=4 * H,
             tasks_done_after=[D, 2 * D, 20 * D]),
    Incident(_day(5, 12), "ci-surge", "printing", 5, "rejected", ci="printer-floor3",
             decide_after=timedelta(minutes=40)),
    Incident(_day(5, 19, 11), "p1-critical", "telephony", 1, "canceled", decide_after=timedelta(minutes=20)),
    Incident(_day(6, 2), "service-surge", "web-shop", 7, "accepted", resolve_after=1 * H,
             tasks_done_after=[None, None, None]),
    Incident(_day(6, 29), "service-surge", "hr-portal", 5, None),
]


@dataclass
class Story:
    """The state written and what the story knows of each incident."""

    path: Path
    now: datetime
    incidents: list[Incident]


def run_story(path: Path) -> Story:
    """Play :data:`STORY` through :func:`~connector.job.cycle.run_cycle` into the state at ``path``: every
    caller, verdict, resolution and task closure in time order (incidents overlap: a review task closed a
    month later comes after the next incidents), each followed by a cycle."""
    incidents = [dataclasses.replace(i) for i in STORY]
    clock = Clock(incidents[0].at - D)
    platform = FakePlatform(clock)
    store = StateStore(path, "servicenow")
    events: list[tuple[datetime, int, Callable[[], None]]] = []

    def at(moment: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(events, (moment, len(events), action))

    def cycle() -> None:
        report = run_cycle(platform, store, RULES, PROCESS, clock())  # type: ignore[arg-type]
        assert report.failures == [], report.failures

    def edit_then_cycle(moment: datetime, ticket: Callable[[], list[str]], **fields: object) -> None:
        def action() -> None:
            for ident in ticket():
                platform.records[ident].update(fields, updated_at=clock())
        at(moment, action)
        at(moment + timedelta(minutes=1), cycle)

    def call(incident: Incident, n: int) -> Callable[[], None]:
        def action() -> None:
            fields: dict[str, object] = {"caller": f"{incident.service}-caller-{n}"}
            if incident.ci:  # a CI surge: the callers name the CI, and two services
                fields.update(ci=incident.ci, service=incident.service if n % 2 == 0 else f"{incident.service}-other")
            else:
                fields["service"] = incident.service
            if incident.rule == "p1-critical":
                fields["priority"] = 1
            record = platform.add(**fields)
            incident.id = incident.id or record["id"]
        return action

    def declared(incident: Incident) -> Callable[[], None]:
        def action() -> None:
            assert incident.id not in {r.id for r in store.major_incidents()}, f"{incident.service}: declared early"
            cycle()
            assert incident.id in {r.id for r in store.major_incidents()}, f"{incident.service} was not declared"
            incident.declared_at = clock()
        return action

    def tasks(incident: Incident, after: timedelta) -> Callable[[], list[str]]:
        def found() -> list[str]:
            mine = sorted((r for r in platform.records.values() if r.get("_kind") == "task" and r.get("_for") == incident.id),
                          key=lambda r: r["id"])
            assert len(mine) == len(incident.tasks_done_after) == 3, incident.service
            return [task["id"] for task, when in zip(mine, incident.tasks_done_after) if when == after]
        return found

    at(clock(), cycle)
    for incident in incidents:
        for n in range(incident.callers):
            at(incident.at + timedelta(minutes=n), call(incident, n))
        declared_at = incident.at + timedelta(minutes=incident.callers)
        at(declared_at, declared(incident))
        at(declared_at + timedelta(minutes=2), cycle)  # the proposal read back
        if incident.verdict is not None:
            edit_then_cycle(declared_at + incident.decide_after, lambda i=incident: [i.id], major=incident.verdict)
        if incident.resolve_after is not None:
            resolved = declared_at + incident.resolve_after
            incident.resolved_at = resolved
            edit_then_cycle(declared_at + incident.resolve_after / 2, lambda i=incident: [i.id], stage="resolution")
            edit_then_cycle(resolved, lambda i=incident: [i.id], state="resolved", resolved_at=resolved)
            edit_then_cycle(resolved + H, lambda i=incident: [i.id], state="closed")
            for after in sorted({a for a in incident.tasks_done_after if a is not None}):
                edit_then_cycle(resolved + after, tasks(incident, after), state="closed")
    at(NOW - timedelta(minutes=5), cycle)
    while events:
        moment, _, action = heapq.heappop(events)
        clock.now = moment
        action()
    store.close()
    return Story(path, NOW, incidents)


__all__ = ["Incident", "Story", "STORY", "run_story", "NOW", "PROCESS", "RULES"]
