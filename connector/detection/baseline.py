"""Per-group baselines: how many tickets a surge rule's group normally gets, by hour of week, learned causally.

A surge rule with ``surge.baseline`` compares the count in its window with what its group usually gets at
that time of the week, and fires only when the count is at least the floor *and* improbable under the
baseline (a Poisson tail, or a negative binomial one with the group's own burstiness, below
``probability``). Groups are learned one hour at a time:

* **Causal.** An hour is learned once all of its tickets have left the window (the detector folds hour
  ``H`` at the first ticket opened at or after ``H + 1h + window``), so the baseline at time t uses only
  tickets opened before ``t - window``. A ticket that a major incident consumed by then is not learned:
  the storms themselves do not teach the baseline that storms are normal. An hour's count is also
  winsorised at ``max(floor, 4 x expected)`` against storms the rules did not declare.
* **The estimate.** For group g and hour-of-week h, the expected hourly rate is
  ``max(slot(g, h), level(g) x shape(h))``: ``slot`` is g's own exponentially weighted mean for that hour
  of the week (one observation a week), ``level`` its mean over all hours, ``shape`` the rule's
  hour-of-week profile over every group (how much busier Monday 10:00 is than the average hour). The
  weighted means are bias-corrected (divided by the weights seen so far), so a baseline that has learned
  for a week is already an average of that week, not a fraction of it. ``history`` is the time constant
  of the weights (4 weeks by default: a week ago counts ``e^-1/4`` as much as this week).
* **O(1) amortised per ticket.** A ticket costs one list append when it leaves its window; once an hour
  the hour's counts are folded into the groups that had tickets (zero hours cost nothing: the decay is
  applied lazily from each group's last update). The count a group needs to fire is computed once per
  group and hour, then cached.
* **Bounded memory.** Per rule: one record per group with tickets, each holding a level, a square sum
  and at most 168 hour-of-week slots, plus 168 shape slots: at most ``groups x 168`` slots. A group whose
  weights have decayed below 1e-6 is forgotten (it is then as quiet as a group never seen).

While the baseline has learned less than ``min_history`` (a fresh state without warm-up, the start of a
backtest) the rule falls back to its fixed ``threshold`` (and, once it has learned an hour, to whatever is
higher: the threshold or what the baseline learned so far asks for, so that a busy group is not taken for
a surge while the baseline is young).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from connector.core.ticket import Ticket
from connector.detection.rules import BaselineSpec, Rule, compile_fields_when

HOURS_PER_WEEK = 168
MONDAY = 72
"""Hour 0 of the epoch (1970-01-01 00:00) is a Thursday: shifting by 72 hours makes Monday 00:00 slot 0."""
WINSOR = 4.0
"""An hour counts at most ``max(floor, WINSOR x expected)`` tickets towards the baseline..."""
CAP_DOUBLING = 6
"""... times 2 for every CAP_DOUBLING hours the group was capped within the last CAP_MEMORY hours: a storm of a
few hours barely moves the cap, a lasting change of level (a new service going live) is learned in a day."""
CAP_MEMORY = 24
REBASE = 300.0
"""Scaled sums are rebased once their factor reaches ``exp(REBASE)`` (far below a float's range)."""
FORGET = 1e-6
"""A group whose decayed sums fall below this is dropped (it is as quiet as a group never seen)."""
PRUNE_EVERY = HOURS_PER_WEEK
"""The fewest hours between passes that forget decayed groups."""
SILENCE_HOURS = 4 * HOURS_PER_WEEK
"""The shortest gap without any ticket of a rule that is taken as missing history, not as a quiet desk."""

Key = object
"""A group key as the detector holds it: the value for one-field groups, the tuple of values otherwise."""


def poisson_tail(n: int, mu: float) -> float:
    """``P(N >= n)`` for ``N ~ Poisson(mu)``, summed upward in log space (exact for tiny tails)."""
    if n <= 0:
        return 1.0
    if mu <= 0.0:
        return 0.0
    if n <= mu:
        return max(0.0, 1.0 - _poisson_cdf(n - 1, mu))
    log_term = n * math.log(mu) - mu - math.lgamma(n + 1)
    term = math.exp(log_term)
    total = 0.0
    k = n
    while term > 0.0 and (term > total * 1e-17):
        total += term
        k += 1
        term *= mu / k
        if k > n + 10_000:
            break
    return min(1.0, total)


def _poisson_cdf(n: int, mu: float) -> float:
    term = math.exp(-mu)
    total = term
    for k in range(1, n + 1):
        term *= mu / k
        total += term
    return min(1.0, total)


def nbinom_tail(n: int, mu: float, dispersion: float) -> float:
    """``P(N >= n)`` for a negative binomial with mean ``mu`` and variance ``mu x dispersion`` (Poisson when
    the dispersion is 1 or less)."""
    if dispersion <= 1.0 + 1e-9:
        return poisson_tail(n, mu)
    if n <= 0:
        return 1.0
    if mu <= 0.0:
        return 0.0
    r = mu / (dispersion - 1.0)
    q = mu / (r + mu)
    log_term = math.lgamma(n + r) - math.lgamma(r) - math.lgamma(n + 1) + r * math.log1p(-q) + n * math.log(q)
    term = math.exp(log_term)
    total = 0.0
    k = n
    while term > 0.0 and term > total * 1e-17:
        total += term
        term *= (k + r) / (k + 1) * q
        k += 1
        if k > n + 100_000:
            break
    return min(1.0, total)


@dataclass(frozen=True)
class Verdict:
    """What a baseline says of a count in a group's window at a time: shown by ``mim explain``."""

    source: str
    """``baseline``, or ``threshold`` while the baseline has learned less than ``min_history``."""
    expected: float | None
    """Expected count in the window (None without a usable baseline)."""
    probability: float | None
    """``P(count >= observed)`` under the baseline (None without one)."""
    limit: int
    """The count that fires now: the fixed threshold, or the smallest count >= floor that is improbable."""
    fires: bool
    dispersion: float = 1.0


class RuleBaseline:
    """One surge rule's learned baseline over its groups (see the module docstring).

    The sums are held per hour-of-week slot, ``by_slot[slot] = {group: sum}`` (learning an hour touches
    one dict), only for the groups that had tickets in that slot. They are kept scaled by
    ``exp((week - base_week) / history)``, so that learning adds without decaying anything first: the decay
    is one factor per slot for every group, applied when reading. The base moves forward before the
    factors grow large. With ``model: negative_binomial`` a group also keeps its hourly sum and sum of
    squares (scaled per hour), for its dispersion."""

    def __init__(self, rule: Rule) -> None:
        surge = rule.surge
        if surge is None or surge.baseline is None:
            raise ValueError(f"rule {rule.id!r} has no surge baseline")
        spec: BaselineSpec = surge.baseline
        self.rule = rule.id
        self.fingerprint = fingerprint(rule)
        self.window = surge.window.total_seconds()
        self.threshold = surge.threshold
        self.floor = spec.floor if spec.floor is not None else surge.threshold
        self.probability = spec.probability
        self.seasonal = spec.seasonality == "hour_of_week"
        self.negative_binomial = spec.model == "negative_binomial"
        hours = max(spec.history.total_seconds() / 3600.0, 1.0)
        self.k_hour = 1.0 / hours
        """Decay rate per hour: an hour ``n`` hours back weighs ``exp(-n / history)``."""
        self.k_week = HOURS_PER_WEEK / hours
        self.min_hours = max(1, math.ceil(spec.min_history.total_seconds() / 3600.0))
        self.silence_hours = max(int(hours), SILENCE_HOURS)
        """A replayed stream (``mim backtest``, the engine's) without any ticket at all for longer than this has a
        hole, not a quiet desk -- a stray ticket dated 1970 in an export: the baseline forgets what it learned
        before the hole (:meth:`forget`) and starts again after it, with the fixed threshold until
        ``min_history``. The platform's own history read by a warm-up is taken as it is."""
        self.prune_every = max(PRUNE_EVERY, int(hours))
        """Hours between passes that forget decayed groups (a weight takes about 14 x history to decay
        below :data:`FORGET`, so looking more often than once a history finds nothing new)."""
        self.zone = None if spec.time_zone.upper() == "UTC" else ZoneInfo(spec.time_zone)
        self.start: int | None = None
        """The first learned hour (UTC hours since the epoch)."""
        self.learned_to: int | None = None
        """Every hour before this one is learned."""
        self.base = 0
        """The hour the sums are scaled to (see the class docstring); ``base_week`` is its week."""
        self.base_week = 0
        self.by_slot: list[dict[Key, float]] = [{} for _ in range(HOURS_PER_WEEK)]
        """hour-of-week slot -> {group: scaled sum of the counts learned there}."""
        self.moments: dict[Key, list[float]] = {}
        """key -> [scaled hourly sum, scaled sum of squares] (negative binomial only)."""
        self.capped: dict[Key, tuple[int, int]] = {}
        """key -> (hours capped within CAP_MEMORY of each other, the last one): groups whose counts were capped."""
        self.shape: list[float] = [0.0] * HOURS_PER_WEEK
        """slot -> scaled sum of every group's tickets (not winsorised)."""
        self.track_changes = False
        """Keep :attr:`changed` (the state store saves those groups); a backtest does not need it."""
        self.changed: set[Key] = set()
        """Groups learned from or forgotten since the state store last saved."""
        self._cache: dict[Key, int] = {}
        self._cache_hour = -1
        self._norms: tuple[list[float], float, int] | None = None
        self._local: dict[int, int] = {}
        self._next_prune: int | None = None

    # -- time ----------------------------------------------------------------------------------------

    def local_hour(self, hour: int) -> int:
        """Hours since the epoch in the baseline's time zone (what a UTC hour's slot is taken from)."""
        if self.zone is None:
            return hour
        local = self._local.get(hour)
        if local is None:
            offset = datetime.fromtimestamp(hour * 3600, self.zone).utcoffset()
            seconds = offset.total_seconds() if offset is not None else 0.0
            local = int((hour * 3600 + seconds) // 3600)
            if len(self._local) > 4096:
                self._local.clear()
            self._local[hour] = local
        return local

    @staticmethod
    def slot_of(local_hour: int) -> tuple[int, int]:
        """``(slot, week)`` of a local hour: Monday 00:00 is slot 0."""
        week, slot = divmod(local_hour + MONDAY, HOURS_PER_WEEK)
        return slot, week

    @property
    def learned_hours(self) -> int:
        """How many hours the baseline has learned (0 before the first)."""
        if self.start is None or self.learned_to is None:
            return 0
        return self.learned_to - self.start

    @property
    def usable(self) -> bool:
        """Whether the baseline has learned for ``min_history`` (else the fixed threshold applies)."""
        return self.learned_hours >= self.min_hours

    # -- learning ------------------------------------------------------------------------------------

    def begin(self, hour: int) -> None:
        """Start learning at ``hour`` (a warm-up that read history from then on: the hours before its first
        ticket were quiet, and that is learned too); nothing happens once learning has started."""
        if self.start is None:
            self.start = self.base = hour
            self.learned_to = hour
            self.base_week = self.slot_of(self.local_hour(hour))[1]
            self._next_prune = hour + self.prune_every
            self._changed()

    def fold(self, hour: int, counts: Mapping[Key, int]) -> None:
        """Learn one UTC hour: ``counts`` are the groups' tickets opened in it (groups without any are
        absent). Hours before :attr:`learned_to` are already learned and ignored; hours skipped since are
        learned as hours without tickets."""
        if self.learned_to is not None and hour < self.learned_to:
            return
        self.begin(hour)
        if (hour - self.base) * self.k_hour > REBASE:
            self._rebase(hour)
        if counts:
            self._fold_counts(hour, counts)
            if self.track_changes:
                self.changed.update(counts)
        self.learned_to = hour + 1
        self._changed()
        if self._next_prune is not None and hour >= self._next_prune:
            self.prune()
            self._next_prune = hour + self.prune_every

    def advance(self, to_hour: int) -> None:
        """Every hour before ``to_hour`` is learned (those not folded had no tickets)."""
        if self.start is None:
            return  # nothing learned yet: the learning starts at the first folded hour
        if self.learned_to is None or to_hour > self.learned_to:
            self.learned_to = to_hour
            self._changed()

    def forget(self) -> None:
        """Forget everything learned; learning starts again at the next folded hour. For a hole in a replayed
        history: see :attr:`silence_hours`."""
        if self.start is None:
            return
        if self.track_changes:
            self.changed.update(self.groups())  # saved as forgotten
        self.start = self.learned_to = None
        self.base = self.base_week = 0
        self.by_slot = [{} for _ in range(HOURS_PER_WEEK)]
        self.moments, self.capped = {}, {}
        self.shape = [0.0] * HOURS_PER_WEEK
        self._next_prune = None
        self._changed()

    def _fold_counts(self, hour: int, counts: Mapping[Key, int]) -> None:
        # the hot loop of learning (once per group and hour with tickets): kept to plain arithmetic
        slot, week = self.slot_of(self.local_hour(hour))
        week_scale = math.exp((week - self.base_week) * self.k_week)
        floor = self.floor
        sums = self.by_slot[slot]
        get = sums.get
        added = 0.0
        for key, count in counts.items():
            added += count
            if count > floor:  # rare: the cap needs the group's expected rate
                sums[key] = get(key, 0.0) + self._capped(key, hour, slot, count) * week_scale
            else:
                sums[key] = get(key, 0.0) + count * week_scale
        # the shape is the desk's own rhythm over every group: counted in full (one group's storm is small
        # beside it, and a cap would make a busy group's first hour look like a quiet hour of the week)
        if added:
            self.shape[slot] += added * week_scale
        if self.negative_binomial:
            hour_scale = math.exp((hour - self.base) * self.k_hour)
            moments = self.moments
            for key, count in counts.items():
                used = min(float(count), self.cap(key, hour, slot))
                cell = moments.get(key)
                if cell is None:
                    moments[key] = [used * hour_scale, used * used * hour_scale]
                else:
                    cell[0] += used * hour_scale
                    cell[1] += used * used * hour_scale

    def cap(self, key: Key, hour: int, slot: int) -> float:
        """The most ``hour`` may teach group ``key`` (see :data:`WINSOR` and :data:`CAP_DOUBLING`)."""
        streak = self.capped.get(key)
        times = streak[0] if streak is not None and hour - streak[1] <= CAP_MEMORY else 0
        return max(float(self.floor), WINSOR * self._rate(key, slot)) * 2.0 ** (times / CAP_DOUBLING)

    def _capped(self, key: Key, hour: int, slot: int, count: int) -> float:
        """What ``count`` tickets teach: at most :meth:`cap`; a capped hour lengthens the group's streak."""
        limit = self.cap(key, hour, slot)
        if count <= limit:
            return float(count)
        streak = self.capped.get(key)
        times = streak[0] if streak is not None and hour - streak[1] <= CAP_MEMORY else 0
        self.capped[key] = (times + 1, hour)
        return limit

    def _rebase(self, hour: int) -> None:
        """Move the scaling base to ``hour`` (the scaled sums would overflow in the long run)."""
        week = self.slot_of(self.local_hour(hour))[1]
        hour_factor = math.exp(-(hour - self.base) * self.k_hour)
        week_factor = math.exp(-(week - self.base_week) * self.k_week)
        for sums in self.by_slot:
            for key in sums:
                sums[key] *= week_factor
        for cell in self.moments.values():
            cell[0] *= hour_factor
            cell[1] *= hour_factor
        self.shape = [value * week_factor for value in self.shape]
        self.base, self.base_week = hour, week
        if self.track_changes:
            self.changed.update(self.groups())  # every group's scaled sums changed
        self._changed()

    def _changed(self) -> None:
        self._cache.clear()
        self._norms = None

    def prune(self) -> int:
        """Forget groups whose weights have all decayed below :data:`FORGET` (every hour of the week as last
        learned); returns how many."""
        if self.learned_to is None:
            return 0
        touched: set[Key] = set()
        for slot, sums in enumerate(self.by_slot):
            decay = math.exp(-(self._weeks_seen(slot)[1] - self.base_week) * self.k_week)
            for key in [key for key, value in sums.items() if value * decay < FORGET]:
                del sums[key]
                touched.add(key)
        doomed = touched - self.groups() if touched else set()
        for key in doomed:
            self.moments.pop(key, None)
            self.capped.pop(key, None)
        if self.track_changes:
            self.changed.update(touched)  # a group that lost a slot is saved without it (the others are as they were)
        return len(doomed)

    def groups(self) -> set[Key]:
        """Every group the baseline holds."""
        out: set[Key] = set()
        for sums in self.by_slot:
            out.update(sums)
        return out

    def slots_of(self, key: Key) -> dict[int, float]:
        """A group's scaled sums by hour-of-week slot (only the slots it had tickets in)."""
        return {slot: sums[key] for slot, sums in enumerate(self.by_slot) if key in sums}

    # -- the estimate --------------------------------------------------------------------------------

    def _weeks_seen(self, slot: int) -> tuple[int, int]:
        """How many weeks of ``slot`` are learned, and the last one."""
        if self.start is None or self.learned_to is None:
            return 0, 0
        first = self.local_hour(self.start) + MONDAY - slot
        last = self.local_hour(self.learned_to - 1) + MONDAY - slot
        week_first = -(-first // HOURS_PER_WEEK)
        week_last = last // HOURS_PER_WEEK
        return max(0, week_last - week_first + 1), week_last

    @staticmethod
    def _weights(rate: float, n: int) -> float:
        """``sum(exp(-rate * j) for j in range(n))``: the weight ``n`` learned periods carry."""
        decay = math.exp(-rate)
        return float(n) if decay >= 1.0 else (1.0 - decay ** n) / (1.0 - decay)

    def norms(self) -> tuple[list[float], float, int]:
        """Factors that turn a slot's scaled sum into its mean over the weeks learned (0 for a slot not yet
        learned once), the mean of the rule's shape over the learned slots, and how many slots are learned."""
        if self._norms is not None:
            return self._norms
        slots = [0.0] * HOURS_PER_WEEK
        if self.start is not None and self.learned_to is not None and self.learned_to > self.start:
            for slot in range(HOURS_PER_WEEK):
                weeks, last = self._weeks_seen(slot)
                if weeks > 0:
                    slots[slot] = math.exp(-(last - self.base_week) * self.k_week) / self._weights(self.k_week, weeks)
        learned = sum(1 for norm in slots if norm > 0.0)
        shape_mean = sum(self.shape[s] * slots[s] for s in range(HOURS_PER_WEEK)) / learned if learned else 0.0
        self._norms = (slots, shape_mean, learned)
        return self._norms

    def _rate(self, key: Key, slot: int) -> float:
        """Expected tickets per hour for group ``key`` in hour-of-week ``slot``: the larger of its own mean
        for that hour of the week and its mean hour times the rule's shape for that hour."""
        norms, shape_mean, learned = self.norms()
        if not learned:
            return 0.0
        level = 0.0
        for s, sums in enumerate(self.by_slot):
            value = sums.get(key)
            if value is not None:
                level += value * norms[s]
        level /= learned
        norm = norms[slot]
        if not self.seasonal or norm <= 0.0:
            return level  # (this hour of the week not yet learned once: the group's mean hour)
        shape = self.shape[slot] * norm / shape_mean if shape_mean > 0.0 else 1.0
        return max(self.by_slot[slot].get(key, 0.0) * norm, level * shape)

    def known(self, key: Key) -> bool:
        """Whether the baseline holds anything of group ``key``."""
        return any(key in sums for sums in self.by_slot)

    def slot_at(self, ts: float) -> int:
        """The hour-of-week slot of a time."""
        return self.slot_of(self.local_hour(int(ts // 3600)))[0]

    def expected(self, key: Key, ts: float) -> tuple[float, float]:
        """Expected count in the window ending at ``ts`` for group ``key``, and its dispersion index (1 for
        a Poisson model). Zero for a group never seen."""
        if self.learned_to is None:
            return 0.0, 1.0
        mu = self._rate(key, self.slot_at(ts)) * self.window / 3600.0
        dispersion = 1.0
        cell = self.moments.get(key)
        if self.negative_binomial and cell is not None and self.start is not None:
            n = self.learned_to - self.start
            norm = math.exp(-(self.learned_to - 1 - self.base) * self.k_hour) / self._weights(self.k_hour, n)
            mean, square = cell[0] * norm, cell[1] * norm
            if mean > 0.0:
                dispersion = max(1.0, (square - mean * mean) / mean)
        return mu, dispersion

    def hourly(self, key: Key) -> list[float]:
        """The expected tickets per hour of group ``key`` for each hour-of-week slot (Monday 00:00 first)."""
        return [self._rate(key, slot) for slot in range(HOURS_PER_WEEK)]

    def mean_hour(self, key: Key) -> float:
        """The group's expected tickets in an average hour."""
        rates = self.hourly(key)
        return sum(rates) / len(rates)

    @staticmethod
    def tail(count: int, mu: float, dispersion: float) -> float:
        """``P(N >= count)`` under the model."""
        return nbinom_tail(count, mu, dispersion) if dispersion > 1.0 else poisson_tail(count, mu)

    @classmethod
    def smallest_improbable(cls, mu: float, dispersion: float, floor: int, probability: float) -> int:
        """The smallest count, at least ``floor``, whose tail is below ``probability``."""
        n = floor
        if mu <= 0.0:
            return n
        tail = cls.tail
        step = max(1, int(math.sqrt(mu * dispersion)))
        while step >= 1:
            # move up in steps while the count is still probable, then halve the step
            while tail(n + step - 1, mu, dispersion) >= probability and n < 100_000_000:
                n += step
            step //= 2
        while tail(n, mu, dispersion) >= probability and n < 100_000_000:
            n += 1
        return n

    def limit(self, key: Key, ts: float) -> int:
        """The count in the window that makes group ``key`` fire at ``ts`` (cached per group and hour): the
        smallest count at least the floor that is improbable under the baseline; while the baseline has
        learned less than ``min_history``, also at least the fixed threshold (a group that turns out busy
        in the first hours learned is not taken for a surge)."""
        if self.learned_to is None:
            return self.threshold
        hour = int(ts // 3600)
        if hour != self._cache_hour:
            self._cache.clear()
            self._cache_hour = hour
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        mu, dispersion = self.expected(key, ts)
        value = self.smallest_improbable(mu, dispersion, self.floor, self.probability)
        if not self.usable:
            value = max(value, self.threshold)
        self._cache[key] = value
        return value

    def verdict(self, key: Key, ts: float, count: int) -> Verdict:
        """What the baseline says of ``count`` in ``key``'s window at ``ts``."""
        limit = self.limit(key, ts)
        if self.learned_to is None:
            return Verdict("threshold", None, None, limit, count >= limit)
        mu, dispersion = self.expected(key, ts)
        source = "baseline" if self.usable else "threshold"
        return Verdict(source, mu, self.tail(count, mu, dispersion), limit, count >= limit, dispersion)

    def surging(self, key: Key, ts: float, count: int, probability: float) -> bool:
        """Whether ``count`` tickets in ``key``'s window at ``ts`` are still above its baseline: improbable at
        ``probability`` (a looser level than the one that declares). Before anything is learned: while the
        window holds at least half the fixed threshold."""
        if count <= 0:
            return False
        if self.learned_to is None:
            return 2 * count >= self.threshold
        mu, dispersion = self.expected(key, ts)
        return self.tail(count, mu, dispersion) < probability

    # -- persistence ---------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """Rule-level state (JSON-ready): the learning span, the scaling base and the hour-of-week shape."""
        return {"fingerprint": self.fingerprint, "start": self.start, "learned_to": self.learned_to,
                "base": self.base, "base_week": self.base_week, "shape": list(self.shape)}

    def group_state(self, key: Key) -> dict[str, Any] | None:
        """One group's state (JSON-ready), or None when the group is forgotten."""
        slots = self.slots_of(key)
        if not slots:
            return None
        state: dict[str, Any] = {"slots": {str(slot): value for slot, value in slots.items()}}
        if key in self.moments:
            state["moments"] = list(self.moments[key])
        if key in self.capped:
            state["capped"] = list(self.capped[key])
        return state

    def load(self, meta: Any, groups: Iterable[tuple[str, Any]]) -> tuple[bool, list[str]]:
        """Restore state saved by :meth:`meta` and :meth:`group_state` (group keys as :func:`encode_key`
        text). Returns whether it was loaded -- not when it was learned for a different version of the rule
        (its group, conditions or time zone changed) or its rule-level state is damaged -- and the keys of
        the groups whose saved state is damaged: those are left out (they are learned again), never a crash."""
        if not isinstance(meta, Mapping) or meta.get("fingerprint") != self.fingerprint:
            return False, []
        try:
            start, learned_to = _hour_or_none(meta.get("start")), _hour_or_none(meta.get("learned_to"))
            base, base_week = _hour_or_none(meta.get("base") or 0), int(meta.get("base_week") or 0)
            if base is None or abs(base_week) > _LAST_HOUR // HOURS_PER_WEEK + 1:
                raise ValueError("scaling base out of range")
            shape = [_finite(value) for value in meta.get("shape") or []]
            if (start is None) != (learned_to is None) or (learned_to is not None and start is not None
                                                           and learned_to < start):
                raise ValueError("inconsistent learning span")
        except (TypeError, ValueError, AttributeError, OverflowError):
            return False, []
        self.start, self.learned_to, self.base, self.base_week = start, learned_to, base, base_week
        if len(shape) == HOURS_PER_WEEK:
            self.shape = shape
        damaged: list[str] = []
        for text, state in groups:
            try:
                key = decode_key(text)
                slots = {int(slot): _finite(value) for slot, value in (state.get("slots") or {}).items()}
                if not slots or any(not 0 <= slot < HOURS_PER_WEEK for slot in slots):
                    raise ValueError("no slot, or a slot outside the week")
                moments = [_finite(v) for v in state["moments"]] if state.get("moments") else None
                if moments is not None and len(moments) != 2:
                    raise ValueError("moments are a sum and a sum of squares")
                capped: tuple[int, int] | None = None
                if state.get("capped"):
                    times, last = int(state["capped"][0]), _hour_or_none(state["capped"][1])
                    if last is None or not 0 <= times <= 1000:  # the cap doubles every 6: a streak stays short
                        raise ValueError("not a capped streak")
                    capped = (times, last)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError):
                damaged.append(text)
                continue
            for slot, value in slots.items():
                self.by_slot[slot][key] = value
            if moments is not None:
                self.moments[key] = moments
            if capped is not None:
                self.capped[key] = capped
        if self.start is not None:
            self._next_prune = (self.learned_to or self.start) + self.prune_every
        self.changed.clear()
        self._changed()
        return True, damaged

    def slots(self) -> int:
        """Hour-of-week slots held (the memory bound is groups x 168)."""
        return sum(len(sums) for sums in self.by_slot)


def fingerprint(rule: Rule) -> str:
    """What a rule's baseline depends on (its conditions, group and time settings): a baseline learned for
    another version of the rule is not reused."""
    surge = rule.surge
    spec = surge.baseline if surge is not None else None
    data = {"when": {k: v.model_dump(by_alias=True, exclude_unset=True) for k, v in sorted(rule.when.items())},
            "group_by": list(surge.group_by) if surge else [],
            "zone": spec.time_zone if spec else None, "seasonality": spec.seasonality if spec else None}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def encode_key(key: Key) -> str:
    """A group key as text for the state store (a JSON list of the group's values)."""
    return json.dumps(list(key) if isinstance(key, tuple) else [key], ensure_ascii=False)


def decode_key(text: str) -> Key:
    """The inverse of :func:`encode_key` (ValueError for text it did not write)."""
    values = json.loads(text)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"not a group key: {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


_LAST_HOUR = 10_000_000
"""Hours since 1970 up to the year 3110: a saved hour beyond it is damage, not a date."""
_LARGEST_SUM = 1e250
"""Scaled sums stay far below this (they are rebased at exp(REBASE))."""


def _hour_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LAST_HOUR:
        raise ValueError(f"not an hour: {value!r}")
    return value


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or not 0 <= number < _LARGEST_SUM:
        raise ValueError(f"not a count: {value!r}")
    return number


class Baselines:
    """The baselines of every surge rule that has one, by rule id."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: dict[str, RuleBaseline] = {r.id: RuleBaseline(r) for r in rules
                                               if r.surge is not None and r.surge.baseline is not None}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def get(self, rule_id: str) -> RuleBaseline | None:
        """The baseline of ``rule_id``, if it has one."""
        return self.rules.get(rule_id)

    def learned_to(self) -> datetime | None:
        """The earliest time every baseline has learned up to (None when one has learned nothing)."""
        hours = [b.learned_to for b in self.rules.values()]
        if not hours or any(h is None for h in hours):
            return None
        return datetime.fromtimestamp(min(h for h in hours if h is not None) * 3600, tz=timezone.utc)


def utc_hour(moment: datetime) -> int:
    """Hours since the epoch of an aware time."""
    return int(moment.timestamp() // 3600)


def key_reader(fields: tuple[str, ...]) -> Callable[[dict[str, object]], Key | None]:
    """A function giving a ticket's group key for ``fields`` from its field values (``ticket.__dict__``):
    the value itself for one field (no tuple to build per ticket), else the tuple of values; text either
    way, None when a field is missing or blank."""
    if len(fields) == 1:
        (name,) = fields

        def one(values: dict[str, object]) -> Key | None:
            value = values[name]
            if value is None or value == "":
                return None
            return value if type(value) is str else str(value)

        return one

    def many(values: dict[str, object]) -> Key | None:
        key = []
        for name in fields:
            value = values[name]
            if value is None or value == "":
                return None
            key.append(value if type(value) is str else str(value))
        return tuple(key)

    return many


LIFECYCLE = frozenset({"state", "major", "parent", "stage", "marker", "assignee", "assignment_group", "resolved_at",
                       "updated_at", "change"})
"""Fields history shows as they are now, not as they were when the ticket arrived: conditions on them are
left out when baselines learn from history."""


def learn_tickets(baselines: Baselines, rules: Sequence[Rule], tickets: Iterable[Ticket],
                  until: datetime | None = None, since: datetime | None = None, observed: bool = False) -> int:
    """Teach ``baselines`` from history (a first sync's warm-up, ``mim baseline learn``, the weeks before a
    backtest's ``--from``): for each rule with a baseline, every ticket opened before ``until`` that meets
    the rule's conditions on fields a ticket has when it arrives (conditions on its lifecycle -- state,
    major incident flag, parent, stage... -- are left out: history shows tickets as they are now) counts
    towards its group's hour. Hours are folded in order; returns how many tickets were read. ``since`` is
    where the history read starts: a baseline learning for the first time starts there (the hours before
    the first ticket were quiet, and that is learned too). A hole in the tickets (no ticket at all for
    longer than a baseline's :attr:`~RuleBaseline.silence_hours`) makes it forget and start again, as the engine
    does, unless ``observed``: the tickets are the platform's own history over the whole span (a warm-up), so a
    quiet span in it was truly quiet."""
    plans: list[tuple[RuleBaseline, Callable[[dict[str, Any]], bool] | None, Callable[[dict[str, object]], Key | None],
                      dict[int, dict[Key, int]]]] = []
    for rule in rules:
        model = baselines.get(rule.id)
        if model is None or rule.surge is None:
            continue
        arrival = {name: cond for name, cond in rule.when.items() if name not in LIFECYCLE}
        plans.append((model, compile_fields_when(arrival) if arrival else None, key_reader(tuple(rule.surge.group_by)),
                      {}))
    end = utc_hour(until) if until is not None else None
    read = 0
    stream_hours: set[int] = set()
    for ticket in tickets:
        read += 1
        values = ticket.__dict__
        hour = int(values["opened_at"].timestamp() // 3600)
        if end is not None and hour >= end:
            continue
        stream_hours.add(hour)
        for _, predicate, key_of, hours in plans:
            if predicate is not None and not predicate(values):
                continue
            key = key_of(values)
            if key is None:
                continue
            counts = hours.get(hour)
            if counts is None:
                counts = hours[hour] = {}
            counts[key] = counts.get(key, 0) + 1
    ordered = sorted(stream_hours)
    for model, _, _, hours in plans:
        if since is not None:
            model.begin(utc_hour(since))
        holes = set() if observed else {later for earlier, later in zip(ordered, ordered[1:])
                                        if later - earlier > model.silence_hours}
        for hour in sorted(hours.keys() | holes):
            if hour in holes:
                model.forget()
            if hour in hours:
                model.fold(hour, hours[hour])
        if end is not None:
            model.advance(end)
    return read


__all__ = ["Baselines", "RuleBaseline", "Verdict", "poisson_tail", "nbinom_tail", "fingerprint", "encode_key",
           "decode_key", "utc_hour", "key_reader", "learn_tickets", "LIFECYCLE", "HOURS_PER_WEEK", "WINSOR"]
