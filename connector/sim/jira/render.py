"""How the REST API shows the site's data: users, statuses, issues with selected fields, comments, links and
transitions, in v2 (plain text) or v3 (ADF) form."""

from __future__ import annotations

import copy
from typing import Any

from connector.sim.jira.adf import adf_to_text
from connector.sim.jira.catalogue import (
    ARI_TEAM,
    ARI_USER,
    DC_RESPONDERS_FIELD,
    LINK_TYPES,
    PRIORITIES,
    PROJECT,
    RESOLUTION_DONE,
    RESPONDERS_FIELD,
    SERVICES_FIELD,
    STATUS_CATEGORIES,
    TEAM_FIELD,
    TEAM_GROUP_FIELD,
    TRANSITIONS,
)
from connector.sim.jira.site import Issue, JiraSite
from connector.sim.jira.times import jira_time


class Renderer:
    """Renders the data of ``site`` as the REST API answers it (``version`` 2 or 3 throughout)."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def _avatars(self, seed: str) -> dict[str, str]:
        return {f"{n}x{n}": f"https://avatar-management.sim.invalid/{seed}.png?size={n}" for n in (48, 24, 16, 32)}

    def user(self, account_id: str | None, version: int, full: bool = False) -> dict[str, Any] | None:
        """A user as the REST API shows one (Cloud: by accountId; DC: by name and key); ``full`` for ``/myself``."""
        if account_id is None:
            return None
        user = self.site.users[account_id]
        out: dict[str, Any]
        if self.site.flavour == "cloud":
            out = {"self": f"{self.site.api(version)}/user?accountId={user['accountId']}", "accountId": user["accountId"],
                   "emailAddress": user["emailAddress"], "avatarUrls": self._avatars(user["accountId"]),
                   "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"],
                   "accountType": "atlassian"}
        else:
            out = {"self": f"{self.site.api(version)}/user?username={user['name']}", "name": user["name"],
                   "key": user["key"], "emailAddress": user["emailAddress"], "avatarUrls": self._avatars(user["name"]),
                   "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"]}
        if full:
            out["locale"] = "en_US"
            out["groups"] = {"size": 2, "items": []}
            out["applicationRoles"] = {"size": 1, "items": []}
            out["expand"] = "groups,applicationRoles"
        return out

    def status(self, status_id: str, version: int) -> dict[str, Any]:
        """A status with its category."""
        status = self.site.status(status_id)
        category = STATUS_CATEGORIES[status["category"]]
        return {
            "self": f"{self.site.api(version)}/status/{status['id']}", "description": status["description"],
            "iconUrl": f"{self.site.base_url}/images/icons/statuses/generic.png", "name": status["name"],
            "id": status["id"],
            "statusCategory": {"self": f"{self.site.api(version)}/statuscategory/{category['id']}", **category},
        }

    def issue_type(self, type_id: str, version: int) -> dict[str, Any]:
        """An issue type."""
        item = self.site.issue_type(type_id)
        return {"self": f"{self.site.api(version)}/issuetype/{item['id']}", "id": item["id"],
                "description": item["description"],
                "iconUrl": f"{self.site.base_url}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{item['id']}",
                "name": item["name"], "subtask": False, "avatarId": int(item["id"]), "hierarchyLevel": 0}

    def priority(self, priority_id: str, version: int) -> dict[str, Any]:
        """A priority."""
        item = next(p for p in PRIORITIES if p["id"] == priority_id)
        return {"self": f"{self.site.api(version)}/priority/{item['id']}",
                "iconUrl": f"{self.site.base_url}/images/icons/priorities/{item['name'].lower()}.svg",
                "name": item["name"], "id": item["id"]}

    def project(self, version: int) -> dict[str, Any]:
        """The project."""
        return {"self": f"{self.site.api(version)}/project/{PROJECT['id']}", "id": PROJECT["id"], "key": PROJECT["key"],
                "name": PROJECT["name"], "projectTypeKey": PROJECT["projectTypeKey"], "simplified": False,
                "avatarUrls": self._avatars("project-" + PROJECT["id"])}

    def text(self, value: dict[str, Any] | None, version: int) -> Any:
        """A rich-text value: ADF on v3, plain text on v2."""
        if value is None:
            return None
        return copy.deepcopy(value) if version == 3 else adf_to_text(value)

    def comment(self, st: Issue, comment: dict[str, Any], version: int,
                with_properties: bool = False) -> dict[str, Any]:
        """A comment, optionally with its entity properties."""
        author = self.user(comment["author"], version)
        internal = comment["properties"].get("sd.public.comment", {})
        out: dict[str, Any] = {
            "self": f"{self.site.api(version)}/issue/{st['id']}/comment/{comment['id']}",
            "id": comment["id"], "author": author, "body": self.text(comment["body"], version),
            "updateAuthor": author, "created": jira_time(comment["created"]),
            "updated": jira_time(comment["updated"]),
            "jsdPublic": not (isinstance(internal, dict) and internal.get("internal") is True),
        }
        if comment.get("visibility"):
            out["visibility"] = copy.deepcopy(comment["visibility"])
        if with_properties:
            out["properties"] = [{"key": k, "value": copy.deepcopy(v)} for k, v in comment["properties"].items()]
        return out

    def linked_issue(self, issue_id: str, version: int) -> dict[str, Any]:
        """The short form of an issue on the other end of a link."""
        other = self.site.issues[issue_id]
        return {"id": other["id"], "key": other["key"], "self": f"{self.site.api(version)}/issue/{other['id']}",
                "fields": {"summary": other["summary"], "status": self.status(other["status"], version),
                           "priority": self.priority(other["priority"], version),
                           "issuetype": self.issue_type(other["issuetype"], version)}}

    def link_type(self, type_id: str, version: int) -> dict[str, Any]:
        """An issue link type."""
        item = next(t for t in LINK_TYPES if t["id"] == type_id)
        return {**item, "self": f"{self.site.api(version)}/issueLinkType/{item['id']}"}

    def links(self, st: Issue, version: int) -> list[dict[str, Any]]:
        """``fields.issuelinks`` of an issue, each link seen from that issue."""
        out: list[dict[str, Any]] = []
        for link_id in st["links"]:
            link = self.site.links.get(link_id)
            if link is None:
                continue
            entry: dict[str, Any] = {"id": link.id, "self": f"{self.site.api(version)}/issueLink/{link.id}",
                                     "type": self.link_type(link.type_id, version)}
            # Relative to the viewed issue: the source "<outward phrase>" the target.
            if link.source == st["id"]:
                entry["outwardIssue"] = self.linked_issue(link.target, version)
            else:
                entry["inwardIssue"] = self.linked_issue(link.source, version)
            out.append(entry)
        return out

    def field_value(self, st: Issue, field_id: str, version: int) -> Any:
        """One field of an issue as ``GET /issue`` renders it."""
        if field_id == "summary":
            return st["summary"]
        if field_id == "description":
            return self.text(st["description"], version)
        if field_id == "issuetype":
            return self.issue_type(st["issuetype"], version)
        if field_id == "project":
            return self.project(version)
        if field_id == "priority":
            return self.priority(st["priority"], version)
        if field_id == "status":
            return self.status(st["status"], version)
        if field_id == "components":
            return [{"self": f"{self.site.api(version)}/component/{self.site.component_id(name)}",
                     "id": self.site.component_id(name), "name": name} for name in st["components"]]
        if field_id in ("reporter", "assignee", "creator"):
            return self.user(st[field_id], version)
        if field_id == "labels":
            return list(st["labels"])
        if field_id in ("created", "updated", "statuscategorychangedate"):
            return jira_time(st[field_id])
        if field_id == "resolutiondate":
            return jira_time(st["resolutiondate"]) if st["resolutiondate"] else None
        if field_id == "resolution":
            if st["resolutiondate"] is None:
                return None
            return {"self": f"{self.site.api(version)}/resolution/{RESOLUTION_DONE['id']}", **RESOLUTION_DONE}
        if field_id == "issuelinks":
            return self.links(st, version)
        if field_id == "comment":
            comments = [self.comment(st, c, version) for c in st["comments"]]
            return {"comments": comments, "self": f"{self.site.api(version)}/issue/{st['id']}/comment",
                    "maxResults": len(comments), "total": len(comments), "startAt": 0}
        if field_id == "duedate":
            return st.get("duedate")
        value = st["custom"].get(field_id)
        if value in (None, []):
            return copy.deepcopy(value)
        if field_id == RESPONDERS_FIELD:
            return [self.responder(ari) for ari in value]
        if field_id == SERVICES_FIELD:
            return [{"id": ident, "name": self.site.services.get(ident, ident)} for ident in value]
        if field_id == TEAM_GROUP_FIELD:
            group = self.site.groups.get(str(value).lower(), {"name": value})
            out = {"name": group["name"], "self": f"{self.site.api(version)}/group?groupname={group['name']}"}
            if self.site.flavour == "cloud" and group.get("groupId"):
                out["groupId"] = group["groupId"]
            return out
        if field_id == DC_RESPONDERS_FIELD:
            return [self.user(account, version) for account in value]
        if field_id == TEAM_FIELD:
            team = self.site.teams.get(str(value)) or {"displayName": value}
            return {"id": value, "name": team["displayName"]}
        return copy.deepcopy(value)

    def responder(self, ari: str) -> dict[str, Any]:
        """A responder as the Incidents API's ``IncidentDTO`` shows one: ``{"ari", "name", "type"}`` (the same
        shape is assumed for the Responders field of an issue, which no public document shows)."""
        if ari.startswith(ARI_TEAM):
            team = self.site.teams.get(ari[len(ARI_TEAM):]) or {"displayName": ari}
            return {"ari": ari, "name": team["displayName"], "type": "team"}
        user = self.site.users.get(ari[len(ARI_USER):]) or {"displayName": ari}
        return {"ari": ari, "name": user["displayName"], "type": "user"}

    def field_names(self) -> dict[str, str]:
        """Field id -> display name (``expand=names``)."""
        return {f["id"]: f["name"] for f in self.site.field_catalogue()}

    def select_fields(self, requested: list[str], default: str) -> list[str]:
        """The field ids a ``fields`` parameter asks for (``*all``, ``*navigable``, ``-name``); ``default`` when
        none is given."""
        tokens = requested or [default]
        all_ids = self.site.field_ids()
        navigable = [f for f in all_ids if f != "comment"]
        selected: list[str] = []
        excluded: set[str] = set()
        for token in tokens:
            if token == "*all":
                selected.extend(all_ids)
            elif token == "*navigable":
                selected.extend(navigable)
            elif token.startswith("-"):
                excluded.add(token[1:])
            elif token in all_ids:
                selected.append(token)
        out: list[str] = []
        for name in selected:
            if name not in excluded and name not in out:
                out.append(name)
        return out

    def issue(self, st: Issue, version: int, fields: list[str] | None = None,
              properties: list[str] | None = None, expand: list[str] | None = None) -> dict[str, Any]:
        """An issue as ``GET /issue`` renders it: the given fields (default all), properties and expansions."""
        field_ids = self.site.field_ids() if fields is None else fields
        out: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": st["id"], "self": f"{self.site.api(version)}/issue/{st['id']}", "key": st["key"],
            "fields": {f: self.field_value(st, f, version) for f in field_ids},
        }
        if properties:
            wanted = list(st["properties"]) if "*all" in properties else properties
            props = {k: copy.deepcopy(st["properties"][k]) for k in wanted if k in st["properties"]}
            if props:
                out["properties"] = props
        if expand:
            names = self.field_names()
            if "names" in expand:
                out["names"] = {f: names.get(f, f) for f in field_ids}
            if "schema" in expand:
                schemas = {f["id"]: f["schema"] for f in self.site.field_catalogue() if "schema" in f}
                out["schema"] = {f: schemas[f] for f in field_ids if f in schemas}
            if "transitions" in expand:
                out["transitions"] = self.transitions(st, version)
        return out

    def transitions(self, st: Issue, version: int) -> list[dict[str, Any]]:
        """The transitions available from an issue's status."""
        out = []
        for tid, name, target, sources in TRANSITIONS:
            if st["status"] in sources:
                out.append({"id": tid, "name": name, "to": self.status(target, version), "hasScreen": False,
                            "isGlobal": False, "isInitial": False, "isAvailable": True, "isConditional": False,
                            "isLooped": False})
        return out
