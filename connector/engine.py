"""The pure detection engine: tickets + known major incidents + rules + now -> decisions.

No I/O, no clock reads, no logging. The :class:`Detector` is a streaming machine that the backtest feeds
ticket by ticket in ``opened_at`` order; :func:`decide` wraps it for one sync cycle.

Cost per ticket is amortised O(1) in the window size: every group keeps a deque of the tickets inside its
window plus running counts (and a counter of distinct values), each ticket enters and leaves each window
once, and a ticket consumed by one rule is struck from every other window in O(number of rules).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Literal, Sequence

from .model import Ticket
from .rules import Rule, compile_when

Group = tuple[str, ...]
ThresholdFn = Callable[[Rule, Group, datetime], int]
"""Returns the threshold for a rule's group at a time; lets a per-group baseline replace the fixed one."""


@dataclass
class MajorIncident:
    """A major incident the engine knows about: open ones collect late children, rejected ones
    suppress a new proposal for the same group within the rule's window."""

    id: str
    rule: str
    group: Group
    started_at: datetime
    declared_at: datetime
    status: Literal["open", "rejected", "closed"] = "open"
    key: str | None = None
    children: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Declaration:
    """A rule declared a major incident: ``mi_id`` is the parent ticket id or a synthetic ``new-…`` id."""

    mi_id: str
    rule: str
    mode: str
    parent_mode: str
    group_fields: tuple[str, ...]
    group: Group
    detected_at: datetime
    started_at: datetime
    tickets: tuple[Ticket, ...]
    parent: Ticket | None
    set_fields: dict[str, object]

    @property
    def new_parent(self) -> bool:
        """True when the connector must create the parent ticket."""
        return self.parent is None

    @property
    def children(self) -> list[Ticket]:
        """Triggering tickets other than the parent."""
        return [t for t in self.tickets if self.parent is None or t.id != self.parent.id]

    @property
    def triggered_by(self) -> list[str]:
        """Ids of every ticket that made the rule fire."""
        return [t.id for t in self.tickets]


@dataclass(frozen=True)
class LateLink:
    """A ticket that arrived after declaration and joins the open major incident ``mi_id``."""

    ticket: Ticket
    mi_id: str
    rule: str
    group: Group
    at: datetime


Event = Declaration | LateLink
_OPEN = frozenset({"new", "in_progress", "on_hold"})


class _Entry:
    __slots__ = ("ticket", "alive", "windows")

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.alive = True
        self.windows: list[tuple[_Window, object]] = []


class _Window:
    __slots__ = ("entries", "counts", "alive")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, _Entry, object]] = deque()
        self.counts: dict[object, int] = {}
        self.alive = 0

    def drop(self, entry: _Entry, value: object) -> None:
        self.alive -= 1
        left = self.counts[value] - 1
        if left:
            self.counts[value] = left
        else:
            del self.counts[value]


class _CompiledRule:
    __slots__ = ("rule", "id", "when", "fields", "window", "distinct", "late", "windows", "threshold")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.when = compile_when(rule.when)
        self.fields = tuple(rule.group_by)
        surge = rule.surge
        self.window = surge.window.total_seconds() if surge else 0.0
        self.distinct = surge.distinct if surge else None
        self.threshold = surge.threshold if surge else 1
        # Without group fields every ticket would "match" the incident, so only grouped rules collect late children.
        has_late = rule.late_children is not None and bool(self.fields)
        self.late = rule.late_children.total_seconds() if has_late and rule.late_children else None
        self.windows: dict[Group, _Window] = {}

    def group_of(self, ticket: Ticket) -> Group | None:
        values = []
        for name in self.fields:
            value = getattr(ticket, name)
            if value is None or value == "":
                return None
            values.append(str(value))
        return tuple(values)


def new_parent_id(rule: str, group: Group, first_ticket_id: str) -> str:
    """Deterministic synthetic id of a parent the connector will create."""
    digest = hashlib.sha1("\x1f".join((rule, *group, first_ticket_id)).encode("utf-8")).hexdigest()
    return f"new-{digest[:16]}"


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class Detector:
    """Streaming surge detector. Feed tickets in ``opened_at`` order; each call returns the events it
    caused. Rules are evaluated in the order given; the first rule that declares or links a ticket
    consumes it."""

    _SWEEP_EVERY = 4096

    def __init__(self, rules: Sequence[Rule], known: Iterable[MajorIncident] = (),
                 threshold: ThresholdFn | None = None) -> None:
        self._rules = [_CompiledRule(r) for r in rules]
        self._by_id = {cr.id: cr for cr in self._rules}
        self._late_rules = [cr for cr in self._rules if cr.late is not None]
        self._threshold = threshold
        self._open: dict[tuple[str, Group], tuple[MajorIncident, float, float]] = {}
        self._rejected: dict[tuple[str, Group], float] = {}
        self._fed = 0
        for mi in known:
            self.register(mi)

    def register(self, mi: MajorIncident) -> None:
        """Make the detector aware of a major incident declared earlier (by it or a previous cycle)."""
        cr = self._by_id.get(mi.rule)
        if cr is None:
            return
        key = (mi.rule, mi.group)
        if mi.status == "rejected":
            self._rejected[key] = max(self._rejected.get(key, 0.0), _ts(mi.declared_at) + cr.window)
        elif mi.status == "open" and cr.late is not None:
            low = _ts(mi.started_at) - cr.window
            high = _ts(mi.declared_at) + cr.late
            self._open[key] = (mi, low, high)

    def feed(self, ticket: Ticket) -> list[Event]:
        """Process one ticket; returns the declaration or late link it caused (or nothing)."""
        # Linked tickets and any ticket humans or we already put in the major incident lifecycle (including
        # a rejected candidate) are left alone.
        if ticket.parent is not None or ticket.major != "none":
            return []
        self._fed += 1
        if self._fed % self._SWEEP_EVERY == 0:
            self._sweep(ticket.opened_at.timestamp())
        ts = ticket.opened_at.timestamp()
        if self._open and ticket.state in _OPEN:
            link = self._late_link(ticket, ts)
            if link is not None:
                return [link]
        entry: _Entry | None = None
        for cr in self._rules:
            if not cr.when(ticket):
                continue
            group = cr.group_of(ticket)
            if group is not None and self._rejected:
                key = (cr.id, group)
                until = self._rejected.get(key)
                if until is not None:
                    if ts < until:
                        continue
                    del self._rejected[key]
            if cr.rule.surge is None:
                if entry is not None:
                    self._kill(entry)
                return [self._declare(cr, group or (), [ticket], ts)]
            if group is None:
                continue
            window = cr.windows.get(group)
            if window is None:
                window = cr.windows[group] = _Window()
            else:
                self._expire(window, ts - cr.window)
            if entry is None:
                entry = _Entry(ticket)
            value: object = getattr(ticket, cr.distinct) if cr.distinct else None
            if cr.distinct and (value is None or value == ""):
                value = ("\x00ticket", ticket.id)
            window.entries.append((ts, entry, value))
            window.counts[value] = window.counts.get(value, 0) + 1
            window.alive += 1
            entry.windows.append((window, value))
            size = len(window.counts) if cr.distinct else window.alive
            limit = self._threshold(cr.rule, group, ticket.opened_at) if self._threshold else cr.threshold
            if size >= limit:
                members = [e.ticket for _, e, _ in window.entries if e.alive]
                for _, e, _ in list(window.entries):
                    if e.alive:
                        self._kill(e)
                window.entries.clear()
                del cr.windows[group]
                return [self._declare(cr, group, members, ts)]
        return []

    def _late_link(self, ticket: Ticket, ts: float) -> LateLink | None:
        """A late ticket joins an open major incident of the same group (any rule that collects late
        children), whatever that rule's other conditions were: the group is what ties it to the incident."""
        for cr in self._late_rules:
            group = cr.group_of(ticket)
            if group is None:
                continue
            key = (cr.id, group)
            known = self._open.get(key)
            if known is None:
                continue
            mi, low, high = known
            if low <= ts <= high:
                mi.children.add(ticket.id)
                return LateLink(ticket, mi.id, cr.id, group, ticket.opened_at)
            if ts > high:
                del self._open[key]
        return None

    def flush(self) -> None:
        """Drop every window (end of a replay); known major incidents stay."""
        for cr in self._rules:
            cr.windows.clear()

    # -- internals ---------------------------------------------------------------------------------

    def _kill(self, entry: _Entry) -> None:
        if not entry.alive:
            return
        entry.alive = False
        for window, value in entry.windows:
            window.drop(entry, value)
        entry.windows.clear()

    @staticmethod
    def _expire(window: _Window, horizon: float) -> None:
        entries = window.entries
        while entries and entries[0][0] < horizon:
            _, entry, value = entries.popleft()
            if entry.alive:
                window.drop(entry, value)
                for i, (w, _) in enumerate(entry.windows):
                    if w is window:
                        del entry.windows[i]
                        break

    def _sweep(self, now_ts: float) -> None:
        for cr in self._rules:
            stale = []
            for group, window in cr.windows.items():
                self._expire(window, now_ts - cr.window)
                if not window.entries:
                    stale.append(group)
            for group in stale:
                del cr.windows[group]
        for key in [k for k, (_, _, high) in self._open.items() if high < now_ts]:
            del self._open[key]
        for key in [k for k, until in self._rejected.items() if until < now_ts]:
            del self._rejected[key]

    def _declare(self, cr: _CompiledRule, group: Group, tickets: list[Ticket], ts: float) -> Declaration:
        rule = cr.rule
        tickets = sorted(tickets, key=lambda t: (t.opened_at, t.id))
        mode = rule.declare.parent
        parent: Ticket | None
        if mode == "new":
            parent = None
            mi_id = new_parent_id(rule.id, group, tickets[0].id)
        elif mode == "highest_priority":
            parent = min(tickets, key=lambda t: (t.priority or 99, t.opened_at, t.id))
            mi_id = parent.id
        else:
            parent = tickets[0]
            mi_id = parent.id
        detected = _dt(ts)
        started = tickets[0].opened_at
        decl = Declaration(
            mi_id=mi_id, rule=rule.id, mode=rule.declare.mode, parent_mode=mode,
            group_fields=cr.fields, group=group, detected_at=detected, started_at=started,
            tickets=tuple(tickets), parent=parent, set_fields=dict(rule.declare.set),
        )
        if cr.late is not None:
            mi = MajorIncident(mi_id, rule.id, group, started, detected,
                               key=parent.key if parent else None,
                               children={t.id for t in decl.children})
            self._open[(rule.id, group)] = (mi, started.timestamp() - cr.window, ts + cr.late)
        return decl


def marker_for(rule: str, mi_id: str | None = None) -> str:
    """The marker the connector leaves on a major incident it declared (``mim:<rule>[:<new id>]``)."""
    return f"mim:{rule}" if not mi_id or not mi_id.startswith("new-") else f"mim:{rule}:{mi_id}"


def parse_marker(marker: str | None) -> tuple[str, str | None] | None:
    """``(rule, synthetic id or None)`` from a marker, or None when it is not ours."""
    if not marker or not marker.startswith("mim:"):
        return None
    parts = marker.split(":")
    if len(parts) < 2 or not parts[1]:
        return None
    return parts[1], (parts[2] if len(parts) > 2 and parts[2] else None)


def major_incidents_from_tickets(tickets: Iterable[Ticket], rules: Sequence[Rule]) -> list[MajorIncident]:
    """Rebuild the major incidents the connector declared from the markers it left on the platform, so
    that a lost state file never causes a second declaration. Children are the tickets whose ``parent``
    points at a major incident."""
    by_rule = {r.id: r for r in rules}
    found: dict[str, MajorIncident] = {}
    ticket_list = list(tickets)
    for t in ticket_list:
        parsed = parse_marker(t.marker)
        if parsed is None or t.major == "none":
            continue
        rule = by_rule.get(parsed[0])
        if rule is None:
            continue
        group = tuple(str(getattr(t, f) or "") for f in rule.group_by)
        if t.major in ("rejected", "canceled"):
            status: Literal["open", "rejected", "closed"] = "rejected"
        elif t.is_open:
            status = "open"
        else:
            status = "closed"
        declared = t.updated_at or t.opened_at
        found[t.id] = MajorIncident(t.id, rule.id, group, t.opened_at, declared, status, key=t.key)
    for t in ticket_list:
        if t.parent in found:
            found[t.parent].children.add(t.id)
    return list(found.values())


@dataclass
class Decisions:
    """What one evaluation decided."""

    declarations: list[Declaration] = field(default_factory=list)
    late_links: list[LateLink] = field(default_factory=list)


def decide(tickets: Iterable[Ticket], known: Iterable[MajorIncident], rules: Sequence[Rule], now: datetime,
           threshold: ThresholdFn | None = None) -> Decisions:
    """Evaluate ``tickets`` (the recent window plus this cycle's delta) against ``rules``.

    ``known`` are the major incidents already declared (open, rejected or closed). Tickets are
    de-duplicated by id (the most recently updated copy wins) and replayed in ``opened_at`` order;
    tickets opened after ``now`` wait for a later cycle.
    """
    latest: dict[str, Ticket] = {}
    for t in tickets:
        seen = latest.get(t.id)
        if seen is None or (t.updated_at or t.opened_at) >= (seen.updated_at or seen.opened_at):
            latest[t.id] = t
    detector = Detector(rules, known, threshold)
    out = Decisions()
    for t in sorted(latest.values(), key=lambda x: (x.opened_at, x.id)):
        if t.opened_at > now:
            continue
        for event in detector.feed(t):
            if isinstance(event, Declaration):
                out.declarations.append(event)
            else:
                out.late_links.append(event)
    return out


def window_horizon(rules: Sequence[Rule]) -> timedelta:
    """How far back a cycle must look to evaluate every window and late-children period."""
    longest = timedelta(0)
    for rule in rules:
        span = (rule.surge.window if rule.surge else timedelta(0)) + (rule.late_children or timedelta(0))
        longest = max(longest, span)
    return longest
