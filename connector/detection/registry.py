"""The major incident registry: each record is the engine's view of an incident plus the process bookkeeping,
and :class:`Registry` keeps them in line with the engine's decisions and what the platform shows. Pure (no
I/O, no clock): the sync cycle loads the records from the state store, hands in what it read, and saves them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from connector.core.ticket import Major, Ticket
from connector.detection.engine import Decisions, Declaration, MajorIncident
from connector.detection.markers import major_incidents_from_tickets, parse_marker
from connector.detection.process_state import (
    Declared,
    FollowUp,
    HumanDecision,
    Ownership,
    PlatformReading,
    Progress,
    ReviewCounts,
    ReviewTaskReading,
    TimelineEvent,
    UtcMoment,
    Verdict,
)
from connector.detection.rules import Rule

DONE_STATES = frozenset({"resolved", "closed", "canceled"})
"""States of a change or review task that count as done."""
VERDICTS: dict[str, Verdict] = {"accepted": "accepted", "rejected": "rejected", "canceled": "canceled"}
"""Values of the ``major`` flag that are a person's verdict on a declared major incident."""

class MIRecord(BaseModel):
    """A major incident as the connector tracks it: the engine's view (id, rule, group, times, status, children)
    and what the process remembers of it, in typed parts (:mod:`connector.detection.process_state`)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    rule: str
    group: list[str]
    started_at: UtcMoment
    declared_at: UtcMoment
    status: str = "open"
    """``open``, ``resolved``, ``closed`` or ``rejected`` (a human rejected or canceled it)."""
    key: str | None = None
    synthetic_id: str | None = None
    """The ``new-…`` id of a parent the connector created, kept once it has its real id."""
    stage: str | None = None
    children: list[str] = Field(default_factory=list)
    declaration: Declared = Field(default_factory=Declared)
    reading: PlatformReading = Field(default_factory=PlatformReading)
    followup: FollowUp = Field(default_factory=FollowUp)
    progress: Progress = Field(default_factory=Progress)
    ownership: Ownership = Field(default_factory=Ownership)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    decisions: list[HumanDecision] = Field(default_factory=list)
    """People's verdicts on this major incident, oldest first (empty in records kept before they were recorded)."""
    late_until: UtcMoment | None = None
    """For a rule whose late children join ``while: surge``: until when, as the engine last extended it."""
    same: dict[str, str | None] | None = None
    """The values its late children must share (``late_children.same``)."""

    def to_engine(self) -> MajorIncident:
        """The engine's view of this record."""
        status = self.status if self.status in ("open", "rejected", "closed") else "closed"
        return MajorIncident(self.id, self.rule, tuple(self.group), self.started_at, self.declared_at,
                             status, key=self.key, children=set(self.children),  # type: ignore[arg-type]
                             until=self.late_until, same=dict(self.same) if self.same is not None else None)

    def to_json(self) -> str:
        """The record as the state store keeps it."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MIRecord":
        """A record the state store kept (schema 2; older ones are migrated when the store opens)."""
        return cls.model_validate_json(text)


class Registry:
    """Every major incident the connector tracks, by id, and the bookkeeping that keeps them current."""

    def __init__(self, records: Iterable[MIRecord] = ()) -> None:
        self.records: dict[str, MIRecord] = {r.id: r for r in records}

    def __iter__(self) -> Iterator[MIRecord]:
        return iter(list(self.records.values()))

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, mi_id: object) -> bool:
        return mi_id in self.records

    def get(self, mi_id: str) -> MIRecord | None:
        """The record of ``mi_id``, if tracked."""
        return self.records.get(mi_id)

    def active(self) -> list[MIRecord]:
        """Records still in process: not rejected, not finished."""
        return [r for r in self.records.values() if r.status != "rejected" and not r.progress.done]

    def ticket_ids(self) -> set[str]:
        """Every tracked incident and child (their cached tickets are kept)."""
        out = set(self.records)
        for record in self.records.values():
            out.update(record.children)
        return out

    def refresh(self, tickets: Sequence[Ticket], rules: Sequence[Rule], now: datetime | None = None) -> None:
        """Bring the registry in line with what the platform says (humans win): a candidate a human rejected,
        an incident resolved or closed, a stage changed by hand, a marked incident the registry lost.

        A person's verdict read for the first time (a proposal accepted or rejected, an incident canceled) is
        recorded as a :class:`HumanDecision` with the rule and the time (``now`` is the cycle's time; without
        it, the ticket's own update time)."""
        records = self.records
        by_rule = {r.id: r for r in rules}
        for t in tickets:
            record = records.get(t.id)
            if record is None:
                parsed = parse_marker(t.marker)
                if parsed is None or t.major in ("none",) or parsed[0] not in by_rule:
                    continue
                if parsed[1] is not None and parsed[1] in records:
                    # a parent this connector created, but the cycle that created it died before recording it: its
                    # record is still tracked under the synthetic id, and the cycle moves it to this id once the
                    # ledger knows the creation (a fresh record here would assign and announce it a second time)
                    continue
                rebuilt = major_incidents_from_tickets([t], rules)
                if not rebuilt:
                    continue
                mi = rebuilt[0]
                record = MIRecord(id=mi.id, rule=mi.rule, group=list(mi.group), started_at=mi.started_at,
                                  declared_at=mi.declared_at, status=mi.status, key=t.key, synthetic_id=parsed[1])
                records[t.id] = record
            record.key = t.key or record.key
            rule = by_rule.get(record.rule)
            decision = human_decision(record, t, rule.declare.mode if rule else None, now)
            if decision is not None:
                record.decisions.append(decision)
            if t.major in ("rejected", "canceled"):
                record.status = "rejected"
            elif not t.is_open and t.state == "closed":
                record.status = "closed"
            elif not t.is_open:
                record.status = "resolved"
            else:
                record.status = "open"
            if t.stage:
                record.stage = t.stage
            record.reading.major = t.major
            record.reading.state = t.state
            if t.resolved_at and record.reading.resolved_at is None:
                record.reading.resolved_at = t.resolved_at
        for t in tickets:
            if t.parent and t.parent in records and t.id not in records[t.parent].children:
                records[t.parent].children.append(t.id)
            for record in records.values():
                # a child a human unlinked (or moved to another incident) is no longer ours to resolve
                if t.id in record.children and t.parent != record.id and not record.id.startswith("new-"):
                    record.children.remove(t.id)

    def register(self, decisions: Decisions, now: datetime) -> None:
        """Track the incidents declared this cycle and the late children that joined open ones."""
        records = self.records
        for decl in decisions.declarations:
            if decl.mi_id in records:
                continue
            records[decl.mi_id] = MIRecord(
                id=decl.mi_id, rule=decl.rule, group=list(decl.group), started_at=decl.started_at,
                declared_at=max(now, decl.detected_at), status="open", key=decl.parent.key if decl.parent else None,
                synthetic_id=decl.mi_id if decl.new_parent else None, stage="identification",
                children=[t.id for t in decl.children],
                declaration=Declared(first_opened_at=decl.started_at, declared_at=max(now, decl.detected_at),
                                     detected_at=decl.detected_at, triggered_by=decl.triggered_by,
                                     group_fields=list(decl.group_fields), mode=decl.mode,
                                     service=_group_value(decl, "service")),
            )
            if decl.same is not None:
                records[decl.mi_id].same = dict(decl.same)
        for link in decisions.late_links:
            record = records.get(link.mi_id)
            if record is not None and link.ticket.id not in record.children:
                record.children.append(link.ticket.id)
        for mi_id, until in decisions.until.items():
            record = records.get(mi_id)
            if record is not None and (record.late_until is None or until > record.late_until):
                record.late_until = until

    def rekey_created(self, id_map: Mapping[str, str]) -> list[str]:
        """Track a parent the connector created under its real id once the platform gave it one; returns the
        synthetic ids no longer tracked (the cycle forgets them in the state store)."""
        records = self.records
        dropped = []
        for synthetic, real in id_map.items():
            record = records.pop(synthetic, None)
            if record is None:
                continue
            dropped.append(synthetic)
            record.id = real
            record.synthetic_id = synthetic
            if real in records:
                records[real].children = sorted(set(records[real].children) | set(record.children))
            else:
                records[real] = record
        return dropped


def human_decision(record: MIRecord, ticket: Ticket, rule_mode: str | None,
                   now: datetime | None) -> HumanDecision | None:
    """The verdict ``ticket`` shows on ``record`` if it is a person's and new, else None.

    The connector only ever writes ``proposed`` (a ``propose`` rule) or ``accepted`` (an ``accept`` rule), so a
    ``rejected`` or ``canceled`` flag is always a person's, and ``accepted`` is one when the incident was
    proposed (or rejected or canceled) before. The mode is the declaration's, else the rule's now
    (``rule_mode``: a record rebuilt from its marker does not know it)."""
    verdict, was = VERDICTS.get(Major(ticket.major).value), record.reading.major
    if verdict is None or verdict == was:
        return None
    mode = record.declaration.mode or rule_mode
    if verdict == "accepted" and mode != "propose" and was not in ("proposed", "rejected", "canceled"):
        return None  # the connector's own declaration, read back
    seen = now or ticket.updated_at or record.declared_at
    return HumanDecision(verdict=verdict, at=ticket.updated_at or seen, seen_at=seen, rule=record.rule, mode=mode,
                         was=was)


def record_followups(record: MIRecord, entry: Mapping[str, Any] | None, now: datetime) -> None:
    """Keep what the platform said of ``record``'s change and review tasks (``Platform.fetch_followups``, read
    ``now``) for the pure planner; ``entry`` None means the platform knows neither. Each task is kept by its
    id with the time it was first read back done (for the report's on time / late)."""
    entry = entry or {"change": None, "tasks": []}
    followup = record.followup
    followup.followed_at = now
    change = entry.get("change")
    if change:
        followup.change_state = change.get("state")
        if change.get("key"):
            followup.change_key = change["key"]
    tasks = entry.get("tasks") or []
    done = [t for t in tasks if t.get("state") in DONE_STATES]
    followup.review_tasks = ReviewCounts(done=len(done), total=len(tasks))
    followup.review_open = [str(t.get("key") or t.get("title") or t.get("id")) for t in tasks
                            if t.get("state") not in DONE_STATES]
    readings: dict[str, ReviewTaskReading] = {}
    for task in tasks:
        task_id = str(task.get("id") or task.get("key") or "")
        if not task_id:
            continue
        before = followup.tasks.get(task_id)
        finished = task.get("state") in DONE_STATES
        done_at = (before.done_at if before is not None and before.done_at else now) if finished else None
        readings[task_id] = ReviewTaskReading(key=task.get("key"), state=task.get("state"), done_at=done_at)
    followup.tasks = readings


def _group_value(decl: Declaration, name: str) -> str | None:
    if name in decl.group_fields:
        return decl.group[decl.group_fields.index(name)]
    if decl.parent is not None:
        return getattr(decl.parent, name)
    return decl.tickets[0].service if decl.tickets else None


__all__ = ["MIRecord", "Registry", "record_followups", "human_decision", "DONE_STATES", "VERDICTS"]
