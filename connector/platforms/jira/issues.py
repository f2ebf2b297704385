"""REST verbs on issues, each made safe to repeat: reads of the current issue, edits, entity properties,
assignment (Cloud users looked up by name once), tagged comments, tagged creates, links and transitions. A
comment, a create or a transition whose answer was lost is looked up before it is sent again."""

from __future__ import annotations

import re
from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import JiraWrite
from connector.platforms.errors import ClientError, UnexpectedResponse
from connector.platforms.jira.adf import adf_document, adf_plain_text
from connector.platforms.jira.cache import IssueCache
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.fields import first_name, same_link_type
from connector.platforms.jira.jql import jql_string
from connector.platforms.jira.read import JiraReader
from connector.platforms.jira.search import CLOUD_SEARCH, DC_SEARCH, offset_page
from connector.platforms.paging import OffsetPaginator, Page, paginate

INTERNAL_COMMENT_PROPERTY = "sd.public.comment"
DEFAULT_STATE_STATUSES = {"new": "Open", "in_progress": "In Progress", "on_hold": "Pending",
                          "closed": "Closed", "canceled": "Canceled"}
ACCOUNT_ID = re.compile(r"^(?:[0-9a-f]{24}|\d+:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
"""Jira Cloud account ids: 24 hex digits (older) or ``<number>:<uuid>``."""

Issue = dict[str, Any]


class IssueWriter:
    """The building blocks of the write verbs, on one site and project."""

    def __init__(self, client: JiraClient, reader: JiraReader, mapping: Mapping, write: JiraWrite,
                 discovery: JiraDiscovery, cache: IssueCache) -> None:
        self._client = client
        self._reader = reader
        self._mapping = mapping
        self._write = write
        self._discovery = discovery
        self._cache = cache
        self._accounts: dict[str, str] = {}

    def text(self, text: str) -> Any:
        """A rich-text body: ADF on Cloud, plain text on Data Center."""
        return adf_document(text) if self._client.cloud else text

    def comment_body(self, text: str, internal: bool) -> dict[str, Any]:
        """A comment's body; an internal one carries the JSM internal-comment property (if configured)."""
        body: dict[str, Any] = {"body": self.text(text)}
        if internal and self._write.internal_comments:
            body["properties"] = [{"key": INTERNAL_COMMENT_PROPERTY, "value": {"internal": True}}]
        return body

    def _state_fields(self) -> list[str]:
        wanted = ["summary", "status", "issuetype", "priority", "labels", "issuelinks", "updated"]
        for role in ("major", "stage"):
            found = self._discovery.field(role)
            if found:
                wanted.append(found["id"])
        return wanted

    def current(self, issue_id: str, fresh: bool) -> Issue:
        """The issue as last read in this run, or read now (``fresh``, or never seen)."""
        known = None if fresh else self._cache.get(issue_id)
        if known is not None:
            return known
        issue = self._client.get(self._client.api(f"/issue/{issue_id}"),
                                 {"fields": ",".join(self._state_fields()), "properties": self._write.property_key}) or {}
        self._cache.remember(issue)
        return issue

    def key_of(self, issue_id: str) -> str | None:
        """The issue's key, if read or created."""
        return self._cache.key_of(issue_id)

    def edit(self, issue_id: str, body: dict[str, Any]) -> None:
        """``PUT /issue/{id}`` (fields, label updates, properties)."""
        self._client.call("PUT", self._client.api(f"/issue/{issue_id}"), body=body)
        self._cache.forget(issue_id)

    def set_property(self, issue_id: str, value: dict[str, Any]) -> None:
        """Replace the connector's entity property of the issue."""
        self._client.call("PUT", self._client.api(f"/issue/{issue_id}/properties/{self._write.property_key}"),
                          body=value)
        self._cache.forget(issue_id)

    def _user_ref(self, user: str) -> dict[str, str]:
        """How a REST body names ``user``: Data Center by ``name``; Cloud by ``accountId``, looking one up
        (``/user/search``) when the process file names a person by email, user name or display name."""
        if not self._client.cloud:
            return {"name": user}
        if ACCOUNT_ID.match(user):
            return {"accountId": user}
        if user not in self._accounts:
            path = self._client.api("/user/search")
            found = [u for u in self._client.get(path, {"query": user, "maxResults": 10}) or [] if u.get("accountId")]
            wanted = user.strip().lower()

            def names(u: dict[str, Any]) -> set[str]:
                email = str(u.get("emailAddress") or "").lower()
                return {email, email.split("@")[0], str(u.get("displayName") or "").lower(),
                        str(u.get("name") or "").lower()} - {""}

            exact = [u for u in found if wanted in names(u)]
            chosen = exact or found
            if len(chosen) != 1:
                raise ClientError(f"{'no' if not chosen else len(chosen)} Jira users match {user!r}: name people in the "
                                  "process file by Jira account id or email", method="GET", path=path)
            self._accounts[user] = str(chosen[0]["accountId"])
        return {"accountId": self._accounts[user]}

    def assign(self, issue_id: str, user: str) -> None:
        """Assign the issue to ``user``."""
        self._client.call("PUT", self._client.api(f"/issue/{issue_id}/assignee"), body=self._user_ref(user))
        self._cache.forget(issue_id)

    def comment_tagged(self, issue_id: str, tag: str, once: bool = False) -> bool:
        """Whether a comment on the issue already carries ``[tag]`` (newest first, every page; ``once``: one
        attempt per request, from inside a retried call)."""
        needle = f"[{tag}]"
        path = self._client.api(f"/issue/{issue_id}/comment")
        paginator = OffsetPaginator(lambda comment: str(comment.get("id")), where=f"GET {path}", retryable=True)

        def fetch(start: int) -> Page:
            params = {"startAt": start, "maxResults": 100, "orderBy": "-created"}
            answer = self._client.send("GET", path, params) if once else self._client.get(path, params)
            return offset_page(answer, "comments")

        return any(needle in adf_plain_text(c.get("body")) for page in paginate(paginator, fetch) for c in page.rows)

    def add_comment(self, issue_id: str, text: str, tag: str, internal: bool) -> None:
        """A comment ending with ``[tag]``; after a lost answer the comments are read before it is re-sent."""
        body = self.comment_body(f"{text}\n[{tag}]", internal)
        self._client.call("POST", self._client.api(f"/issue/{issue_id}/comment"), body=body,
                          already_done=lambda: True if self.comment_tagged(issue_id, tag, once=True) else None)
        self._cache.forget(issue_id)

    def find_tagged(self, tag: str, once: bool = False) -> Issue | None:
        """The issue carrying label ``tag`` (a record the connector created for one action), if any."""
        jql = f"{self._reader.project_clause()} AND labels = {jql_string(tag)} ORDER BY key ASC"
        fields = ["summary", "labels", "issuelinks", "issuetype", "status"]
        if once:
            path = CLOUD_SEARCH if self._client.cloud else DC_SEARCH
            body: dict[str, Any] = {"jql": jql, "maxResults": 1, "fields": fields}
            issues = (self._client.send("POST", path, body=body) or {}).get("issues") or []
            return issues[0] if issues else None
        found = self._reader.search(jql, fields)
        return found[0] if found else None

    def create_issue(self, fields: dict[str, Any], tag: str, prop: dict[str, Any]) -> tuple[str, str]:
        """Create an issue labelled ``tag`` with the entity property ``prop``; ``(id, key)``. After a lost
        answer the label is searched before it is re-sent."""
        fields = {**fields, "labels": sorted(set(fields.get("labels", [])) | {tag})}
        body = {"fields": fields, "properties": [{"key": self._write.property_key, "value": prop}]}
        created = self._client.call("POST", self._client.api("/issue"), body=body,
                                    already_done=lambda: self.find_tagged(tag, once=True)) or {}
        issue_id, key = str(created.get("id", "")), str(created.get("key", ""))
        if not issue_id:
            raise UnexpectedResponse("issue created without an id in the answer", method="POST",
                                     path=self._client.api("/issue"))
        self._cache.created(issue_id, key)
        return issue_id, key

    def link(self, link_type: dict[str, Any], inward_id: str, outward_id: str) -> None:
        """``inward`` <outward phrase> ``outward`` (e.g. MAJOR causes CHILD): ``inwardIssue`` is the subject."""
        self._client.call("POST", self._client.api("/issueLink"), body={"type": {"name": link_type["name"]},
                                                                       "inwardIssue": {"id": inward_id},
                                                                       "outwardIssue": {"id": outward_id}})
        self._cache.forget(inward_id)
        self._cache.forget(outward_id)

    @staticmethod
    def has_link(issue: Issue, link_type: dict[str, Any], other_id: str, side: str) -> bool:
        """Whether ``issue`` has a link of ``link_type`` with ``other_id`` on ``side``."""
        return any(same_link_type(link, link_type) and str((link.get(side) or {}).get("id")) == other_id
                   for link in (issue.get("fields") or {}).get("issuelinks") or [])

    def transition(self, issue_id: str, status: str, comment: dict[str, Any] | None = None,
                   properties: list[dict[str, Any]] | None = None) -> None:
        """Move the issue to the status named ``status`` through whichever transition leads there now."""
        path = self._client.api(f"/issue/{issue_id}/transitions")
        available = (self._client.get(path, {"expand": "transitions.fields"}) or {}).get("transitions") or []
        wanted = status.strip().lower()
        chosen = next((t for t in available if str((t.get("to") or {}).get("name", "")).lower() == wanted), None)
        if chosen is None:
            chosen = next((t for t in available if str(t.get("name", "")).lower() == wanted), None)
        if chosen is None:
            names = ", ".join(sorted({str((t.get("to") or {}).get("name")) for t in available})) or "none"
            raise ClientError(f"no transition to status {status!r} from the issue's current status (reachable: {names})",
                              method="POST", path=path)
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        resolution = (chosen.get("fields") or {}).get("resolution")
        if isinstance(resolution, dict) and resolution.get("required"):
            body["fields"] = {"resolution": {"name": self._write.resolution}}
        if comment is not None:
            body["update"] = {"comment": [{"add": comment}]}
        if properties:
            body["properties"] = properties

        def done() -> Any:
            issue = self._client.send("GET", self._client.api(f"/issue/{issue_id}"), {"fields": "status"}) or {}
            name = str(((issue.get("fields") or {}).get("status") or {}).get("name", "")).lower()
            return True if name == wanted else None

        self._client.call("POST", path, body=body, already_done=done)
        self._cache.forget(issue_id)

    def status_for(self, state: str) -> str:
        """The status name a canonical state is reached by (``write.state_statuses`` over the defaults)."""
        table = {**DEFAULT_STATE_STATUSES, "resolved": self._write.resolve_status}
        for canonical, status in self._write.state_statuses.items():
            table[canonical] = status
        return table.get(state, state)

    def field_changes(self, canonical: dict[str, Any], current: Issue | None
                      ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """Canonical fields as Jira ``fields`` (only what differs from ``current``), the separate writes
        (``assignee``, ``state``) and the canonical names Jira has no field for."""
        now = (current or {}).get("fields") or {}
        fields: dict[str, Any] = {}
        separate: dict[str, Any] = {}
        unwritable: list[str] = []
        for name, value in canonical.items():
            if value is None:
                continue
            if name == "priority":
                jira = str(self._mapping.to_platform("priority", value))
                if str((now.get("priority") or {}).get("name", "")) != jira:
                    fields["priority"] = {"name": jira}
            elif name == "title":
                if now.get("summary") != str(value)[:255]:
                    fields["summary"] = str(value)[:255]
            elif name == "description":
                fields["description"] = self.text(str(value))
            elif name == "service":
                if first_name(now.get("components")) != str(value):
                    fields["components"] = [{"name": str(value)}]
            elif name in ("assignee", "state"):
                separate[name] = value
            elif name == "stage":
                continue  # SetStage writes it
            else:
                unwritable.append(name)
        return fields, separate, unwritable


__all__ = ["ACCOUNT_ID", "DEFAULT_STATE_STATUSES", "INTERNAL_COMMENT_PROPERTY", "IssueWriter"]
