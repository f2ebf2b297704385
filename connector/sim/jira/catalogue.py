"""The simulated site's fixed configuration: one project (``ITSM``), its issue types, priorities, statuses and
workflow, link types, seed users and the field catalogue (with the JSM major incident field and our stage
field)."""

from __future__ import annotations

from typing import Any

MAJOR_INCIDENT_FIELD = "customfield_10050"
STAGE_FIELD = "customfield_10060"
RESPONDERS_FIELD = "customfield_10080"
SERVICES_FIELD = "customfield_10090"
TEAM_GROUP_FIELD = "customfield_10100"
"""A group picker named "Major incident team" (both flavours)."""
DC_RESPONDERS_FIELD = "customfield_10101"
"""Data Center: a multi user picker named "Responders"."""
TEAM_FIELD = "customfield_10110"
"""Cloud: the Atlassian Team field ("Team")."""
MAJOR_INCIDENT_VALUE = "MAJOR_INCIDENT"
MAJOR_INCIDENT_CFTYPE = (
    "com.atlassian.jira.modules.servicemanagement.major-incident-entity:major-incident-entity-field-cftype"
)
RESPONDERS_CFTYPE = "com.atlassian.jira.modules.servicemanagement.responders-entity:responders-entity-field-cftype"
SERVICES_CFTYPE = "com.atlassian.jira.plugins.service-entity:service-entity-field-cftype"
TEXTFIELD_CFTYPE = "com.atlassian.jira.plugin.system.customfieldtypes:textfield"
GROUPPICKER_CFTYPE = "com.atlassian.jira.plugin.system.customfieldtypes:grouppicker"
MULTIUSERPICKER_CFTYPE = "com.atlassian.jira.plugin.system.customfieldtypes:multiuserpicker"
TEAM_CFTYPE = "com.atlassian.teams:rm-teams-custom-field-team"
ARI_USER = "ari:cloud:identity::user/"
ARI_TEAM = "ari:cloud:identity::team/"

PROJECT = {"id": "10000", "key": "ITSM", "name": "IT Service Management", "projectTypeKey": "service_desk"}

ISSUE_TYPES: list[dict[str, Any]] = [
    {"id": "10001", "name": "Incident", "description": "For system outages or incidents."},
    {"id": "10002", "name": "Post-incident review", "description": "Review of a major incident."},
    {"id": "10003", "name": "Change", "description": "For changes to IT systems."},
    {"id": "10004", "name": "Task", "description": "A small piece of work."},
]
"""Every issue type any site of the simulator has; :func:`issue_types` is what one site has."""
PIR_TYPE = "10002"
SYSTEM_TYPES = ("10001", "10002", "10003")
"""JSM Cloud's ITSM template names these ``[System] Incident``, ``[System] Post-incident review`` and ``[System]
Change`` (jira.md §9)."""


def issue_types(flavour: str, plan: str) -> list[dict[str, Any]]:
    """The issue types of a site: Cloud names the ITSM ones ``[System] ...``; the post-incident review type exists
    on a Premium Cloud site only (major incidents and PIRs are Premium and Enterprise; none found on Data
    Center, jira.md §9)."""
    out = []
    for item in ISSUE_TYPES:
        if item["id"] == PIR_TYPE and (flavour != "cloud" or plan != "premium"):
            continue
        name = f"[System] {item['name']}" if flavour == "cloud" and item["id"] in SYSTEM_TYPES else item["name"]
        out.append({**item, "name": name})
    return out

PRIORITIES: list[dict[str, Any]] = [
    {"id": "1", "name": "Highest", "statusColor": "#d04437"},
    {"id": "2", "name": "High", "statusColor": "#f15C75"},
    {"id": "3", "name": "Medium", "statusColor": "#f79232"},
    {"id": "4", "name": "Low", "statusColor": "#707070"},
    {"id": "5", "name": "Lowest", "statusColor": "#999999"},
]
DEFAULT_PRIORITY = "3"

STATUS_CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}

STATUSES: list[dict[str, Any]] = [
    {"id": "1", "name": "Open", "category": "new", "description": "The issue is open and ready for work."},
    {"id": "3", "name": "In Progress", "category": "indeterminate", "description": "Work is in progress."},
    {"id": "10100", "name": "Pending", "category": "indeterminate", "description": "Waiting on someone."},
    {"id": "5", "name": "Resolved", "category": "done", "description": "A resolution has been taken."},
    {"id": "6", "name": "Closed", "category": "done", "description": "The issue is closed."},
    {"id": "10101", "name": "Canceled", "category": "done", "description": "The issue was canceled."},
]
INITIAL_STATUS = "1"

# (id, name, target status id, source status ids)
TRANSITIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("11", "Start progress", "3", ("1", "10100")),
    ("21", "Pending", "10100", ("1", "3")),
    ("31", "Resolve", "5", ("1", "3", "10100")),
    ("41", "Close", "6", ("1", "3", "10100", "5")),
    ("51", "Reopen", "1", ("5", "6", "10101")),
    ("61", "Cancel", "10101", ("1", "3", "10100")),
]

LINK_TYPES: list[dict[str, str]] = [
    {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
    {"id": "10001", "name": "Cloners", "inward": "is cloned by", "outward": "clones"},
    {"id": "10002", "name": "Duplicate", "inward": "is duplicated by", "outward": "duplicates"},
    {"id": "10007", "name": "Initiative", "inward": "is included by", "outward": "includes"},
    {"id": "10006", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
    {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
]

PROJECT_PERMISSIONS: dict[str, tuple[str, str]] = {
    "BROWSE_PROJECTS": ("10", "Browse Projects"),
    "CREATE_ISSUES": ("11", "Create Issues"),
    "EDIT_ISSUES": ("12", "Edit Issues"),
    "ASSIGN_ISSUES": ("13", "Assign Issues"),
    "RESOLVE_ISSUES": ("14", "Resolve Issues"),
    "ADD_COMMENTS": ("15", "Add Comments"),
    "CLOSE_ISSUES": ("18", "Close Issues"),
    "LINK_ISSUES": ("21", "Link Issues"),
    "TRANSITION_ISSUES": ("46", "Transition Issues"),
    "SERVICEDESK_AGENT": ("44", "Service Project Agent"),
}
"""Project permissions by key (``GET /mypermissions``); ``SERVICEDESK_AGENT`` is JSM's agent permission, needed for
internal comments and the JSM APIs."""

RESOLUTION_DONE = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}

SEED_USERS: list[dict[str, str]] = [
    {"accountId": "5b10ac8d82e05b22cc7d4e01", "name": "admin", "displayName": "Sim Admin"},
    {"accountId": "5b10ac8d82e05b22cc7d4e02", "name": "alice", "displayName": "Alice Ng",
     "emailAddress": "alice@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e03", "name": "bob", "displayName": "Bob Okafor",
     "emailAddress": "bob@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e04", "name": "carol", "displayName": "Carol Diaz",
     "emailAddress": "carol@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e05", "name": "dave", "displayName": "Dave Smith",
     "emailAddress": "dave@example.com"},
]


def custom_fields(flavour: str, major_incident_field: bool) -> list[str]:
    """The custom field ids of a site."""
    ids = [MAJOR_INCIDENT_FIELD] if major_incident_field else []
    ids += [STAGE_FIELD, TEAM_GROUP_FIELD]
    ids += [RESPONDERS_FIELD, SERVICES_FIELD, TEAM_FIELD] if flavour == "cloud" else [DC_RESPONDERS_FIELD]
    return ids


def field_ids(major_incident_field: bool, flavour: str = "cloud") -> list[str]:
    """The ids of every field an issue has, in ``GET /issue`` order."""
    ids = ["summary", "description", "issuetype", "project", "priority", "status", "components", "reporter",
           "assignee", "creator", "labels", "created", "updated", "resolutiondate", "resolution",
           "statuscategorychangedate", "issuelinks", "comment", "duedate"]
    return ids + custom_fields(flavour, major_incident_field)


def field_catalogue(major_incident_field: bool, flavour: str = "cloud") -> list[dict[str, Any]]:
    """``GET /field``: every field with its schema and JQL clause names."""

    def system(fid: str, name: str, schema: dict[str, Any] | None, clauses: list[str],
               orderable: bool = True, navigable: bool = True, searchable: bool = True) -> dict[str, Any]:
        item: dict[str, Any] = {"id": fid, "key": fid, "name": name, "custom": False, "orderable": orderable,
                                "navigable": navigable, "searchable": searchable, "clauseNames": clauses}
        if schema is not None:
            item["schema"] = schema
        return item

    fields = [
        system("issuekey", "Key", None, ["id", "issue", "issuekey", "key"], orderable=False),
        system("summary", "Summary", {"type": "string", "system": "summary"}, ["summary"]),
        system("description", "Description", {"type": "string", "system": "description"}, ["description"]),
        system("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}, ["issuetype", "type"]),
        system("project", "Project", {"type": "project", "system": "project"}, ["project"]),
        system("priority", "Priority", {"type": "priority", "system": "priority"}, ["priority"]),
        system("status", "Status", {"type": "status", "system": "status"}, ["status"], orderable=False),
        system("statusCategory", "Status Category", None, ["statusCategory"], orderable=False,
               navigable=False),
        system("components", "Components", {"type": "array", "items": "component", "system": "components"},
               ["component"]),
        system("reporter", "Reporter", {"type": "user", "system": "reporter"}, ["reporter"]),
        system("assignee", "Assignee", {"type": "user", "system": "assignee"}, ["assignee"]),
        system("creator", "Creator", {"type": "user", "system": "creator"}, ["creator"], orderable=False),
        system("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}, ["labels"]),
        system("created", "Created", {"type": "datetime", "system": "created"}, ["created", "createdDate"],
               orderable=False),
        system("updated", "Updated", {"type": "datetime", "system": "updated"}, ["updated", "updatedDate"],
               orderable=False),
        system("resolutiondate", "Resolved", {"type": "datetime", "system": "resolutiondate"},
               ["resolutiondate", "resolved"], orderable=False),
        system("resolution", "Resolution", {"type": "resolution", "system": "resolution"}, ["resolution"]),
        system("statuscategorychangedate", "Status Category Changed",
               {"type": "datetime", "system": "statuscategorychangedate"}, ["statusCategoryChangedDate"],
               orderable=False),
        system("issuelinks", "Linked Issues", {"type": "array", "items": "issuelinks", "system": "issuelinks"},
               ["issueLink"]),
        system("comment", "Comment", {"type": "comments-page", "system": "comment"}, ["comment"],
               navigable=False),
        system("duedate", "Due date", {"type": "date", "system": "duedate"}, ["due", "duedate"]),
    ]
    if major_incident_field:
        fields.append({"id": MAJOR_INCIDENT_FIELD, "key": MAJOR_INCIDENT_FIELD, "name": "Major incident",
                       "untranslatedName": "Major incident", "custom": True, "orderable": True,
                       "navigable": True, "searchable": True, "clauseNames": ["cf[10050]", "Major incident"],
                       "schema": {"type": "any", "custom": MAJOR_INCIDENT_CFTYPE, "customId": 10050}})
    fields.append({"id": STAGE_FIELD, "key": STAGE_FIELD, "name": "Major incident stage", "custom": True,
                   "orderable": True, "navigable": True, "searchable": True,
                   "clauseNames": ["cf[10060]", "Major incident stage", "Major incident stage[Short text]"],
                   "schema": {"type": "string", "custom": TEXTFIELD_CFTYPE, "customId": 10060}})

    def custom(fid: str, name: str, schema_type: str, cftype: str, items: str | None = None,
               clauses: bool = True) -> dict[str, Any]:
        number = int(fid.rsplit("_", 1)[1])
        schema: dict[str, Any] = {"type": schema_type, "custom": cftype, "customId": number}
        if items:
            schema["items"] = items
        return {"id": fid, "key": fid, "name": name, "custom": True, "orderable": True, "navigable": True,
                "searchable": clauses, "clauseNames": [f"cf[{number}]", name] if clauses else [], "schema": schema}

    fields.append(custom(TEAM_GROUP_FIELD, "Major incident team", "group", GROUPPICKER_CFTYPE))
    if flavour == "cloud":
        # Responders are not searchable: no clause names (demisto/content JiraV3 README, jira.md §7).
        fields.append(custom(RESPONDERS_FIELD, "Responders", "array", RESPONDERS_CFTYPE, "string", clauses=False))
        fields.append(custom(SERVICES_FIELD, "Affected services", "array", SERVICES_CFTYPE, "service-entity"))
        fields.append(custom(TEAM_FIELD, "Team", "team", TEAM_CFTYPE))
    else:
        fields.append(custom(DC_RESPONDERS_FIELD, "Responders", "array", MULTIUSERPICKER_CFTYPE, "user"))
    for item in fields:
        item.pop("untranslatedName", None)
    return fields
