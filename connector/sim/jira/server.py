"""The Jira simulator as one object: :class:`JiraSim` builds the site and its endpoints, declares the route
table, answers requests (recording them when asked) and serves them over HTTP; :func:`serve` runs one in the
foreground for ``mim simulate jira``."""

from __future__ import annotations

import base64
import copy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterable

from connector.sim.base import ANY_METHOD, FaultRule, Groups, Route, Router, SimRequest, SimResponse, SimServer
from connector.sim.jira.catalogue import RESPONDERS_FIELD
from connector.sim.jira.comments import CommentApi
from connector.sim.jira.directory import DirectoryApi
from connector.sim.jira.errors import NOT_AUTHENTICATED, HttpError, error, null_for_uri
from connector.sim.jira.fields import FieldWriter
from connector.sim.jira.human import HumanEdits
from connector.sim.jira.incidents import IncidentsApi
from connector.sim.jira.issues import IssueApi
from connector.sim.jira.jql import JqlError
from connector.sim.jira.jsm import JsmApi
from connector.sim.jira.links import LinkApi
from connector.sim.jira.meta import MetaApi
from connector.sim.jira.render import Renderer
from connector.sim.jira.search import SearchApi
from connector.sim.jira.site import JiraSite

REST_API = "/rest/api/{version:2|3|latest}"
INCIDENTS = "/jsm/incidents/cloudId/{cloud_id}/v1"


def _numbered_version(handler: Callable[..., SimResponse]) -> Callable[..., SimResponse]:
    """``handler`` called with the REST API version as a number (``latest`` is 2)."""

    def call(request: SimRequest, version: str, **groups: str) -> SimResponse:
        return handler(request, 3 if version == "3" else 2, **groups)

    return call


@dataclass
class LostAnswer:
    """A write the site carries out whose answer never reaches the client (``METHOD path`` matching ``match``,
    at most ``count`` times): the client sees Atlassian's edge answer 504 Gateway Timeout."""

    match: str
    count: int = 1
    fired: int = 0


class JiraSim:
    """In-memory Jira Cloud (``flavour="cloud"``) or Data Center (``flavour="dc"``) site.

    ``clock`` returns the current aware UTC time (default: real time); every timestamp the simulator
    writes comes from it. ``user_time_zone`` is the API user's zone, used to read quoted JQL dates.
    ``search_lag`` (seconds) delays the visibility of writes in search results, except for issue ids passed
    in ``reconcileIssues``. ``per_issue_write_limit`` caps comments and links per issue (413 beyond).
    With ``record_exchanges`` every request answered is appended to :attr:`exchanges`. ``plan`` is the JSM plan
    (``premium`` or ``standard``: Premium-only Incidents API methods answer 403 on Standard); ``permissions`` the
    project permissions the API user holds (default: all). :meth:`lose_answers` makes writes land without an
    answer.
    """

    def __init__(
        self,
        email: str = "admin@example.com",
        token: str = "token",
        flavour: str = "cloud",
        clock: Callable[[], datetime] | None = None,
        user_time_zone: str = "America/New_York",
        major_incident_field: bool = True,
        search_lag: float = 0.0,
        record_exchanges: bool = False,
        per_issue_write_limit: int | None = None,
        seed: int = 1,
        plan: str = "premium",
        permissions: Iterable[str] | None = None,
    ) -> None:
        self.site = JiraSite(email, token, flavour, clock, user_time_zone, major_incident_field, search_lag,
                             per_issue_write_limit, seed, plan=plan,
                             permissions=None if permissions is None else frozenset(permissions))
        self.record_exchanges = record_exchanges
        self.exchanges: list[dict[str, Any]] = []
        self._lost: list[LostAnswer] = []
        self._lock = self.site.lock
        self._render = Renderer(self.site)
        self._human = HumanEdits(self.site)
        writer = FieldWriter(self.site)
        self._meta = MetaApi(self.site, self._render)
        self._search = SearchApi(self.site, self._render)
        self._issues = IssueApi(self.site, self._render, writer)
        self._comments = CommentApi(self.site, self._render, writer)
        self._links = LinkApi(self.site, self._render, writer)
        self._jsm = JsmApi(self.site)
        self._directory = DirectoryApi(self.site)
        self._incidents = IncidentsApi(self.site)
        self.router = Router(self.routes(), not_found=self._null_for_uri, wrong_method=lambda request: SimResponse(405),
                             authorised=self.authorised, unauthorised=self._unauthorised)

    @property
    def email(self) -> str:
        """The API user's email (Basic auth user name)."""
        return self.site.email

    @property
    def token(self) -> str:
        """The API token (Cloud) or personal access token (Data Center)."""
        return self.site.token

    @property
    def flavour(self) -> str:
        """``cloud`` or ``dc``."""
        return self.site.flavour

    @property
    def clock(self) -> Callable[[], datetime]:
        """The site's clock."""
        return self.site.clock

    @property
    def user_time_zone(self) -> str:
        """The API user's time zone."""
        return self.site.user_time_zone

    @property
    def major_incident_field(self) -> bool:
        """Whether the site has JSM's major incident field."""
        return self.site.major_incident_field

    @property
    def search_lag(self) -> float:
        """Seconds before a write shows in search results."""
        return self.site.search_lag

    @property
    def per_issue_write_limit(self) -> int | None:
        """Comments and links an issue may have (``None``: no limit)."""
        return self.site.per_issue_write_limit

    @property
    def cloud_id(self) -> str:
        """The Cloud site's id (``/_edge/tenant_info``)."""
        return self.site.cloud_id

    @property
    def base_url(self) -> str:
        """The site's URL in ``self`` links (the server's URL once :meth:`server` made one)."""
        return self.site.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self.site.base_url = value

    # -- Python-side (human) API -------------------------------------------------------------------

    def create_issue(self, fields: dict[str, Any], project: str = "ITSM") -> dict[str, Any]:
        """Create an issue as a human would in the UI and return it as ``GET /issue`` renders it.

        ``fields`` uses simple values: ``summary``, ``description`` (str), ``issuetype`` / ``priority``
        (names), ``components`` (names), ``reporter`` / ``assignee`` (accountId or name; unknown ones are
        created), ``labels``, ``status`` (name), ``created`` / ``updated`` (ISO strings, to seed history),
        ``major_incident`` (bool) or ``customfield_10050``, ``customfield_10060`` (stage text).
        """
        with self._lock:
            st = self._human.create(fields, project)
            return self._render.issue(st, self.site.default_version())

    def edit_issue(self, key: str, fields: dict[str, Any]) -> None:
        """Change an issue as a human in the UI would: ``status`` (any status, no workflow), ``summary``,
        ``description``, ``priority``, ``labels`` (replaces), ``components``, ``assignee``, ``reporter``,
        ``major_incident`` / ``customfield_10050`` (falsy removes the flag), ``customfield_10060``.
        ``updated`` (ISO) overrides the new timestamp; otherwise it is the clock's now.
        """
        with self._lock:
            self._human.edit(key, fields)

    def issue(self, key: str, version: int | None = None) -> dict[str, Any]:
        """The stored issue with all fields and properties, as ``GET /rest/api/{version}/issue`` renders it
        (default v3 on Cloud, v2 on DC)."""
        with self._lock:
            st = self.site.get_state(key)
            if st is None:
                raise KeyError(key)
            rendered = self._render.issue(st, version or self.site.default_version())
            if st["properties"]:
                rendered["properties"] = copy.deepcopy(st["properties"])
            return rendered

    def comments(self, key: str) -> list[dict[str, Any]]:
        """All comments of an issue as the REST API renders them, each with its ``properties`` list."""
        with self._lock:
            st = self.site.get_state(key)
            if st is None:
                raise KeyError(key)
            v = self.site.default_version()
            return [self._render.comment(st, c, v, with_properties=True) for c in st["comments"]]

    def links(self, key: str) -> list[dict[str, Any]]:
        """``fields.issuelinks`` of an issue (relative to that issue)."""
        with self._lock:
            st = self.site.get_state(key)
            if st is None:
                raise KeyError(key)
            return self._render.links(st, self.site.default_version())

    def properties(self, key: str) -> dict[str, Any]:
        """The entity properties of an issue, ``{key: value}``."""
        with self._lock:
            st = self.site.get_state(key)
            if st is None:
                raise KeyError(key)
            return copy.deepcopy(st["properties"])

    def users(self) -> list[dict[str, Any]]:
        """The known users (internal records: accountId, name, displayName, emailAddress)."""
        with self._lock:
            return [dict(u) for u in self.site.users.values()]

    def issue_keys(self) -> list[str]:
        """Every issue key, in creation order."""
        with self._lock:
            return [st["key"] for st in self.site.issues.values()]

    def add_user(self, name: str, display_name: str | None = None, email: str | None = None) -> dict[str, Any]:
        """A user of the site (``name`` as a Data Center user name, or the part before ``@`` of an email);
        returns the stored record. An existing user is returned as it is."""
        with self._lock:
            found = self.site.find_user(name)
            if found is not None:
                return dict(found)
            account = hashlib.sha1(name.encode("utf-8")).hexdigest()[:24]
            record: dict[str, Any] = {"accountId": account, "name": name.split("@")[0]}
            if display_name:
                record["displayName"] = display_name
            if email or "@" in name:
                record["emailAddress"] = email or name
            return dict(self.site.add_user(record))

    def add_group(self, name: str, members: Iterable[str] = ()) -> dict[str, Any]:
        """A group of the site with ``members`` (users by any name the site knows)."""
        with self._lock:
            group = self.site.add_group(name, members)
            return {**group, "members": list(group["members"])}

    def add_team(self, name: str, members: Iterable[str] = ()) -> dict[str, Any]:
        """An Atlassian team of the site's organisation (Cloud), with ``members``."""
        with self._lock:
            team = self.site.add_team(name, members)
            return {**team, "members": list(team["members"])}

    def add_service(self, name: str) -> str:
        """A JSM service (what Affected services lists); its id."""
        with self._lock:
            return self.site.add_service(name)

    def responders(self, key: str) -> list[dict[str, Any]]:
        """The responders of an issue (``{"ari", "name", "type"}``)."""
        with self._lock:
            st = self.site.require(key)
            return [self._render.responder(ari) for ari in st["custom"].get(RESPONDERS_FIELD) or []]

    def stakeholders(self, key: str) -> list[str]:
        """The stakeholders of an incident (user ARIs)."""
        with self._lock:
            return list(self.site.require(key)["stakeholders"])

    def participants(self, key: str) -> list[str]:
        """The request participants of an issue (account ids)."""
        with self._lock:
            return list(self.site.require(key)["participants"])

    @property
    def org_id(self) -> str:
        """The Cloud site's organisation id (what the Teams API is addressed by)."""
        return self.site.org_id

    def lose_answers(self, match: str, count: int = 1) -> LostAnswer:
        """Carry out the next ``count`` requests matching ``match`` (a regex on ``METHOD path``) but answer
        504 instead of their result, as when Atlassian's edge times out after the site did the work."""
        rule = LostAnswer(match, count)
        with self._lock:
            self._lost.append(rule)
        return rule

    # -- HTTP ----------------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one REST request (no authentication check; :meth:`server` adds it)."""
        return self._respond(request, check_auth=False)

    def server(self, port: int = 0) -> SimServer:
        """A :class:`SimServer` (not started) serving this simulator with authentication checked:
        Cloud Basic ``email:token``; DC ``Authorization: Bearer <token>`` (Basic also accepted)."""
        srv = _JiraSimServer(self, lambda request: self._respond(request, check_auth=True), port=port)
        self.base_url = srv.url
        return srv

    def authorised(self, request: SimRequest) -> bool:
        """Whether the request carries this site's credentials."""
        header = request.header("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user, _, secret = base64.b64decode(credentials.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            if secret != self.site.token:
                return False
            if self.site.flavour == "cloud":
                return user == self.site.email
            return user in (self.site.email, self.site.users[self.site.me]["name"])
        if scheme == "bearer" and self.site.flavour == "dc":
            return credentials.strip() == self.site.token
        return False

    def routes(self) -> list[Route]:
        """The site's endpoints: the REST API (v2, v3 on Cloud), JSM request comments and the Incidents API."""

        def rest(methods: str, path: str, handler: Callable[..., SimResponse]) -> Route:
            return Route(methods, REST_API + path, _numbered_version(handler), serves=self._serves_api)

        meta, search, issues, comments, links, jsm = (self._meta, self._search, self._issues, self._comments,
                                                      self._links, self._jsm)
        directory, incidents = self._directory, self._incidents
        return [
            Route(ANY_METHOD, "/_edge/tenant_info", meta.tenant_info, serves=self._cloud),
            Route("POST", "/gateway/api/graphql", directory.graphql, serves=self._cloud),
            Route(ANY_METHOD, "/gateway/api/public/teams/v1/org/{org_id}/teams", directory.teams, serves=self._cloud),
            # They answer the issue's 404 before a wrong method's 405: the handlers check the method.
            Route(ANY_METHOD, INCIDENTS + "/incident/{issue_id}/major", incidents.major, serves=self._incidents_api),
            Route("GET", INCIDENTS + "/incident/{issue_id}/responder", incidents.responders,
                  serves=self._incidents_api),
            Route("POST", INCIDENTS + "/incident/{issue_id}/responder/{verb:add|remove}", incidents.responders,
                  serves=self._incidents_api),
            Route("POST", INCIDENTS + "/incident/{issue_id}/stakeholder/{verb:add|remove}", incidents.stakeholders,
                  serves=self._incidents_api),
            Route("GET", INCIDENTS + "/post-incident-review/{issue_id}/primary-incident",
                  incidents.primary_incident, serves=self._incidents_api),
            Route(ANY_METHOD, "/rest/servicedeskapi/request/{key}/comment", jsm.servicedesk_comment),
            Route(ANY_METHOD, "/rest/servicedeskapi/request/{key}/participant", jsm.participants),
            rest("GET", "/serverInfo", meta.server_info),
            rest("GET", "/myself", meta.myself),
            rest("GET", "/field", meta.fields),
            rest("GET", "/issueLinkType", meta.link_types),
            rest("GET", "/issuetype", meta.issue_types),
            rest("GET", "/priority", meta.priorities),
            rest("GET", "/status", meta.statuses),
            rest("GET", "/project/{key}", meta.project),
            rest("GET", "/user/search", meta.user_search),
            rest("GET", "/mypermissions", directory.my_permissions),
            rest("GET", "/groups/picker", directory.groups_picker),
            rest("GET POST", "/search/jql", search.search_jql),
            rest("POST", "/search/approximate-count", search.approximate_count),
            rest("GET POST", "/search", search.search_old),
            rest("POST", "/issue", issues.create),
            rest("GET", "/issue/{key}", issues.get_issue),
            rest("PUT", "/issue/{key}", issues.edit),
            rest("PUT", "/issue/{key}/assignee", issues.assign),
            rest("GET", "/issue/{key}/transitions", issues.get_transitions),
            rest("POST", "/issue/{key}/transitions", issues.do_transition),
            rest("GET", "/issue/{key}/comment", comments.list_comments),
            rest("POST", "/issue/{key}/comment", comments.add_comment),
            rest("GET", "/issue/{key}/properties", comments.list_properties),
            rest("GET", "/issue/{key}/properties/{prop}", comments.get_property),
            rest("PUT", "/issue/{key}/properties/{prop}", comments.put_property),
            rest("DELETE", "/issue/{key}/properties/{prop}", comments.delete_property),
            rest("POST", "/issueLink", links.create_link),
            rest("GET", "/issueLink/{link_id}", links.get_link),
            rest("DELETE", "/issueLink/{link_id}", links.delete_link),
        ]

    def _cloud(self, groups: Groups) -> bool:
        return self.site.flavour == "cloud"

    def _serves_api(self, groups: Groups) -> bool:
        """REST v2 (and ``latest``) everywhere, v3 on Cloud only."""
        return groups.get("version") != "3" or self.site.flavour == "cloud"

    def _incidents_api(self, groups: Groups) -> bool:
        return self.site.flavour == "cloud"

    def _null_for_uri(self, request: SimRequest) -> SimResponse:
        return null_for_uri(self.site.base_url, request.path)

    def _unauthorised(self, request: SimRequest) -> SimResponse:
        headers = {"WWW-Authenticate": 'Basic realm="protected-area"' if self.site.flavour == "cloud"
                   else 'Bearer realm="jira"'}
        return error(401, [NOT_AUTHENTICATED], headers=headers)

    def _respond(self, request: SimRequest, check_auth: bool) -> SimResponse:
        with self._lock:
            try:
                response = self.router.dispatch(request, path=request.path.rstrip("/") or "/", authenticate=check_auth)
            except HttpError as exc:
                response = exc.response
            except JqlError as exc:
                response = error(400, [str(exc)])
            lost = self._lost_answer(request, response)
            if lost is not None:
                self._record_exchange(request, lost, fault="lost answer")
                return lost
            self._record_exchange(request, response)
            return response

    def _lost_answer(self, request: SimRequest, response: SimResponse) -> SimResponse | None:
        """The 504 that replaces a carried-out write's answer, when a :meth:`lose_answers` rule matches."""
        if not 200 <= response.status < 300:
            return None
        target = f"{request.method} {request.path}"
        for rule in self._lost:
            if rule.fired < rule.count and re.search(rule.match, target):
                rule.fired += 1
                return SimResponse(504, raw=b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
                                   headers={"Content-Type": "text/html"})
        return None

    def _record_exchange(self, request: SimRequest, response: SimResponse, fault: str | None = None) -> None:
        if not self.record_exchanges or request.path.startswith("/__sim/"):
            return
        try:
            body: Any = request.json()
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": {k: list(v) for k, v in request.query.items()},
            "request_body": body,
            "status": response.status,
            "response_body": copy.deepcopy(response.body) if response.raw is None else response.raw.decode(
                "utf-8", "replace"),
        }
        if fault:
            entry["fault"] = fault
        self.exchanges.append(entry)


class _JiraSimServer(SimServer):
    """:class:`SimServer` with Jira-looking rate-limit faults and fault responses recorded as exchanges."""

    def __init__(self, sim: JiraSim, handler: Callable[[SimRequest], SimResponse], port: int = 0) -> None:
        self.sim = sim
        # A short poll interval so that stop() returns quickly in tests.
        super().__init__(handler, port=port, poll_interval=0.02, name="jira-sim")

    def _make_handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The base handler, with the ``Date`` header from the site's clock (as a real site's is its own)."""
        site = self.sim.site

        class _Handler(super()._make_handler_class()):  # type: ignore[misc]
            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.format_datetime(site.now(), usegmt=True)

        return _Handler

    def _fault_response(self, rule: FaultRule, request: SimRequest) -> SimResponse | None:
        response = super()._fault_response(rule, request)
        if response is None:
            return None
        if rule.kind == "429":
            now = self.sim.site.now()
            reset = now + timedelta(seconds=float(rule.retry_after or 0))
            response.body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
            response.headers.update({
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                "RateLimit-Reason": "jira-burst-based",
            })
        with self.sim._lock:
            self.sim._record_exchange(request, response, fault=rule.kind)
        return response


def seeded(email: str, token: str, flavour: str = "cloud", people: Iterable[str] = (),
           groups: Iterable[str] = ()) -> JiraSim:
    """A fresh simulator that knows ``people`` (users) and ``groups``: on Cloud each group is also an
    Atlassian team (JSM responders are teams), on Data Center a group."""
    sim = JiraSim(email=email, token=token, flavour=flavour)
    for person in people:
        sim.add_user(person)
    for group in groups:
        sim.add_group(group)
        if flavour == "cloud":
            sim.add_team(group)
    return sim


def serve(port: int, email: str, token: str, flavour: str = "cloud", people: Iterable[str] = (),
          groups: Iterable[str] = ()) -> None:
    """Serve a fresh simulator on ``127.0.0.1:port`` until interrupted (``mim simulate jira``); ``people`` and
    ``groups`` (those of the process file) exist on it."""
    people, groups = list(people), list(groups)
    sim = seeded(email, token, flavour, people, groups)
    server = sim.server(port)
    auth = "Basic email:token" if flavour == "cloud" else "Authorization: Bearer <token>"
    print(f"Jira {flavour} simulator listening on {server.url} ({auth}; user {email})", flush=True)
    if people or groups:
        print(f"it knows the people ({', '.join(people) or 'none'}) and groups ({', '.join(groups) or 'none'}) of "
              "the process file", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
