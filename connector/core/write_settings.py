"""The ``write:`` section of a mapping, typed per platform: every key with its type and its default, here.

``mappings/servicenow.yaml`` and ``mappings/jira.yaml`` end with the settings the adapter needs to read and
write the platform (tables, field names, labels, paging). :class:`MappingFile` validates that section with
the model of its ``platform:``, so a misspelt key or a wrong type is a ``file:line:col`` error of
``mim rules check`` and of job start instead of a silently ignored setting.

A few ServiceNow defaults follow the mapping's own ``fields:`` and ``values:`` (the stage, parent and change
columns, the resolved state); :func:`write_settings_for` fills them in when the key is absent, so the
adapters read one typed value per key and hold no defaults of their own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, Union

from pydantic import ConfigDict, Field, ValidationError, field_validator

from connector.core.durations import Duration
from connector.core.yamlfile import Problem, Strict, problems

CanonicalState = Literal["new", "in_progress", "on_hold", "resolved", "closed", "canceled"]
"""A canonical ticket state (:class:`connector.core.ticket.State`), as written in a mapping."""


PLATFORM_DUTIES = ("stakeholders", "services", "review")
"""Process duties only some platforms model (see :attr:`connector.process.context.ProcessContext.duties`)."""


class _Write(Strict):
    """Settings both platforms have. Numbers are accepted where text is expected (``resolved_state: 6``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    discovery_ttl: Duration = timedelta(hours=1)
    """How long the site facts found by discovery are kept in the state store before they are read again."""

    @property
    def duties(self) -> frozenset[str]:
        """The :data:`PLATFORM_DUTIES` this platform's adapter carries out (none by default)."""
        return frozenset()


class ServiceNowWrite(_Write):
    """``write:`` of ``mappings/servicenow.yaml``: the tables and columns the ServiceNow adapter uses."""

    table: str = "incident"
    """The table polled and written (major incidents are incidents)."""
    stage_field: str | None = None
    """The column the stage is written to, used when it exists on the table (else stages become work notes).
    Absent: the mapping's ``stage`` field; empty or null: no stage column."""
    marker_field: str | None = "u_mim_marker"
    """A column of our own for the connector's marker (``mim:<rule>``) on a major incident it declares, used
    when it exists on the table (found by discovery, like the stage field). Without it the marker is a tagged
    work note. Never a column another tool writes: set to the ``correlation_field`` (as in mappings of earlier
    versions) it is ignored and ``mim doctor`` says so."""
    correlation_field: str = "correlation_id"
    """Set to the marker (or the tag) on the records the connector creates (a new major incident, review
    tasks, the change), so a lost create answer never creates twice; never written on an existing record
    (monitoring and event tools de-duplicate on it). Read to recognise the major incidents that earlier
    versions marked there."""
    major_field: str = "major_incident_state"
    """The major incident state column (Major Incident Management)."""
    parent_field: str = "parent_incident"
    """The column that links a child to its major incident. Absent: the mapping's ``parent`` field."""
    change_table: str = "change_request"
    change_link_field: str = "rfc"
    """The incident column that names its change. Absent: the mapping's ``change`` field."""
    task_table: str = "incident_task"
    task_parent_field: str = "incident"
    task_due_field: str = "due_date"
    proposed_by_field: str | None = "proposed_by"
    """Who proposed a major incident (the integration user), written when the connector proposes one, as the
    "Propose major incident" UI action does. The column is **[verify on an instance]** in the reference
    (§1.2): an instance without it ignores the write; empty or null: not written."""
    proposed_on_field: str | None = "proposed_on"
    """When the connector proposed it (UTC). **[verify on an instance]** like ``proposed_by_field``."""
    business_impact_field: str | None = "business_impact"
    """The business impact the "Propose major incident" action asks for (confirmed in the reference §1.2),
    written when empty with the group and ticket count of the declaration; empty or null: not written."""
    group_table: str = "sys_user_group"
    group_name_field: str = "name"
    user_table: str = "sys_user"
    user_name_field: str = "user_name"
    change_states: dict[str, CanonicalState] = Field(default_factory=dict)
    """Change ``state`` values as canonical states, for the change read back by ``fetch_followups``."""
    task_states: dict[str, CanonicalState] = Field(default_factory=dict)
    """Task ``state`` values as canonical states, for the review tasks read back by ``fetch_followups``."""
    priority_via: dict[int | str, dict[str, int | str]] = Field(default_factory=dict)
    """Canonical priority -> the impact and urgency that make it (priority lookup rules overwrite a direct
    priority write on most instances)."""
    resolved_state: str = "resolved"
    """The ``state`` value that resolves an incident. Absent: the value the mapping's ``values.state`` maps to
    ``resolved``."""
    close_code: str = "Solution provided"
    """The resolution code set when the connector resolves an incident: an active choice of
    ``incident.close_code`` (a base choice of current releases; ``mim doctor`` checks it against the
    instance's ``sys_choice``). A value that is not a choice is refused by the resolution data policy."""
    close_notes: str = "Resolved with the major incident."
    batch: bool = True
    """Send many PATCHes through the Batch API."""
    batch_size: int = Field(50, ge=1)
    page_size: int = Field(500, ge=1)
    overlap: Duration = timedelta(seconds=2)
    """How far behind the watermark the delta poll starts again (a row can commit after its timestamp)."""
    poll_filter: str = ""
    """An encoded query ANDed to the delta poll (no ``^NQ``: it is repeated in each keyset group)."""

    @field_validator("poll_filter", mode="before")
    @classmethod
    def _no_filter(cls, value: Any) -> Any:
        return "" if value is None else value


class JiraWrite(_Write):
    """``write:`` of ``mappings/jira.yaml``: issue types, labels, link types and fields the Jira adapter uses."""

    project: str | None = None
    """Deprecated and never read: the adapter works in the project of the settings (``jira.project``,
    ``MIM_JIRA_PROJECT``). Accepted so that older mappings still load; ``mim doctor`` says so when it is set and
    differs."""
    issue_type: str = "Incident"
    major_field_type: str | None = None
    """The schema type of the major incident custom field (found by type, never by name); none: labels only."""
    major_label: str = "major-incident"
    proposed_label: str = "mim-proposed"
    declared_label: str = "mim-declared"
    """Left on every issue the connector declares, so a state rebuild finds one a human un-flagged."""
    link_type: str = "Problem/Incident"
    """The link type from a major incident to its children ("MAJOR causes CHILD")."""
    stage_field_name: str | None = None
    """The name of a custom text field for the stage; none: stages are labels."""
    stage_label_prefix: str = "mim-stage-"
    review_issue_type: str = "Post-incident review"
    """The post-incident review issue type (JSM Cloud: ``[System] Post-incident review``; matched with or without
    the ``[System]`` prefix): one review issue, linked to the major incident, holds its review tasks."""
    review_task_type: str = "Task"
    """The issue type of the review tasks, linked to the review issue (or to the major incident on a site
    without the review type)."""
    review_fallback_type: str | None = "Task"
    """The review tasks' type when ``review_task_type`` does not exist on the site."""
    change_issue_type: str = "Change"
    review_link_type: str = "Relates"
    change_link_type: str = "Relates"
    team_via: Literal["responders", "field", "none"] = "responders"
    """Where the process file's team (and the out-of-hours group) goes: ``responders`` (Jira Cloud: the JSM
    Incidents API adds the Atlassian team of that name as a responder), ``field`` (the custom field
    ``team_field_name``: a group picker, or an Atlassian Team field on Cloud) or ``none``. Data Center has no
    Incidents API: ``responders`` uses the field there."""
    team_field_name: str | None = None
    """The custom field (by name) the team goes to with ``team_via: field`` and on Data Center: a group picker
    (single or multi) or, on Cloud, an Atlassian Team field."""
    responders_field_name: str | None = None
    """Data Center: a user picker custom field (by name, single or multi) the manager is added to as responder."""
    manager_responder: bool = True
    """The manager (assignee) is also a responder of the major incident."""
    stakeholders: bool = True
    """The process file's stakeholder ``people`` are added to the major incident: JSM Cloud stakeholders
    (Incidents API), else request participants."""
    affected_services: bool = True
    """The major incident's Affected services field lists its own and its children's services."""
    services: dict[str, str] = Field(default_factory=dict)
    """Service name -> JSM service id, for services no issue of the site shows in its Affected services yet."""
    post_incident_review: bool = True
    """A post-incident review issue holds the review tasks (where the site has the review issue type)."""
    property_key: str = "mim"
    """The issue entity property the connector keeps its marker and bookkeeping in."""
    internal_comments: bool = True
    """Internal notes are JSM internal comments (``sd.public.comment``)."""
    resolve_status: str = "Resolved"
    resolution: str = "Done"
    """The resolution set when a transition requires one."""
    state_statuses: dict[CanonicalState, str] = Field(default_factory=dict)
    """Canonical state -> the status name a transition leads to (on top of the built-in names)."""
    page_size: int = Field(100, ge=1)
    overlap: Duration = timedelta(minutes=2)
    teams: dict[str, str] = Field(default_factory=dict)
    """Process-file team or group name -> Atlassian team id (the last part of the team's profile URL), for
    sites whose organisation's Teams API the connector cannot read; other teams are looked up by name."""
    org_id: str | None = None
    """The Cloud organisation id (admin.atlassian.com/o/<id>) whose Teams API names the teams; found through
    the site's GraphQL gateway when absent."""
    @property
    def duties(self) -> frozenset[str]:
        """The platform duties switched on: ``stakeholders``, ``services``, ``review``."""
        return frozenset(name for name, on in (("stakeholders", self.stakeholders),
                                               ("services", self.affected_services),
                                               ("review", self.post_incident_review)) if on)

    create_settle: Duration = timedelta(minutes=5)
    """Jira Cloud: how long after a create lost its answer the connector waits for search to show it before
    creating the record again (search lags writes by seconds to minutes). Each cycle of the wait counts as a
    failed attempt of the create, and an action is given up after 10: keep it under 10 sync intervals."""


WriteSettings = Union[ServiceNowWrite, JiraWrite]
"""The ``write:`` section of a mapping of either platform."""

WRITE_MODELS: dict[str, type[ServiceNowWrite] | type[JiraWrite]] = {"servicenow": ServiceNowWrite, "jira": JiraWrite}
"""The model of each platform's ``write:`` section, by the mapping's ``platform:``."""


def _first(source: str | list[str] | None) -> str | None:
    if isinstance(source, list):
        return source[0] if source else None
    return source


def _mapping_defaults(platform: str, fields: dict[str, Any], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The defaults that follow the mapping's ``fields:`` and ``values:``."""
    if platform != "servicenow":
        return {}
    states = values.get("state") or {}
    return {"stage_field": _first(fields.get("stage")),
            "parent_field": _first(fields.get("parent")) or "parent_incident",
            "change_link_field": _first(fields.get("change")) or "rfc",
            "resolved_state": next((str(raw) for raw, canonical in states.items() if canonical == "resolved"), "resolved")}


def write_settings_for(platform: str, data: Any, fields: dict[str, Any] | None = None,
                       values: dict[str, dict[str, Any]] | None = None) -> WriteSettings:
    """``data`` (the ``write:`` section) validated with ``platform``'s model; keys it leaves out that follow
    the mapping come from ``fields`` and ``values``. Every problem is raised at once, each at its own key."""
    model = WRITE_MODELS[platform]
    if isinstance(data, model):
        return data
    if isinstance(data, (ServiceNowWrite, JiraWrite)):
        data = data.model_dump()
    if isinstance(data, dict):
        data = {**{k: v for k, v in _mapping_defaults(platform, fields or {}, values or {}).items() if k not in data},
                **data}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise problems(_located(exc, model)) from None


def _located(exc: ValidationError, model: type[ServiceNowWrite] | type[JiraWrite]) -> list[Problem]:
    found: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            found.append((loc, f"unknown key {loc[-1]!r} (expected one of: {', '.join(sorted(model.model_fields))})",
                          True))
        else:
            found.append((loc, str(err["msg"]).removeprefix("Value error, "), False))
    return found


__all__ = ["CanonicalState", "JiraWrite", "PLATFORM_DUTIES", "ServiceNowWrite", "WRITE_MODELS", "WriteSettings", "write_settings_for"]
