"""Metrics of a major incident, from what the connector recorded of it (:class:`MIRecord`).

Milestones: first ticket opened, declared, contained, resolution plan (change linked or resolution entered),
resolved, closed. Durations:

* time to identify: first ticket opened -> declared
* time to contain: declared -> contained (team and manager assigned)
* time to resolution plan: declared -> resolution stage entered (a change linked or the stage set by hand)
* time to resolve: declared -> resolved
* impact duration: first ticket opened -> resolved (or ``now`` while it is still open)

Estimated cost = impact hours x the cost per hour of the service (process file ``costs``). Pure: ``now`` is
an argument.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.detection.registry import MIRecord
from connector.process.processfile import ProcessFile

MILESTONES = ("first_opened_at", "declared_at", "contained_at", "resolution_at", "change_linked_at", "resolved_at",
              "closed_at")
DURATIONS = ("time_to_identify_s", "time_to_contain_s", "time_to_resolution_plan_s", "time_to_resolve_s", "impact_s")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass
class Metrics:
    """One major incident's milestones, durations (seconds), counts and estimated cost."""

    id: str
    key: str | None
    rule: str
    service: str | None
    stage: str | None
    status: str
    manager: str | None
    team: str | None
    first_opened_at: datetime | None
    declared_at: datetime | None
    contained_at: datetime | None
    resolution_at: datetime | None
    change_linked_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    time_to_identify_s: float | None
    time_to_contain_s: float | None
    time_to_resolution_plan_s: float | None
    time_to_resolve_s: float | None
    impact_s: float | None
    impact_ongoing: bool
    children: int
    updates_sent: int
    review_tasks_total: int
    review_tasks_done: int | None
    cost_per_hour: float
    estimated_cost: float | None
    currency: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings, durations in seconds, cost rounded to cents."""
        data = asdict(self)
        for name in MILESTONES:
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        if data["estimated_cost"] is not None:
            data["estimated_cost"] = round(data["estimated_cost"], 2)
        return data


def compute(record: MIRecord, process: ProcessFile, now: datetime) -> Metrics:
    """The metrics of ``record`` as of ``now``."""
    progress = record.progress
    containment, resolution = progress.containment, progress.resolution
    first = record.declaration.first_opened_at or record.started_at
    declared = record.declared_at
    resolved = progress.maintenance.resolved_at or record.reading.resolved_at
    if record.status == "open" and progress.maintenance.resolved_at is None:
        resolved = None
    end = resolved or (None if record.status == "rejected" else now)
    impact = _seconds(first, end)
    service = record.declaration.service
    per_hour = process.costs.per_hour(service)
    review_done, review_total = review_counts(record)
    return Metrics(
        id=record.id, key=record.key, rule=record.rule, service=service, stage=record.stage, status=record.status,
        manager=containment.manager, team=containment.team,
        first_opened_at=first, declared_at=declared, contained_at=containment.contained_at,
        resolution_at=resolution.entered_at, change_linked_at=resolution.change_linked_at,
        resolved_at=resolved, closed_at=progress.closure.closed_at,
        time_to_identify_s=_seconds(first, declared),
        time_to_contain_s=_seconds(declared, containment.contained_at),
        time_to_resolution_plan_s=_seconds(declared, resolution.entered_at),
        time_to_resolve_s=_seconds(declared, resolved),
        impact_s=impact, impact_ongoing=resolved is None and record.status != "rejected",
        children=len(record.children), updates_sent=progress.comms.updates_sent,
        review_tasks_total=review_total, review_tasks_done=review_done,
        cost_per_hour=per_hour,
        estimated_cost=None if impact is None else impact / 3600 * per_hour,
        currency=process.costs.currency,
    )


def planned_reviews(record: MIRecord) -> int:
    """Review tasks the connector planned."""
    return record.progress.maintenance.review_tasks_planned or 0


def review_counts(record: MIRecord) -> tuple[int | None, int]:
    """``(done, total)`` of the review tasks: as read back from the platform (:attr:`FollowUp.review_tasks
    <connector.detection.process_state.FollowUp.review_tasks>`), the total at least the number planned; done is
    None while nothing was read back yet (0 when there is nothing to wait for)."""
    planned = planned_reviews(record)
    followed = record.followup.review_tasks
    if followed is not None:
        return followed.done, max(planned, followed.total)
    return (None if planned else 0), planned


def reviews_done(record: MIRecord) -> bool:
    """Every review task is known done, or there is none to wait for."""
    done, total = review_counts(record)
    if total == 0:
        return True
    return done is not None and done >= total


def review_text(metrics: "Metrics") -> str:
    """``2/3``; ``?/3`` while the tasks were not read back yet."""
    done = metrics.review_tasks_done
    return f"{'?' if done is None else done}/{metrics.review_tasks_total}"


def human_duration(seconds: float | None) -> str:
    """``2h 05m``, ``12m 30s``, ``3d 4h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def money(amount: float | None, currency: str) -> str:
    """``250,000 USD``; ``-`` when unknown."""
    return "-" if amount is None else f"{amount:,.0f} {currency}"


def note_text(metrics: Metrics) -> str:
    """The metrics work note written when the major incident reaches maintenance."""
    tasks = review_text(metrics)
    lines = [
        f"Major incident metrics for {metrics.key or metrics.id} (rule {metrics.rule}):",
        f"- time to identify (first ticket -> declared): {human_duration(metrics.time_to_identify_s)}",
        f"- time to contain (declared -> team and manager): {human_duration(metrics.time_to_contain_s)}",
        f"- time to resolution plan (declared -> change/resolution): {human_duration(metrics.time_to_resolution_plan_s)}",
        f"- time to resolve (declared -> resolved): {human_duration(metrics.time_to_resolve_s)}",
        f"- impact duration (first ticket -> resolved): {human_duration(metrics.impact_s)}",
        f"- related tickets: {metrics.children}; updates sent: {metrics.updates_sent}; review tasks done: {tasks}",
        f"- estimated downtime cost: {money(metrics.estimated_cost, metrics.currency)} "
        f"({metrics.cost_per_hour:,.0f} {metrics.currency} per hour on {metrics.service or 'the service'})",
    ]
    return "\n".join(lines)


def impact_minutes(record: MIRecord, now: datetime) -> int:
    """Whole minutes of impact so far (for message templates)."""
    first = record.declaration.first_opened_at or record.started_at
    end = record.progress.maintenance.resolved_at or now
    return int(max(timedelta(0), end - first).total_seconds() // 60)


__all__ = ["Metrics", "compute", "review_counts", "reviews_done", "planned_reviews", "review_text", "note_text", "human_duration", "money", "impact_minutes", "MILESTONES", "DURATIONS"]
