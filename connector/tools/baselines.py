"""``mim baseline learn`` (re-learn the detection baselines from the platform's history) and ``mim baseline
show`` (what they learned): the operator's handles on :mod:`connector.detection.baseline`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from connector.detection.baseline import HOURS_PER_WEEK, Baselines, RuleBaseline
from connector.detection.engine import window_horizon
from connector.detection.rules import Rule
from connector.job.baselines import WarmUp, save_baselines, warm_up
from connector.job.cycle import HORIZON_MARGIN
from connector.job.store import StateStore
from connector.platforms.base import Platform

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def relearn(platform: Platform, store: StateStore, rules: Sequence[Rule], now: datetime, weeks: timedelta,
            only: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> WarmUp:
    """Learn the baselines of ``rules`` (or of the rule ids in ``only``) again from ``weeks`` of the platform's
    history, up to where the next cycle's replay starts, and replace what they had learned in ``store`` with
    it. The old baselines stay until the new ones are learned: a read that fails leaves them as they were."""
    chosen = [r for r in rules if r.surge is not None and r.surge.baseline is not None and (not only or r.id in only)]
    unknown = sorted(set(only) - {r.id for r in chosen})
    if unknown:
        raise ValueError(f"no surge rule with a baseline named {', '.join(unknown)}")
    baselines = Baselines(chosen)
    for model in baselines.rules.values():
        model.track_changes = True  # every group learned is saved
    until = now - (window_horizon(rules) + HORIZON_MARGIN)
    result = warm_up(platform, baselines, chosen, now, until, weeks, progress, force=True)
    with store.transaction():
        for rule in chosen:
            store.clear_baseline(rule.id)
        save_baselines(store, baselines)
    return result


@dataclass
class RuleSummary:
    """What one rule's baseline holds."""

    rule: str
    learned_from: datetime | None
    learned_to: datetime | None
    usable: bool
    groups: int
    slots: int
    busiest: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "learned_from": self.learned_from.isoformat() if self.learned_from else None,
                "learned_to": self.learned_to.isoformat() if self.learned_to else None, "usable": self.usable,
                "groups": self.groups, "slots": self.slots, "slot_bound": self.groups * HOURS_PER_WEEK,
                "busiest": [{"group": g, "per_hour": round(r, 4)} for g, r in self.busiest]}


def _moment(hour: int | None) -> datetime | None:
    return None if hour is None else datetime.fromtimestamp(hour * 3600, tz=timezone.utc)


def _label(key: object) -> str:
    return ", ".join(key) if isinstance(key, tuple) else str(key)


def summarise(baselines: Baselines, top: int = 5) -> list[RuleSummary]:
    """Per rule: the span learned, how many groups and slots it holds, and its busiest groups."""
    out = []
    for rule_id, model in sorted(baselines.rules.items()):
        groups = model.groups()
        busiest = sorted(((_label(key), model.mean_hour(key)) for key in groups), key=lambda item: -item[1])[:top]
        out.append(RuleSummary(rule_id, _moment(model.start), _moment(model.learned_to), model.usable,
                               len(groups), model.slots(), busiest))
    return out


def group_key(model: RuleBaseline, text: str, fields: int) -> object:
    """A group as typed on the command line (``web-shop``, or ``Category 28,Location 143``) as its key."""
    values = tuple(v.strip() for v in text.split(","))
    if len(values) != fields:
        raise ValueError(f"rule {model.rule!r} groups by {fields} field(s); give {fields} comma-separated values")
    return values[0] if fields == 1 else values


def render_profile(model: RuleBaseline, key: object) -> list[str]:
    """A group's expected tickets per hour, one line per day of the week (hours 0-23 in the baseline's zone)."""
    rates = model.hourly(key)
    lines = [f"expected tickets per hour for {_label(key)} ({model.rule}, time zone "
             f"{model.zone.key if model.zone is not None else 'UTC'}):",
             "      " + "".join(f"{hour:>6}" for hour in range(24))]
    for day in range(7):
        lines.append(f"  {DAYS[day]} " + "".join(f"{rates[day * 24 + hour]:>6.2f}" for hour in range(24)))
    return lines


def render_summary(summaries: Sequence[RuleSummary]) -> str:
    """The summaries as text."""
    if not summaries:
        return "no surge rule has a baseline"
    lines = []
    for item in summaries:
        span = (f"{item.learned_from:%Y-%m-%d %H:%M} to {item.learned_to:%Y-%m-%d %H:%M} UTC"
                if item.learned_from and item.learned_to else "nothing learned yet")
        lines.append(f"{item.rule}: learned {span}{'' if item.usable else ' (not yet min_history: fixed threshold)'}; "
                     f"{item.groups} groups, {item.slots} hour-of-week slots (bound {item.groups * HOURS_PER_WEEK})")
        for group, rate in item.busiest:
            lines.append(f"  {group}: {rate:.3f} tickets per hour on average")
    return "\n".join(lines)


__all__ = ["relearn", "summarise", "render_summary", "render_profile", "group_key", "RuleSummary"]
