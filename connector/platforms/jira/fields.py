"""Reading a Jira issue the way the mapping needs it: the ``_``-prefixed keys derived from labels, links, the
entity property and the discovered custom fields (major incident state, parent, stage, marker, change, CI), and
canonical states from statuses."""

from __future__ import annotations

from typing import Any

from connector.core.mapping import Mapping
from connector.core.ticket import Stage
from connector.core.write_settings import JiraWrite
from connector.platforms.jira.discovery import JiraDiscovery

MAJOR_INCIDENT_VALUE = "MAJOR_INCIDENT"
STAGE_ORDER = [s.value for s in Stage]

Issue = dict[str, Any]


def flag_on(value: Any) -> bool:
    """Whether a major incident field value means "major" (read defensively: string, option, list)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().upper() == MAJOR_INCIDENT_VALUE
    if isinstance(value, dict):
        return any(flag_on(value.get(k)) for k in ("value", "name", "id"))
    if isinstance(value, list):
        return any(flag_on(v) for v in value)
    return False


def same_link_type(link: dict[str, Any], link_type: dict[str, Any]) -> bool:
    """Whether an ``issuelinks`` entry is of the discovered ``link_type`` (by id, else by name)."""
    kind = link.get("type") or {}
    return str(kind.get("id")) == link_type["id"] or str(kind.get("name", "")).lower() == link_type["name"].lower()


def same_issue_type(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an issue's ``issuetype`` is the discovered ``wanted`` one (by id, else by name)."""
    return bool(found) and (str(found.get("id")) == str(wanted.get("id"))
                            or str(found.get("name", "")).lower() == str(wanted.get("name", "")).lower())


def first_name(value: Any) -> str | None:
    """The name (or value, or id) of a field value, or of the first of a list of them."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name") or value.get("value") or value.get("id")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class JiraFields:
    """Derives what the mapping reads from an issue, with the site's discovered fields and types."""

    def __init__(self, mapping: Mapping, write: JiraWrite, discovery: JiraDiscovery) -> None:
        self._mapping = mapping
        self._write = write
        self._discovery = discovery

    def property(self, issue: Issue) -> dict[str, Any]:
        """The connector's entity property of ``issue`` (``{}`` when it has none)."""
        value = (issue.get("properties") or {}).get(self._write.property_key)
        return value if isinstance(value, dict) else {}

    def derived(self, raw: Issue) -> dict[str, Any]:
        """The ``_``-prefixed keys the mapping reads: ``_major`` (none / proposed / accepted / rejected),
        ``_parent`` (issue id of the major incident this issue is linked to), ``_stage``, ``_marker``,
        ``_change`` (the linked change issue) and ``_ci`` (first affected service, when the site has that
        field)."""
        fields = raw.get("fields") or {}
        labels = [str(label) for label in fields.get("labels") or []]
        prop = self.property(raw)
        out: dict[str, Any] = {}
        if self._is_flagged(fields, labels):
            out["_major"] = "proposed" if self._write.proposed_label in labels else "accepted"
        elif prop.get("declared") is True or self._write.declared_label in labels:
            out["_major"] = "rejected"  # we declared it and a human took the flag away
        else:
            out["_major"] = "none"
        parent = self._parent_of(fields)
        if parent:
            out["_parent"] = parent
        stage = self.stage_of(fields, labels)
        if stage:
            out["_stage"] = stage
        change = self._change_of(fields)
        if change:
            out["_change"] = change
        if isinstance(prop.get("marker"), str):
            out["_marker"] = prop["marker"]
        services = self._discovery.field("services")
        if services:
            ci = first_name(fields.get(services["id"]))
            if ci:
                out["_ci"] = ci
        team = self.team_of(fields)
        if team:
            out["_team"] = team
        return out

    def team_of(self, fields: dict[str, Any]) -> str | None:
        """The team an issue shows (the canonical ``assignment_group``): on Cloud with ``team_via: responders``
        the first team among its responders, else the team field's group or team name."""
        responders = self._discovery.field("responders")
        if responders and self._write.team_via == "responders":
            for item in fields.get(responders["id"]) or []:
                if isinstance(item, dict) and (item.get("type") == "team" or ":team/" in str(item.get("ari", ""))):
                    return str(item.get("name") or item.get("ari"))
        team = self._discovery.field("team")
        if team and self._write.team_via != "none":
            return first_name(fields.get(team["id"]))
        return None

    def responder_aris(self, fields: dict[str, Any]) -> set[str]:
        """The ARIs of the responders an issue shows (Cloud)."""
        responders = self._discovery.field("responders")
        if not responders:
            return set()
        out = set()
        for item in fields.get(responders["id"]) or []:
            ari = item.get("ari") if isinstance(item, dict) else item
            if isinstance(ari, str):
                out.add(ari)
        return out

    def learn_services(self, fields: dict[str, Any]) -> None:
        """Remember the JSM service ids an issue's Affected services show, by name (kept with the site facts): a
        major incident lists its children's services by these ids."""
        services = self._discovery.field("services")
        if not services or not isinstance(fields.get(services["id"]), list):
            return
        known: dict[str, str] = self._discovery.ensure().setdefault("service_ids", {})
        for item in fields[services["id"]]:
            if isinstance(item, dict) and item.get("id") and item.get("name") and item["name"] not in known:
                known[str(item["name"])] = str(item["id"])

    def _is_flagged(self, fields: dict[str, Any], labels: list[str]) -> bool:
        major = self._discovery.field("major")
        if major and flag_on(fields.get(major["id"])):
            return True
        return self._write.major_label in labels

    def _parent_of(self, fields: dict[str, Any]) -> str | None:
        link_type = self._discovery.known("link_types", "child")
        if not link_type:
            return None
        incident = self._discovery.known("issue_types", "incident") or {}
        for link in fields.get("issuelinks") or []:
            if not same_link_type(link, link_type):
                continue
            # Seen from the child, "MAJOR causes CHILD" shows the major incident as inwardIssue.
            other = link.get("inwardIssue")
            if not isinstance(other, dict) or not other.get("id"):
                continue
            # A Problem also "causes" incidents: only an issue of the incident type is a major incident.
            other_type = ((other.get("fields") or {}).get("issuetype") or {})
            if other_type and incident and str(other_type.get("id")) != incident.get("id") \
                    and str(other_type.get("name", "")).lower() != str(incident.get("name", "")).lower():
                continue
            return str(other["id"])
        return None

    def _change_of(self, fields: dict[str, Any]) -> str | None:
        """The change issue linked to this (major) incident with the change link type, if any."""
        link_type = self._discovery.known("link_types", "change")
        change_type = self._discovery.known("issue_types", "change")
        if not link_type or not change_type:
            return None
        for link in fields.get("issuelinks") or []:
            if not same_link_type(link, link_type):
                continue
            other = link.get("outwardIssue") or link.get("inwardIssue") or {}
            other_type = (other.get("fields") or {}).get("issuetype") or {}
            if other.get("id") and (str(other_type.get("id")) == change_type["id"]
                                    or str(other_type.get("name", "")).lower() == change_type["name"].lower()):
                return str(other["id"])
        return None

    def stage_of(self, fields: dict[str, Any], labels: list[str]) -> str | None:
        """The stage an issue shows: the stage field when the site has one, else the latest stage label."""
        stage_field = self._discovery.field("stage")
        if stage_field:
            value = first_name(fields.get(stage_field["id"]))
            if value and value.lower() in STAGE_ORDER:
                return value.lower()
        prefix = self._write.stage_label_prefix
        found = [label[len(prefix):].lower() for label in labels if label.startswith(prefix)]
        known = [s for s in found if s in STAGE_ORDER]
        return max(known, key=STAGE_ORDER.index) if known else None

    def state_of(self, status: Any) -> str:
        """A status as a canonical state through the mapping's ``state`` values: the name first, else its
        category."""
        if not isinstance(status, dict):
            return "unknown"
        table = {str(k): str(v) for k, v in (self._mapping.spec.values.get("state") or {}).items()}
        name = str(status.get("name") or "")
        category = str((status.get("statusCategory") or {}).get("key") or "")
        return table.get(name) or table.get(category) or "unknown"


__all__ = ["JiraFields", "MAJOR_INCIDENT_VALUE", "STAGE_ORDER", "first_name", "flag_on", "same_issue_type",
           "same_link_type"]
