"""``mim explain TICKET``: why a ticket was or was not declared or linked (pure).

For every rule: did its conditions hold, what is the ticket's group, how many tickets (or distinct values)
of that group were in the window when the ticket arrived, against the threshold; plus what the engine
decides now over the same window, and what the ledger says was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from connector.core.ticket import Ticket
from connector.detection.baseline import Baselines, key_reader
from connector.detection.engine import MajorIncident, decide
from connector.detection.rules import Rule, compile_condition


@dataclass
class RuleExplanation:
    """One rule's view of the ticket."""

    rule: str
    matched: bool
    failed_conditions: list[str] = field(default_factory=list)
    group: dict[str, Any] | None = None
    in_window: int | None = None
    threshold: int | None = None
    note: str = ""
    decided_by: str | None = None
    """``threshold`` (the fixed one) or ``baseline`` (the group's learned normal)."""
    expected: float | None = None
    """With a baseline: the count the group normally gets in the window at that hour of the week."""
    probability: float | None = None
    """With a baseline: the probability of at least the observed count, were the group as usual."""
    required: float | None = None
    """With a baseline: the probability below which the rule fires."""
    fires: bool | None = None


@dataclass
class Explanation:
    """Everything ``mim explain`` prints."""

    ticket: Ticket
    rules: list[RuleExplanation]
    outcome: str
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable report."""
        t = self.ticket
        out = [f"{t.label} ({t.id}): opened {t.opened_at:%Y-%m-%d %H:%M} UTC, state {t.state}, major {t.major}"
               + (f", child of {t.parent}" if t.parent else ""), f"outcome: {self.outcome}", ""]
        for r in self.rules:
            if not r.matched:
                out.append(f"  {r.rule}: conditions not met ({'; '.join(r.failed_conditions)})")
                continue
            group = ", ".join(f"{k}={v}" for k, v in (r.group or {}).items()) or "-"
            count = f"{r.in_window}/{r.threshold} in window" if r.in_window is not None else ""
            out.append(f"  {r.rule}: conditions met; group {group}; {count} {r.note}".rstrip())
            if r.decided_by == "baseline" and r.expected is not None and r.probability is not None:
                out.append(f"      baseline: observed {r.in_window}, expected {r.expected:.2f} at this hour of the week; "
                           f"P(>= {r.in_window}) = {r.probability:.2g} against {r.required:g} "
                           f"-> {'fires' if r.fires else 'does not fire'} (needs {r.threshold})")
            elif r.decided_by == "threshold" and r.required is not None:
                out.append("      fixed threshold: the rule's baseline has not learned its min_history yet")
        if self.ledger:
            out += ["", "written by the connector:"]
            for row in self.ledger:
                out.append(f"  {row['updated_at'][:19]} {row['kind']:<13} {row['status']:<8} {row['key']}"
                           + (f" ({row['detail']})" if row.get("detail") else ""))
        return out


def _failed(rule: Rule, ticket: Ticket) -> list[str]:
    failed = []
    for name, cond in rule.when.items():
        if not compile_condition(name, cond)(ticket):
            shown = cond.model_dump(by_alias=True, exclude_unset=True)
            failed.append(f"{name}={ticket.value(name)!r} does not satisfy {shown}")
    return failed


def explain(ticket: Ticket, window: Iterable[Ticket], known: Sequence[MajorIncident], rules: Sequence[Rule], now: datetime,
            ledger: Sequence[dict[str, Any]] = (), baselines: Baselines | None = None) -> Explanation:
    """Explain ``ticket`` against ``rules`` over ``window`` (the cached recent tickets); a surge rule with a
    baseline shows observed against expected and the probability that decided (``baselines`` as the state
    store keeps them: learned up to now, not only up to when the ticket arrived)."""
    tickets = list(window)
    if all(t.id != ticket.id for t in tickets):
        tickets.append(ticket)
    per_rule = []
    for rule in rules:
        failed = _failed(rule, ticket)
        if failed:
            per_rule.append(RuleExplanation(rule.id, False, failed))
            continue
        fields = rule.group_by
        values = [getattr(ticket, f) for f in fields]
        if any(v in (None, "") for v in values):
            per_rule.append(RuleExplanation(rule.id, True, note=f"not grouped: {', '.join(fields)} missing"))
            continue
        group = dict(zip(fields, (str(v) for v in values)))
        if rule.surge is None:
            per_rule.append(RuleExplanation(rule.id, True, group=group, note="single-ticket rule: declares on its own"))
            continue
        low = ticket.opened_at - rule.surge.window
        peers = [t for t in tickets if low <= t.opened_at <= ticket.opened_at
                 and all(str(getattr(t, f)) == group[f] for f in fields) and not _failed(rule, t)]
        if rule.surge.distinct:
            count = len({getattr(t, rule.surge.distinct) or ("self", t.id) for t in peers})
        else:
            count = len(peers)
        line = RuleExplanation(rule.id, True, group=group, in_window=count, threshold=rule.surge.threshold,
                               note=f"(window {rule.surge.window}, distinct {rule.surge.distinct or 'tickets'})",
                               decided_by="threshold", fires=count >= rule.surge.threshold)
        model = baselines.get(rule.id) if baselines is not None else None
        if model is not None:
            key = key_reader(tuple(fields))(ticket.__dict__)
            verdict = model.verdict(key, ticket.opened_at.timestamp(), count)
            line.decided_by, line.threshold, line.fires = verdict.source, verdict.limit, verdict.fires
            line.expected, line.probability, line.required = verdict.expected, verdict.probability, model.probability
        per_rule.append(line)
    decisions = decide(tickets, known, rules, now, baselines=baselines)
    outcome = "not part of any major incident"
    if ticket.parent:
        outcome = f"already linked to {ticket.parent}"
    elif ticket.major != "none":
        outcome = f"already in the major incident lifecycle ({ticket.major})"
    for decl in decisions.declarations:
        if decl.mi_id == ticket.id:
            outcome = f"would be declared by {decl.rule} as parent of {len(decl.children)} tickets"
        elif ticket.id in decl.triggered_by:
            outcome = f"would be linked to {decl.mi_id} declared by {decl.rule}"
    for link in decisions.late_links:
        if link.ticket.id == ticket.id:
            outcome = f"would join the open major incident {link.mi_id} ({link.rule}) as a late child"
    for mi in known:
        if mi.id == ticket.id:
            outcome = f"is major incident {mi.status} declared by {mi.rule} at {mi.declared_at:%Y-%m-%d %H:%M} UTC"
    return Explanation(ticket, per_rule, outcome, list(ledger))
