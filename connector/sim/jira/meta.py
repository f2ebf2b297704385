"""What the site says about itself: server info, the API user, fields, link types, issue types, priorities,
statuses, the project and users."""

from __future__ import annotations

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.catalogue import LINK_TYPES, PRIORITIES, PROJECT, STATUSES
from connector.sim.jira.errors import fail
from connector.sim.jira.params import int_arg
from connector.sim.jira.render import Renderer
from connector.sim.jira.site import JiraSite
from connector.sim.jira.times import jira_time


class MetaApi:
    """The site's metadata endpoints."""

    def __init__(self, site: JiraSite, render: Renderer) -> None:
        self.site = site
        self.render = render

    def tenant_info(self, request: SimRequest) -> SimResponse:
        """``GET /_edge/tenant_info``: the Cloud site's id."""
        return SimResponse(200, {"cloudId": self.site.cloud_id})

    def server_info(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /serverInfo``."""
        now = self.site.now()
        if self.site.flavour == "cloud":
            body = {"baseUrl": self.site.base_url, "displayUrl": self.site.base_url, "version": "1001.0.0-SNAPSHOT",
                    "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud", "buildNumber": 100288,
                    "buildDate": "2025-12-01T00:00:00.000+0000", "serverTime": jira_time(now),
                    "scmInfo": "57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71", "serverTitle": "Jira",
                    "serverTimeZone": "Etc/UTC"}
        else:
            body = {"baseUrl": self.site.base_url, "version": "9.12.15", "versionNumbers": [9, 12, 15],
                    "deploymentType": "Server", "buildNumber": 9120015, "buildDate": "2024-10-01T00:00:00.000+0000",
                    "serverTime": jira_time(now), "scmInfo": "0f5d7f1ec4fe2e2f6c5c5c8e9e4d3c2b1a0f9e8d",
                    "serverTitle": "Jira", "serverTimeZone": "Etc/UTC"}
        return SimResponse(200, body)

    def myself(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /myself``."""
        return SimResponse(200, self.render.user(self.site.me, version, full=True))

    def fields(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /field``."""
        return SimResponse(200, self.site.field_catalogue())

    def link_types(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /issueLinkType``."""
        return SimResponse(200, {"issueLinkTypes": [self.render.link_type(t["id"], version) for t in LINK_TYPES]})

    def issue_types(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /issuetype``."""
        return SimResponse(200, [self.render.issue_type(t["id"], version) for t in self.site.issue_types()])

    def priorities(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /priority``."""
        return SimResponse(200, [{**self.render.priority(p["id"], version), "statusColor": p["statusColor"],
                                  "description": p["name"]} for p in PRIORITIES])

    def statuses(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /status``."""
        return SimResponse(200, [self.render.status(s["id"], version) for s in STATUSES])

    def project(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``GET /project/{key}`` with its issue types and components."""
        if key.upper() not in (PROJECT["key"], PROJECT["id"]):
            raise fail(404, f"No project could be found with key '{key}'.")
        body = self.render.project(version)
        body["issueTypes"] = [self.render.issue_type(t["id"], version) for t in self.site.issue_types()]
        body["components"] = [{"self": f"{self.site.api(version)}/component/{cid}", "id": cid, "name": name}
                              for name, cid in self.site.components.items()]
        return SimResponse(200, body)

    def user_search(self, request: SimRequest, version: int) -> SimResponse:
        """``GET /user/search`` by ``query``/``username`` prefix or ``accountId``."""
        query = (request.arg("query") or request.arg("username") or "").strip().lower()
        account = request.arg("accountId")
        out = []
        for user in self.site.users.values():
            if account is not None:
                if user["accountId"] != account:
                    continue
            elif query and not any(str(user.get(k, "")).lower().startswith(query)
                                   for k in ("displayName", "emailAddress", "name")):
                continue
            out.append(self.render.user(user["accountId"], version))
        start = int_arg(request.arg("startAt"), 0, "startAt")
        limit = int_arg(request.arg("maxResults"), 50, "maxResults")
        return SimResponse(200, out[start:start + limit])
