"""Rule files: what the organisation considers a major incident, in canonical field names only.

A rule file looks like::

    version: 1
    rules:
      - id: service-surge
        description: Five callers or more on one service within 15 minutes
        when: {state: {in: [new, in_progress]}, priority: {lte: 4}}
        surge: {group_by: [service], window: 15m, threshold: 5, distinct: caller}
        declare: {mode: propose, parent: earliest}
        late_children: 4h

Conditions in ``when`` are ANDed; each is a value (equality), a list (membership) or a mapping of
operators: ``eq ne in not_in lt lte gt gte exists contains matches``.
"""

from __future__ import annotations

import regex
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from connector.core.durations import Duration, format_duration
from connector.core.mapping import Mapping
from connector.core.ticket import (
    CANONICAL_FIELDS,
    INT_FIELDS,
    TIME_FIELDS,
    Major,
    Stage,
    State,
    Ticket,
)
from connector.core.yamlfile import (
    Diagnostic,
    Located,
    Problem,
    Strict,
    load_yaml,
    problems,
    validate,
)

RULE_FIELDS = tuple(f for f in CANONICAL_FIELDS if f not in ("id", "url", "raw"))
_ENUMS: dict[str, type[Enum]] = {"state": State, "major": Major, "stage": Stage}
OPERATORS = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists", "contains", "matches")
_SINGLE = ("eq", "ne", "lt", "lte", "gt", "gte")
_ORDERING = ("lt", "lte", "gt", "gte")
MAX_THRESHOLD = 100_000
"""The largest surge threshold (tickets or distinct values in one window)."""
MAX_ORDER = 1_000_000


class Condition(Strict):
    """Operators on one canonical field; all given operators must hold."""

    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    lt: Any = None
    lte: Any = None
    gt: Any = None
    gte: Any = None
    exists: bool | None = None
    contains: str | None = None
    matches: str | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)
            except regex.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "Condition":
        if not self.model_fields_set:
            raise ValueError(f"a condition needs at least one operator ({', '.join(OPERATORS)})")
        return self


def check_when(value: Any) -> Any:
    """A rule's ``when`` with shorthands expanded (a list is ``in``, a value ``eq``), every field and operator
    checked before the conditions are built: unknown fields and operators (listed with the valid ones),
    values of the wrong type (a list inside ``in``, text for a priority), regular expressions that do not
    compile. Every problem is reported at its own key or value, so no problem hides another."""
    if not isinstance(value, dict):
        return value  # pydantic reports the type
    found: list[Problem] = []
    out: dict[Any, Any] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or name not in RULE_FIELDS:
            found.append(((name,), f"unknown canonical field {name!r} (known: {', '.join(RULE_FIELDS)})", True))
            continue
        if isinstance(raw, dict):
            cond, shorthand = raw, None
        elif isinstance(raw, list):
            cond, shorthand = {"in": raw}, "in"
        else:
            cond, shorthand = {"eq": raw}, "eq"
        found += [((name, *where), message, key) for where, message, key in _condition_problems(name, cond, shorthand)]
        out[name] = cond
    if found:
        raise problems(found)
    return out


def _condition_problems(name: str, cond: dict[Any, Any], shorthand: str | None) -> list[Problem]:
    """Problems of one field's condition, located relative to the field (a shorthand's values sit right
    under it)."""
    def at(op: str, *rest: Any) -> tuple[Any, ...]:
        return tuple(rest) if shorthand == op else (op, *rest)

    if not cond:
        return [((), f"a condition needs at least one operator ({', '.join(OPERATORS)})", False)]
    if name in TIME_FIELDS:
        return [((), f"{name} cannot be compared in a rule; use surge windows for time", False)]
    found: list[Problem] = []
    for op, arg in cond.items():
        if op not in OPERATORS:
            found.append(((op,), f"unknown operator {op!r} (operators: {', '.join(OPERATORS)})", True))
        elif op in _ORDERING and name not in INT_FIELDS:
            continue  # reported once below: ordering applies to numbers only
        elif op in _SINGLE:
            found += [(at(op), message, False) for message in _value_problems(name, arg)]
        elif op in ("in", "not_in"):
            if not isinstance(arg, list):
                found.append((at(op), f"{op} takes a list of values, not {_kind(arg)}", False))
                continue
            for i, item in enumerate(arg):
                found += [(at(op, i), message, False) for message in _value_problems(name, item)]
        elif op == "exists":
            if not isinstance(arg, bool):
                found.append((at(op), f"exists takes true or false, not {arg!r}", False))
        elif not isinstance(arg, str):
            found.append((at(op), f"{op} takes text, not {_kind(arg)}", False))
        elif name in INT_FIELDS:
            found.append((at(op), f"{op} applies to text fields, not {name}", False))
        elif op == "matches":
            try:
                regex.compile(arg)
            except regex.error as exc:
                found.append((at(op), f"invalid regular expression: {exc}", False))
    ordering = [op for op in _ORDERING if op in cond]
    if ordering and name not in INT_FIELDS:
        # comparing text with < would fail at run time on the first ticket, not here
        found.append(((), f"{'/'.join(ordering)} compare numbers; {name} is not one of "
                                       f"{', '.join(sorted(INT_FIELDS))}", False))
    return found


def _value_problems(name: str, value: Any) -> list[str]:
    """Why ``value`` cannot be compared with the field ``name`` of a ticket (nothing when it can)."""
    if value is None:
        return []  # the field is missing
    if isinstance(value, (list, dict)):
        return [f"{name} values are single values, not {_kind(value)}"]
    enum = _ENUMS.get(name)
    if enum is not None:
        if not isinstance(value, str) or value not in {m.value for m in enum}:
            return [f"{value!r} is not a valid {name} (expected one of {', '.join(m.value for m in enum)})"]
        return []
    if name in INT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
            return [f"{name} values are integers 1..5, not {value!r}"]
        return []
    if not isinstance(value, str):
        return [f"{name} values are text, not {_kind(value)} {value!r}; quote it: '{value}'"]
    return []


def _kind(value: Any) -> str:
    names = {list: "a list", dict: "a mapping", bool: "a boolean", int: "an integer", float: "a number",
             str: "text", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


class BaselineSpec(Strict):
    """A surge rule's per-group baseline (:mod:`connector.detection.baseline`): the rule fires only when the
    count in the window is at least ``floor`` and improbable (below ``probability``) under what the group
    normally gets at that hour of the week."""

    probability: float = Field(default=1e-4, gt=0, lt=1)
    floor: int | None = Field(default=None, ge=1, le=MAX_THRESHOLD)
    """The smallest count that may fire (default: the surge's threshold)."""
    model: Literal["poisson", "negative_binomial"] = "poisson"
    seasonality: Literal["hour_of_week", "none"] = "hour_of_week"
    history: Duration = timedelta(weeks=4)
    """Time constant of the learned rates: a week ago weighs exp(-1w/history) as much as now."""
    min_history: Duration = timedelta(weeks=1)
    """Learned for less than this, the rule uses its fixed threshold."""
    time_zone: str = "UTC"

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value.upper() == "UTC":
            return "UTC"
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(value)
        except (ValueError, KeyError, OSError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Amsterdam, or UTC)") from None
        return value

    @field_validator("history", "min_history")
    @classmethod
    def _at_least_an_hour(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError(f"{info.field_name} must be at least 1h")
        return value


class Surge(Strict):
    """Many tickets sharing ``group_by`` values within ``window``."""

    group_by: list[str] = Field(min_length=1)
    window: Duration
    threshold: int = Field(ge=1, le=MAX_THRESHOLD)
    distinct: str | None = None
    baseline: BaselineSpec | None = None

    @field_validator("group_by")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        _known_fields(value, "group_by")
        if len(set(value)) != len(value):
            raise ValueError("group_by lists a field twice")
        return value

    @field_validator("distinct")
    @classmethod
    def _distinct(cls, value: str | None) -> str | None:
        if value is not None and value not in RULE_FIELDS:
            raise ValueError(f"unknown canonical field {value!r} for distinct")
        return value

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("window must be longer than 0s")
        return value


SETTABLE = ("priority", "impact", "urgency", "assignment_group", "assignee", "category", "subcategory")


class Declare(Strict):
    """How a match is declared: ``mode`` (propose for a human to accept, or accept) and the parent."""

    mode: Literal["propose", "accept"] = "propose"
    parent: Literal["earliest", "highest_priority", "self", "new"] = "earliest"
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _settable(cls, value: dict[str, Any]) -> dict[str, Any]:
        found: list[Problem] = []
        for name, item in value.items():
            if name not in SETTABLE:
                found.append(((name,), f"field {name!r} cannot be set on declaration (settable: {', '.join(SETTABLE)})", True))
            elif name in INT_FIELDS and (not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= 5):
                found.append(((name,), f"{name} must be an integer from 1 to 5", False))
            elif name not in INT_FIELDS and (not isinstance(item, str) or not item.strip()):
                found.append(((name,), f"{name} must be a name (text), not {_kind(item)} {item!r}", False))
        if found:
            raise problems(found)
        return value


class LateChildren(Strict):
    """How long tickets of an open major incident's group join it as late children: for a fixed period
    (``for``, the short form ``late_children: 4h``), or while the group's surge lasts (``while: surge``:
    the incident's tickets in the window still improbable under the group's baseline at ``probability``;
    for a rule without a baseline, at least half its threshold) plus ``tail``, never longer than ``max``
    after the declaration. ``same`` fields must also match the major incident's value
    (the most common one among the tickets that declared it)."""

    for_: Duration | None = Field(default=None, alias="for")
    while_: Literal["surge"] | None = Field(default=None, alias="while")
    tail: Duration | None = None
    max: Duration | None = None
    probability: float | None = Field(default=None, gt=0, lt=1)
    same: list[str] = Field(default_factory=list)

    DEFAULT_TAIL: ClassVar[timedelta] = timedelta(minutes=30)
    DEFAULT_MAX: ClassVar[timedelta] = timedelta(hours=8)
    DEFAULT_PROBABILITY: ClassVar[float] = 0.05

    @field_validator("same")
    @classmethod
    def _same_fields(cls, value: list[str]) -> list[str]:
        _known_fields(value, "same")
        if len(set(value)) != len(value):
            raise ValueError("same lists a field twice")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> "LateChildren":
        if (self.for_ is None) == (self.while_ is None):
            raise ValueError("late_children needs either 'for' (a duration) or 'while: surge'")
        if self.for_ is not None:
            extra = [name for name in ("tail", "max", "probability") if getattr(self, name) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to 'while: surge'")
            if self.for_ < timedelta(0):
                raise ValueError("late_children must not be negative")
        else:
            if self.tail_period < timedelta(0):
                raise ValueError("tail must not be negative")
            if self.max_period <= timedelta(0):
                raise ValueError("max must be longer than 0s: nothing would ever join")
            if self.max_period < self.tail_period:
                raise ValueError(f"max ({format_duration(self.max_period)}) is shorter than tail "
                                 f"({format_duration(self.tail_period)}): the tail could "
                                 "never be used; make max at least as long")
        return self

    @property
    def fixed(self) -> timedelta | None:
        """The fixed period (``for``), or None for ``while: surge``."""
        return self.for_

    @property
    def tail_period(self) -> timedelta:
        """How long after the surge's last surging ticket late tickets still join."""
        return self.tail if self.tail is not None else self.DEFAULT_TAIL

    @property
    def max_period(self) -> timedelta:
        """The longest a surge may collect after its declaration."""
        return self.max if self.max is not None else self.DEFAULT_MAX

    @property
    def surge_probability(self) -> float:
        """Level at which the group's window count still counts as surging."""
        return self.probability if self.probability is not None else self.DEFAULT_PROBABILITY


def _late_children_form(value: Any) -> Any:
    """``late_children: 4h`` is short for ``late_children: {for: 4h}``."""
    if isinstance(value, (str, timedelta)) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return {"for": value}
    return value


class Rule(Strict):
    """One detection rule."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    description: str = ""
    enabled: bool = True
    order: int | None = Field(default=None, ge=-MAX_ORDER, le=MAX_ORDER)
    when: dict[str, Condition] = Field(default_factory=dict)
    surge: Surge | None = None
    declare: Declare = Field(default_factory=Declare)
    late_children: LateChildren | None = None
    join_by: list[str] | None = None

    @field_validator("late_children", mode="before")
    @classmethod
    def _late_short(cls, value: Any) -> Any:
        return _late_children_form(value)

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        return check_when(value)

    @field_validator("join_by")
    @classmethod
    def _join(cls, value: list[str] | None) -> list[str] | None:
        _known_fields(value or [], "join_by")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Rule":
        if self.surge is not None and self.declare.parent == "self":
            raise ValueError("declare.parent 'self' is for single-ticket rules; a surge needs earliest, highest_priority or new")
        if self.surge is not None and self.join_by is not None:
            raise ValueError("join_by is for single-ticket rules; a surge's late children join by its group_by")
        if self.join_by and self.late_children is None:
            raise ValueError("join_by needs late_children (how long late tickets may join)")
        if self.late_children is not None and self.late_children.while_ is not None and self.surge is None:
            raise ValueError("late_children 'while: surge' needs a surge (a single-ticket rule has none); use 'for'")
        return self

    @property
    def late_period(self) -> timedelta | None:
        """The fixed late-children period (``late_children: 4h``), or None (none, or ``while: surge``)."""
        return self.late_children.fixed if self.late_children is not None else None

    def fields_used(self) -> set[str]:
        """Canonical fields this rule reads."""
        used = set(self.when)
        if self.surge:
            used.update(self.surge.group_by)
            if self.surge.distinct:
                used.add(self.surge.distinct)
        used.update(self.join_by or [])
        if self.late_children is not None:
            used.update(self.late_children.same)
        return used

    @property
    def group_by(self) -> list[str]:
        """The fields a late ticket must share with the major incident."""
        if self.surge is not None:
            return self.surge.group_by
        return self.join_by or []


def _known_fields(names: list[str], where: str) -> None:
    """Raise one located problem per name in ``names`` that is not a canonical field."""
    found: list[Problem] = [((i,), f"unknown canonical field {name!r} in {where}", False)
                            for i, name in enumerate(names) if name not in RULE_FIELDS]
    if found:
        raise problems(found)


class RuleFile(Strict):
    """The top level of a rule file."""

    version: Literal[1]
    rules: list[Rule] = Field(default_factory=list)


# -- compiled predicates -------------------------------------------------------------------------

Predicate = Callable[[Ticket], bool]


FieldsPredicate = Callable[[dict[str, Any]], bool]


def _field_predicates(name: str, cond: Condition) -> list[FieldsPredicate]:
    """One predicate per operator of ``cond``, over a ticket's field values (``ticket.__dict__``).

    The engine calls these for every ticket and rule, so each reads its field itself with one dict lookup:
    attribute reads on a pydantic model take the slow generic path (it defines ``__getattr__``), and a
    shared value-extraction step or an ``all()`` over checks would double the cost. Enum fields hold
    ``str`` enums or their values, which compare and hash alike."""
    out: list[FieldsPredicate] = []
    fields = cond.model_fields_set
    if "eq" in fields:
        equal = cond.eq
        out.append(lambda f: f[name] == equal)
    if "ne" in fields:
        unequal = cond.ne
        out.append(lambda f: f[name] != unequal)
    if cond.in_ is not None:
        allowed = frozenset(cond.in_)
        out.append(lambda f: f[name] in allowed)
    if cond.not_in is not None:
        denied = frozenset(cond.not_in)
        out.append(lambda f: f[name] not in denied)
    if "lt" in fields:
        lt = cond.lt
        out.append(lambda f: (v := f[name]) is not None and v < lt)
    if "lte" in fields:
        lte = cond.lte
        out.append(lambda f: (v := f[name]) is not None and v <= lte)
    if "gt" in fields:
        gt = cond.gt
        out.append(lambda f: (v := f[name]) is not None and v > gt)
    if "gte" in fields:
        gte = cond.gte
        out.append(lambda f: (v := f[name]) is not None and v >= gte)
    if cond.exists is not None:
        want = cond.exists
        out.append(lambda f: ((v := f[name]) is not None and v != "") == want)
    if cond.contains is not None:
        needle = cond.contains.casefold()
        out.append(lambda f: isinstance(v := f[name], str) and needle in v.casefold())
    if cond.matches is not None:
        out.append(_bounded_search(name, regex.compile(cond.matches).search))
    return out


MATCH_TIMEOUT = 0.05
"""Seconds a ``matches:`` search may take on one ticket's text; longer counts as no match. A pattern with nested or
overlapping repeats (``(.|\\s)*x``) can otherwise take minutes on one hostile title and hold every sync."""


def _bounded_search(name: str, search: Callable[..., Any]) -> FieldsPredicate:
    def matches(f: dict[str, Any]) -> bool:
        value = f[name]
        if not isinstance(value, str):
            return False
        try:
            return search(value, timeout=MATCH_TIMEOUT) is not None
        except TimeoutError:
            return False

    return matches


def _all_of(predicates: list[FieldsPredicate]) -> FieldsPredicate:
    """The conjunction of ``predicates``, without a generator per call for the usual one to three."""
    if not predicates:
        return lambda f: True
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda f: first(f) and second(f)
    if len(predicates) == 3:
        first, second, third = predicates
        return lambda f: first(f) and second(f) and third(f)
    frozen = tuple(predicates)

    def every(f: dict[str, Any]) -> bool:
        for predicate in frozen:
            if not predicate(f):
                return False
        return True

    return every


def compile_fields_when(when: dict[str, Condition]) -> FieldsPredicate:
    """All conditions of a rule's ``when`` as one predicate over a ticket's field values
    (``ticket.__dict__``): the form the engine evaluates per ticket."""
    return _all_of([p for name, cond in when.items() for p in _field_predicates(name, cond)])


def compile_condition(name: str, cond: Condition) -> Predicate:
    """A predicate for one field's condition. Missing values fail every operator but ``exists: false``
    and ``ne``/``not_in``."""
    check = _all_of(_field_predicates(name, cond))
    return lambda ticket: check(ticket.__dict__)


# -- loading -------------------------------------------------------------------------------------


def rule_files(paths: list[Path]) -> list[Path]:
    """Expand directories into the rule files they hold (``*.yaml``/``*.yml``, not tests or the process
    file), sorted by name so rule order is stable."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                              and not p.name.startswith("process")))
        else:
            out.append(path)
    return out


def load_rule_file(path: Path) -> tuple[list[Rule], list[Diagnostic], Located | None]:
    """Load and validate one rule file; returns its rules, every error, and the located data."""
    located, errors = load_yaml(path)
    if located is None:
        return [], errors, None
    if located.data is None:
        return [], errors + [located.error((), "file is empty; expected 'version: 1' and 'rules:'")], located
    model, verrors = validate(RuleFile, located)
    errors.extend(verrors)
    if model is None:
        return [], errors, located
    return model.rules, errors, located


class RuleSet:
    """Rules loaded from files, in evaluation order, with every error and where each rule stands."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.errors: list[Diagnostic] = []
        self._where: dict[str, tuple[Located, int]] = {}

    def error(self, rule_id: str, loc: tuple[object, ...], message: str) -> Diagnostic:
        """A located error about ``loc`` inside rule ``rule_id``."""
        located, index = self._where[rule_id]
        return located.error(("rules", index, *loc), message)


def load_rules(paths: list[Path]) -> RuleSet:
    """Load every rule file under ``paths``; all errors of all files, including ids used twice."""
    ruleset = RuleSet()
    files = rule_files(paths)
    seen: dict[str, str] = {}
    loaded: list[Rule] = []
    for path in files:
        file_rules, file_errors, located = load_rule_file(path)
        ruleset.errors.extend(file_errors)
        if located is None:
            continue
        for index, rule in enumerate(file_rules):
            if rule.id in seen:
                ruleset.errors.append(located.error(("rules", index, "id"), f"rule id {rule.id!r} already defined in {seen[rule.id]}"))
                continue
            seen[rule.id] = str(path)
            ruleset._where[rule.id] = (located, index)
            loaded.append(rule)
    if not files and not ruleset.errors:
        ruleset.errors.append(Diagnostic(str(paths[0]) if paths else "rules", 1, 1, "no rule files found"))
    ruleset.rules = ordered(loaded)
    return ruleset


def ordered(rules: list[Rule]) -> list[Rule]:
    """Rules in evaluation order: by ``order`` (rules without one keep their place after those with
    one of the same or lower value), then by file order. Disabled rules are dropped."""
    indexed = [(rule.order if rule.order is not None else 1000, i, rule) for i, rule in enumerate(rules)]
    return [rule for _, _, rule in sorted(indexed, key=lambda t: (t[0], t[1])) if rule.enabled]


def check_rules_against_mapping(ruleset: RuleSet, mapping: Mapping) -> list[Diagnostic]:
    """A rule that uses a canonical field the mapping does not provide is an error at load time."""
    errors: list[Diagnostic] = []
    provided = mapping.provided
    for rule in ruleset.rules:
        for name in sorted(rule.fields_used() - provided):
            loc: tuple[object, ...] = ("when", name) if name in rule.when else ("surge",) if rule.surge else ()
            errors.append(ruleset.error(rule.id, loc, f"rule {rule.id!r} uses field {name!r}, which mappings/{mapping.platform}.yaml "
                                                      f"({mapping.path}) does not map"))
    return errors
