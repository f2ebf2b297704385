"""Backtest: replay history in time order through the engine and report what the rules would have declared."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from connector.core.mapping import Mapping
from connector.core.text import one_line
from connector.core.ticket import Ticket
from connector.detection.engine import Declaration, Detector, LateLink, ThresholdFn
from connector.detection.rules import Rule
from connector.tools.history import Skipped, read_history


@dataclass
class ReplayedIncident:
    """One major incident the rules would have declared during the replay."""

    declaration: Declaration
    late: list[LateLink] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = self.declaration
        children = [t.id for t in d.children] + [link.ticket.id for link in self.late]
        return {
            "parent": d.mi_id,
            "parent_key": d.parent.key if d.parent else None,
            "new_parent": d.new_parent,
            "rule": d.rule,
            "mode": d.mode,
            "group": dict(zip(d.group_fields, d.group)),
            "first_opened_at": d.started_at.isoformat(),
            "declared_at": d.detected_at.isoformat(),
            "time_to_declare_seconds": int((d.detected_at - d.started_at).total_seconds()),
            "triggered_by": d.triggered_by,
            "children": children,
            "late_children": [link.ticket.id for link in self.late],
        }


@dataclass
class BacktestResult:
    """What a replay found."""

    tickets: int = 0
    incidents: list[ReplayedIncident] = field(default_factory=list)
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    first_ticket: datetime | None = None
    last_ticket: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        by_rule: dict[str, int] = {}
        for inc in self.incidents:
            by_rule[inc.declaration.rule] = by_rule.get(inc.declaration.rule, 0) + 1
        days = None
        if self.first_ticket and self.last_ticket:
            days = max((self.last_ticket - self.first_ticket).total_seconds() / 86400, 1 / 24)
        return {
            "tickets": self.tickets,
            "major_incidents": [inc.to_dict() for inc in self.incidents],
            "by_rule": by_rule,
            "per_day": round(len(self.incidents) / days, 3) if days else None,
            "period": {"first": self.first_ticket.isoformat() if self.first_ticket else None,
                       "last": self.last_ticket.isoformat() if self.last_ticket else None},
            "skipped_rows": self.skipped,
            "skipped_examples": self.skipped_examples,
        }


def replay(tickets: Iterable[Ticket], rules: Sequence[Rule], threshold: ThresholdFn | None = None,
           presorted: bool = False) -> BacktestResult:
    """Run every ticket through one :class:`Detector` in ``opened_at`` order."""
    ordered = tickets if presorted else sorted(tickets, key=lambda t: (t.opened_at, t.id))
    detector = Detector(rules, threshold=threshold)
    result = BacktestResult()
    by_id: dict[str, ReplayedIncident] = {}
    for ticket in ordered:
        result.tickets += 1
        if result.first_ticket is None:
            result.first_ticket = ticket.opened_at
        result.last_ticket = ticket.opened_at
        for event in detector.feed(ticket):
            if isinstance(event, Declaration):
                inc = ReplayedIncident(event)
                by_id[event.mi_id] = inc
                result.incidents.append(inc)
            else:
                owner = by_id.get(event.mi_id)
                if owner is not None:
                    owner.late.append(event)
    return result


def render_table(result: BacktestResult) -> str:
    """A human-readable summary of a backtest: columns as wide as their widest value, nothing cut, each value
    on its line (a line break inside a value is shown as ``\\n``)."""
    data = result.to_dict()
    lines = [f"{data['tickets']} tickets replayed, {len(result.incidents)} major incidents declared"
             + (f" ({data['per_day']} per day)" if data["per_day"] is not None else "")]
    if result.skipped:
        lines.append(one_line(f"{result.skipped} rows skipped (first: {result.skipped_examples[0]})"))
    if result.incidents:
        header = ("declared at (UTC)", "rule", "parent", "group", "children", "to declare")
        rows: list[tuple[str, ...]] = []
        for inc in result.incidents:
            row = inc.to_dict()
            group = ", ".join(f"{k}={v}" for k, v in row["group"].items()) or "-"
            rows.append((row["declared_at"][:19].replace("T", " "), row["rule"], row["parent_key"] or row["parent"],
                         group, str(len(row["children"])), f"{row['time_to_declare_seconds'] // 60} min"))
        rows = [tuple(one_line(cell) for cell in cells) for cells in rows]
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
        right = (False, False, False, False, True, True)

        def render(cells: tuple[str, ...]) -> str:
            return " ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)).rstrip()

        text_header = render(header)
        lines += ["", text_header, "-" * len(text_header)] + [render(row) for row in rows]
    return "\n".join(lines)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: reading an export allocates hundreds of thousands of
    long-lived, acyclic objects, and the collector would rescan them again and again (about 40% of the
    read time on the UCI log). Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _first_versions(tickets: Iterable[Ticket], skipped: Skipped) -> list[Ticket]:
    """One ticket per id: an export may hold several versions of a ticket, and the rules judge a ticket as
    it was when it arrived (the earliest version). Later versions are counted as skipped rows."""
    first: dict[str, Ticket] = {}
    for ticket in tickets:
        seen = first.get(ticket.id)
        if seen is None:
            first[ticket.id] = ticket
            continue
        skipped.add(f"ticket {ticket.id}: another version of the same ticket")
        if (ticket.updated_at or ticket.opened_at) < (seen.updated_at or seen.opened_at):
            first[ticket.id] = ticket
    return list(first.values())


def run_backtest(path: Path, rules: Sequence[Rule], mapping_for: Callable[[str], Mapping], platform: str | None = None,
                 progress: Callable[[int], None] | None = None, threshold: ThresholdFn | None = None) -> BacktestResult:
    """Read ``path`` (see :func:`connector.history.read_history`) and replay it through ``rules``."""
    skipped = Skipped()
    needed: set[str] = set()
    for rule in rules:
        needed |= rule.fields_used()

    def restricted(name: str) -> Mapping:
        return mapping_for(name).restricted(needed)

    with gc_paused():
        tickets = _first_versions(read_history(path, restricted, platform, skipped, progress), skipped)
        result = replay(tickets, rules, threshold)
    result.skipped, result.skipped_examples = skipped.count, skipped.examples
    return result
