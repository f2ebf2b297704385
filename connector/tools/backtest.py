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
from connector.core.ticket import CANONICAL_FIELDS, Ticket
from connector.detection.baseline import Baselines, learn_tickets
from connector.detection.engine import Declaration, Detector, LateLink, ThresholdFn
from connector.detection.rules import Rule
from connector.tools.history import Skipped, read_history


@dataclass
class ReplayedIncident:
    """One major incident the rules would have declared during the replay."""

    declaration: Declaration
    late: list[LateLink] = field(default_factory=list)

    @property
    def ticket_ids(self) -> list[str]:
        """Every ticket the major incident holds: those that declared it and its late children."""
        return [t.id for t in self.declaration.tickets] + [link.ticket.id for link in self.late]

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
    warmed: int = 0
    """Tickets before ``since`` that only taught the baselines."""
    baselines: Baselines | None = None

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
            **({"warm_up_tickets": self.warmed} if self.warmed else {}),
        }


def replay(tickets: Iterable[Ticket], rules: Sequence[Rule], threshold: ThresholdFn | None = None,
           presorted: bool = False, since: datetime | None = None) -> BacktestResult:
    """Run every ticket through one :class:`Detector` in ``opened_at`` order; the baselines of surge rules
    learn as the stream goes. With ``since``, the tickets opened before it only teach the baselines (as the
    warm-up of a first sync does) and the replay starts there."""
    ordered = tickets if presorted else sorted(tickets, key=lambda t: (t.opened_at, t.id))
    baselines = Baselines(rules)
    result = BacktestResult(baselines=baselines)
    if since is not None:
        ordered = list(ordered)
        split = next((i for i, t in enumerate(ordered) if t.opened_at >= since), len(ordered))
        learn_tickets(baselines, rules, ordered[:split], since, ordered[0].opened_at if ordered else None)
        result.warmed = split
        ordered = ordered[split:]
    detector = Detector(rules, threshold=threshold, baselines=baselines)
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


def _first_versions(tickets: Iterable[Ticket], skipped: Skipped,
                    label_of: Callable[[Ticket], str | None] | None = None,
                    labels: dict[str, str] | None = None) -> list[Ticket]:
    """One ticket per id: an export may hold several versions of a ticket, and the rules judge a ticket as
    it was when it arrived (the earliest version). Later versions are counted as skipped rows. With
    ``label_of``, ``labels`` gets each ticket's label from its latest version (links are made later)."""
    first: dict[str, Ticket] = {}
    latest: dict[str, Ticket] = {}
    for ticket in tickets:
        seen = first.get(ticket.id)
        if seen is None:
            first[ticket.id] = ticket
            if label_of is not None:
                latest[ticket.id] = ticket
            continue
        skipped.add(f"ticket {ticket.id}: another version of the same ticket")
        stamp = ticket.updated_at or ticket.opened_at
        if stamp < (seen.updated_at or seen.opened_at):
            first[ticket.id] = ticket
        if label_of is not None and stamp >= (latest[ticket.id].updated_at or latest[ticket.id].opened_at):
            latest[ticket.id] = ticket
    if label_of is not None and labels is not None:
        for ticket_id, ticket in latest.items():
            label = label_of(ticket)
            if label is not None:
                labels[ticket_id] = label
    return list(first.values())


LABEL_MISSING = frozenset({"", "?", "#N/B", "#MULTIVALUE"})
"""Values of a label field that mean "not linked"."""


def label_reader(name: str, missing: Iterable[str] = ()) -> Callable[[Ticket], str | None]:
    """How a ticket's label is read: a canonical field (``parent``), else a key of its record (an export
    column such as ``problem_id``, or an extra key of canonical JSONL)."""
    blank = LABEL_MISSING | set(missing)
    canonical = name in CANONICAL_FIELDS

    def read(ticket: Ticket) -> str | None:
        value = ticket.__dict__.get(name) if canonical else ticket.raw.get(name)
        if value is None:
            return None
        text = str(value).strip()
        return None if text in blank else text

    return read


@dataclass
class Labelled:
    """A history read for scoring: the tickets (their links removed) and each ticket's label."""

    tickets: list[Ticket]
    labels: dict[str, str]
    skipped: Skipped


def read_labelled(path: Path, rules: Sequence[Rule], mapping_for: Callable[[str], Mapping], platform: str | None = None,
                  progress: Callable[[int], None] | None = None, label: str = "parent") -> Labelled:
    """Read ``path`` for a scored backtest: labels from ``label`` (a canonical field or a record key, from
    each ticket's latest version), and the tickets as they arrived with their links removed, so that the
    replay runs as if nothing had been linked. A parent that is a ticket of the history carries its own id
    as its label."""
    skipped = Skipped()
    needed: set[str] = set()
    for rule in rules:
        needed |= rule.fields_used()
    if label in CANONICAL_FIELDS:
        needed.add(label)

    def restricted(name: str) -> Mapping:
        return mapping_for(name).restricted(needed)

    def last_columns(mapping: Mapping) -> list[str]:
        if label not in CANONICAL_FIELDS:
            return [label]
        export = mapping.spec.export
        source = (export.fields.get(label) if export else None) or mapping.spec.fields.get(label)
        return [source] if isinstance(source, str) else list(source or [])

    missing: set[str] = set()
    labels: dict[str, str] = {}
    with gc_paused():
        read = read_history(path, restricted, platform, skipped, progress, last_columns)
        tickets = _first_versions(read, skipped, label_reader(label, missing), labels)
    ids = {t.id for t in tickets}
    for parent in set(labels.values()):
        if parent in ids and parent not in labels:
            labels[parent] = parent
    for ticket in tickets:
        if ticket.__dict__["parent"] is not None:
            ticket.__dict__["parent"] = None
    return Labelled(tickets, labels, skipped)


def run_backtest(path: Path, rules: Sequence[Rule], mapping_for: Callable[[str], Mapping], platform: str | None = None,
                 progress: Callable[[int], None] | None = None, threshold: ThresholdFn | None = None,
                 since: datetime | None = None) -> BacktestResult:
    """Read ``path`` (see :func:`connector.history.read_history`) and replay it through ``rules``."""
    skipped = Skipped()
    needed: set[str] = set()
    for rule in rules:
        needed |= rule.fields_used()

    def restricted(name: str) -> Mapping:
        return mapping_for(name).restricted(needed)

    with gc_paused():
        tickets = _first_versions(read_history(path, restricted, platform, skipped, progress), skipped)
        result = replay(tickets, rules, threshold, since=since)
    result.skipped, result.skipped_examples = skipped.count, skipped.examples
    return result
