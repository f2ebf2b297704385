"""The process file (``rules/process.yaml``): how a declared major incident is run.

Team and manager rota, business hours, out-of-hours routing, stakeholders and update cadence, message
templates, the change template, review tasks and downtime cost per service. Validated like rule files:
unknown and duplicate keys are errors, durations carry units, every error is located.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from connector.core import templating
from connector.core.durations import Duration
from connector.core.yamlfile import Diagnostic, Problem, Strict, load_yaml, problems, validate
from connector.process.calendar import BusinessCalendar

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MESSAGES = ("declared", "update", "resolved", "closed")
TEMPLATE_VALUES = (
    "key", "title", "rule", "stage", "service", "group", "children", "manager", "team", "declared_at",
    "since_declared", "url", "triggered_by", "resolution", "change", "updates_sent", "impact_minutes", "cost",
)
"""The only names a message template may use."""


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, AfterValidator(_named)]
"""A person, a group, a stakeholder or a title the connector writes or keys by: not empty, not only spaces."""


def _parse_time(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads 08:00 as a sexagesimal integer (480); take it back as minutes after midnight. 25:00 (1500)
        # or 12:30:45 (45045) are not times of day: an error, not a silent wrap-around.
        if not 0 <= value < 24 * 60:
            raise ValueError(f"not a time of day (YAML read it as the number {value}); write it as \"HH:MM\" from 00:00 to 23:59")
        return time(value // 60, value % 60)
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    return value


class Person(Strict):
    """A major incident manager in the rota."""

    id: Name
    name: str = ""
    available: bool = True


class OnCallEntry(Strict):
    """Who is on call out of hours: local days and times (an end before the start runs past midnight)."""

    days: list[Day] = Field(min_length=1)
    start: time
    end: time
    person: Name
    group: Name | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, value: object) -> object:
        return _parse_time(value)


class Team(Strict):
    """The major incident team (assignment group) and what changes when it takes over."""

    group: Name
    raise_priority: int | None = Field(default=None, ge=1, le=5)


class Managers(Strict):
    """Manager selection: round-robin rota in hours, on-call out of hours."""

    rota: list[Person] = Field(default_factory=list)
    on_call: list[OnCallEntry] = Field(default_factory=list)

    @field_validator("rota")
    @classmethod
    def _unique(cls, value: list[Person]) -> list[Person]:
        ids = [p.id for p in value]
        if len(ids) != len(set(ids)):
            raise ValueError("a person appears twice in the rota")
        return value


class BusinessHours(Strict):
    """The business calendar: IANA time zone, working days, hours, holidays (dates or a country)."""

    time_zone: str = "UTC"
    days: list[Day] = Field(default_factory=lambda: list[Day](["mon", "tue", "wed", "thu", "fri"]))
    start: time = time(8, 0)
    end: time = time(18, 0)
    holidays: list[date] = Field(default_factory=list)
    country: str | None = None
    subdivision: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, value: object) -> object:
        return _parse_time(value)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _order(self) -> "BusinessHours":
        if self.start >= self.end:
            raise ValueError("business hours must start before they end")
        # the planner builds this calendar every cycle: whatever it refuses (a country the holidays package
        # does not know, no working day) is refused here, at load, and pointed at the key it is about
        try:
            BusinessCalendar(time_zone=self.time_zone, days=tuple(self.days), start=self.start, end=self.end,
                             holidays=tuple(self.holidays), country=self.country, subdivision=self.subdivision)
        except ValueError as exc:
            text = str(exc)
            where = "days" if text.startswith("days") else "subdivision" if "subdivision" in text and \
                "country=" not in text else "country" if self.country is not None else "time_zone"
            raise problems([((where,), text, False)]) from None
        return self


class OutOfHours(Strict):
    """What happens to major incident tickets that arrive out of hours: routed to ``group`` with raised
    ``urgency``, or, on a platform without an urgency (Jira), raised ``priority`` (default: the urgency's
    number)."""

    group: Name
    urgency: int | None = Field(default=1, ge=1, le=3)
    priority: int | None = Field(default=None, ge=1, le=5)
    note: str = "Arrived out of hours: routed to {team} with raised urgency."

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        return _template_field(value)


class Stakeholder(Strict):
    """Who is informed, and how: a platform note (internal or public) and/or a named webhook; ``people`` are
    platform users added to the major incident itself as its stakeholders where the platform has them (Jira
    Service Management), so the platform keeps them informed too."""

    name: Name
    audience: Literal["internal", "public"] = "internal"
    webhook: str | None = None
    format: Literal["generic", "slack", "teams"] = "generic"
    people: list[str] = Field(default_factory=list)


class Communications(Strict):
    """Stakeholders, update cadence and message templates."""

    update_every: Duration | None = None
    stakeholders: list[Stakeholder] = Field(default_factory=list)
    templates: dict[Literal["declared", "update", "resolved", "closed"], str] = Field(default_factory=dict)

    @field_validator("update_every")
    @classmethod
    def _cadence(cls, value: timedelta | None) -> timedelta | None:
        return _positive(value)

    @field_validator("stakeholders")
    @classmethod
    def _unique(cls, value: list[Stakeholder]) -> list[Stakeholder]:
        names = [s.name.lower() for s in value]
        if len(names) != len(set(names)):
            raise ValueError("stakeholder names must be unique (they key the messages sent to each)")
        return value

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        found: list[Problem] = []
        for name, text in value.items():
            found += [((name,), f"template {name!r}: {problem}", False) for problem in check_template(text)]
        if found:
            raise problems(found)
        return value


class ChangeTemplate(Strict):
    """The change created for the resolution plan."""

    type: str = "normal"
    title: str = "Resolution plan for {key}: {title}"
    description: str = "Implements the resolution of major incident {key} ({service})."
    assign_to_team: bool = True

    @field_validator("title", "description")
    @classmethod
    def _text(cls, value: str) -> str:
        return _template_field(value)


class ReviewTask(Strict):
    """A post-implementation review task; ``due`` counts business days (``5d``)."""

    title: Name
    owner: str | None = None
    due: Duration = timedelta(days=5)
    description: str = ""


class Review(Strict):
    """Review tasks created when the major incident is resolved."""

    tasks: list[ReviewTask] = Field(default_factory=list)
    follow_every: Duration | None = None
    """How often the change and the review tasks are read back while the major incident is in resolution or
    maintenance (default: ``communications.update_every``, else 15 minutes)."""

    @field_validator("follow_every")
    @classmethod
    def _cadence(cls, value: timedelta | None) -> timedelta | None:
        return _positive(value)


def _positive(value: timedelta | None) -> timedelta | None:
    # a cadence of 0s would repeat the message (or the read) every cycle
    if value is not None and value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


MAX_COST_PER_HOUR = 1e12
Money = Annotated[float, Field(ge=0, le=MAX_COST_PER_HOUR, allow_inf_nan=False)]
"""A cost per hour: a finite number from 0 to 10^12 (an infinite one would make reports and messages invalid JSON)."""


class Costs(Strict):
    """Estimated downtime cost per hour of impact, per service."""

    currency: str = "USD"
    default_per_hour: Money = 100_000
    per_service: dict[str, Money] = Field(default_factory=dict)

    def per_hour(self, service: str | None) -> float:
        """Cost per hour for ``service``."""
        return self.per_service.get(service or "", self.default_per_hour)


class ProcessFile(Strict):
    """The top level of the process file."""

    version: Literal[1]
    team: Team | None = None
    managers: Managers = Field(default_factory=Managers)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    out_of_hours: OutOfHours | None = None
    communications: Communications = Field(default_factory=Communications)
    change: ChangeTemplate = Field(default_factory=ChangeTemplate)
    review: Review = Field(default_factory=Review)
    costs: Costs = Field(default_factory=Costs)

    def people(self) -> list[str]:
        """Every person the process file names, in order, once: managers of the rota, people on call, review task
        owners and stakeholder people (they must exist on the platform for the connector to assign or add them)."""
        names = [p.id for p in self.managers.rota] + [e.person for e in self.managers.on_call]
        names += [t.owner for t in self.review.tasks if t.owner]
        names += [person for s in self.communications.stakeholders for person in s.people]
        return list(dict.fromkeys(names))

    def groups(self) -> list[str]:
        """Every group the process file names, in order, once: the team, the on-call groups, the out-of-hours
        group."""
        names = ([self.team.group] if self.team else []) + [e.group for e in self.managers.on_call if e.group]
        names += [self.out_of_hours.group] if self.out_of_hours else []
        return list(dict.fromkeys(names))


def check_template(text: str) -> list[str]:
    """Problems with a message template: placeholders must be plain names from :data:`TEMPLATE_VALUES`."""
    return templating.check(text, TEMPLATE_VALUES)


def _template_field(value: str) -> str:
    problems_found = check_template(value)
    if problems_found:
        raise ValueError("; ".join(problems_found))
    return value


def load_process(path: Path) -> tuple[ProcessFile | None, list[Diagnostic]]:
    """Load and validate a process file; a missing file gives the defaults."""
    if not path.exists():
        return ProcessFile(version=1), []
    located, errors = load_yaml(path)
    if located is None:
        return None, errors
    model, verrors = validate(ProcessFile, located)
    return model, errors + verrors
