"""The sync cycle: the only place that orders I/O.

load state -> discovery (cached) -> fetch the delta -> map -> rebuild from markers if the state is new ->
decide (pure) -> record the plan in the ledger -> apply (creates first, then the rest) -> record results ->
commit the watermark.

Crash safety: the ledger is written before anything is sent and the watermark only after the writes, so a
crash at any point followed by a rerun re-reads the same tickets, re-derives the same actions (same keys),
skips what the ledger or the platform says is done, and re-sends what may not have arrived with
``uncertain`` set, so the adapter reads before it writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Sequence

from connector.core.actions import Action, ActionKey, CreateParent, LinkChild, Notify, action_from_dict
from connector.core.mapping import MappingError
from connector.core.ticket import Ticket
from connector.detection.engine import decide, window_horizon
from connector.detection.identification import identification_actions
from connector.detection.registry import MIRecord, Registry, record_followups
from connector.detection.rules import Rule
from connector.job.faults import CrashHook
from connector.job.redrive import superseded_stages
from connector.job.baselines import prepare_baselines, save_baselines
from connector.job.store import StateStore
from connector.job.watermark import advance, future_records, trusted_start
from connector.platforms.base import ApplyResult, Platform, Watermark
from connector.platforms.errors import PlatformError
from connector.process.context import ProcessContext
from connector.process.planner import plan_process
from connector.process.processfile import ProcessFile

if TYPE_CHECKING:
    from connector.job.webhooks import Notifier

FINAL = frozenset({"applied", "skipped", "rejected", "abandoned"})
"""Ledger statuses after which an action is never sent again."""
REDRIVEN = frozenset({"declare", "create_parent", "note", "set_stage", "create_task", "create_change", "notify",
                      "create_review", "add_stakeholders", "set_services", "link", "set_fields", "resolve_child"})
"""Kinds re-sent from the ledger after a crash or failure even when no longer planned."""

HORIZON_MARGIN = timedelta(minutes=30)
"""Extra look-back beyond the longest window + late-children period, for the first poll."""

ProcessPlanner = Callable[[ProcessContext], list[Action]]
"""A planner of process duties; :func:`run_cycle` runs :func:`~connector.process.planner.plan_process` by default."""


@dataclass
class CycleReport:
    """What one cycle did; printed by ``mim sync`` and logged as the cycle summary."""

    started_at: datetime
    dry_run: bool = False
    tickets_read: int = 0
    skipped_records: list[str] = field(default_factory=list)
    state_repairs: list[str] = field(default_factory=list)
    """Damage found in the state and repaired (a damaged baseline forgotten and learned again)."""
    declarations: list[dict[str, Any]] = field(default_factory=list)
    late_links: int = 0
    planned: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    future_records: list[str] = field(default_factory=list)
    """Records with a time beyond now + a small skew: read, but kept from moving the watermark."""
    outcomes: dict[str, ApplyResult] = field(default_factory=dict)
    requests: int = 0
    rebuilt: bool = False
    duration_s: float = 0.0
    baseline_warm_up: int = 0
    """Tickets of history the detection baselines learned from before this cycle (a first sync's warm-up)."""

    @property
    def writes(self) -> int:
        """Actions applied on the platform."""
        return self.results.get("applied", 0)

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready summary (never holds a secret or a record body)."""
        return {"tickets_read": self.tickets_read, "skipped_records": len(self.skipped_records),
                "declarations": len(self.declarations), "late_links": self.late_links,
                "actions": len(self.planned), "results": self.results, "requests": self.requests,
                "duration_s": round(self.duration_s, 3), "dry_run": self.dry_run, "rebuilt": self.rebuilt,
                "future_records": len(self.future_records),
                **({"baseline_warm_up": self.baseline_warm_up} if self.baseline_warm_up else {}),
                **({"state_repairs": len(self.state_repairs)} if self.state_repairs else {})}


def _to_tickets(platform: Platform, raws: Sequence[dict[str, Any]], report: CycleReport) -> list[Ticket]:
    """Map raw records; a malformed one is reported (by its key or id, wherever the mapping reads them) and
    skipped, never crashing the cycle."""
    tickets = []
    sources = [platform.mapping.source(name) for name in ("key", "id")]
    for raw in raws:
        try:
            tickets.append(platform.to_ticket(raw))
        except MappingError as exc:
            ident = next((str(raw[s]) for s in sources if s and raw.get(s)), "?")
            report.skipped_records.append(f"{ident}: {exc}")
    return tickets


FOLLOWED_STAGES = frozenset({"resolution", "maintenance"})
"""Stages in which the change and the review tasks are read back."""
DEFAULT_FOLLOW_EVERY = timedelta(minutes=15)


def follow_interval(process: ProcessFile) -> timedelta:
    """How often the change and review tasks are read back: ``review.follow_every``, else the update
    cadence, else 15 minutes."""
    return process.review.follow_every or process.communications.update_every or DEFAULT_FOLLOW_EVERY


def follow_due(record: MIRecord, process: ProcessFile, now: datetime) -> bool:
    """Whether ``record``'s change and review tasks are to be read back this cycle."""
    if record.status == "rejected" or record.progress.done or record.id.startswith("new-"):
        return False
    if record.stage not in FOLLOWED_STAGES:
        return False
    last = record.followup.followed_at
    return last is None or now - last >= follow_interval(process)


def _follow_up(platform: Platform, records: Sequence[MIRecord], tickets: dict[str, Ticket], process: ProcessFile,
               now: datetime, report: CycleReport) -> None:
    """Read back the change and review tasks of every incident due for it, in one call; the result goes into
    the record (:func:`~connector.detection.registry.record_followups`) for the (pure) planner. A quiet cycle with nothing due sends nothing here."""
    due = [r for r in records if follow_due(r, process, now)]
    if not due:
        return
    hints = {r.id: tickets[r.id].change for r in due if r.id in tickets}
    try:
        found = platform.fetch_followups([r.id for r in due], hints)
    except PlatformError as exc:
        # a read that failed is tried again next cycle; the writes of this cycle go ahead
        report.failures.append(f"followups: {exc}")
        return
    for record in due:
        record_followups(record, found.get(record.id), now)


def run_cycle(platform: Platform, store: StateStore, rules: Sequence[Rule], process: ProcessFile, now: datetime,
              dry_run: bool = False, planners: Sequence[ProcessPlanner] | None = None,
              discovery_ttl: timedelta | None = None, notifier: "Notifier | None" = None,
              warm_up_progress: Callable[[int], None] | None = None) -> CycleReport:
    """One poll-decide-apply cycle. With ``dry_run`` nothing is written to the platform or the state; the
    report's ``planned`` lists what would be written where, and why.

    The whole process runs by default (identification, then :func:`~connector.process.planner.plan_process`
    for containment, resolution and maintenance); ``planners`` replaces the process planners, and ``()``
    runs identification alone.

    Notify actions (webhook messages) are not platform writes: they go to ``notifier`` (by default the
    webhooks of the configuration, :func:`connector.job.webhooks.notifier_from_environment`) after the platform
    writes, and their results enter the ledger like any other, so a failed one is re-driven next cycle.

    Surge rules with a baseline learn from every cycle; the first cycle warms them from the platform's history
    (``warm_up_progress`` hears how many tickets were read)."""
    clock = time.monotonic()
    report = CycleReport(started_at=now, dry_run=dry_run)
    crash = CrashHook.from_environment()  # test-only: connector/job/faults.py
    requests_before = platform.requests_sent

    cached = store.discovery(now)
    discovery = platform.discover(cached)
    ttl = discovery_ttl or platform.mapping.write.discovery_ttl
    if cached is None and not dry_run:
        store.set_discovery(discovery, now + ttl)
    # adapters add what they learn while writing (group and user ids); keep it for the next process
    discovered_before = json.dumps(discovery, sort_keys=True, default=str)

    horizon = window_horizon(rules) + HORIZON_MARGIN
    fresh = store.is_fresh()
    mark, distrusted = trusted_start(store.watermark(), now)
    raws = list(platform.fetch_changed(mark, now - horizon))
    tickets = _to_tickets(platform, raws, report)
    report.tickets_read = len(tickets)
    report.future_records = [str(f) for f in future_records(tickets, now)] + ([distrusted] if distrusted else [])
    if fresh:
        marked = _to_tickets(platform, platform.fetch_marked(), report)
        # read after the poll, and with the markers (Jira Data Center's search returns no entity properties)
        marked_ids = {t.id for t in marked}
        tickets = [t for t in tickets if t.id not in marked_ids] + marked
        report.rebuilt = bool(marked)

    registry = Registry(store.major_incidents())
    registry.refresh(tickets, rules, now)

    window: dict[str, Ticket] = {t.id: t for t in store.recent_tickets(now - horizon)}
    for t in tickets:
        window[t.id] = t
    known = [r.to_engine() for r in registry]
    baselines, warmed = prepare_baselines(platform, store, rules, now, horizon, warm_up_progress, keep=dry_run,
                                          damaged=report.state_repairs)
    report.baseline_warm_up = warmed.tickets
    decisions = decide(window.values(), known, rules, now, baselines=baselines)
    report.declarations = [{"parent": d.mi_id, "parent_key": d.parent.key if d.parent else None, "rule": d.rule,
                            "children": [t.label for t in d.children], "group": dict(zip(d.group_fields, d.group))}
                           for d in decisions.declarations]
    report.late_links = len(decisions.late_links)
    registry.register(decisions, now)

    actions = identification_actions(decisions, rules)
    # the planners see every ticket of every incident still in process, not only the recent window
    active = registry.active()
    wanted = {ticket_id for r in active for ticket_id in (r.id, *r.children) if ticket_id not in window}
    known_tickets = {**store.tickets_by_id(wanted), **window} if wanted else window
    _follow_up(platform, active, known_tickets, process, now, report)
    context = ProcessContext(now, process, list(registry), known_tickets,
                             declared=frozenset(d.mi_id for d in decisions.declarations),
                             writable=frozenset(platform.mapping.provided), duties=platform.mapping.write.duties)
    for planner in (plan_process,) if planners is None else planners:
        actions += planner(context)

    ledger = store.ledger(a.key for a in actions)
    todo: list[Action] = []
    seen: set[str] = set()
    for action in actions:
        status = ledger.get(action.key, {}).get("status")
        if status in FINAL or action.key in seen:
            continue
        seen.add(action.key)
        todo.append(action)
    # Actions planned in an earlier cycle that never completed (a crash, a failure) are re-driven even if
    # this cycle no longer produces them: the registry saved with the plan says they were planned, so the
    # planners do not derive them again (a containment's assignment, a link, a child's resolution included;
    # the crash matrix, tests/test_crash_matrix.py, lost each of them before). Re-driven actions are
    # uncertain: the adapter reads before it writes. A stage write a later one supersedes is not re-sent.
    pending = store.pending_rows()
    superseded = superseded_stages(todo, pending)  # connector/job/redrive.py
    for row in pending:
        if row["key"] not in seen and row["kind"] in REDRIVEN and row["key"] not in superseded:
            seen.add(row["key"])
            todo.append(action_from_dict(row["action"]))
    uncertain = frozenset(a.key for a in todo if a.key in ledger or fresh) | frozenset(row["key"] for row in pending)
    def label(ticket_id: str) -> str:
        ticket = window.get(ticket_id)
        return ticket.label if ticket is not None else ticket_id

    report.planned = [{**a.to_dict(), "target_label": label(a.target),
                       **({"parent_label": label(a.parent)} if isinstance(a, LinkChild) else {})} for a in todo]

    if dry_run:
        report.requests = platform.requests_sent - requests_before
        report.duration_s = time.monotonic() - clock
        return report

    with store.transaction():
        store.record_planned(todo, now)
        store.record_results([ApplyResult(key, "skipped", detail="superseded by a later stage") for key in superseded], now)
        for record in registry:
            store.save_major_incident(record)
        store.upsert_tickets(tickets)
    crash.at("after_ledger", todo)

    creates = [a for a in todo if isinstance(a, CreateParent)]
    notifies = [a for a in todo if isinstance(a, Notify)]
    rest = [a for a in todo if not isinstance(a, (CreateParent, Notify))]
    results: list[ApplyResult] = []
    if creates:
        created = crash.apply(platform, creates, lambda target: target, uncertain)
        crash.at("before_results", creates)
        store.record_results(created, now)
        results += created
    id_map = store.created_ids()

    def resolve(target: str) -> str | None:
        if target.startswith("new-"):
            return id_map.get(target)
        return target

    if rest:
        applied = crash.apply(platform, rest, resolve, uncertain)
        crash.at("before_results", rest)
        store.record_results(applied, now)
        results += applied
    # announce only what the platform now shows: not an incident whose declaration failed this cycle
    # (its messages stay planned and go out once the declaration lands)
    failed_targets = {mi for r in results if r.status == "failed" and (mi := _declared_by(r.key)) is not None}

    def announceable(action: Notify) -> bool:
        return action.target not in failed_targets and resolve(action.target) is not None

    notifies = [a for a in notifies if announceable(a)]
    if notifies:
        if notifier is None:
            from connector.job.webhooks import notifier_from_environment

            notifier = notifier_from_environment()
        delivered = crash.deliver(notifier, notifies)
        crash.at("before_results", notifies)
        store.record_results(delivered, now)
        results += delivered

    crash.at("before_watermark", todo)
    with store.transaction():
        store.abandon_exhausted(now)
        for synthetic in registry.rekey_created(id_map):
            store.delete_major_incident(synthetic)
        for result in results:
            report.outcomes[result.key] = result
            report.results[result.status] = report.results.get(result.status, 0) + 1
            if result.status == "failed":
                report.failures.append(f"{result.key}: {result.detail}")
        for record in registry:
            store.save_major_incident(record)
        new_mark = advance(tickets, mark, now)
        if new_mark is None:
            # nothing seen yet: remember the horizon so the next cycle is not taken for a lost state
            new_mark = Watermark(now - horizon, "")
        store.set_watermark(new_mark)
        save_baselines(store, baselines)
        if json.dumps(discovery, sort_keys=True, default=str) != discovered_before:
            store.set_discovery(discovery, now + ttl)
        store.prune_tickets(now - horizon, keep=registry.ticket_ids())
    report.requests = platform.requests_sent - requests_before
    report.duration_s = time.monotonic() - clock
    store.record_cycle(now, report.summary())
    return report


def _declared_by(key: str) -> str | None:
    """The major incident a declaring action (``declare:<mi>``, ``create:<mi>``) is about, else None."""
    try:
        parsed = ActionKey.parse(key)
    except ValueError:  # a key of an older version, re-driven from the ledger: never a declaration
        return None
    return parsed.mi if parsed.kind in ("declare", "create") else None


__all__ = ["run_cycle", "CycleReport", "ProcessPlanner"]
