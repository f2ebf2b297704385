"""Rule tests as data (``rules/tests/*.yaml``): input tickets, an evaluation time, expected decisions.

::

    version: 1
    cases:
      - name: six callers on one service within ten minutes
        now: 2026-03-02T10:30:00Z
        defaults: {service: web-shop, state: new}
        tickets:
          - {id: t1, opened_at: 2026-03-02T10:00:00Z, caller: ann}
          ...
        expect:
          major_incidents:
            - {parent: t1, rule: service-surge, children: [t2, t3, t4, t5, t6]}

``children`` lists every ticket linked to the parent (at declaration and late). An empty
``major_incidents`` list expects no declaration. ``rules`` restricts a case to some rule ids;
``major_incidents_known`` feeds major incidents declared earlier (open or rejected).

``history`` is what the baselines of surge rules learned before the case's tickets, as a first sync's
warm-up would have: ``weeks`` of history ending at the hour of the first ticket, with ``per_hour`` tickets
for each listed group (every other group was quiet)::

        history:
          weeks: 2
          groups:
            - {ci: payments-db, per_hour: 60}

Without ``history`` the baselines start empty, as at the start of a backtest (their rules use the fixed
threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from pydantic import AfterValidator, Field, ValidationError

from connector.core.ticket import CANONICAL_FIELDS, Ticket, as_utc
from connector.core.yamlfile import Diagnostic, Located, Strict, load_yaml, validate
from connector.detection.baseline import Baselines, learn_tickets
from connector.detection.engine import MajorIncident, decide
from connector.detection.rules import Rule


class ExpectedIncident(Strict):
    parent: str
    rule: str | None = None
    children: list[str] | None = None


Moment = Annotated[datetime, AfterValidator(as_utc)]
"""A time in a case; without an offset it is UTC (as the tickets' times are)."""


class KnownIncident(Strict):
    id: str
    rule: str
    group: list[str]
    started_at: Moment
    declared_at: Moment
    status: Literal["open", "rejected", "closed"] = "open"


class Expect(Strict):
    major_incidents: list[ExpectedIncident] = Field(default_factory=list)


class HistoryGroup(Strict):
    """A group's steady traffic in the history: its field values and tickets per hour."""

    model_config = Strict.model_config | {"extra": "allow"}
    per_hour: float = Field(ge=0, le=10_000)


class History(Strict):
    """What the baselines learned before the case (see the module docstring)."""

    weeks: int = Field(default=2, ge=1, le=8)
    groups: list[HistoryGroup] = Field(default_factory=list)


class Case(Strict):
    name: str
    now: Moment
    rules: list[str] | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    tickets: list[dict[str, Any]] = Field(default_factory=list)
    major_incidents_known: list[KnownIncident] = Field(default_factory=list)
    history: History | None = None
    expect: Expect


class CaseFile(Strict):
    version: Literal[1]
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    """The outcome of one case."""

    file: str
    name: str
    passed: bool
    diff: list[str] = field(default_factory=list)


def _actual(case: Case, rules: list[Rule]) -> list[dict[str, Any]]:
    tickets = []
    for raw in case.tickets:
        data = {**case.defaults, **raw}
        tickets.append(Ticket(**data))
    known = [MajorIncident(k.id, k.rule, tuple(k.group), k.started_at, k.declared_at, k.status) for k in case.major_incidents_known]
    baselines = Baselines(rules)
    if case.history is not None and baselines:
        start = min((t.opened_at for t in tickets), default=case.now).replace(minute=0, second=0, microsecond=0)
        since = start - timedelta(weeks=case.history.weeks)
        learn_tickets(baselines, rules, _history_tickets(case, case.history, since, start), start, since, observed=True)
    decisions = decide(tickets, known, rules, case.now, baselines=baselines)
    found: dict[str, dict[str, Any]] = {}
    for d in decisions.declarations:
        found[d.mi_id] = {"parent": d.mi_id, "rule": d.rule, "children": [t.id for t in d.children]}
    for link in decisions.late_links:
        entry = found.setdefault(link.mi_id, {"parent": link.mi_id, "rule": link.rule, "children": [], "known": True})
        entry["children"].append(link.ticket.id)
    return list(found.values())


def _history_tickets(case: Case, history: History, since: datetime, until: datetime) -> Iterator[Ticket]:
    """Every group's steady traffic from ``since`` to ``until``, spread evenly over each hour."""
    hours = int((until - since).total_seconds() // 3600)
    for index, group in enumerate(history.groups):
        fields = {k: v for k, v in (group.model_extra or {}).items()}
        rate = group.per_hour
        for hour in range(hours):
            count = int((hour + 1) * rate) - int(hour * rate)
            for n in range(count):
                at = since + timedelta(hours=hour, seconds=3600 * n / max(count, 1))
                yield Ticket(**{**case.defaults, **fields, "id": f"history-{index}-{hour}-{n}", "opened_at": at,
                                "caller": f"history-caller-{index}-{hour}-{n}"})


def _fmt(item: dict[str, Any]) -> str:
    children = item.get("children")
    kids = "" if children is None else f" children=[{', '.join(sorted(children))}]"
    rule = f" rule={item['rule']}" if item.get("rule") else ""
    return f"parent={item['parent']}{rule}{kids}"


def run_case(path: str, case: Case, rules: list[Rule]) -> CaseResult:
    """Evaluate one case and compare with its expectation."""
    selected = rules if case.rules is None else [r for r in rules if r.id in case.rules]
    try:
        actual = _actual(case, selected)
    except (ValidationError, ValueError) as exc:
        return CaseResult(path, case.name, False, [f"  error: cannot build the case's tickets: {exc}"])
    expected = [e.model_dump() for e in case.expect.major_incidents]
    diff: list[str] = []
    by_parent = {a["parent"]: a for a in actual}
    matched: set[str] = set()
    for exp in expected:
        act = by_parent.get(exp["parent"])
        if act is None:
            diff.append(f"- expected: {_fmt(exp)}")
            continue
        matched.add(exp["parent"])
        problems = []
        if exp["rule"] is not None and exp["rule"] != act["rule"]:
            problems.append(f"rule {act['rule']} instead of {exp['rule']}")
        if exp["children"] is not None and sorted(exp["children"]) != sorted(act["children"]):
            missing = sorted(set(exp["children"]) - set(act["children"]))
            extra = sorted(set(act["children"]) - set(exp["children"]))
            if missing:
                problems.append(f"missing children {missing}")
            if extra:
                problems.append(f"unexpected children {extra}")
        if problems:
            diff.append(f"- expected: {_fmt(exp)}")
            diff.append(f"+ actual:   {_fmt(act)}   ({'; '.join(problems)})")
    for act in actual:
        if act["parent"] not in matched:
            diff.append(f"+ unexpected: {_fmt(act)}")
    return CaseResult(path, case.name, not diff, diff)


def case_files(paths: list[Path]) -> list[Path]:
    """Test files under ``paths`` (a rules directory's ``tests/`` folder, or files)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            folder = path / "tests" if (path / "tests").is_dir() else path
            out.extend(sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


def load_cases(path: Path) -> tuple[list[Case], list[Diagnostic]]:
    """Load one case file with located errors."""
    located, errors = load_yaml(path)
    if located is None:
        return [], errors
    model, verrors = validate(CaseFile, located)
    errors += verrors
    if model is None:
        return [], errors
    errors += _check_tickets(model, located)
    return model.cases, errors


def _check_tickets(model: CaseFile, located: Located) -> list[Diagnostic]:
    errors = []
    known = set(CANONICAL_FIELDS)
    for ci, case in enumerate(model.cases):
        for gi, group in enumerate(case.history.groups if case.history is not None else []):
            for name in group.model_extra or {}:
                if name not in known or name in ("id", "opened_at"):
                    errors.append(located.error(("cases", ci, "history", "groups", gi, name),
                                                f"unknown ticket field {name!r} in a history group", key=True))
        for ti, raw in enumerate(case.tickets):
            for name in {**case.defaults, **raw}:
                if name not in known:
                    loc = ("cases", ci, "tickets", ti, name) if name in raw else ("cases", ci, "defaults", name)
                    errors.append(located.error(loc, f"unknown ticket field {name!r}", key=True))
    return errors


def run_tests(paths: list[Path], rules: list[Rule]) -> tuple[list[CaseResult], list[Diagnostic]]:
    """Run every case of every file; returns results and any file errors."""
    results: list[CaseResult] = []
    errors: list[Diagnostic] = []
    for path in case_files(paths):
        cases, file_errors = load_cases(path)
        errors += file_errors
        if file_errors:
            continue
        for case in cases:
            results.append(run_case(str(path), case, rules))
    return results, errors
