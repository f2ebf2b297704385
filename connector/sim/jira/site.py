"""The simulated site's data: its flavour (Cloud or Data Center), clock, users, issues with their comments,
properties and links, components, and the versions of each issue that make search lag behind writes."""

from __future__ import annotations

import copy
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from connector.sim.jira.catalogue import (
    DEFAULT_PRIORITY,
    INITIAL_STATUS,
    ISSUE_TYPES,
    PRIORITIES,
    PROJECT,
    PROJECT_PERMISSIONS,
    SEED_USERS,
    STATUSES,
    TRANSITIONS,
    custom_fields,
    field_catalogue,
    field_ids,
    issue_types,
)
from connector.sim.jira.errors import ISSUE_NOT_FOUND, HttpError, error, fail
from connector.sim.jira.times import UTC, truncate_ms

Issue = dict[str, Any]
"""An issue's stored state: ids, field values (users as accountIds, texts as ADF, times as datetimes),
``custom`` fields, ``properties``, ``comments`` and link ids."""


@dataclass
class Link:
    """An issue link as stored."""

    id: str
    type_id: str
    source: str  # issue id of the POST body's inwardIssue: the subject of the outward phrase
    target: str  # issue id of the POST body's outwardIssue


class JiraSite:
    """In-memory state of a Jira Cloud (``flavour="cloud"``) or Data Center (``flavour="dc"``) site.

    ``clock`` returns the current aware UTC time (default: real time); every timestamp written comes from it.
    ``user_time_zone`` is the API user's zone. ``search_lag`` (seconds) delays the visibility of writes in
    search results. ``per_issue_write_limit`` caps comments and links per issue. ``lock`` guards everything.

    ``plan`` is the JSM plan of a Cloud site: ``premium`` (major incidents, stakeholders and post-incident
    reviews, which Atlassian sells with Premium and Enterprise only) or ``standard``. ``permissions`` are the
    project permissions the API user holds (default: all the connector uses). Groups and Atlassian teams
    (``add_group``, ``add_team``) are what ``/groups/picker``, the Teams API and the responders know.
    """

    def __init__(
        self,
        email: str,
        token: str,
        flavour: str,
        clock: Callable[[], datetime] | None,
        user_time_zone: str,
        major_incident_field: bool,
        search_lag: float,
        per_issue_write_limit: int | None,
        seed: int,
        plan: str = "premium",
        permissions: frozenset[str] | None = None,
    ) -> None:
        if flavour not in ("cloud", "dc"):
            raise ValueError("flavour must be 'cloud' or 'dc'")
        if plan not in ("premium", "standard"):
            raise ValueError("plan must be 'premium' or 'standard'")
        self.email = email
        self.token = token
        self.flavour = flavour
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.user_time_zone = user_time_zone
        self.zone = ZoneInfo(user_time_zone)
        self.major_incident_field = major_incident_field
        self.search_lag = float(search_lag)
        self.per_issue_write_limit = per_issue_write_limit
        self.plan = plan
        self.permissions = frozenset(PROJECT_PERMISSIONS) if permissions is None else frozenset(permissions)
        self.base_url = "https://your-domain.atlassian.net" if flavour == "cloud" else "https://jira.example.com"
        self.random = random.Random(seed)
        self.cloud_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.org_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.lock = threading.RLock()
        self.issues: dict[str, Issue] = {}  # id -> current state
        self.keys: dict[str, str] = {}  # upper-case key -> id
        self.versions: dict[str, list[tuple[datetime, Issue]]] = {}
        self.links: dict[str, Link] = {}
        self.components: dict[str, str] = {}  # name -> id
        self.services: dict[str, str] = {}  # JSM service id -> name (what Affected services hold)
        self._next_issue_id = 10001
        self._next_issue_num = 1
        self._next_comment_id = 10000
        self._next_link_id = 10100
        self._next_component_id = 10200
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}  # lower-case name -> {"groupId", "name", "members"}
        self.teams: dict[str, dict[str, Any]] = {}  # team id -> {"teamId", "displayName", "members"}
        for seed_user in SEED_USERS:
            self.add_user(dict(seed_user))
        self.me = SEED_USERS[0]["accountId"]
        self.users[self.me]["emailAddress"] = email

    # -- time and flavour --------------------------------------------------------------------------

    def now(self) -> datetime:
        """The clock's now, UTC, at millisecond precision."""
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return truncate_ms(now.astimezone(UTC))

    def default_version(self) -> int:
        """The REST API version a human sees: 3 on Cloud, 2 on Data Center."""
        return 3 if self.flavour == "cloud" else 2

    def api(self, version: int) -> str:
        """The REST API's base URL."""
        return f"{self.base_url}/rest/api/{version}"

    def field_ids(self) -> list[str]:
        """The ids of every field an issue of this site has."""
        return field_ids(self.major_incident_field, self.flavour)

    def field_catalogue(self) -> list[dict[str, Any]]:
        """``GET /field`` of this site."""
        return field_catalogue(self.major_incident_field, self.flavour)

    def issue_types(self) -> list[dict[str, Any]]:
        """The issue types of this site (names and the review type depend on the flavour and plan)."""
        return issue_types(self.flavour, self.plan)

    def issue_type(self, type_id: str) -> dict[str, Any]:
        """An issue type of any site, by id, named as this site names it."""
        return next((t for t in self.issue_types() if t["id"] == type_id),
                    next(t for t in ISSUE_TYPES if t["id"] == type_id))

    # -- issues --------------------------------------------------------------------------------------

    def new_state(self, created: datetime) -> Issue:
        """A blank issue, not yet registered."""
        custom: dict[str, Any] = {fid: None for fid in custom_fields(self.flavour, self.major_incident_field)}
        return {
            "id": "", "key": "", "project": PROJECT["key"], "summary": "", "description": None,
            "issuetype": ISSUE_TYPES[0]["id"], "priority": DEFAULT_PRIORITY, "status": INITIAL_STATUS,
            "components": [], "reporter": None, "assignee": None, "creator": None, "labels": [],
            "created": created, "updated": created, "resolutiondate": None,
            "statuscategorychangedate": created, "custom": custom, "properties": {}, "comments": [],
            "links": [], "stakeholders": [], "participants": [], "duedate": None,
        }

    def register(self, st: Issue) -> None:
        """Give a new issue its id and key and store it."""
        st["id"] = str(self._next_issue_id)
        st["key"] = f"{st['project']}-{self._next_issue_num}"
        self._next_issue_id += 1
        self._next_issue_num += 1
        self.issues[st["id"]] = st
        self.keys[st["key"].upper()] = st["id"]
        self.versions[st["id"]] = []
        self.snapshot(st)

    def get_state(self, id_or_key: str) -> Issue | None:
        """The issue with this id or key (any case), or ``None``."""
        if id_or_key in self.issues:
            return self.issues[id_or_key]
        issue_id = self.keys.get(str(id_or_key).upper())
        return self.issues.get(issue_id) if issue_id else None

    def require(self, id_or_key: str) -> Issue:
        """The issue, or Jira's 404."""
        st = self.get_state(id_or_key)
        if st is None:
            raise fail(404, ISSUE_NOT_FOUND)
        return st

    def touch(self, st: Issue, when: datetime | None = None) -> None:
        """Record a write: ``updated`` moves (to ``when`` or now) and search sees a new version."""
        st["updated"] = when or self.now()
        self.snapshot(st)

    def snapshot(self, st: Issue) -> None:
        """Keep a copy of the issue for lagging searches."""
        versions = self.versions[st["id"]]
        versions.append((st["updated"], copy.deepcopy(st)))
        if self.search_lag <= 0:
            del versions[:-1]
            return
        cutoff = self.now() - timedelta(seconds=self.search_lag)
        # Keep the newest version that is already visible plus every newer one.
        while len(versions) > 1 and versions[1][0] <= cutoff:
            versions.pop(0)

    def visible_state(self, issue_id: str, now: datetime, reconcile: set[str]) -> Issue | None:
        """The version of an issue search sees at ``now`` (``None``: not yet visible); issues in
        ``reconcile`` are always current."""
        current = self.issues[issue_id]
        if self.search_lag <= 0 or issue_id in reconcile:
            return current
        cutoff = now - timedelta(seconds=self.search_lag)
        for when, snap in reversed(self.versions[issue_id]):
            if when <= cutoff:
                return dict(snap)
        return None

    def check_limit(self, st: Issue, what: str, current: int) -> None:
        """Jira's 413 when an issue already has as many comments or links as a site allows."""
        if self.per_issue_write_limit is not None and current >= self.per_issue_write_limit:
            raise HttpError(error(413, [f"The issue {st['key']} has reached the limit of "
                                        f"{self.per_issue_write_limit} {what}."],
                                  headers={"RateLimit-Reason": "jira-per-issue-on-write"}))

    def add_comment(self, st: Issue, body: dict[str, Any], properties: dict[str, Any],
                    visibility: dict[str, Any] | None) -> dict[str, Any]:
        """Append a comment (an ADF ``body``) by the API user and return it."""
        now = self.now()
        comment = {"id": str(self._next_comment_id), "author": self.me, "body": body, "created": now,
                   "updated": now, "properties": properties, "visibility": visibility}
        self._next_comment_id += 1
        st["comments"].append(comment)
        return comment

    def add_link(self, type_id: str, source: Issue, target: Issue) -> Link:
        """Store a new link between two issues."""
        link = Link(str(self._next_link_id), type_id, source["id"], target["id"])
        self._next_link_id += 1
        self.links[link.id] = link
        source["links"].append(link.id)
        target["links"].append(link.id)
        return link

    # -- workflow and lookups ------------------------------------------------------------------------

    def status(self, status_id: str) -> dict[str, Any]:
        """A status by id."""
        return next(s for s in STATUSES if s["id"] == status_id)

    def set_status(self, st: Issue, status_id: str) -> None:
        """Move an issue to a status, stamping the category change and the resolution date."""
        old = self.status(st["status"])
        new = self.status(status_id)
        st["status"] = status_id
        if old["category"] != new["category"]:
            st["statuscategorychangedate"] = self.now()
        if new["category"] == "done" and st["resolutiondate"] is None:
            st["resolutiondate"] = self.now()
        elif new["category"] != "done":
            st["resolutiondate"] = None

    def transition(self, st: Issue, transition_id: str) -> None:
        """Apply a workflow transition, or Jira's 400 when it is not available from the issue's status."""
        found = next((t for t in TRANSITIONS if t[0] == transition_id and st["status"] in t[3]), None)
        if found is None:
            raise fail(400, f"Transition id '{transition_id}' is not valid for this issue.")
        self.set_status(st, found[2])

    def find_issue_type(self, value: Any) -> dict[str, Any] | None:
        """An issue type of this site by id or name, with or without the ``[System]`` prefix (``{"id"|"name":
        ...}`` too)."""
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower().removeprefix("[system] ")
        for item in self.issue_types():
            if text in (item["id"], item["name"].lower().removeprefix("[system] ")):
                return item
        return None

    @staticmethod
    def find_priority(value: Any) -> dict[str, Any] | None:
        """A priority by id or name."""
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower()
        return next((p for p in PRIORITIES if text in (p["id"], p["name"].lower())), None)

    @staticmethod
    def find_status(value: Any) -> dict[str, Any] | None:
        """A status by id or name."""
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower()
        return next((s for s in STATUSES if text in (s["id"], s["name"].lower())), None)

    def component_id(self, name: str) -> str:
        """The id of a component, created on first use."""
        if name not in self.components:
            self.components[name] = str(self._next_component_id)
            self._next_component_id += 1
        return self.components[name]

    # -- users ---------------------------------------------------------------------------------------

    def add_user(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a user (``accountId`` and ``name`` at least), filling in the rest."""
        record.setdefault("key", "JIRAUSER" + record["accountId"][-5:] if self.flavour == "dc" else record["name"])
        record.setdefault("emailAddress", f"{record['name']}@example.com")
        record.setdefault("displayName", record["name"].replace(".", " ").title())
        record.setdefault("timeZone", self.user_time_zone)
        record.setdefault("active", True)
        self.users[record["accountId"]] = record
        return record

    def add_group(self, name: str, members: Iterable[str] = ()) -> dict[str, Any]:
        """Store a group (``members``: users by any name :meth:`find_user` knows)."""
        group = self.groups.setdefault(name.lower(), {
            "groupId": str(uuid.UUID(int=self.random.getrandbits(128), version=4)), "name": name, "members": []})
        for member in members:
            user = self.find_user(member)
            if user is not None and user["accountId"] not in group["members"]:
                group["members"].append(user["accountId"])
        return group

    def add_service(self, name: str) -> str:
        """A JSM service (the service registry behind Affected services); its id."""
        for ident, known in self.services.items():
            if known.lower() == name.lower():
                return ident
        ident = "b:" + str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.services[ident] = name
        return ident

    def add_team(self, name: str, members: Iterable[str] = ()) -> dict[str, Any]:
        """Store an Atlassian team (a Cloud organisation's team, what JSM responders name)."""
        found = self.find_team(name)
        if found is None:
            team_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
            found = self.teams[team_id] = {"teamId": team_id, "displayName": name, "members": []}
        for member in members:
            user = self.find_user(member)
            if user is not None and user["accountId"] not in found["members"]:
                found["members"].append(user["accountId"])
        return found

    def find_team(self, name_or_id: str) -> dict[str, Any] | None:
        """An Atlassian team by id or display name (any case)."""
        if name_or_id in self.teams:
            return self.teams[name_or_id]
        wanted = name_or_id.strip().lower()
        return next((t for t in self.teams.values() if t["displayName"].lower() == wanted), None)

    def find_user(self, value: str) -> dict[str, Any] | None:
        """A user by accountId, name, key, email or display name (any case)."""
        text = str(value).strip().lower()
        if not text:
            return None
        for user in self.users.values():
            if text in (user["accountId"].lower(), user["name"].lower(), str(user.get("key", "")).lower(),
                        user["emailAddress"].lower(), user["displayName"].lower()):
                return user
        return None
