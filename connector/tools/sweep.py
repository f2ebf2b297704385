"""Sensitivity sweeps (``mim backtest --score --sweep``): one rule parameter tried at several values on the
same history, each replay scored against the history's links, so that an admin sees the trade-off between
recall, purity and declarations per month on their own data before choosing a value.

    mim backtest --tickets history.jsonl --score --sweep ci-surge:surge.baseline.probability=1e-3,1e-4,1e-5

``RULE:`` may be left out: every rule that has the parameter gets each value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

import yaml
from pydantic import ValidationError

from connector.core.ticket import Ticket
from connector.detection.rules import Rule, ordered
from connector.tools.backtest import BacktestResult, replay
from connector.tools.scoring import Score, StormSpec, score_replay


@dataclass(frozen=True)
class SweepSpec:
    """Which parameter of which rule(s), and the values to try."""

    rule: str | None
    path: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def parameter(self) -> str:
        return ".".join(self.path)


def parse_sweep(text: str) -> SweepSpec:
    """``[RULE:]PATH=V1,V2,...`` (values as YAML scalars: ``1e-4``, ``15m``, ``8``)."""
    target, sep, raw_values = (text or "").partition("=")
    if not sep or not raw_values.strip():
        raise ValueError(f"invalid sweep {text!r}: expected [RULE:]PARAMETER=VALUE,VALUE,... "
                         "(e.g. ci-surge:surge.baseline.probability=1e-3,1e-4)")
    rule, colon, path = target.strip().rpartition(":")
    if not colon:
        rule, path = "", target.strip()
    parts = tuple(p for p in path.split(".") if p)
    if not parts:
        raise ValueError(f"invalid sweep {text!r}: no parameter named")
    values = tuple(_value(text, v.strip()) if v.strip() else None for v in raw_values.split(","))
    return SweepSpec(rule or None, parts, values)


def _value(text: str, raw: str) -> Any:
    """One swept value: a YAML scalar (a number, a duration, true/false, text)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ValueError(f"invalid sweep {text!r}: {raw!r} is not a value (quote text with a colon, a quote or "
                         "a leading * or &)") from None
    if isinstance(value, (dict, list)):
        raise ValueError(f"invalid sweep {text!r}: {raw!r} is not a single value")
    return value


def _set(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = data
    for name in path[:-1]:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        node = child
    node[path[-1]] = value


def _has(data: dict[str, Any], path: Sequence[str]) -> bool:
    node: Any = data
    for name in path[:-1]:
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return isinstance(node, dict)


def variant(rules: Sequence[Rule], spec: SweepSpec, value: Any) -> list[Rule]:
    """``rules`` with the swept parameter set to ``value``; ValueError names what does not validate."""
    out = []
    touched = False
    for rule in rules:
        data = rule.model_dump(by_alias=True, exclude_unset=True, mode="json")
        wanted = rule.id == spec.rule if spec.rule else _has(data, spec.path)
        if wanted:
            data = copy.deepcopy(data)
            _set(data, spec.path, value)
            try:
                rule = Rule.model_validate(data)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"{spec.parameter}={value!r} on rule {rule.id!r}: {where}: {err['msg']}") from None
            touched = True
        out.append(rule)
    if not touched:
        which = f"rule {spec.rule!r}" if spec.rule else f"no rule has {spec.parameter!r}"
        raise ValueError(f"nothing to sweep: {which}" + (" is not loaded" if spec.rule else ""))
    return ordered(out)


@dataclass
class SweepPoint:
    """One value of a sweep and what its replay scored."""

    value: Any
    score: Score
    result: BacktestResult

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "score": self.score.to_dict()}


def run_sweep(tickets: list[Ticket], labels: dict[str, str], rules: Sequence[Rule], spec: SweepSpec,
              storm: StormSpec = StormSpec(), since: datetime | None = None,
              progress: Callable[[int, Any], None] | None = None) -> list[SweepPoint]:
    """Replay ``tickets`` (sorted by ``opened_at``, links removed) once per value and score each replay."""
    variants = [variant(rules, spec, value) for value in spec.values]  # every value validated up front
    points = []
    for index, (value, chosen) in enumerate(zip(spec.values, variants)):
        if progress is not None:
            progress(index, value)
        result = replay(tickets, chosen, presorted=True, since=since)
        points.append(SweepPoint(value, score_replay(tickets, labels, result, storm, since), result))
    return points


def render_sweep(spec: SweepSpec, points: Sequence[SweepPoint]) -> str:
    """One line per value: storms caught, recall, purity, declarations per month and the delays."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def minutes(value: float | None) -> str:
        return "-" if value is None else f"{value / 60:.1f}"

    title = f"sweep of {spec.parameter}" + (f" on rule {spec.rule}" if spec.rule else " on every rule that has it")
    header = (f"{'value':>12} {'caught':>9} {'recall':>7} {'purity':>7} {'decl/month':>10} {'busiest month':>13} "
              f"{'delay med min':>13} {'p90 min':>8}")
    lines = [title, header, "-" * len(header)]
    for point in points:
        data = point.score.to_dict()
        per_month = data["declarations_per_month"]
        lines.append(f"{str(point.value):>12} {str(data['caught']) + '/' + str(data['storms']):>9} {pct(data['recall']):>7} "
                     f"{pct(data['purity']):>7} {'-' if per_month is None else f'{per_month:.2f}':>10} "
                     f"{max((m['declarations'] for m in data['months']), default=0):>13} "
                     f"{minutes(data['delay_median_s']):>13} {minutes(data['delay_p90_s']):>8}")
    return "\n".join(lines)


__all__ = ["SweepSpec", "SweepPoint", "parse_sweep", "variant", "run_sweep", "render_sweep"]
