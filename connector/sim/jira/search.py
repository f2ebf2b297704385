"""Search: Cloud's ``/search/jql`` with opaque page tokens (the old ``/search`` answers 410), Data Center's
``/search`` with ``startAt`` paging, and the approximate count."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.errors import SEARCH_REMOVED, TOKEN_INVALID, UNBOUNDED_JQL, fail, null_for_uri
from connector.sim.jira.jql import JqlQuery, parse_jql, resolve_field
from connector.sim.jira.jql_eval import matching_issues
from connector.sim.jira.params import int_arg, json_body, split_list
from connector.sim.jira.render import Renderer
from connector.sim.jira.site import Issue, JiraSite

TOKEN_LIFETIME = timedelta(days=7)
SEARCH_PAGE_CAP = 100
SEARCH_PAGE_CAP_IDS = 5000
DC_SEARCH_PAGE_CAP = 1000
MAX_RECONCILE = 50
MAX_PROPERTIES = 5


@dataclass
class PageToken:
    """What a ``nextPageToken`` stands for: the query (hashed), where the next page starts, when it was issued."""

    jql_hash: str
    offset: int
    issued: datetime


class SearchApi:
    """The search endpoints; holds the page tokens it handed out."""

    def __init__(self, site: JiraSite, render: Renderer) -> None:
        self.site = site
        self.render = render
        self.tokens: dict[str, PageToken] = {}

    def _parse(self, jql: str) -> JqlQuery:
        return parse_jql(jql, lambda name, quoted: resolve_field(name, quoted, self.site.major_incident_field))

    def _matching(self, query: JqlQuery, reconcile: set[str]) -> list[Issue]:
        return matching_issues(self.site, query, reconcile)

    def search_old(self, request: SimRequest, version: int) -> SimResponse:
        """``/search``: removed on Cloud (410); ``startAt``/``maxResults``/``total`` paging on Data Center."""
        if self.site.flavour == "cloud":
            raise fail(410, SEARCH_REMOVED)
        params = self._search_params(request, allowed={"jql", "startAt", "maxResults", "fields", "expand",
                                                        "properties", "fieldsByKeys", "validateQuery"})
        query = self._parse(str(params.get("jql") or ""))
        start = max(0, int_arg(params.get("startAt"), 0, "startAt"))
        limit = min(max(0, int_arg(params.get("maxResults"), 50, "maxResults")), DC_SEARCH_PAGE_CAP)
        states = self._matching(query, set())
        fields = self.render.select_fields(split_list(params.get("fields")), "*navigable")
        # Data Center search does not return entity properties (JRASERVER-62898 is an open suggestion): the
        # parameter is accepted and ignored, so a client that relies on it finds nothing.
        expand = split_list([params.get("expand")] if params.get("expand") else [])
        issues = [self.render.issue(st, version, fields, [], expand) for st in states[start:start + limit]]
        body: dict[str, Any] = {"expand": "schema,names", "startAt": start, "maxResults": limit,
                                "total": len(states), "issues": issues}
        self._add_names_schema(body, fields, expand)
        return SimResponse(200, body)

    def _search_params(self, request: SimRequest, allowed: set[str]) -> dict[str, Any]:
        if request.method == "GET":
            params: dict[str, Any] = {}
            for name, values in request.query.items():
                if name in ("fields", "properties", "reconcileIssues"):
                    params[name] = values
                else:
                    params[name] = values[0] if values else None
            return params
        body = json_body(request)
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise fail(400, f'Unrecognized field "{unknown[0]}" (class SearchAndReconcileRequestBean), not marked '
                             "as ignorable")
        for name in ("fields", "properties", "reconcileIssues"):
            if name in body and body[name] is not None and not isinstance(body[name], list):
                raise fail(400, f"'{name}' must be an array.")
        if body.get("expand") is not None and not isinstance(body["expand"], str):
            raise fail(400, "'expand' must be a comma-separated string.")
        return body

    def search_jql(self, request: SimRequest, version: int) -> SimResponse:
        """``GET|POST /search/jql`` (Cloud): bounded JQL, ``nextPageToken`` paging, no total, ``reconcileIssues``."""
        if self.site.flavour != "cloud":
            return null_for_uri(self.site.base_url, request.path)
        params = self._search_params(request, allowed={"jql", "nextPageToken", "maxResults", "fields", "expand",
                                                        "properties", "fieldsByKeys", "reconcileIssues"})
        jql = str(params.get("jql") or "")
        query = self._parse(jql)
        if query.where is None:
            raise fail(400, UNBOUNDED_JQL)
        reconcile = {str(int_arg(v, 0, "reconcileIssues")) for v in split_list(params.get("reconcileIssues"))}
        max_results = int_arg(params.get("maxResults"), 50, "maxResults")
        if len(reconcile) > MAX_RECONCILE:
            raise fail(400, f"The maximum number of issues that can be reconciled is {MAX_RECONCILE}.")
        properties = split_list(params.get("properties"))
        if len(properties) > MAX_PROPERTIES:
            raise fail(400, f"A maximum of {MAX_PROPERTIES} issue properties can be requested.")
        requested = split_list(params.get("fields"))
        ids_only = not requested or set(requested) <= {"id", "key"}
        cap = SEARCH_PAGE_CAP_IDS if ids_only else SEARCH_PAGE_CAP
        max_results = max(1, min(max_results, cap))
        jql_hash = hashlib.sha256(jql.encode("utf-8")).hexdigest()[:16]
        offset = 0
        now = self.site.now()
        token = params.get("nextPageToken")
        if token:
            saved = self.tokens.get(str(token))
            if saved is None or saved.jql_hash != jql_hash or now - saved.issued > TOKEN_LIFETIME:
                raise fail(400, TOKEN_INVALID)
            offset = saved.offset
        states = self._matching(query, reconcile)
        page = states[offset:offset + max_results]
        fields = [] if ids_only else self.render.select_fields(requested, "id")
        expand = split_list([params.get("expand")] if params.get("expand") else [])
        issues: list[dict[str, Any]] = []
        for st in page:
            if ids_only and not properties and "key" not in requested:
                issues.append({"id": st["id"]})
            else:
                issues.append(self.render.issue(st, version, fields, properties, expand))
        body: dict[str, Any] = {"issues": issues}
        if offset + max_results < len(states):
            if len(self.tokens) > 10000:
                self.tokens = {k: t for k, t in self.tokens.items() if now - t.issued <= TOKEN_LIFETIME}
            new_token = self._new_token()
            self.tokens[new_token] = PageToken(jql_hash, offset + max_results, now)
            body["nextPageToken"] = new_token
            body["isLast"] = False
        else:
            body["isLast"] = True
        self._add_names_schema(body, fields, expand)
        return SimResponse(200, body)

    def _add_names_schema(self, body: dict[str, Any], fields: list[str], expand: list[str]) -> None:
        if "names" in expand:
            names = self.render.field_names()
            body["names"] = {f: names.get(f, f) for f in fields}
        if "schema" in expand:
            schemas = {f["id"]: f["schema"] for f in self.site.field_catalogue() if "schema" in f}
            body["schema"] = {f: schemas[f] for f in fields if f in schemas}

    def _new_token(self) -> str:
        raw = self.site.random.getrandbits(192).to_bytes(24, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def approximate_count(self, request: SimRequest, version: int) -> SimResponse:
        """``POST /search/approximate-count`` (Cloud)."""
        if self.site.flavour != "cloud":
            return null_for_uri(self.site.base_url, request.path)
        body = json_body(request)
        if not isinstance(body, dict) or set(body) - {"jql"}:
            raise fail(400, "Request body must be {\"jql\": \"...\"}.")
        query = self._parse(str(body.get("jql") or ""))
        if query.where is None:
            raise fail(400, UNBOUNDED_JQL)
        return SimResponse(200, {"count": len(self._matching(query, set()))})
