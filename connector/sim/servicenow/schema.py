"""What a default instance knows about its tables: incident columns, number prefixes, defaults, the priority
matrix, reference columns, choice and column labels, and how values are stored (strings, UTC times)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

SYSTEM_FIELDS = ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
                 "sys_mod_count")
JOURNAL_FIELDS = ("work_notes", "comments")

#: The incident columns a default instance has (with MIM installed and our custom ``u_mim_stage`` and
#: ``u_mim_marker``).
INCIDENT_FIELDS: tuple[str, ...] = (
    "number", "state", "incident_state", "impact", "urgency", "priority", "severity", "active",
    "short_description", "description", "category", "subcategory", "contact_type",
    "caller_id", "opened_by", "opened_at", "assignment_group", "assigned_to",
    "resolved_at", "resolved_by", "closed_at", "closed_by", "close_code", "close_notes", "hold_reason",
    "parent", "parent_incident", "child_incidents", "problem_id", "rfc", "caused_by",
    "cmdb_ci", "business_service", "location", "company",
    "work_notes", "comments", "work_notes_list", "comments_and_work_notes", "watch_list",
    "correlation_id", "correlation_display", "reassignment_count", "reopen_count",
    "major_incident_state", "business_impact", "proposed_by", "proposed_on", "promoted_by", "promoted_on",
    "probable_cause", "u_mim_stage", "u_mim_marker", "sys_class_name",
)

NUMBER_PREFIXES = {
    "incident": "INC", "change_request": "CHG", "incident_task": "TASK", "problem": "PRB", "task": "TASK",
    "change_task": "CTASK", "problem_task": "PTASK", "sc_request": "REQ", "sc_req_item": "RITM",
    "sc_task": "SCTASK", "incident_alert": "ICP",
}
# System and CMDB tables have no number column; other unlisted tables get a prefix made from their name.
UNNUMBERED_TABLE_PREFIXES = ("sys_", "cmdb", "cmn_", "core_")

TABLE_DEFAULTS: dict[str, dict[str, str]] = {
    "incident": {"state": "1", "incident_state": "1", "impact": "3", "urgency": "3", "severity": "3",
                 "active": "true", "child_incidents": "0", "reassignment_count": "0", "reopen_count": "0"},
    "change_request": {"state": "-5", "active": "true", "type": "normal"},
    "incident_task": {"state": "1", "active": "true", "priority": "4"},
    "problem": {"state": "101", "active": "true"},
}

#: Priority lookup rules, (impact, urgency) -> priority, as documented (I3U3 -> 4).
PRIORITY_MATRIX = {
    ("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "3",
    ("2", "1"): "2", ("2", "2"): "3", ("2", "3"): "4",
    ("3", "1"): "3", ("3", "2"): "4", ("3", "3"): "4",
}
INACTIVE_INCIDENT_STATES = ("7", "8")
FINAL_INCIDENT_STATES = ("6", "7", "8")

#: Reference columns and the table they point at; TABLE_REFERENCES overrides per table.
REFERENCES = {
    "caller_id": "sys_user", "opened_by": "sys_user", "assigned_to": "sys_user", "resolved_by": "sys_user",
    "closed_by": "sys_user", "proposed_by": "sys_user", "promoted_by": "sys_user", "manager": "sys_user",
    "assignment_group": "sys_user_group", "parent_incident": "incident", "problem_id": "problem",
    "rfc": "change_request", "caused_by": "change_request", "cmdb_ci": "cmdb_ci",
    "business_service": "cmdb_ci_service", "location": "cmn_location", "company": "core_company",
    "parent": "task",
}
TABLE_REFERENCES: dict[str, dict[str, str]] = {
    "incident_task": {"incident": "incident"},
    "sys_user_group": {"parent": "sys_user_group"},
    "sys_user_has_role": {"user": "sys_user", "role": "sys_user_role"},
    "sys_user_grmember": {"user": "sys_user", "group": "sys_user_group"},
}

CHOICE_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "incident": {
        "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
                  "8": "Canceled"},
        "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low",
                     "5": "5 - Planning"},
        "major_incident_state": {"proposed": "Proposed", "accepted": "Accepted", "rejected": "Rejected",
                                 "canceled": "Canceled"},
    },
}
CHOICE_LABELS["incident"]["incident_state"] = CHOICE_LABELS["incident"]["state"]

#: ``incident.close_code`` on a current instance (value = label). "Solved (Permanently)" and the other
#: "Solved ..." codes belong to older releases: a current instance refuses them (reference §6, "Resolution
#: codes").
CLOSE_CODES = ("Solution provided", "Workaround provided", "Resolved by caller", "Resolved by change",
               "Resolved by problem", "Resolved by request", "Known error", "Duplicate", "User error",
               "No resolution provided")
CHOICE_LABELS["incident"]["close_code"] = {code: code for code in CLOSE_CODES}

#: The resolution data policy: fields mandatory when an incident is resolved or closed, by label (reference
#: §1.4 "Resolve: resolution code + notes mandatory", §6 "403 Data Policy Exception ... mandatory: Resolution
#: code").
RESOLUTION_MANDATORY = {"close_code": "Resolution code", "close_notes": "Resolution notes"}
RESOLVED_INCIDENT_STATES = ("6", "7")

#: Field write ACLs by role: accepting, rejecting or demoting a major incident (any major incident state but
#: empty and ``proposed``) needs ``major_incident_manager`` (reference §1.1 and §6). ``admin`` passes every ACL.
MAJOR_INCIDENT_MANAGER = "major_incident_manager"
ADMIN_ROLE = "admin"
ROLES = ("admin", "itil", "sn_incident_write", "major_incident_manager", "sn_mim_admin", "incident_manager",
         "communication_manager")

COLUMN_LABELS = {"rfc": "Change Request", "caused_by": "Caused by Change", "caller_id": "Caller",
                 "cmdb_ci": "Configuration item", "u_mim_stage": "MIM stage", "u_mim_marker": "MIM marker",
                 "sys_id": "Sys ID"}


TABLE_NAME = re.compile(r"[a-z0-9_]+")
FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*")
INTEGER = re.compile(r"-?\d{1,18}")


def format_time(moment: datetime) -> str:
    """A time as an instance stores it: UTC ``YYYY-MM-DD HH:MM:SS`` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def to_text(value: Any) -> str:
    """A JSON or Python value as the string ServiceNow would store."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, dict):
        return to_text(value.get("value", value.get("sys_id", "")))
    if isinstance(value, (list, tuple)):
        return ",".join(to_text(item) for item in value)
    return str(value)


def label(element: str) -> str:
    """A column's label: ``COLUMN_LABELS`` or its name in words."""
    if element in COLUMN_LABELS:
        return COLUMN_LABELS[element]
    words = element.removeprefix("u_").replace("_", " ")
    return words[:1].upper() + words[1:]


def internal_type(element: str, table: str) -> str:
    """A column's ``sys_dictionary`` type."""
    if reference_target(table, element):
        return "reference"
    if element in JOURNAL_FIELDS:
        return "journal_input"
    if element == "comments_and_work_notes":
        return "journal_list"
    if element in ("work_notes_list", "watch_list"):
        return "glide_list"
    if element == "active":
        return "boolean"
    if element.endswith(("_at", "_on")):
        return "glide_date_time"
    if element in ("state", "incident_state", "impact", "urgency", "priority", "severity", "sys_mod_count",
                   "child_incidents", "reassignment_count", "reopen_count", "hold_reason"):
        return "integer"
    if element == "sys_id":
        return "GUID"
    return "string"


def reference_target(table: str, element: str) -> str | None:
    """The table a reference column points at (``None``: not a reference)."""
    per_table = TABLE_REFERENCES.get(table, {})
    if element in per_table:
        return per_table[element]
    return REFERENCES.get(element)


def number_prefix(table: str) -> str | None:
    """The prefix of a table's record numbers (``None``: the table has no numbers)."""
    if table in NUMBER_PREFIXES:
        return NUMBER_PREFIXES[table]
    if table.startswith(UNNUMBERED_TABLE_PREFIXES):
        return None
    return re.sub(r"[^a-z]", "", table.removeprefix("u_"))[:4].upper() or "REC"
