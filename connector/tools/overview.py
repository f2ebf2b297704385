"""The overview of ``mim report``: figures across the major incidents of a period, per month, per service and
per rule, for the monthly review.

:func:`build_overview` is a pure function of the per-incident report data (:func:`connector.tools.report.collect`
puts in each incident its metrics, the person's verdict on it and its review tasks on time or late), so the
overview and the per-incident sections can never disagree. Months are calendar months in UTC; an incident
belongs to the month it was declared in, with everything about it (its cost, its review tasks, the verdict).

The words are the ones ``mim backtest --score`` uses for the same figures (README, "Report vocabulary"):

* ``declarations``: major incidents the connector declared or proposed; ``declarations_per_month`` divides them
  by the calendar months the period spans.
* ``major_incidents``: declarations no person rejected or canceled.
* ``proposals``: declarations of a ``propose`` rule; each is ``accepted`` or ``rejected`` (rejected or canceled)
  by a person, or still ``open``; ``canceled``: declarations of an ``accept`` rule a person canceled.
* ``precision``: accepted / (accepted + rejected), the share of a rule's judged proposals that people accepted
  (null until one is judged). A rule is ``mostly_rejected`` when its precision is below one half.
* durations in seconds with the suffix ``_s`` (``time_to_resolve_median_s``), money in the process file's currency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from statistics import median
from typing import Any, Iterable, Mapping, Sequence

REVIEW_OUTCOMES = ("on_time", "late", "open_overdue", "open", "undated")
"""What became of a review task: done by its due date, done after it, still open past it, still open before
it, or not measurable (no due date known, or done before the connector kept when)."""
MEDIANS = ("time_to_identify_s", "time_to_contain_s", "time_to_resolve_s")
"""The per-incident durations whose monthly median the overview shows."""
TOP_SERVICES = 10
CHILDREN_BINS = ((0, 0, "0"), (1, 4, "1-4"), (5, 9, "5-9"), (10, 19, "10-19"), (20, 49, "20-49"), (50, None, "50+"))
"""Bins of the children-per-major-incident histogram: lowest, highest (None: no limit), label."""
REJECTED = frozenset({"rejected", "canceled"})


class PeriodError(ValueError):
    """A ``--since``/``--until`` value that is not a date, a month or a time."""


@dataclass(frozen=True)
class Period:
    """The incidents a report covers: declared at or after ``since`` and before ``until`` (either open-ended)."""

    since: datetime | None = None
    until: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        """Whether an incident declared at ``moment`` is in the period."""
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready bounds (``until`` exclusive)."""
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None}


_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bound(text: str, end: bool = False) -> datetime:
    """A period bound from ``YYYY-MM``, ``YYYY-MM-DD`` or an ISO 8601 time (naive means UTC). A month or a day
    given as the end (``--until``) includes that whole month or day: the bound is the start of the next one."""
    value = text.strip()
    try:
        if _MONTH.match(value):
            start = datetime.strptime(value, "%Y-%m").replace(tzinfo=timezone.utc)
            return _next_month(start) if end else start
        if _DAY.match(value):
            start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PeriodError(f"{text!r} is not a month (2026-03), a date (2026-03-31) or a time "
                          "(2026-03-31T18:00:00+02:00)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def make_period(since: str | None, until: str | None) -> Period:
    """The period of ``--since``/``--until`` (both inclusive as written; either may be absent)."""
    period = Period(parse_bound(since) if since else None, parse_bound(until, end=True) if until else None)
    if period.since is not None and period.until is not None and period.until <= period.since:
        raise PeriodError(f"--until {until} is not after --since {since}")
    return period


def _next_month(moment: datetime) -> datetime:
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of ``moment`` in UTC."""
    return f"{moment.astimezone(timezone.utc):%Y-%m}"


def months_spanned(period: Period, declared: Iterable[datetime]) -> list[str]:
    """Every calendar month from the period's start (else the first declaration) to its end (else the last
    declaration), empty months included, so trends show the quiet months too."""
    moments = sorted(declared)
    first = period.since or (moments[0] if moments else None)
    last = (period.until - timedelta(microseconds=1)) if period.until else (moments[-1] if moments else None)
    if first is None or last is None or last < first:
        return []
    out = []
    cursor = datetime(first.year, first.month, 1, tzinfo=timezone.utc)
    end = month_of(last)
    while True:
        out.append(month_of(cursor))
        if out[-1] >= end:
            return out
        cursor = _next_month(cursor)


def median_name(name: str) -> str:
    """The overview's name of a duration's median: ``time_to_resolve_s`` -> ``time_to_resolve_median_s``."""
    return name.removesuffix("_s") + "_median_s"


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(median(present)) if present else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def is_major_incident(mi: Mapping[str, Any]) -> bool:
    """A declaration no person rejected or canceled."""
    return mi.get("verdict") not in REJECTED


def _rule_rows(incidents: Sequence[Mapping[str, Any]], months: int) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    waits: dict[str, list[float]] = {}
    for mi in incidents:
        rule = str(mi.get("rule"))
        row = rows.setdefault(rule, {"rule": rule, "declarations": 0, "proposals": 0, "accepted": 0, "rejected": 0,
                                     "open": 0, "canceled": 0})
        row["declarations"] += 1
        verdict = mi.get("verdict")
        if mi.get("mode") == "propose":
            row["proposals"] += 1
            if verdict == "accepted":
                row["accepted"] += 1
            elif verdict in REJECTED:
                row["rejected"] += 1
            else:
                row["open"] += 1
            decided, declared = _when(mi.get("decided_at")), _when(mi.get("declared_at"))
            if verdict is not None and decided is not None and declared is not None:
                waits.setdefault(rule, []).append(max(0.0, (decided - declared).total_seconds()))
        elif verdict in REJECTED:
            row["canceled"] += 1
    out = []
    for rule, row in rows.items():
        judged = row["accepted"] + row["rejected"]
        precision = round(row["accepted"] / judged, 4) if judged else None
        out.append({**row, "declarations_per_month": round(row["declarations"] / months, 2) if months else None,
                    "precision": precision, "mostly_rejected": precision is not None and precision < 0.5,
                    "time_to_decide_median_s": _median(waits.get(rule, []))})
    return sorted(out, key=lambda r: (-r["declarations"], r["rule"]))


def _review_counts(incidents: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(REVIEW_OUTCOMES, 0)
    for mi in incidents:
        for outcome in REVIEW_OUTCOMES:
            totals[outcome] += int(mi.get(f"review_tasks_{outcome}") or 0)
    return totals


def _cost(incidents: Iterable[Mapping[str, Any]]) -> float:
    return round(sum(mi.get("estimated_cost") or 0.0 for mi in incidents), 2)


def build_overview(incidents: Sequence[Mapping[str, Any]], period: Period, currency: str) -> dict[str, Any]:
    """The overview's figures over ``incidents`` (report data of the incidents declared in ``period``)."""
    declared = {id(mi): _when(mi.get("declared_at")) for mi in incidents}
    months = months_spanned(period, [d for d in declared.values() if d is not None])
    majors = [mi for mi in incidents if is_major_incident(mi)]
    by_month: dict[str, list[Mapping[str, Any]]] = {m: [] for m in months}
    for mi in incidents:
        moment = declared[id(mi)]
        if moment is not None and month_of(moment) in by_month:
            by_month[month_of(moment)].append(mi)
    month_rows = []
    for month, group in by_month.items():
        major = [mi for mi in group if is_major_incident(mi)]
        row: dict[str, Any] = {"month": month, "declarations": len(group), "major_incidents": len(major),
                               "rejected": len(group) - len(major)}
        for name in MEDIANS:
            row[median_name(name)] = _median(mi.get(name) for mi in major)
        row["estimated_cost"] = _cost(major)
        row["estimated_cost_ongoing"] = any(mi.get("impact_ongoing") for mi in major)
        row.update({f"review_tasks_{k}": v for k, v in _review_counts(major).items()})
        month_rows.append(row)

    services: dict[str, dict[str, Any]] = {}
    for mi in majors:
        name = str(mi.get("service") or "(no service)")
        entry = services.setdefault(name, {"service": name, "estimated_cost": 0.0, "major_incidents": 0})
        entry["estimated_cost"] += mi.get("estimated_cost") or 0.0
        entry["major_incidents"] += 1
    ranked = sorted(services.values(), key=lambda s: (-s["estimated_cost"], s["service"]))
    for entry in ranked:
        entry["estimated_cost"] = round(entry["estimated_cost"], 2)
    rest = ranked[TOP_SERVICES:]

    children = [{"id": mi.get("id"), "key": mi.get("key") or mi.get("id"), "declared_at": mi.get("declared_at"),
                 "children": int(mi.get("children") or 0)} for mi in majors]
    counts: list[int] = [int(mi.get("children") or 0) for mi in majors]
    histogram = [{"children": label, "major_incidents": sum(1 for c in counts if low <= c and (high is None or c <= high))}
                 for low, high, label in CHILDREN_BINS]
    review = _review_counts(majors)
    rules = _rule_rows(incidents, len(months))
    totals = {"declarations": len(incidents), "major_incidents": len(majors),
              "rejected": len(incidents) - len(majors),
              "proposals_open": sum(r["open"] for r in rules),
              "estimated_cost": _cost(majors), "currency": currency,
              "estimated_cost_ongoing": any(mi.get("impact_ongoing") for mi in majors),
              "months_spanned": len(months),
              "declarations_per_month": round(len(incidents) / len(months), 2) if months else None,
              **{median_name(name): _median(mi.get(name) for mi in majors) for name in MEDIANS},
              "children_median": _median(counts), "children_max": max(counts) if counts else None,
              **{f"review_tasks_{k}": v for k, v in review.items()}}
    return {
        "totals": totals,
        "months": month_rows,
        "cost_by_service": ranked[:TOP_SERVICES],
        "cost_other_services": {"services": len(rest), "estimated_cost": _cost(rest),
                                "major_incidents": sum(s["major_incidents"] for s in rest)},
        "children": children,
        "children_histogram": histogram,
        "rules": rules,
        "mostly_rejected": [r["rule"] for r in rules if r["mostly_rejected"]],
    }


__all__ = ["Period", "PeriodError", "parse_bound", "make_period", "month_of", "months_spanned", "build_overview",
           "is_major_incident", "median_name", "REVIEW_OUTCOMES", "MEDIANS", "TOP_SERVICES", "CHILDREN_BINS"]
