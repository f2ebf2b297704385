"""Scoring a backtest against the history's own links (``mim backtest --score``).

The links agents made are the labels: canonical ``parent`` in JSONL, ``parent_incident`` in a ServiceNow
export, issue links in a Jira export (through the mappings), or any other field or export column
(``--label``). While scoring, they are labels only: the replay runs as if no ticket had been linked.

* A **labelled storm** is a label (a parent) with at least ``size`` of its children (10) opened within
  ``within`` (60 minutes): ``--storm 10/60m``. It starts with the first such window. The parent itself, when
  the history holds it, is no child of its own storm (it still counts for purity).
* A storm is **caught** when one declared major incident holds at least ``caught`` (5) of its tickets; the
  **delay** runs from the storm's 5th ticket (in its first storm window) to that major incident's
  declaration (the earliest one, when several hold 5).
* **Purity**: of the labelled tickets inside declared major incidents, the share that carry their major
  incident's majority label.
* **Declarations per month**: declarations divided by the calendar months the history spans (first to last
  ticket, both months counted).

Every figure is also given per calendar month (UTC): storms by the month they start, declarations and
purity by the month of the declaration.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from connector.core.durations import format_duration, parse_duration


@dataclass(frozen=True)
class StormSpec:
    """What makes a labelled storm and what catches it."""

    size: int = 10
    within: timedelta = timedelta(minutes=60)
    caught: int = 5

    def __str__(self) -> str:
        return f"{self.size}/{format_duration(self.within)}"


def parse_storm(text: str) -> StormSpec:
    """``10/60m``: at least 10 tickets of one label within 60 minutes."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\S+)\s*", text or "")
    if not match:
        raise ValueError(f"invalid storm {text!r}: expected COUNT/DURATION, e.g. 10/60m")
    size = int(match.group(1))
    if size < 1:
        raise ValueError("a storm needs at least 1 ticket")
    within = parse_duration(match.group(2))
    if within <= timedelta(0):
        raise ValueError("a storm's duration must be longer than 0s")
    return StormSpec(size=size, within=within, caught=min(5, size))


@dataclass
class Storm:
    """One labelled storm."""

    label: str
    tickets: list[tuple[datetime, str]]
    """Every ticket of the label, in time order."""
    start: int
    """Index of the first ticket of the first storm window."""

    @property
    def began(self) -> datetime:
        return self.tickets[self.start][0]


@dataclass
class Incident:
    """A declared major incident as the scorer sees it: when, and which tickets it holds."""

    declared_at: datetime
    tickets: Sequence[str]


@dataclass
class Score:
    """The figures of ``--score`` (see the module docstring)."""

    spec: StormSpec
    storms: int = 0
    caught: int = 0
    purity: float | None = None
    labelled_in_incidents: int = 0
    declarations: int = 0
    months_spanned: int = 0
    delays: list[float] = field(default_factory=list)
    months: list[dict[str, Any]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    caught_by: dict[str, str] = field(default_factory=dict)

    @property
    def recall(self) -> float | None:
        return self.caught / self.storms if self.storms else None

    @property
    def declarations_per_month(self) -> float | None:
        return self.declarations / self.months_spanned if self.months_spanned else None

    def to_dict(self) -> dict[str, Any]:
        """The ``"score"`` block of ``mim backtest --score --json``."""
        return {
            "storms": self.storms, "caught": self.caught, "recall": _round(self.recall),
            "purity": _round(self.purity), "declarations_per_month": _round(self.declarations_per_month),
            "delay_median_s": _round(_median(self.delays)), "delay_p90_s": _round(_p90(self.delays)),
            "months": self.months,
            "declarations": self.declarations, "months_spanned": self.months_spanned,
            "labelled_in_incidents": self.labelled_in_incidents,
            "storm": {"size": self.spec.size, "within_s": int(self.spec.within.total_seconds()),
                      "caught": self.spec.caught},
            "missed": self.missed,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def find_storms(labels: Mapping[str, str], opened: Mapping[str, datetime], spec: StormSpec) -> list[Storm]:
    """Every label with at least ``spec.size`` children within ``spec.within``, by start time (the ticket the
    label names, the parent, is not one of its children)."""
    by_label: dict[str, list[tuple[datetime, str]]] = {}
    for ticket_id, label in labels.items():
        at = opened.get(ticket_id)
        if at is not None and ticket_id != label:
            by_label.setdefault(label, []).append((at, ticket_id))
    storms = []
    for label, tickets in by_label.items():
        if len(tickets) < spec.size:
            continue
        tickets.sort()
        low = 0
        for high in range(len(tickets)):
            while tickets[high][0] - tickets[low][0] > spec.within:
                low += 1
            if high - low + 1 >= spec.size:
                storms.append(Storm(label, tickets, low))
                break
    storms.sort(key=lambda s: (s.began, s.label))
    return storms


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` (UTC)."""
    return f"{moment.year:04d}-{moment.month:02d}"


def months_between(first: datetime, last: datetime) -> list[str]:
    """Every calendar month from ``first`` to ``last``, both included."""
    out = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def score(labels: Mapping[str, str], opened: Mapping[str, datetime], incidents: Iterable[Incident],
          first: datetime | None, last: datetime | None, spec: StormSpec = StormSpec(),
          since: datetime | None = None) -> Score:
    """Score ``incidents`` against ``labels`` (ticket id -> label) over the history from ``first`` to
    ``last``. With ``since``, storms that begin before it are left out (those tickets only warmed the
    baselines) and the months counted start there."""
    declared = sorted(incidents, key=lambda inc: inc.declared_at)
    result = Score(spec=spec, declarations=len(declared))
    if first is None or last is None:
        return result
    begin = max(first, since) if since is not None else first
    months = months_between(begin, last) if begin <= last else []
    result.months_spanned = len(months)
    per_month: dict[str, dict[str, Any]] = {m: {"month": m, "storms": 0, "caught": 0, "declarations": 0,
                                                "labelled": 0, "majority": 0, "delays": []} for m in months}

    # purity
    holders: dict[str, list[int]] = {}
    majority_total = labelled_total = 0
    for index, inc in enumerate(declared):
        counts: dict[str, int] = {}
        for ticket_id in inc.tickets:
            holders.setdefault(ticket_id, []).append(index)
            label = labels.get(ticket_id)
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
        bucket = per_month.get(month_of(inc.declared_at))
        if bucket is not None:
            bucket["declarations"] += 1
        if counts:
            labelled, majority = sum(counts.values()), max(counts.values())
            labelled_total += labelled
            majority_total += majority
            if bucket is not None:
                bucket["labelled"] += labelled
                bucket["majority"] += majority
    result.labelled_in_incidents = labelled_total
    result.purity = majority_total / labelled_total if labelled_total else None

    # recall and delay
    for storm in find_storms(labels, opened, spec):
        if since is not None and storm.began < since:
            continue
        result.storms += 1
        bucket = per_month.get(month_of(storm.began))
        if bucket is not None:
            bucket["storms"] += 1
        held: dict[int, int] = {}
        for _, ticket_id in storm.tickets:
            for index in holders.get(ticket_id, ()):
                held[index] = held.get(index, 0) + 1
        catching = [index for index, count in held.items() if count >= spec.caught]
        if not catching:
            result.missed.append(storm.label)
            continue
        first_catch = min(catching)
        result.caught += 1
        result.caught_by[storm.label] = ",".join(declared[first_catch].tickets[:1])
        fifth = storm.tickets[min(storm.start + spec.caught - 1, len(storm.tickets) - 1)][0]
        delay = (declared[first_catch].declared_at - fifth).total_seconds()
        result.delays.append(delay)
        if bucket is not None:
            bucket["caught"] += 1
            bucket["delays"].append(delay)

    for name in months:
        bucket = per_month[name]
        delays = bucket.pop("delays")
        labelled, majority = bucket.pop("labelled"), bucket.pop("majority")
        bucket["recall"] = _round(bucket["caught"] / bucket["storms"]) if bucket["storms"] else None
        bucket["purity"] = _round(majority / labelled) if labelled else None
        bucket["delay_median_s"] = _round(_median(delays))
        bucket["delay_p90_s"] = _round(_p90(delays))
        result.months.append(bucket)
    return result


def render_score(result: Score) -> str:
    """The score as a table: the totals, then one line per month."""
    data = result.to_dict()

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value / 60:.1f} min"

    lines = [f"score against the history's links (storm = {result.spec.size} tickets of one label within "
             f"{format_duration(result.spec.within)}; caught = {result.spec.caught} in one major incident)",
             f"  labelled storms {data['storms']}, caught {data['caught']} (recall {pct(data['recall'])}), "
             f"purity {pct(data['purity'])} of {data['labelled_in_incidents']} labelled tickets in major incidents",
             f"  {data['declarations']} declarations over {data['months_spanned']} months "
             f"({'-' if data['declarations_per_month'] is None else round(data['declarations_per_month'], 2)} per month, "
             f"busiest month {max((m['declarations'] for m in result.months), default=0)}), "
             f"delay median {secs(data['delay_median_s'])}, p90 {secs(data['delay_p90_s'])}"]
    if result.months:
        header = f"  {'month':<8} {'storms':>6} {'caught':>6} {'recall':>7} {'purity':>7} {'declared':>8} {'delay med':>10} {'delay p90':>10}"
        lines += ["", header, "  " + "-" * (len(header) - 2)]
        for month in result.months:
            lines.append(f"  {month['month']:<8} {month['storms']:>6} {month['caught']:>6} {pct(month['recall']):>7} "
                         f"{pct(month['purity']):>7} {month['declarations']:>8} {secs(month['delay_median_s']):>10} "
                         f"{secs(month['delay_p90_s']):>10}")
    if result.missed:
        shown = ", ".join(result.missed[:10]) + (" ..." if len(result.missed) > 10 else "")
        lines.append(f"  missed: {shown}")
    return "\n".join(lines)


def score_replay(tickets: Sequence[Any], labels: Mapping[str, str], result: Any, spec: StormSpec = StormSpec(),
                 since: datetime | None = None) -> Score:
    """Score a replay (:class:`connector.tools.backtest.BacktestResult`) of ``tickets`` (in time order)
    against ``labels``."""
    opened = {t.id: t.opened_at for t in tickets}
    incidents = [Incident(inc.declaration.detected_at, inc.ticket_ids) for inc in result.incidents]
    first = tickets[0].opened_at if tickets else None
    last = tickets[-1].opened_at if tickets else None
    return score(labels, opened, incidents, first, last, spec, since)


__all__ = ["StormSpec", "Storm", "Incident", "Score", "parse_storm", "find_storms", "score", "score_replay",
           "render_score", "months_between", "month_of"]
