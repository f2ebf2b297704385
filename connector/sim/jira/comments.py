"""An issue's comments and entity properties."""

from __future__ import annotations

import copy

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.errors import fail
from connector.sim.jira.fields import FieldWriter
from connector.sim.jira.params import int_arg, json_body, split_list
from connector.sim.jira.render import Renderer
from connector.sim.jira.site import JiraSite


class CommentApi:
    """``/issue/{key}/comment`` and ``/issue/{key}/properties``."""

    def __init__(self, site: JiraSite, render: Renderer, writer: FieldWriter) -> None:
        self.site = site
        self.render = render
        self.writer = writer

    def add_comment(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``POST /issue/{key}/comment``."""
        st = self.site.require(key)
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, errors={"comment": "Comment body is not valid!"})
        comment = self.writer.append_comment(st, body, version)
        self.site.touch(st)
        expand = split_list(request.query.get("expand"))
        return SimResponse(201, self.render.comment(st, comment, version, with_properties="properties" in expand))

    def list_comments(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``GET /issue/{key}/comment``, paged by ``startAt``/``maxResults``, ``orderBy=-created`` newest first."""
        st = self.site.require(key)
        start = max(0, int_arg(request.arg("startAt"), 0, "startAt"))
        limit = max(0, min(int_arg(request.arg("maxResults"), 100, "maxResults"), 5000))
        expand = split_list(request.query.get("expand"))
        ordered = list(st["comments"])
        if (request.arg("orderBy") or "").startswith("-"):
            ordered.reverse()
        page = [self.render.comment(st, c, version, with_properties="properties" in expand)
                for c in ordered[start:start + limit]]
        return SimResponse(200, {"startAt": start, "maxResults": limit, "total": len(ordered), "comments": page})

    def list_properties(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``GET /issue/{key}/properties``."""
        st = self.site.require(key)
        return SimResponse(200, {"keys": [{"self": f"{self.site.api(version)}/issue/{st['id']}/properties/{k}", "key": k}
                                          for k in st["properties"]]})

    def get_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        """``GET /issue/{key}/properties/{prop}``."""
        st = self.site.require(key)
        if prop not in st["properties"]:
            raise fail(404, f"The property with key '{prop}' does not exist.")
        return SimResponse(200, {"key": prop, "value": copy.deepcopy(st["properties"][prop])})

    def put_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        """``PUT /issue/{key}/properties/{prop}``: 201 when new, 200 when replaced."""
        st = self.site.require(key)
        self.writer.check_property_key(prop)
        if not request.body:
            raise fail(400, "The property value must be valid JSON.")
        value = json_body(request)
        existed = prop in st["properties"]
        st["properties"][prop] = value
        self.site.touch(st)
        return SimResponse(200 if existed else 201)

    def delete_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        """``DELETE /issue/{key}/properties/{prop}``."""
        st = self.site.require(key)
        if prop not in st["properties"]:
            raise fail(404, f"The property with key '{prop}' does not exist.")
        del st["properties"][prop]
        self.site.touch(st)
        return SimResponse(204)
