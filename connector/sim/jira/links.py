"""Issue links, with Jira's direction semantics: the POST body's ``inwardIssue`` is the subject of the link
type's outward phrase (``A causes B``: ``inwardIssue`` A, ``outwardIssue`` B)."""

from __future__ import annotations

from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.catalogue import LINK_TYPES
from connector.sim.jira.errors import ISSUE_NOT_FOUND, fail
from connector.sim.jira.fields import FieldWriter
from connector.sim.jira.params import json_body
from connector.sim.jira.render import Renderer
from connector.sim.jira.site import JiraSite


class LinkApi:
    """``/issueLink``."""

    def __init__(self, site: JiraSite, render: Renderer, writer: FieldWriter) -> None:
        self.site = site
        self.render = render
        self.writer = writer

    def _find_link_type(self, value: Any) -> dict[str, str] | None:
        if not isinstance(value, dict):
            return None
        if value.get("id") is not None:
            return next((t for t in LINK_TYPES if t["id"] == str(value["id"])), None)
        name = str(value.get("name", "")).lower()
        return next((t for t in LINK_TYPES if t["name"].lower() == name), None)

    def _link_side(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(404, ISSUE_NOT_FOUND)
        ident = value.get("key") or value.get("id")
        st = self.site.get_state(str(ident)) if ident is not None else None
        if st is None:
            raise fail(404, ISSUE_NOT_FOUND)
        return st

    def create_link(self, request: SimRequest, version: int) -> SimResponse:
        """``POST /issueLink``: 201 without a body, also for a link that already exists."""
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        missing = [k for k in ("type", "inwardIssue", "outwardIssue") if k not in body]
        if missing:
            raise fail(400, f"'{missing[0]}' is required.")
        link_type = self._find_link_type(body["type"])
        if link_type is None:
            raise fail(404, f"No issue link type with name '{(body['type'] or {}).get('name')}' found.")
        source = self._link_side(body["inwardIssue"])
        target = self._link_side(body["outwardIssue"])
        if source["id"] == target["id"]:
            raise fail(400, "You cannot link an issue to itself.")
        for link in self.site.links.values():
            if link.type_id == link_type["id"] and link.source == source["id"] and link.target == target["id"]:
                return SimResponse(201, None)
        self.site.check_limit(source, "issue links", len(source["links"]))
        self.site.check_limit(target, "issue links", len(target["links"]))
        if body.get("comment") is not None:
            if not isinstance(body["comment"], dict):
                raise fail(400, errors={"comment": "Comment body is not valid!"})
            self.writer.append_comment(target, body["comment"], version)
        self.site.add_link(link_type["id"], source, target)
        self.site.touch(source)
        self.site.touch(target)
        return SimResponse(201, None)

    def get_link(self, request: SimRequest, version: int, link_id: str) -> SimResponse:
        """``GET /issueLink/{link_id}``."""
        link = self.site.links.get(link_id)
        if link is None:
            raise fail(404, f"No issue link with id '{link_id}' exists.")
        return SimResponse(200, {"id": link.id, "self": f"{self.site.api(version)}/issueLink/{link.id}",
                                 "type": self.render.link_type(link.type_id, version),
                                 "inwardIssue": self.render.linked_issue(link.source, version),
                                 "outwardIssue": self.render.linked_issue(link.target, version)})

    def delete_link(self, request: SimRequest, version: int, link_id: str) -> SimResponse:
        """``DELETE /issueLink/{link_id}``."""
        link = self.site.links.pop(link_id, None)
        if link is None:
            raise fail(404, f"No issue link with id '{link_id}' exists.")
        for issue_id in (link.source, link.target):
            st = self.site.issues[issue_id]
            st["links"] = [lid for lid in st["links"] if lid != link_id]
            self.site.touch(st)
        return SimResponse(204)
