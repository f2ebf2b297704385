"""The pure detection engine: tickets + known major incidents + rules + now -> decisions.

No I/O, no clock reads, no logging. The :class:`Detector` is a streaming machine that the backtest feeds
ticket by ticket in ``opened_at`` order; :func:`decide` wraps it for one sync cycle.

Cost per ticket is amortised O(1) in the window size: every surge rule keeps one time-ordered queue of the
(ticket, group window) pairs it counted, every group window keeps running counts (and a counter of distinct
values), each ticket enters and leaves each window once, and a ticket consumed by one rule is struck from
every other window in O(number of rules). A window is dropped as soon as its last ticket leaves it, so
memory follows the tickets inside the windows, not the length of the stream.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Literal, Sequence

from connector.core.ticket import OPEN_STATES, Ticket
from connector.detection.baseline import LIFECYCLE, Baselines, RuleBaseline, key_reader
from connector.detection.rules import FieldsPredicate, Rule, compile_fields_when

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
    until: datetime | None = None
    """For a rule whose late children join ``while: surge``: until when they join, as last extended."""
    same: dict[str, str | None] | None = None
    """The values a late child must share (``late_children.same``); None when not known (rebuilt)."""


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
    same: dict[str, str | None] | None = None
    """The values late children must share (``late_children.same``), when the rule asks for any."""

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
_OPEN = OPEN_STATES


# The two structures below are created for nearly every ticket and rule, so they are plain lists (a
# quarter of the cost of creating a slotted object) read through these index names.

# A ticket counted in surge windows: [ticket, alive, [(window, value, seq), ...], time]. ``alive`` turns
# False when a rule consumes the ticket; ``value`` is what it counts for in that window (distinct rules)
# and ``seq`` its position in the window's push order.
_TICKET, _ALIVE, _IN, _TS = 0, 1, 2, 3
_Entry = list

# One group's rolling window: [key, members, head, gone, pushed, counts, size]. ``members[head:]`` are
# the tickets inside it in time order (some may have been consumed since); ``gone`` counts every ticket
# that has left, ``pushed`` every one that entered, so a ticket with ``seq >= gone`` is still inside
# (or the window has closed, once its last ticket left: then nothing reads it any more).
# ``counts`` (distinct rules) counts the unconsumed tickets inside per distinct value; ``size`` (other
# rules) is the number of unconsumed tickets inside.
_KEY, _MEMBERS, _HEAD, _GONE, _PUSHED, _COUNTS, _SIZE = range(7)
_Window = list

# An open major incident that collects late children: [incident, from, until, recent] (times as epoch
# seconds). ``recent`` holds the times of its tickets still inside the window (``while: surge`` rules only:
# they keep it open while the group surges), else None.
_Open = list


def _drop(window: _Window, value: object) -> None:
    """One unconsumed ticket leaves ``window`` (expired or consumed by a rule)."""
    counts = window[_COUNTS]
    if counts is None:
        window[_SIZE] -= 1
    else:
        left = counts[value] - 1
        if left:
            counts[value] = left
        else:
            del counts[value]


Fields = dict[str, object]
"""A ticket's field values (``ticket.__dict__``). The engine reads these instead of attributes: a pydantic
model defines ``__getattr__``, which sends every attribute read down the slow generic path."""


Key = object
"""A group inside the detector: the value itself for a one-field group (no tuple to build per ticket and
rule), the tuple of values otherwise. :attr:`_CompiledRule.group` turns it back into a :data:`Group`."""


_key_reader = key_reader


class _CompiledRule:
    """A rule prepared for the detector, with its windows, the tickets they counted and its open and
    rejected major incidents, all keyed by group key."""

    __slots__ = ("rule", "id", "when", "fields", "single", "field", "key_of", "is_surge", "window", "distinct",
                 "late", "threshold", "windows", "queue", "open", "rejected", "surging", "tail", "max", "surge_p",
                 "same", "model", "min_limit", "pending", "folded_to", "next_fold", "index", "hour_end",
                 "hour_counts", "arrival")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.when = compile_fields_when(rule.when) if rule.when else None
        arrival = {name: cond for name, cond in rule.when.items() if name not in LIFECYCLE}
        self.arrival = compile_fields_when(arrival) if arrival else None
        """The conditions on what a ticket has when it arrives: a baseline learns every ticket that meets them,
        whether it is still open, linked or made major by the time a cycle replays it (as a warm-up does)."""
        self.fields = tuple(rule.group_by)
        self.single = len(self.fields) == 1
        # the one group field, read inline by the detector (most rules group by one field)
        self.field = self.fields[0] if self.single else None
        self.key_of = _key_reader(self.fields)
        surge = rule.surge
        self.is_surge = surge is not None
        self.window = surge.window.total_seconds() if surge else 0.0
        self.distinct = surge.distinct if surge else None
        self.threshold = surge.threshold if surge else 1
        # Without group fields every ticket would "match" the incident, so only grouped rules collect late
        # children. A surge rule without late_children still keeps its incident open for one window, so the
        # rest of the same surge joins it instead of declaring a second major incident for the same group.
        spec = rule.late_children
        self.surging = spec is not None and spec.while_ is not None
        """Late children join while the group's surge lasts (``while: surge``) rather than for a fixed period."""
        if self.surging and spec is not None:
            late: timedelta | None = spec.tail_period
            self.tail = spec.tail_period.total_seconds()
            self.max = spec.max_period.total_seconds()
            self.surge_p = spec.surge_probability
        else:
            late = rule.late_period if spec is not None else (surge.window if surge else None)
            self.tail = self.max = self.surge_p = 0.0
        self.late = late.total_seconds() if late is not None and self.fields else None
        self.same = tuple(spec.same) if spec is not None else ()
        self.model: RuleBaseline | None = None
        self.min_limit = self.threshold
        # a baseline rule's tickets per hour (UTC hours since the epoch) and group, until the hour is learned
        self.pending: dict[int, dict[Key, int]] = {}
        self.hour_end = float("-inf")
        """End of the hour whose counts ``hour_counts`` holds (a ticket at or after it starts the next)."""
        self.hour_counts: dict[Key, int] = {}
        self.folded_to = -(2 ** 62)
        self.next_fold = float("-inf")
        self.index = 0
        self.windows: dict[Key, _Window] = {}
        # every (time, window, ticket, value) this rule counted, in time order: what leaves the windows next
        self.queue: deque[tuple[float, _Window, _Entry, object]] = deque()
        # open major incidents that collect late children: key -> [incident, from, until, recent member times
        # (while: surge rules only)]
        self.open: dict[Key, _Open] = {}
        # rejected groups: key -> until when a new proposal is suppressed
        self.rejected: dict[Key, float] = {}

    def group(self, key: Key) -> Group:
        """The group tuple of a key."""
        return (key,) if self.single else key  # type: ignore[return-value]

    def key(self, group: Group) -> Key:
        """The key of a group tuple."""
        return group[0] if self.single else tuple(group)


def new_parent_id(rule: str, group: Group, first_ticket_id: str) -> str:
    """Deterministic synthetic id of a parent the connector will create."""
    digest = hashlib.sha1("\x1f".join((rule, *group, first_ticket_id)).encode("utf-8")).hexdigest()
    return f"new-{digest[:16]}"


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _text(value: object) -> str | None:
    """A field value as a group or ``same`` value: text, None when missing or blank."""
    if value is None or value == "":
        return None
    return value if type(value) is str else str(value)


def _most_common(tickets: Sequence[Ticket], names: Sequence[str]) -> dict[str, str | None]:
    """Per field, the value most of ``tickets`` (in time order) have; a tie goes to the earliest."""
    out: dict[str, str | None] = {}
    for name in names:
        counts: dict[str | None, int] = {}
        for t in tickets:
            value = _text(t.__dict__[name])
            counts[value] = counts.get(value, 0) + 1
        best = max(counts.values())
        out[name] = next(v for t in tickets if counts[v := _text(t.__dict__[name])] == best)
    return out


def _same_values(values: Fields, names: Sequence[str], same: dict[str, str | None]) -> bool:
    """Whether a ticket has the incident's value of every ``same`` field."""
    for name in names:
        if name in same and _text(values[name]) != same[name]:
            return False
    return True


class Detector:
    """Streaming surge detector. Feed tickets in ``opened_at`` order; each call returns the events it
    caused. Rules are evaluated in the order given; the first rule that declares or links a ticket
    consumes it."""

    _SWEEP_EVERY = 60.0
    """Seconds of ticket time between sweeps of windows, open and rejected incidents that have expired."""

    def __init__(self, rules: Sequence[Rule], known: Iterable[MajorIncident] = (),
                 threshold: ThresholdFn | None = None, baselines: Baselines | None = None) -> None:
        self._rules = [_CompiledRule(r) for r in rules]
        # surge rules with a baseline learn as the stream goes (a fresh one unless the caller keeps them)
        self.baselines = baselines if baselines is not None else Baselines(rules)
        self._learning = []
        for index, cr in enumerate(self._rules):
            cr.index = index
            cr.model = self.baselines.get(cr.id) if cr.is_surge else None
            if cr.model is not None:
                cr.min_limit = min(cr.threshold, cr.model.floor)
                self._learning.append(cr)
            elif threshold is not None:
                cr.min_limit = 1
        self._next_fold = float("-inf") if self._learning else float("inf")
        # a hole in the stream longer than a baseline's silence makes it forget (see RuleBaseline.silence_hours)
        self._silence = min((cr.model.silence_hours * 3600.0 for cr in self._learning if cr.model is not None),
                            default=float("inf"))
        self._last_ts: float | None = None
        # open while: surge incidents by id, so their tickets linked earlier still count as surging
        self._surging: dict[str, tuple[_CompiledRule, Key]] = {}
        # rules with the same conditions share one predicate, so that consecutive ones evaluate it once
        shared: dict[str, FieldsPredicate] = {}
        for cr in self._rules:
            if cr.when is not None:
                spec = repr(sorted((name, cond.model_dump(exclude_unset=True)) for name, cond in cr.rule.when.items()))
                cr.when = shared.setdefault(spec, cr.when)
        self._by_id = {cr.id: cr for cr in self._rules}
        self._late_rules = [cr for cr in self._rules if cr.late is not None]
        self._threshold = threshold
        self._open_count = 0
        self._rejected_count = 0
        self._next_sweep = float("-inf")
        for mi in known:
            self.register(mi)

    def register(self, mi: MajorIncident) -> None:
        """Make the detector aware of a major incident declared earlier (by it or a previous cycle)."""
        cr = self._by_id.get(mi.rule)
        if cr is None or (cr.fields and len(mi.group) != len(cr.fields)):
            return
        key = cr.key(mi.group)
        if mi.status == "rejected":
            if key not in cr.rejected:
                self._rejected_count += 1
            cr.rejected[key] = max(cr.rejected.get(key, 0.0), _ts(mi.declared_at) + cr.window)
        elif mi.status == "open" and cr.late is not None:
            mine = replace(mi, children=set(mi.children))  # the caller's incident is not modified
            declared = _ts(mi.declared_at)
            if cr.surging:
                until = _ts(mi.until) if mi.until is not None else declared + cr.late
                high = min(until, declared + cr.max)
                self._set_open(cr, key, [mine, _ts(mi.started_at) - cr.window, high, deque()])
            else:
                self._set_open(cr, key, [mine, _ts(mi.started_at) - cr.window, declared + cr.late, None])

    def feed(self, ticket: Ticket) -> list[Event]:
        """Process one ticket; returns the declaration or late link it caused (or nothing)."""
        values: Fields = ticket.__dict__
        opened: datetime = values["opened_at"]  # type: ignore[assignment]
        ts = opened.timestamp()
        last, self._last_ts = self._last_ts, ts
        if last is not None and ts - last > self._silence:
            self._hole(last, ts)
        if ts >= self._next_fold:
            self._fold_due(ts)
        # every baseline counts the ticket when it meets its rule's conditions on arrival, whatever happens to it
        # (counted, consumed, linked, suppressed, resolved by the time a cycle replays it); capped when its hour
        # is learned. Inlined: this runs for every ticket.
        for cr in self._learning:
            arrival = cr.arrival
            if arrival is not None and not arrival(values):
                continue
            field = cr.field
            if field is None:
                key = cr.key_of(values)
                if key is None:
                    continue
            else:
                key = values[field]
                if key is None or key == "":
                    continue
                if type(key) is not str:
                    key = str(key)
            if ts >= cr.hour_end:
                hour = int(ts // 3600)
                cr.hour_end = (hour + 1) * 3600.0
                cr.hour_counts = cr.pending.setdefault(hour, {})
            counts = cr.hour_counts
            counts[key] = counts.get(key, 0) + 1
        # Linked tickets and any ticket humans or we already put in the major incident lifecycle (including
        # a rejected candidate) are left alone (they still show that a surge goes on).
        if values["parent"] is not None or values["major"] != "none":
            if self._surging:
                self._note_linked(values, ts)
            return []
        if ts >= self._next_sweep:
            self._sweep(ts)
            self._next_sweep = ts + self._SWEEP_EVERY
        if self._open_count and values["state"] in _OPEN:
            # a cheap look for an open incident of the ticket's group before the full check
            for cr in self._late_rules:
                open_here = cr.open
                if not open_here:
                    continue
                field = cr.field
                if field is None or (v := values[field]) in open_here or (v is not None and type(v) is not str):
                    link = self._late_link(ticket, values, ts)
                    if link is not None:
                        return [link]
                    break
        entry: _Entry | None = None
        last_when: FieldsPredicate | None = None
        matched = True
        for cr in self._rules:
            when = cr.when
            if when is not None:
                if when is not last_when:
                    matched = when(values)
                    last_when = when
                if not matched:
                    continue
            field = cr.field
            if field is None:
                key = cr.key_of(values)
            else:  # cr.key_of inlined
                key = values[field]
                if key is None or key == "":
                    key = None
                elif type(key) is not str:
                    key = str(key)
            if key is not None and self._rejected_count and key in cr.rejected:
                if ts < cr.rejected[key]:
                    continue
                del cr.rejected[key]
                self._rejected_count -= 1
            if not cr.is_surge:
                if entry is not None:
                    self._kill(entry)
                return [self._declare(cr, () if key is None else cr.group(key), [ticket], ts)]
            if key is None:
                continue
            windows = cr.windows
            window = windows.get(key)
            if window is not None and window[_MEMBERS][window[_HEAD]][_TS] < ts - cr.window:
                # the window's oldest ticket has left it: let every ticket this rule counted before the
                # horizon leave (other windows catch up here too, or at the next sweep)
                self._expire(cr, ts - cr.window)
                window = windows.get(key)
            if entry is None:
                entry = [ticket, True, [], ts]
            distinct = cr.distinct
            if distinct is None:
                value: object = None
            else:
                value = values[distinct]
                if value is None or value == "":
                    value = ("\x00ticket", values["id"])
            if window is None:  # most windows: the first ticket of its group in a while
                window = windows[key] = [key, [entry], 0, 0, 1, None if distinct is None else {value: 1}, 1]
                size = 1
                seq = 0
            else:
                counts = window[_COUNTS]
                if counts is None:
                    size = window[_SIZE] = window[_SIZE] + 1
                else:
                    counts[value] = counts.get(value, 0) + 1
                    size = len(counts)
                seq = window[_PUSHED]
                window[_PUSHED] = seq + 1
                window[_MEMBERS].append(entry)
            cr.queue.append((ts, window, entry, value))
            entry[_IN].append((window, value, seq))
            if size < cr.min_limit:
                continue
            model = cr.model
            if model is not None:
                limit = model.limit(key, ts)
            elif self._threshold is not None:
                limit = self._threshold(cr.rule, cr.group(key), opened)
            else:
                limit = cr.threshold
            if size >= limit:
                members = [e for e in window[_MEMBERS][window[_HEAD]:] if e[_ALIVE]]
                for e in members:
                    self._kill(e)
                del windows[key]
                return [self._declare(cr, cr.group(key), [e[_TICKET] for e in members], ts)]
        return []

    def _late_link(self, ticket: Ticket, values: Fields, ts: float) -> LateLink | None:
        """A late ticket joins an open major incident of the same group (any rule that collects late
        children), whatever that rule's other conditions were: the group is what ties it to the incident."""
        for cr in self._late_rules:
            if not cr.open:
                continue
            field = cr.field
            key = cr.key_of(values) if field is None else values[field]
            if type(key) is not str and key is not None and field is not None:
                key = str(key)
            known = cr.open.get(key)
            if known is None:
                continue
            mi, low, high, recent = known
            if mi.id == ticket.id:
                continue  # an incident whose declaration has not reached the platform yet is not its own child
            if low <= ts <= high:
                if cr.same and mi.same is not None and not _same_values(values, cr.same, mi.same):
                    continue
                mi.children.add(ticket.id)
                if recent is not None:
                    self._extend(cr, key, known, ts)
                return LateLink(ticket, mi.id, cr.id, cr.group(key), ticket.opened_at)
            if ts > high:
                self._del_open(cr, key)
        return None

    def _extend(self, cr: _CompiledRule, key: Key, known: _Open, ts: float) -> None:
        """A ticket of a ``while: surge`` incident at ``ts``: while the incident's tickets in the window are
        still improbable under the group's baseline (without one: at least half the threshold), late tickets
        keep joining for ``tail`` more (never longer than ``max`` after the declaration)."""
        recent: deque[float] = known[3]
        recent.append(ts)
        horizon = ts - cr.window
        while recent[0] < horizon:
            recent.popleft()
        model = cr.model
        if model.surging(key, ts, len(recent), cr.surge_p) if model is not None else 2 * len(recent) >= cr.threshold:
            mi: MajorIncident = known[0]
            known[2] = max(known[2], min(ts + cr.tail, _ts(mi.declared_at) + cr.max))

    def _note_linked(self, values: Fields, ts: float) -> None:
        """A ticket already linked to (or being) an open ``while: surge`` incident counts towards its surge."""
        mi_id = values["parent"] if values["parent"] is not None else values["id"]
        found = self._surging.get(str(mi_id))
        if found is None:
            return
        cr, key = found
        known = cr.open.get(key)
        if known is not None and known[0].id == mi_id and known[1] <= ts <= known[2]:
            self._extend(cr, key, known, ts)

    def open_until(self) -> dict[str, datetime]:
        """Until when each open ``while: surge`` incident collects late children (for the registry)."""
        return {mi_id: _dt(cr.open[key][2]) for mi_id, (cr, key) in self._surging.items()}

    def settle(self, now: datetime) -> None:
        """Learn every hour whose tickets have all left their windows by ``now`` (end of a cycle)."""
        ts = now.timestamp()
        for cr in self._learning:
            self._fold_rule(cr, int((ts - cr.window) // 3600))

    def flush(self) -> None:
        """Drop every window (end of a replay); known major incidents stay."""
        for cr in self._rules:
            for window in cr.windows.values():
                window[_MEMBERS].clear()
            cr.windows.clear()
            cr.queue.clear()

    # -- internals ---------------------------------------------------------------------------------

    def _set_open(self, cr: _CompiledRule, key: Key, value: _Open) -> None:
        old = cr.open.get(key)
        if old is None:
            self._open_count += 1
        else:
            self._unmap(cr, key, old)
        cr.open[key] = value
        if cr.surging:
            self._surging[value[0].id] = (cr, key)

    def _del_open(self, cr: _CompiledRule, key: Key) -> None:
        self._unmap(cr, key, cr.open.pop(key))
        self._open_count -= 1

    def _unmap(self, cr: _CompiledRule, key: Key, old: _Open) -> None:
        """Forget the id of a ``while: surge`` incident no longer open (unless the id now names another)."""
        if cr.surging and self._surging.get(old[0].id) == (cr, key):
            del self._surging[old[0].id]

    def _hole(self, last: float, ts: float) -> None:
        """No ticket at all between ``last`` and ``ts``: the baselines whose silence the gap exceeds forget what
        they learned before it, pending hours included (a stray ticket years before the rest of a history). A
        ticket older than what a baseline has learned (an old ticket updated today, in a cycle's replay) teaches
        it nothing and opens no hole for it."""
        for cr in self._learning:
            model = cr.model
            if model is None or ts - last <= model.silence_hours * 3600.0:
                continue
            if model.learned_to is not None and last < model.learned_to * 3600.0:
                continue
            model.forget()
            cr.pending.clear()
            cr.hour_end, cr.hour_counts = float("-inf"), {}
            cr.folded_to, cr.next_fold = -(2 ** 62), float("-inf")
        self._next_fold = float("-inf")

    def _fold_due(self, ts: float) -> None:
        """Learn the hours whose tickets have all left the window by ``ts``, for every baseline rule."""
        soonest = float("inf")
        for cr in self._learning:
            if ts >= cr.next_fold:
                self._fold_rule(cr, int((ts - cr.window) // 3600))
            soonest = min(soonest, cr.next_fold)
        self._next_fold = soonest

    def _fold_rule(self, cr: _CompiledRule, boundary: int) -> None:
        """Learn, for ``cr``'s baseline, every hour before ``boundary`` (UTC hours since the epoch): all its
        tickets have left the window by now."""
        if boundary <= cr.folded_to:
            return
        model = cr.model
        if model is None:
            return
        pending = cr.pending
        for hour in sorted(h for h in pending if h < boundary):
            model.fold(hour, pending.pop(hour))
        if cr.hour_end <= boundary * 3600.0:
            cr.hour_end, cr.hour_counts = float("-inf"), {}
        model.advance(boundary)
        cr.folded_to = boundary
        cr.next_fold = (boundary + 1) * 3600.0 + cr.window

    @staticmethod
    def _kill(entry: _Entry) -> None:
        """A rule consumed the ticket: it no longer counts in any window it is still inside."""
        if not entry[_ALIVE]:
            return
        entry[_ALIVE] = False
        for window, value, seq in entry[_IN]:
            if seq >= window[_GONE]:
                _drop(window, value)
        entry[_IN].clear()

    @staticmethod
    def _expire(cr: _CompiledRule, horizon: float) -> None:
        """Every ticket counted by ``cr`` before ``horizon`` leaves its window; empty windows are dropped."""
        queue = cr.queue
        windows = cr.windows
        while queue and queue[0][0] < horizon:
            _, window, entry, value = queue.popleft()
            members = window[_MEMBERS]
            head = window[_HEAD] + 1
            if head == len(members):
                # the last ticket left: forget the window, without counting it down first (a ticket
                # consumed later may still count itself out of it; nothing reads it any more). Clearing
                # its members leaves no reference cycle between tickets and windows for the collector.
                members.clear()
                if windows.get(window[_KEY]) is window:
                    del windows[window[_KEY]]
                continue
            if entry[_ALIVE]:
                counts = window[_COUNTS]
                if counts is None:
                    window[_SIZE] -= 1
                else:
                    left = counts[value] - 1
                    if left:
                        counts[value] = left
                    else:
                        del counts[value]
            window[_GONE] += 1
            if head >= 64 and 2 * head >= len(members):
                del members[:head]
                window[_HEAD] = 0
            else:
                window[_HEAD] = head

    def _sweep(self, now_ts: float) -> None:
        for cr in self._rules:
            queue = cr.queue
            if queue and queue[0][0] < now_ts - cr.window:
                self._expire(cr, now_ts - cr.window)
            if cr.open:
                for key in [k for k, (_, _, high, _) in cr.open.items() if high < now_ts]:
                    self._del_open(cr, key)
            if cr.rejected:
                for key in [k for k, until in cr.rejected.items() if until < now_ts]:
                    del cr.rejected[key]
                    self._rejected_count -= 1

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
        same = _most_common(tickets, cr.same) if cr.same else None
        decl = Declaration(
            mi_id=mi_id, rule=rule.id, mode=rule.declare.mode, parent_mode=mode,
            group_fields=cr.fields, group=group, detected_at=detected, started_at=started,
            tickets=tuple(tickets), parent=parent, set_fields=dict(rule.declare.set), same=same,
        )
        if cr.late is not None and len(group) == len(cr.fields):  # a ticket without the join_by field collects none
            mi = MajorIncident(mi_id, rule.id, group, started, detected,
                               key=parent.key if parent else None,
                               children={t.id for t in decl.children}, same=same)
            low = started.timestamp() - cr.window
            if cr.surging:
                recent = deque(t.opened_at.timestamp() for t in tickets if t.opened_at.timestamp() >= ts - cr.window)
                self._set_open(cr, cr.key(group), [mi, low, min(ts + cr.late, ts + cr.max), recent])
            else:
                self._set_open(cr, cr.key(group), [mi, low, ts + cr.late, None])
        return decl


@dataclass
class Decisions:
    """What one evaluation decided."""

    declarations: list[Declaration] = field(default_factory=list)
    late_links: list[LateLink] = field(default_factory=list)
    until: dict[str, datetime] = field(default_factory=dict)
    """Until when each open ``while: surge`` incident collects late children (the registry keeps it)."""


def decide(tickets: Iterable[Ticket], known: Iterable[MajorIncident], rules: Sequence[Rule], now: datetime,
           threshold: ThresholdFn | None = None, baselines: Baselines | None = None) -> Decisions:
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
    detector = Detector(rules, known, threshold, baselines)
    out = Decisions()
    for t in sorted(latest.values(), key=lambda x: (x.opened_at, x.id)):
        if t.opened_at > now:
            continue
        for event in detector.feed(t):
            if isinstance(event, Declaration):
                out.declarations.append(event)
            else:
                out.late_links.append(event)
    detector.settle(now)
    out.until = detector.open_until()
    return out


def window_horizon(rules: Sequence[Rule]) -> timedelta:
    """How far back a cycle must look to evaluate every window and late-children period."""
    longest = timedelta(0)
    for rule in rules:
        window = rule.surge.window if rule.surge else timedelta(0)
        late = rule.late_children
        after = timedelta(0)
        if late is not None:
            after = late.fixed if late.fixed is not None else late.tail_period
        if rule.surge is not None and rule.surge.baseline is not None:
            after = max(after, timedelta(hours=1))  # a baseline learns an hour once its tickets left the window
        longest = max(longest, window + after)
    return longest
