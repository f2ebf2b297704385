"""Changes made as a person in the UI would: any status without the workflow, users given loosely (unknown ones
are created), history seeded with explicit times. The Python API of :class:`~connector.sim.jira.JiraSim`."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from connector.sim.jira.adf import adf_from_text
from connector.sim.jira.catalogue import (
    ARI_TEAM,
    ARI_USER,
    MAJOR_INCIDENT_FIELD,
    MAJOR_INCIDENT_VALUE,
    PROJECT,
    RESPONDERS_FIELD,
    SERVICES_FIELD,
    STAGE_FIELD,
    TEAM_GROUP_FIELD,
)
from connector.sim.jira.site import Issue, JiraSite
from connector.sim.jira.times import parse_iso


class HumanEdits:
    """Sets issue fields of ``site`` from simple Python values."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def create(self, fields: dict[str, Any], project: str) -> Issue:
        """A new issue (see :meth:`connector.sim.jira.JiraSim.create_issue`); ``KeyError`` for another project,
        ``ValueError`` for an unknown value."""
        if project.upper() != PROJECT["key"]:
            raise KeyError(f"unknown project {project!r}")
        now = self.site.now()
        created = parse_iso(fields["created"]) if fields.get("created") else now
        issue_type = self.site.find_issue_type(fields.get("issuetype", "Incident"))
        if issue_type is None:
            raise ValueError(f"unknown issue type {fields.get('issuetype')!r}")
        st = self.site.new_state(created)
        st["issuetype"] = issue_type["id"]
        st["summary"] = str(fields.get("summary", "Untitled"))
        st["creator"] = self.site.me
        st["reporter"] = self.site.me
        self._apply(st, {k: v for k, v in fields.items() if k not in ("issuetype", "created")}, initial=True)
        st["updated"] = parse_iso(fields["updated"]) if fields.get("updated") else created
        self.site.register(st)
        return st

    def edit(self, key: str, fields: dict[str, Any]) -> None:
        """Change an issue (see :meth:`connector.sim.jira.JiraSim.edit_issue`); ``KeyError`` when there is none."""
        st = self.site.get_state(key)
        if st is None:
            raise KeyError(key)
        self._apply(st, fields, initial=False)
        self.site.touch(st, parse_iso(fields["updated"]) if fields.get("updated") else None)

    def _user(self, value: Any) -> str | None:
        """accountId for a user given loosely from Python; unknown users are created."""
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            value = value.get("accountId") or value.get("name") or value.get("emailAddress")
        found = self.site.find_user(str(value))
        if found:
            return str(found["accountId"])
        text = str(value)
        if re.fullmatch(r"[0-9a-f]{24}|\d+:[0-9a-f-]{36}|[0-9a-zA-Z:_-]{20,128}", text):
            record = {"accountId": text, "name": "user" + hashlib.sha1(text.encode()).hexdigest()[:6]}
        else:
            name = text.split("@")[0]
            digest = hashlib.sha1(text.encode()).hexdigest()[:24]
            record = {"accountId": digest, "name": name}
            if "@" in text:
                record["emailAddress"] = text
        return str(self.site.add_user(record)["accountId"])

    def _ari(self, value: str) -> str:
        """A responder's ARI: an ARI as it is, else a team of that name, else a user (created if unknown)."""
        if value.startswith("ari:"):
            return value
        team = self.site.find_team(value)
        if team is not None:
            return ARI_TEAM + team["teamId"]
        return ARI_USER + str(self._user(value))

    def _apply(self, st: Issue, fields: dict[str, Any], initial: bool) -> None:
        for name, value in fields.items():
            if name in ("created", "updated"):
                continue
            if name == "summary":
                st["summary"] = str(value)
            elif name == "description":
                st["description"] = None if value in (None, "") else (
                    value if isinstance(value, dict) else adf_from_text(str(value)))
            elif name == "issuetype":
                found = self.site.find_issue_type(value)
                if found is None:
                    raise ValueError(f"unknown issue type {value!r}")
                st["issuetype"] = found["id"]
            elif name == "priority":
                found = self.site.find_priority(value)
                if found is None:
                    raise ValueError(f"unknown priority {value!r}")
                st["priority"] = found["id"]
            elif name == "status":
                found = self.site.find_status(value)
                if found is None:
                    raise ValueError(f"unknown status {value!r}")
                self.site.set_status(st, found["id"])
                if initial:
                    st["statuscategorychangedate"] = st["created"]
                    if self.site.status(found["id"])["category"] == "done":
                        st["resolutiondate"] = st["created"]
            elif name == "components":
                names = [c.get("name") if isinstance(c, dict) else str(c) for c in value or []]
                for comp in names:
                    self.site.component_id(str(comp))
                st["components"] = [str(c) for c in names]
            elif name in ("reporter", "assignee"):
                st[name] = self._user(value)
            elif name == "labels":
                st["labels"] = [str(v) for v in value or []]
            elif name in ("major_incident", MAJOR_INCIDENT_FIELD):
                if not self.site.major_incident_field:
                    raise ValueError("this site has no major incident field")
                on = value not in (None, False, "", 0) and value != "false"
                st["custom"][MAJOR_INCIDENT_FIELD] = MAJOR_INCIDENT_VALUE if on else None
            elif name in ("stage", STAGE_FIELD):
                st["custom"][STAGE_FIELD] = None if value in (None, "") else str(value)
            elif name == "affected_services":
                st["custom"][SERVICES_FIELD] = [self.site.add_service(str(v)) for v in value or []]
            elif name == "responders":
                st["custom"][RESPONDERS_FIELD] = [self._ari(str(v)) for v in value or []]
            elif name == "team_group":
                st["custom"][TEAM_GROUP_FIELD] = None if not value else self.site.add_group(str(value))["name"]
            elif name == "duedate":
                st["duedate"] = value or None
            elif name == "resolutiondate":
                st["resolutiondate"] = parse_iso(value) if value else None
            elif name.startswith("customfield_"):
                st["custom"][name] = value
            else:
                raise ValueError(f"unsupported field {name!r}")
