"""The detection baselines in the sync job: loaded from the state store every cycle, warmed from the
platform's history on the first sync (and caught up after a gap longer than a cycle's look-back), learned
further by the engine as each cycle replays its window, and saved with the cycle's watermark.

The warm-up reads only what the baselines need: the id, the opening time, the rules' group fields and the
fields of their conditions that a ticket has when it arrives (:data:`~connector.detection.baseline.LIFECYCLE`
fields such as the state are left out: history shows them as they are now).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

from connector.core.mapping import MappingError
from connector.core.ticket import Ticket
from connector.detection.baseline import LIFECYCLE, Baselines, RuleBaseline, encode_key, learn_tickets
from connector.detection.rules import Rule
from connector.job.store import StateStore
from connector.platforms.base import Platform

WARM_UP = timedelta(weeks=4)
"""How much history a first sync (and ``mim baseline learn``) reads by default."""
PROGRESS_EVERY = 1000


@runtime_checkable
class HistoryReader(Protocol):
    """A platform that can read the tickets opened since a time with only some fields (both adapters can;
    another platform is read through its delta poll)."""

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Raw records opened at or after ``since``, with at least the canonical ``fields``."""
        ...


def baseline_fields(rules: Sequence[Rule]) -> list[str]:
    """The canonical fields the baselines of ``rules`` learn from."""
    wanted = ["id", "opened_at"]
    for rule in rules:
        if rule.surge is None or rule.surge.baseline is None:
            continue
        for name in [*rule.surge.group_by, *(n for n in rule.when if n not in LIFECYCLE)]:
            if name not in wanted:
                wanted.append(name)
    return wanted


def load_baselines(store: StateStore, rules: Sequence[Rule], forget_stale: bool = True,
                   damaged: list[str] | None = None) -> Baselines:
    """The baselines of ``rules`` as the state store keeps them. A rule whose baseline was learned for another
    version of it, or whose saved state is damaged in any row, starts afresh (the cycle's warm-up learns it
    again from history); with ``forget_stale`` the store forgets the old rows. What was damaged is said in
    ``damaged``."""
    baselines = Baselines(rules)
    if not baselines:
        return baselines
    kept = store.baseline_rules()
    by_id = {rule.id: rule for rule in rules}
    for rule_id, model in list(baselines.rules.items()):
        if rule_id not in kept:
            continue
        meta = kept[rule_id]
        loaded, bad_groups = model.load(meta, store.baseline_groups(rule_id))
        ours = meta is None or (isinstance(meta, dict) and meta.get("fingerprint") == model.fingerprint)
        if loaded and not bad_groups:
            continue
        if ours and damaged is not None:
            where = f"{len(bad_groups)} group row(s), first {bad_groups[0][:60]!r}" if bad_groups else "its rule row"
            damaged.append(f"state: the baseline of rule {rule_id} is damaged ({where}): forgotten, learned again "
                           "from history")
        if bad_groups:
            baselines.rules[rule_id] = RuleBaseline(by_id[rule_id])
        if forget_stale:
            store.clear_baseline(rule_id)
    for model in baselines.rules.values():
        model.track_changes = True
    return baselines


def save_baselines(store: StateStore, baselines: Baselines) -> None:
    """Store what changed in ``baselines`` (call inside a transaction)."""
    for rule_id, model in baselines.rules.items():
        if model.start is None:
            continue
        groups = {encode_key(key): model.group_state(key) for key in model.changed}
        store.save_baseline(rule_id, model.meta(), groups)
        model.changed.clear()


@dataclass
class WarmUp:
    """What a warm-up read and taught."""

    since: datetime | None = None
    tickets: int = 0
    rules: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def history_tickets(platform: Platform, since: datetime, fields: Sequence[str], skipped: list[str],
                    progress: Callable[[int], None] | None = None) -> Iterator[Ticket]:
    """Tickets opened at or after ``since`` (only ``fields`` read where the platform can), malformed records
    reported in ``skipped``."""
    if isinstance(platform, HistoryReader):
        raws: Iterator[dict[str, Any]] = platform.fetch_history(since, fields)
    else:
        raws = platform.fetch_changed(None, since)
    read = 0
    for raw in raws:
        read += 1
        if progress is not None and read % PROGRESS_EVERY == 0:
            progress(read)
        try:
            ticket = platform.to_ticket(raw)
        except MappingError as exc:
            if len(skipped) < 20:
                skipped.append(str(exc))
            continue
        if ticket.opened_at >= since:
            yield ticket
    if progress is not None:
        progress(read)


def warm_up(platform: Platform, baselines: Baselines, rules: Sequence[Rule], now: datetime, until: datetime,
            weeks: timedelta = WARM_UP, progress: Callable[[int], None] | None = None,
            force: bool = False) -> WarmUp:
    """Teach the baselines that have learned nothing (``weeks`` of history) or are behind ``until`` by more
    than an hour (the gap since they last learned) from the platform, up to ``until`` (the start of what
    this cycle replays itself). ``force`` re-learns every baseline from ``weeks`` of history."""
    result = WarmUp()
    due: dict[str, datetime] = {}
    for rule_id, model in baselines.rules.items():
        if force or model.learned_to is None:
            due[rule_id] = now - weeks
        else:
            learned = datetime.fromtimestamp(model.learned_to * 3600, tz=timezone.utc)
            if learned < until - timedelta(hours=1):
                due[rule_id] = learned
    if not due:
        return result
    since = min(due.values())
    chosen = [r for r in rules if r.id in due]
    result.since, result.rules = since, sorted(due)
    subset = Baselines([])
    subset.rules = {rule_id: baselines.rules[rule_id] for rule_id in due}
    tickets = history_tickets(platform, since, baseline_fields(chosen), result.skipped, progress)
    result.tickets = learn_tickets(subset, chosen, tickets, until, since, observed=True)
    return result


def prepare_baselines(platform: Platform, store: StateStore, rules: Sequence[Rule], now: datetime,
                      horizon: timedelta, progress: Callable[[int], None] | None = None,
                      keep: bool = False, damaged: list[str] | None = None) -> tuple[Baselines, WarmUp]:
    """The cycle's baselines: loaded from the store, warmed up or caught up from the platform where needed
    (up to ``now - horizon``, where the cycle's own replay starts). ``keep`` (a dry run) leaves the store as
    it is: a baseline learned for another version of a rule, or damaged, is not forgotten there."""
    baselines = load_baselines(store, rules, forget_stale=not keep, damaged=damaged)
    if not baselines:
        return baselines, WarmUp()
    return baselines, warm_up(platform, baselines, rules, now, now - horizon, progress=progress)


__all__ = ["HistoryReader", "WarmUp", "WARM_UP", "baseline_fields", "load_baselines", "save_baselines",
           "history_tickets", "warm_up", "prepare_baselines"]
