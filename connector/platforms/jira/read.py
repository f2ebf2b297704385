"""Reading issues: the delta poll, searches, the marked major incidents (state rebuild) and the follow-ups (the
change and review issues linked to each major incident)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterator, Sequence

from connector.core.mapping import Mapping
from connector.core.write_settings import JiraWrite
from connector.platforms.base import Watermark
from connector.platforms.errors import NotFound
from connector.platforms.jira.cache import MAX_RECONCILE, IssueCache
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.fields import JiraFields, same_issue_type, same_link_type
from connector.platforms.jira.jql import jql_epoch_ms, jql_string
from connector.platforms.jira.search import JiraSearch

Issue = dict[str, Any]


class JiraReader:
    """The read side of the adapter over one project."""

    def __init__(self, client: JiraClient, search: JiraSearch, mapping: Mapping, write: JiraWrite,
                 discovery: JiraDiscovery, fields: JiraFields, cache: IssueCache, project: str) -> None:
        self._client = client
        self._search = search
        self._mapping = mapping
        self._write = write
        self._discovery = discovery
        self._fields = fields
        self._cache = cache
        self._project = project

    def fields_wanted(self) -> list[str]:
        """The issue fields every read asks for: those the mapping reads, those derivation needs, and the
        discovered custom fields."""
        wanted = [f for f in self._mapping.platform_fields() if f not in ("id", "key") and not f.startswith("_")]
        for extra in ("summary", "status", "issuetype", "created", "updated", "labels", "issuelinks"):
            if extra not in wanted:
                wanted.append(extra)
        for role in ("major", "stage", "services", "responders", "team", "dc_responders"):
            found = self._discovery.field(role)
            if found and found["id"] not in wanted:
                wanted.append(found["id"])
        return wanted

    def project_clause(self) -> str:
        """``project = "<key>"``, quoted and escaped."""
        return f"project = {jql_string(self._project)}"

    def _scope_clause(self) -> str:
        """Project and, once known, the incident issue type: review tasks, changes and service requests
        share the project but are not tickets a surge is made of (ServiceNow polls the incident table)."""
        incident = self._discovery.known("issue_types", "incident")
        if not incident:
            return self.project_clause()
        ident = str(incident["id"])
        return f"{self.project_clause()} AND issuetype = {ident if ident.isdigit() else jql_string(incident['name'])}"

    def changed_jql(self, start: datetime | int) -> str:
        """The delta-poll JQL from ``start`` (epoch milliseconds, unquoted: zone-free and exact)."""
        ms = start if isinstance(start, int) else jql_epoch_ms(start)
        return f"{self._scope_clause()} AND updated >= {ms} ORDER BY updated ASC, key ASC"

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[Issue]:
        """Issues updated since the watermark minus the overlap (or since ``horizon``), oldest first, every
        page, de-duplicated by ``(id, fields.updated)``. A quiet poll is one request."""
        self._discovery.ensure()
        overlap: timedelta = self._write.overlap
        start = since.updated_at - overlap if since is not None else horizon
        fields = self.fields_wanted()
        props = [self._write.property_key]
        if self._client.cloud:
            # Issues we just wrote: Cloud search is eventually consistent, reconcileIssues makes them current.
            reconcile = [i for i in self._cache.written if i.isdigit()]
            pages = self._search.cloud(self.changed_jql(start), fields, props, reconcile)
        else:
            pages = self._search.changed_dc(jql_epoch_ms(start), self.changed_jql, fields)
        seen: set[tuple[str, Any]] = set()
        for issue in pages:
            ident = (str(issue.get("id")), (issue.get("fields") or {}).get("updated"))
            if ident in seen:
                continue
            seen.add(ident)
            self._cache.remember(issue)
            self._fields.learn_services(issue.get("fields") or {})
            yield issue
        self._cache.written.clear()

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[Issue]:
        """Incidents created at or after ``since``, with only the issue fields that the canonical ``fields``
        are read from: what the detection baselines learn from when they warm up. Streamed, not cached."""
        self._discovery.ensure()
        wanted: list[str] = ["created"]
        for name in fields:
            source = self._mapping.spec.fields.get(name)
            for path in [source] if isinstance(source, str) else (source or []):
                steps = path.split(".")
                top = steps[1] if steps[0] == "fields" and len(steps) > 1 else steps[0]
                if top == "_ci":
                    found = self._discovery.field("services")
                    top = found["id"] if found else ""
                top = top.split("[", 1)[0]
                if top and not top.startswith("_") and top not in ("id", "key") and top not in wanted:
                    wanted.append(top)
        jql = f"{self._scope_clause()} AND created >= {jql_epoch_ms(since)} ORDER BY created ASC, key ASC"
        return self._search.pages(jql, wanted, [])

    def search(self, jql: str, fields: list[str] | None = None, reconcile: Sequence[str] = ()) -> list[Issue]:
        """Every issue matching ``jql`` (built with :func:`jql_string` for values), with the ``mim`` property
        (Cloud; ``reconcile``: ids to read current on Cloud)."""
        self._discovery.ensure()
        wanted = fields or self.fields_wanted()
        found = []
        for issue in self._search.pages(jql, wanted, [self._write.property_key], reconcile):
            self._cache.remember(issue)
            found.append(issue)
        return found

    def fetch_marked(self) -> list[Issue]:
        """Open issues flagged as major incidents whose ``mim`` property carries our marker (state rebuild),
        including those a human un-flagged (they still carry the ``declared_label``)."""
        self._discovery.ensure()
        flags = [f"labels = {jql_string(self._write.major_label)}",
                 f"labels = {jql_string(self._write.declared_label)}"]
        major = self._discovery.field("major")
        if major:
            flags.append(f"{major['clause']} IS NOT EMPTY")
        jql = (f"{self.project_clause()} AND ({' OR '.join(flags)}) AND statusCategory != {jql_string('Done')} "
               "ORDER BY key ASC")
        candidates = self.search(jql)
        if not self._client.cloud:
            # Data Center search returns no entity properties: read the property of each (few) candidate.
            for issue in candidates:
                issue["properties"] = {self._write.property_key: self.read_property(str(issue.get("id")))}
        return [issue for issue in candidates
                if str(self._fields.property(issue).get("marker") or "").startswith("mim:")]

    def read_property(self, issue_id: str) -> Any:
        """The connector's entity property of one issue (``None`` when it has none)."""
        try:
            answer = self._client.get(self._client.api(f"/issue/{issue_id}/properties/{self._write.property_key}"))
        except NotFound:
            return None
        return (answer or {}).get("value")

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change and review tasks of each major incident, from one search of the major incidents themselves
        (``id IN (...)``, field ``issuelinks``: every link carries the other issue's type, summary and status),
        and one more of their post-incident reviews, which hold the tasks (a review without tasks of its own,
        as an older version made them, counts as a task). ``changes`` is not needed: the links name the
        change."""
        self._discovery.ensure()
        numeric = list(dict.fromkeys(str(i) for i in mi_ids if str(i).isdigit()))
        out: dict[str, dict[str, Any]] = {str(i): {"change": None, "tasks": []} for i in mi_ids}
        reviews: dict[str, tuple[str, dict[str, Any]]] = {}
        for issue in self._linked(numeric):
            entry = out.setdefault(str(issue.get("id")), {"change": None, "tasks": []})
            for review in self._linked_followups(issue, entry):
                reviews[review["id"]] = (str(issue.get("id")), review)
        found: set[str] = set()
        for review in self._linked(list(reviews)):
            mi_id, item = reviews[str(review.get("id"))]
            tasks = out[mi_id]["tasks"]
            before = len(tasks)
            self._linked_followups(review, out[mi_id], only_tasks=True)
            if len(tasks) > before:
                found.add(item["id"])
        for review_id, (mi_id, item) in reviews.items():
            if review_id not in found:
                out[mi_id]["tasks"].append(item)
        for entry in out.values():
            entry["tasks"].sort(key=lambda t: (len(str(t["key"] or "")), str(t["key"] or ""), t["id"]))
        return out

    def _linked(self, ids: list[str]) -> Iterator[Issue]:
        """The issues ``ids`` with their links, 50 a search (reconciled on Cloud)."""
        for i in range(0, len(ids), MAX_RECONCILE):
            chunk = ids[i:i + MAX_RECONCILE]
            jql = f"{self.project_clause()} AND id IN ({', '.join(chunk)}) ORDER BY key ASC"
            yield from self._search.pages(jql, ["issuelinks"], [], chunk)

    def _linked_followups(self, issue: Issue, entry: dict[str, Any], only_tasks: bool = False) -> list[dict[str, Any]]:
        """The change and review tasks among ``issue``'s links, into ``entry``; returns its post-incident reviews."""
        link_types = self._discovery.ensure().get("link_types") or {}
        issue_types = self._discovery.ensure().get("issue_types") or {}
        seen: set[str] = {str(t["id"]) for t in entry["tasks"]}
        reviews: list[dict[str, Any]] = []
        for link in (issue.get("fields") or {}).get("issuelinks") or []:
            other = link.get("outwardIssue") or link.get("inwardIssue") or {}
            ident = str(other.get("id") or "")
            if not ident or ident in seen:
                continue
            fields = other.get("fields") or {}
            kind = next((k for k, via in (("change", "change"), ("review", "review"), ("task", "review"))
                         if (not only_tasks or k == "task") and link_types.get(via) and issue_types.get(k)
                         and same_link_type(link, link_types[via])
                         and same_issue_type(fields.get("issuetype") or {}, issue_types[k])), None)
            if kind is None:
                continue
            seen.add(ident)
            item = {"id": ident, "key": other.get("key"), "state": self._fields.state_of(fields.get("status"))}
            if kind == "change":
                entry["change"] = entry["change"] or item
            elif kind == "review":
                reviews.append({**item, "title": str(fields.get("summary") or "")})
            else:
                entry["tasks"].append({**item, "title": str(fields.get("summary") or "")})
        return reviews


__all__ = ["JiraReader"]
