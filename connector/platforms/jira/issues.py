"""REST verbs on issues, each made safe to repeat: reads of the current issue, edits, entity properties,
assignment (Cloud users looked up by name once), tagged comments, tagged creates, links and transitions. A
comment, a create or a transition whose answer was lost is looked up before it is sent again."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from connector.core.mapping import Mapping
from connector.core.write_settings import JiraWrite
from connector.platforms.errors import (
    ClientError,
    NotFound,
    PermissionDenied,
    ResponseAction,
    TransientError,
    UnexpectedResponse,
)
from connector.platforms.jira.adf import adf_document, adf_plain_text
from connector.platforms.jira.cache import MAX_RECONCILE, IssueCache
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.directory import ACCOUNT_ID, JiraDirectory
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.edits import EditBuffer
from connector.platforms.jira.fields import first_name, same_link_type
from connector.platforms.jira.jql import jql_string
from connector.platforms.jira.read import JiraReader
from connector.platforms.jira.search import CLOUD_SEARCH, DC_SEARCH, offset_page
from connector.platforms.paging import OffsetPaginator, Page, paginate

INTERNAL_COMMENT_PROPERTY = "sd.public.comment"
ARI_USER = "ari:cloud:identity::user/"
ARI_TEAM = "ari:cloud:identity::team/"
"""Atlassian resource identifiers of users and teams (what JSM responders and stakeholders are named by)."""
DEFAULT_STATE_STATUSES = {"new": "Open", "in_progress": "In Progress", "on_hold": "Pending",
                          "closed": "Closed", "canceled": "Canceled"}

Issue = dict[str, Any]


class CreateUnsettled(TransientError):
    """A create whose answer was lost may have landed, and Cloud search cannot tell yet: not retried within the
    call (that would risk a second issue), re-driven in a later cycle."""

    action = ResponseAction.FATAL


class IssueWriter:
    """The building blocks of the write verbs, on one site and project."""

    def __init__(self, client: JiraClient, reader: JiraReader, mapping: Mapping, write: JiraWrite,
                 discovery: JiraDiscovery, cache: IssueCache, directory: JiraDirectory) -> None:
        self._client = client
        self._directory = directory
        self._reader = reader
        self._mapping = mapping
        self._write = write
        self._discovery = discovery
        self._cache = cache
        self.edits = EditBuffer(self._put)
        self._fresh: set[str] = set()
        """Issues read by :meth:`prefetch` in the current apply (see :meth:`start`)."""
        self.acting: str | None = None
        """The key of the action being applied (its edits are combined with the others of its issue)."""

    @property
    def cloud(self) -> bool:
        """Whether the site is Jira Cloud."""
        return self._client.cloud

    def text(self, text: str) -> Any:
        """A rich-text body: ADF on Cloud, plain text on Data Center."""
        return adf_document(text) if self._client.cloud else text

    def comment_body(self, text: str, internal: bool, tag: str | None = None) -> dict[str, Any]:
        """A comment's body; an internal one carries the JSM internal-comment property (if configured), and
        ``tag`` goes into the connector's comment property (the marker of a public comment, which never
        shows it in its text)."""
        body: dict[str, Any] = {"body": self.text(text)}
        properties = []
        if internal and self._write.internal_comments:
            properties.append({"key": INTERNAL_COMMENT_PROPERTY, "value": {"internal": True}})
        if tag is not None:
            properties.append({"key": self._write.property_key, "value": {"tag": tag}})
        if properties:
            body["properties"] = properties
        return body

    def _state_fields(self) -> list[str]:
        wanted = ["summary", "status", "issuetype", "priority", "labels", "issuelinks", "updated"]
        for role in ("major", "stage"):
            found = self._discovery.field(role)
            if found:
                wanted.append(found["id"])
        return wanted

    def prefetch(self, issue_ids: Sequence[str]) -> None:
        """Read many issues at once (``id IN (...)``, 50 a search, reconciled on Cloud) so that reads of them in
        this apply need no request of their own; a lost state makes every link read first, and one search of
        50 children costs what one read of each did."""
        wanted = [i for i in dict.fromkeys(issue_ids) if i.isdigit() and i not in self._fresh]
        for start in range(0, len(wanted), MAX_RECONCILE):
            chunk = wanted[start:start + MAX_RECONCILE]
            jql = f"{self._reader.project_clause()} AND id IN ({', '.join(chunk)}) ORDER BY key ASC"
            for issue in self._reader.search(jql, self._state_fields(), reconcile=chunk):
                self._fresh.add(str(issue.get("id")))

    def current(self, issue_id: str, fresh: bool) -> Issue:
        """The issue as last read in this run, or read now (``fresh``, or never seen; edits waiting for the
        issue are sent first). An issue :meth:`prefetch` read in this apply counts as fresh."""
        if fresh and issue_id in self._fresh and not self.edits.pending(issue_id):
            fresh = False
        known = None if fresh else self._cache.get(issue_id)
        if known is None:
            self.edits.flush(issue_id)
        if known is not None:
            return known
        issue = self._client.get(self._client.api(f"/issue/{issue_id}"),
                                 {"fields": ",".join(self._state_fields()), "properties": self._write.property_key}) or {}
        self._cache.remember(issue)
        return issue

    def start(self) -> None:
        """A new apply: nothing read in an earlier one counts as fresh."""
        self._fresh.clear()

    def key_of(self, issue_id: str) -> str | None:
        """The issue's key, if read or created."""
        return self._cache.key_of(issue_id)

    def edit(self, issue_id: str, body: dict[str, Any]) -> None:
        """``PUT /issue/{id}`` (fields, label updates, properties), combined with the other edits of the issue
        in this apply (sent when the issue is read, transitioned or the apply ends; see :mod:`.edits`)."""
        self.edits.add(issue_id, body, self.acting)
        self._cache.forget(issue_id)

    def _put(self, issue_id: str, body: dict[str, Any]) -> None:
        self._client.call("PUT", self._client.api(f"/issue/{issue_id}"), body=body)
        self._cache.forget(issue_id)

    def assign(self, issue_id: str, user: str) -> None:
        """Assign the issue to ``user``."""
        self._client.call("PUT", self._client.api(f"/issue/{issue_id}/assignee"), body=self._directory.user_ref(user))
        self._cache.forget(issue_id)

    def comment_tagged(self, issue_id: str, tag: str, once: bool = False, text: str | None = None) -> bool:
        """Whether a comment on the issue already carries ``[tag]``, or (``text``: a public comment, whose
        marker is a comment property the comment list does not return) is exactly ``text`` by the API user
        (newest first, every page; ``once``: one attempt per request, from inside a retried call)."""
        needle = f"[{tag}]"
        me = (self._discovery.facts or {}).get("me")
        path = self._client.api(f"/issue/{issue_id}/comment")

        def ours(comment: dict[str, Any]) -> bool:
            body = adf_plain_text(comment.get("body"))
            if text is None:
                return needle in body
            author = comment.get("author") or {}
            return body.strip() == text.strip() and (not me or me in (author.get("accountId"), author.get("name")))

        paginator = OffsetPaginator(lambda comment: str(comment.get("id")), where=f"GET {path}", retryable=True)

        def fetch(start: int) -> Page:
            params = {"startAt": start, "maxResults": 100, "orderBy": "-created"}
            answer = self._client.send("GET", path, params) if once else self._client.get(path, params)
            return offset_page(answer, "comments")

        return any(ours(c) for page in paginate(paginator, fetch) for c in page.rows)

    def add_comment(self, issue_id: str, text: str, tag: str, internal: bool) -> None:
        """An internal comment ends with ``[tag]``; a public one (customers read it) carries the tag in its
        comment property only. After a lost answer the comments are read before it is re-sent."""
        if internal:
            body, match = self.comment_body(f"{text}\n[{tag}]", True), None
        else:
            body, match = self.comment_body(text, False, tag=tag), text
        self._client.call("POST", self._client.api(f"/issue/{issue_id}/comment"), body=body,
                          already_done=lambda: True if self.comment_tagged(issue_id, tag, once=True, text=match)
                          else None)
        self._cache.forget(issue_id)

    def find_tagged(self, tag: str, once: bool = False) -> Issue | None:
        """The issue carrying label ``tag`` (a record the connector created for one action), if any."""
        jql = f"{self._reader.project_clause()} AND labels = {jql_string(tag)} ORDER BY key ASC"
        fields = ["summary", "labels", "issuelinks", "issuetype", "status", "assignee"]
        if once:
            path = CLOUD_SEARCH if self._client.cloud else DC_SEARCH
            body: dict[str, Any] = {"jql": jql, "maxResults": 1, "fields": fields}
            issues = (self._client.send("POST", path, body=body) or {}).get("issues") or []
            return issues[0] if issues else None
        found = self._reader.search(jql, fields)
        return found[0] if found else None

    def create_issue(self, fields: dict[str, Any], tag: str, prop: dict[str, Any]) -> tuple[str, str]:
        """Create an issue labelled ``tag`` with the entity property ``prop``; ``(id, key)``.

        After a lost answer the label is searched before the create is sent again. Cloud search lags writes by
        seconds to minutes and nothing else finds an issue whose id is unknown, so on Cloud a create that may
        have landed is never re-sent within ``write.create_settle`` of the lost answer (platform time): the
        action fails for a later cycle (:class:`CreateUnsettled`), whose search sees the issue once it is
        indexed. Data Center search is consistent: a create it does not find is sent again at once."""
        fields = {**fields, "labels": sorted(set(fields.get("labels", [])) | {tag})}
        body = {"fields": fields, "properties": [{"key": self._write.property_key, "value": prop}]}
        self._check_settled(tag)
        created = self._client.call("POST", self._client.api("/issue"), body=body,
                                    already_done=lambda: self._created_earlier(tag)) or {}
        self._settled(tag)
        issue_id, key = str(created.get("id", "")), str(created.get("key", ""))
        if not issue_id:
            raise UnexpectedResponse("issue created without an id in the answer", method="POST",
                                     path=self._client.api("/issue"))
        self._cache.created(issue_id, key)
        return issue_id, key

    def _created_earlier(self, tag: str) -> Issue | None:
        """After a lost create answer: the issue if search finds it; on Cloud, where search lags, a create it
        does not find yet may still have landed, so :class:`CreateUnsettled` instead of a second create."""
        found = self.find_tagged(tag, once=True)
        if found is not None or not self._client.cloud:
            return found
        self._unsettled().setdefault(tag, self._client.now().isoformat())
        raise CreateUnsettled(f"the create's answer was lost and search does not show it yet (search lags); looked "
                              f"up again next cycle, created again only after {self._write.create_settle}",
                              method="POST", path=self._client.api("/issue"))

    def _check_settled(self, tag: str) -> None:
        """Refuse to create again while an earlier, answerless create of ``tag`` may still become visible."""
        since = self._unsettled().get(tag)
        if since is None:
            return
        waited = self._client.now() - datetime.fromisoformat(since)
        if waited < self._write.create_settle:
            raise CreateUnsettled(f"an earlier create of this record lost its answer {waited.total_seconds():.0f}s "
                                  "ago and search does not show it yet; not created twice",
                                  method="POST", path=self._client.api("/issue"))

    def _settled(self, tag: str) -> None:
        self._unsettled().pop(tag, None)

    def _unsettled(self) -> dict[str, str]:
        """Tags of creates whose answer was lost and which search did not show yet, with when (platform time):
        kept in the site facts, which the state store saves (a lost store only makes the wait start again)."""
        found: dict[str, str] = self._discovery.ensure().setdefault("unsettled", {})
        return found

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

    def status_of(self, issue_id: str) -> dict[str, Any]:
        """The issue's status as it is now (``{"name", "statusCategory"}``), read fresh."""
        issue = self._client.get(self._client.api(f"/issue/{issue_id}"), {"fields": "status"}) or {}
        status: dict[str, Any] = (issue.get("fields") or {}).get("status") or {}
        return status

    def transition(self, issue_id: str, status: str, properties: list[dict[str, Any]] | None = None) -> bool:
        """Move the issue to the status named ``status`` through whichever transition leads there now; False
        when it is there already (an earlier write of this cycle, a workflow rule or a human moved it since the
        issue was read), so a state change never fails for lack of a transition to where the issue stands.

        A comment is never sent inside the transition: whether Jira honours ``sd.public.comment`` in a
        transition's ``update.comment`` is undocumented, and an internal note must not go out public."""
        self.edits.flush(issue_id)
        path = self._client.api(f"/issue/{issue_id}/transitions")
        available = (self._client.get(path, {"expand": "transitions.fields"}) or {}).get("transitions") or []
        wanted = status.strip().lower()
        chosen = next((t for t in available if str((t.get("to") or {}).get("name", "")).lower() == wanted), None)
        if chosen is None:
            chosen = next((t for t in available if str(t.get("name", "")).lower() == wanted), None)
        if chosen is None:
            if str(self.status_of(issue_id).get("name", "")).strip().lower() == wanted:
                return False
            names = ", ".join(sorted({str((t.get("to") or {}).get("name")) for t in available})) or "none"
            raise ClientError(f"no transition to status {status!r} from the issue's current status (reachable: {names})",
                              method="POST", path=path)
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        resolution = (chosen.get("fields") or {}).get("resolution")
        if isinstance(resolution, dict) and resolution.get("required"):
            body["fields"] = {"resolution": {"name": self._write.resolution}}
        if properties:
            body["properties"] = properties

        def done() -> Any:
            issue = self._client.send("GET", self._client.api(f"/issue/{issue_id}"), {"fields": "status"}) or {}
            name = str(((issue.get("fields") or {}).get("status") or {}).get("name", "")).lower()
            return True if name == wanted else None

        self._client.call("POST", path, body=body, already_done=done)
        self._cache.forget(issue_id)
        return True

    def set_major(self, issue_id: str) -> bool:
        """Flag the issue a major incident through the JSM Incidents API (``POST .../incident/{issueId}/major``,
        the numeric issue id). False when the site has no Incidents API for it or refuses it (a Standard plan:
        major incidents are Premium and Enterprise); the refusal is remembered with the site facts."""
        base = self._discovery.incidents_api("major")
        if base is None or not issue_id.isdigit():
            return False
        path = f"{base}/incident/{issue_id}/major"
        try:
            self._client.call("POST", path, body={"majorIncident": True})
        except (PermissionDenied, NotFound):
            self._discovery.refuse("major")
            return False
        self._cache.forget(issue_id)
        return True

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
            elif name == "assignee":
                separate["assignee"] = value
                self._manager_responder(str(value), now, fields, separate)
            elif name == "state":
                separate["state"] = value
            elif name == "assignment_group":
                why = self._team_change(str(value), now, fields, separate)
                if why:
                    unwritable.append(f"assignment_group ({why})")
            elif name == "stage":
                continue  # SetStage writes it
            else:
                unwritable.append(name)
        return fields, separate, unwritable

    def _responders_api(self) -> str | None:
        """The Incidents API base when responders are written through it (Cloud, JSM, not refused)."""
        if self._write.team_via != "responders" or not self._discovery.field("responders"):
            return None
        return self._discovery.incidents_api("responders")

    def _team_change(self, team: str, now: dict[str, Any], fields: dict[str, Any], separate: dict[str, Any]) -> str:
        """Put the team into ``fields`` (a team field) or ``separate["responders"]`` (JSM responders); the reason
        it cannot be written, or ``""``."""
        if self._write.team_via == "none":
            return "write.team_via is none"
        if self._responders_api():
            team_id = self._directory.team_id(team)
            if team_id:
                ari = ARI_TEAM + team_id
                if ari not in self._responder_aris(now):
                    separate.setdefault("responders", []).append(ari)
                return ""
            if not self._discovery.field("team"):
                return f"no Atlassian team named {team!r} (name it in write.teams)"
        field = self._discovery.field("team")
        if not field:
            return f"no team field {self._write.team_field_name!r} on the site"
        if (first_name(now.get(field["id"])) or "").lower() == team.lower():
            return ""
        kind = str(field.get("custom") or "")
        if kind.endswith("grouppicker") and self._directory.group(team) is None:
            return f"no group named {team!r} on the site"  # never a name the field would refuse, or mistake
        if kind.endswith("multigrouppicker"):
            fields[field["id"]] = [{"name": team}]
        elif kind.endswith("grouppicker"):
            fields[field["id"]] = {"name": team}
        else:  # an Atlassian Team field takes the team's id
            team_id = self._directory.team_id(team)
            if not team_id:
                return f"no Atlassian team named {team!r} (name it in write.teams)"
            fields[field["id"]] = team_id
        return ""

    def _manager_responder(self, manager: str, now: dict[str, Any], fields: dict[str, Any],
                           separate: dict[str, Any]) -> None:
        """The manager also a responder: a JSM responder on Cloud, else added to the Data Center user picker."""
        if not self._write.manager_responder:
            return
        if self._responders_api():
            ari = ARI_USER + self._directory.account_id(manager)
            if ari not in self._responder_aris(now):
                separate.setdefault("responders", []).append(ari)
            return
        field = self._discovery.field("dc_responders")
        if not field:
            return
        present = now.get(field["id"])
        people = present if isinstance(present, list) else [present] if isinstance(present, dict) else []
        if any(manager.lower() in (str(p.get("name", "")).lower(), str(p.get("key", "")).lower())
               for p in people if isinstance(p, dict)):
            return
        if str(field.get("custom") or "").endswith("multiuserpicker"):
            fields[field["id"]] = [{"name": p["name"]} for p in people if isinstance(p, dict) and p.get("name")] \
                + [self._directory.user_ref(manager)]
        else:
            fields[field["id"]] = self._directory.user_ref(manager)

    def _responder_aris(self, now: dict[str, Any]) -> set[str]:
        field = self._discovery.field("responders")
        out = set()
        for item in (now.get(field["id"]) if field else None) or []:
            ari = item.get("ari") if isinstance(item, dict) else item
            if isinstance(ari, str):
                out.add(ari)
        return out

    def add_responders(self, issue_id: str, aris: list[str]) -> None:
        """``POST .../incident/{issueId}/responder/add`` (users and teams, numeric issue id)."""
        base = self._responders_api()
        if base is None or not aris:
            return
        self._client.call("POST", f"{base}/incident/{issue_id}/responder/add",
                          body={"responders": [{"ari": ari} for ari in dict.fromkeys(aris)]})
        self._cache.forget(issue_id)

    def add_stakeholders(self, issue_id: str, people: list[str]) -> tuple[list[str], str]:
        """The people added to the incident: JSM stakeholders through the Incidents API where the site has
        it, else request participants (who JSM notifies of public comments); ``(missing people, how)``."""
        refs: list[str] = []
        missing: list[str] = []
        for person in people:
            try:
                refs.append(self._directory.account_id(person) if self._client.cloud else
                            self._directory.user_ref(person)["name"])
            except ClientError:
                missing.append(person)
        if not refs:
            return missing, ""
        base = self._discovery.incidents_api("stakeholders")
        if base is not None:
            try:
                self._client.call("POST", f"{base}/incident/{issue_id}/stakeholder/add",
                                  body={"stakeholders": [{"ari": ARI_USER + ref} for ref in refs]})
                return missing, "as stakeholders"
            except (PermissionDenied, NotFound):
                self._discovery.refuse("stakeholders")
        key = "accountIds" if self._client.cloud else "usernames"
        self._client.call("POST", f"/rest/servicedeskapi/request/{issue_id}/participant", body={key: refs})
        return missing, "as request participants"


__all__ = ["ACCOUNT_ID", "CreateUnsettled", "DEFAULT_STATE_STATUSES", "INTERNAL_COMMENT_PROPERTY", "IssueWriter"]
