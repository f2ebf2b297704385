"""Who is who on the site: the API user's project permissions (``/mypermissions``), groups (``/groups/picker``),
Atlassian teams (the Teams public REST API) and the organisation of a Cloud site (the GraphQL gateway's
``tenantContexts``, which is how a client learns the ``orgId`` the Teams API is addressed by).

Sources: ``GET /mypermissions`` and ``GET /groups/picker`` are in the Cloud platform OpenAPI document
(``Permissions``, ``FoundGroups``); the Teams API is
https://developer.atlassian.com/platform/teams/components/team-public-rest-api/ (``GET
/gateway/api/public/teams/v1/org/{orgId}/teams`` answers ``{"entities": [{"teamId", "displayName", ...}],
"cursor"}``, field names as jira.js types them); the ``tenantContexts(cloudIds: [...]) { orgId }`` query is the one
jira.js sends with basic auth to ``/gateway/api/graphql`` [3rd].
"""

from __future__ import annotations

import re
from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.catalogue import PROJECT, PROJECT_PERMISSIONS
from connector.sim.jira.errors import fail
from connector.sim.jira.params import int_arg, json_body, split_list
from connector.sim.jira.site import JiraSite

TEAMS_PAGE = 300


class DirectoryApi:
    """Permissions, groups, teams and the organisation of ``site``."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def my_permissions(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /mypermissions?projectKey=&permissions=A,B``: each permission asked for, held or not (Cloud
        requires ``permissions``)."""
        wanted = split_list(request.query.get("permissions"))
        if not wanted and self.site.flavour == "cloud":
            raise fail(400, "The permissions query parameter is required.")
        project = request.arg("projectKey")
        if project is not None and project.upper() not in (PROJECT["key"], PROJECT["id"]):
            raise fail(404, f"No project could be found with key '{project}'.")
        out: dict[str, Any] = {}
        for key in wanted or list(PROJECT_PERMISSIONS):
            if key not in PROJECT_PERMISSIONS:
                raise fail(400, f"Permission key '{key}' does not exist.")
            ident, name = PROJECT_PERMISSIONS[key]
            out[key] = {"id": ident, "key": key, "name": name, "type": "PROJECT", "description": name,
                        "havePermission": key in self.site.permissions}
        return SimResponse(200, {"permissions": out})

    def groups_picker(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /groups/picker?query=``: groups whose name contains the query (any case)."""
        query = (request.arg("query") or "").strip().lower()
        limit = max(1, int_arg(request.arg("maxResults"), 20, "maxResults"))
        found = [g for g in self.site.groups.values() if query in g["name"].lower()]
        found.sort(key=lambda g: g["name"].lower())
        shown = found[:limit]
        groups = []
        for group in shown:
            html = re.sub(re.escape(query), lambda m: f"<b>{m.group(0)}</b>", group["name"], flags=re.I) if query \
                else group["name"]
            item: dict[str, Any] = {"name": group["name"], "html": html, "labels": []}
            if self.site.flavour == "cloud":
                item["groupId"] = group["groupId"]
            groups.append(item)
        return SimResponse(200, {"header": f"Showing {len(shown)} of {len(found)} matching groups",
                                 "total": len(found), "groups": groups})

    def teams(self, request: SimRequest, org_id: str) -> SimResponse:
        """``GET /gateway/api/public/teams/v1/org/{orgId}/teams``: the organisation's teams, by cursor."""
        if self.site.flavour != "cloud":
            raise fail(404, "Not found")
        if org_id != self.site.org_id:
            return SimResponse(404, {"code": "NOT_FOUND", "message": f"Organization {org_id} not found"})
        if request.method != "GET":
            return SimResponse(405, None)
        size = min(max(1, int_arg(request.arg("size"), 50, "size")), TEAMS_PAGE)
        start = int_arg(request.arg("cursor"), 0, "cursor")
        ordered = sorted(self.site.teams.values(), key=lambda t: t["displayName"].lower())
        entities = [{"teamId": t["teamId"], "displayName": t["displayName"], "description": "",
                     "organizationId": self.site.org_id, "state": "ACTIVE", "teamType": "OPEN", "creatorId": None}
                    for t in ordered[start:start + size]]
        cursor = str(start + size) if start + size < len(ordered) else None
        return SimResponse(200, {"entities": entities, "cursor": cursor})

    def graphql(self, request: SimRequest) -> SimResponse:
        """``POST /gateway/api/graphql``: only ``tenantContexts(cloudIds: [...]) { orgId }``."""
        if self.site.flavour != "cloud":
            raise fail(404, "Not found")
        body = json_body(request)
        query = str((body or {}).get("query") or "") if isinstance(body, dict) else ""
        if "tenantContexts" not in query:
            return SimResponse(200, {"errors": [{"message": "the simulator answers tenantContexts only"}]})
        variables = (body or {}).get("variables") or {}
        ids = re.findall(r'"([0-9a-f-]{36})"', query) + [str(v) for v in variables.values() if isinstance(v, str)]
        contexts = [{"orgId": self.site.org_id, "cloudId": self.site.cloud_id} for i in ids if i == self.site.cloud_id]
        return SimResponse(200, {"data": {"tenantContexts": contexts}})


__all__ = ["DirectoryApi"]
