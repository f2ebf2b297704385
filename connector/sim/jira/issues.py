"""The issue endpoints: create, read, edit, assign and transition."""

from __future__ import annotations

import copy

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.catalogue import PROJECT
from connector.sim.jira.errors import fail
from connector.sim.jira.fields import FieldWriter
from connector.sim.jira.params import bool_arg, json_body, split_list
from connector.sim.jira.render import Renderer
from connector.sim.jira.site import JiraSite


class IssueApi:
    """``/issue`` and its assignee and transitions."""

    def __init__(self, site: JiraSite, render: Renderer, writer: FieldWriter) -> None:
        self.site = site
        self.render = render
        self.writer = writer

    def create(self, request: SimRequest, version: int) -> SimResponse:
        """``POST /issue``: create an issue from ``fields``, ``update``, ``properties`` and a ``transition``."""
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise fail(400, "'fields' and 'update' must be objects.")
        errors: dict[str, str] = {}
        project = fields.get("project")
        if not isinstance(project, dict) or str(project.get("key", project.get("id", ""))).upper() not in (
                PROJECT["key"], PROJECT["id"]):
            errors["project"] = "Specify a valid project ID or key"
        if "issuetype" not in fields:
            errors["issuetype"] = "Specify an issue type"
        if "summary" not in fields and "summary" not in update:
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            raise fail(400, errors=errors)
        both = sorted(set(fields) & set(update))
        if both:
            raise fail(400, errors={both[0]: f"Field '{both[0]}' cannot be set in both 'fields' and 'update'."})
        st = self.site.new_state(self.site.now())
        st["creator"] = self.site.me
        st["reporter"] = self.site.me
        self.writer.apply_fields(st, fields, version, creating=True)
        comments_later = update.pop("comment", None)
        self.writer.apply_update(st, update, version)
        self.writer.apply_properties(st, body.get("properties"))
        self.site.register(st)
        if comments_later:
            self.writer.apply_update(st, {"comment": comments_later}, version)
            self.site.touch(st)
        transition = body.get("transition")
        if isinstance(transition, dict) and transition.get("id"):
            self.site.transition(st, str(transition["id"]))
            self.site.touch(st)
        return SimResponse(201, {"id": st["id"], "key": st["key"], "self": f"{self.site.api(version)}/issue/{st['id']}"})

    def _issue_query(self, request: SimRequest) -> tuple[list[str], list[str], list[str]]:
        fields = split_list(request.query.get("fields"))
        properties = split_list(request.query.get("properties"))
        expand = split_list(request.query.get("expand"))
        return fields, properties, expand

    def get_issue(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``GET /issue/{key}`` with ``fields``, ``properties`` and ``expand``."""
        st = self.site.require(key)
        fields, properties, expand = self._issue_query(request)
        selected = self.render.select_fields(fields, "*all")
        return SimResponse(200, self.render.issue(st, version, selected, properties, expand))

    def edit(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``PUT /issue/{key}``: all of ``fields``, ``update`` and ``properties`` or nothing."""
        st = self.site.require(key)
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise fail(400, "'fields' and 'update' must be objects.")
        both = sorted(set(fields) & set(update))
        if both:
            raise fail(400, errors={both[0]: f"Field '{both[0]}' cannot be set in both 'fields' and 'update'."})
        if "status" in fields or "status" in update:
            raise fail(400, errors={"status": "Field 'status' cannot be set. It is not on the appropriate screen, "
                                               "or unknown."})
        work = copy.deepcopy(st)
        self.writer.apply_fields(work, fields, version, creating=False)
        self.writer.apply_update(work, update, version)
        self.writer.apply_properties(work, body.get("properties"))
        st.clear()
        st.update(work)
        self.site.touch(st)
        if bool_arg(request.arg("returnIssue")):
            f, p, e = self._issue_query(request)
            return SimResponse(200, self.render.issue(st, version, self.render.select_fields(f, "*all"), p, e))
        return SimResponse(204)

    def assign(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``PUT /issue/{key}/assignee`` (Cloud: ``accountId`` only; ``-1`` or null unassigns)."""
        st = self.site.require(key)
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        identifiers = [k for k in ("accountId", "name", "key") if k in body]
        if len(identifiers) > 1:
            raise fail(400, "Only one of 'accountId', 'name' or 'key' can be provided.")
        if self.site.flavour == "cloud" and identifiers and identifiers[0] != "accountId":
            raise fail(400, "The 'name' and 'key' properties are not supported in GDPR strict mode; identify the "
                             "user by 'accountId'.")
        if not identifiers:
            raise fail(400, errors={"assignee": "Specify 'accountId'" if self.site.flavour == "cloud" else
                                     "Specify 'name'"})
        ident = body[identifiers[0]]
        if ident is None or ident == "-1":
            st["assignee"] = None
        else:
            if self.site.flavour == "cloud":
                user = self.site.users.get(str(ident))
            else:
                user = next((u for u in self.site.users.values()
                             if str(ident).lower() in (u["name"].lower(), str(u["key"]).lower())), None)
            if user is None:
                raise fail(404, f"User '{ident}' does not exist.")
            st["assignee"] = user["accountId"]
        self.site.touch(st)
        return SimResponse(204)

    def get_transitions(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``GET /issue/{key}/transitions``."""
        st = self.site.require(key)
        return SimResponse(200, {"expand": "transitions", "transitions": self.render.transitions(st, version)})

    def do_transition(self, request: SimRequest, version: int, key: str) -> SimResponse:
        """``POST /issue/{key}/transitions``, with optional ``fields``, ``update`` and ``properties``."""
        st = self.site.require(key)
        body = json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("transition"), dict):
            raise fail(400, "Missing 'transition' identifier")
        transition_id = body["transition"].get("id")
        if transition_id is None:
            raise fail(400, "Missing 'transition' identifier")
        work = copy.deepcopy(st)
        self.site.transition(work, str(transition_id))
        fields = body.get("fields") or {}
        if isinstance(fields, dict):
            fields = {k: v for k, v in fields.items() if k != "resolution"}
            self.writer.apply_fields(work, fields, version, creating=False)
        if isinstance(body.get("update"), dict):
            self.writer.apply_update(work, body["update"], version, in_transition=True)
        self.writer.apply_properties(work, body.get("properties"))
        st.clear()
        st.update(work)
        self.site.touch(st)
        return SimResponse(204)
