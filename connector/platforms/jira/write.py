"""The write verbs for Jira: each action in order, one request at a time (so writes to one issue never overlap),
made idempotent by reading first where an earlier attempt may have landed:

* every issue the connector declares, creates or resolves carries the ``mim`` entity property saying what it
  did (the declared major incident also gets ``marker``, read back as ``Ticket.marker``);
* a linked child's marker is the link itself ("MAJOR causes CHILD"), read back as its parent: one request a child;
* every internal comment ends with a ``[mim-<hash>]`` line; a public comment (customers read it) carries the tag
  in its comment property only and is recognised by its text; every created issue carries its tag as a label,
  so a rerun after a crash or a lost state file reads before it writes and skips what is there;
* links are read before they are written, since Jira answers 201 to a duplicate link as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Literal, Sequence

from connector.core.actions import (
    Action,
    AddNote,
    AddStakeholders,
    CreateChange,
    CreateParent,
    CreateReview,
    CreateTask,
    DeclareMajor,
    LinkChild,
    Notify,
    ResolveChild,
    SetFields,
    SetServices,
    SetStage,
)
from connector.core.write_settings import JiraWrite
from connector.platforms.base import ApplyResult, Resolver, marker_tag
from connector.platforms.errors import PlatformError
from connector.platforms.jira.cache import IssueCache
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.fields import (
    STAGE_ORDER,
    JiraFields,
    first_name,
    flag_on,
    same_issue_type,
    same_link_type,
)
from connector.platforms.jira.issues import IssueWriter


class Dependency(Exception):
    """An action cannot run because an action it depends on has not succeeded."""


class ApplyContext:
    """Per-``apply`` bookkeeping: parents created so far (synthetic id -> real id) and failed creations."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self.created: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.reviews: dict[str, str] = {}
        """Major incident id -> the issue its review tasks hang on (its post-incident review, else itself)."""
        self.failed_reviews: dict[str, str] = {}

    def issue_id(self, target: str) -> str:
        """The issue id of ``target``: created in this apply, resolved by the caller, or the target itself."""
        if target in self.created:
            return self.created[target]
        if target in self.failed:
            raise Dependency(f"depends on {self.failed[target]}, which failed")
        resolved = self._resolve(target)
        if resolved:
            return resolved
        if target.startswith("new-"):
            raise Dependency(f"the major incident {target} has not been created yet")
        return target


class JiraWriter:
    """``apply`` for Jira."""

    def __init__(self, issues: IssueWriter, fields: JiraFields, discovery: JiraDiscovery, cache: IssueCache,
                 write: JiraWrite, project: str) -> None:
        self._issues = issues
        self._fields = fields
        self._discovery = discovery
        self._cache = cache
        self._write = write
        self._project = project

    def apply(self, actions: Sequence[Action], resolve: Resolver,
              uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` in order, one request at a time (so writes to one issue never overlap), and
        report each. ``uncertain`` actions read the platform first and skip what is already there."""
        self._discovery.ensure()
        ctx = ApplyContext(resolve)
        self._issues.start()
        # Links read their child first when uncertain (a lost state makes every action uncertain): one search
        # per 50 children instead of a read each.
        self._issues.prefetch([ctx.issue_id(a.target) for a in actions
                               if isinstance(a, LinkChild) and a.key in uncertain and not a.target.startswith("new-")])
        handlers: dict[type, Callable[[Any, ApplyContext, bool], ApplyResult]] = {
            DeclareMajor: self._apply_declare, CreateParent: self._apply_create_parent, LinkChild: self._apply_link,
            AddNote: self._apply_note, SetFields: self._apply_fields, SetStage: self._apply_stage,
            CreateTask: self._apply_task, CreateChange: self._apply_change, ResolveChild: self._apply_resolve,
            AddStakeholders: self._apply_stakeholders, SetServices: self._apply_services,
            CreateReview: self._apply_review,
        }
        results: list[ApplyResult] = []
        for action in actions:
            handler = handlers.get(type(action))
            if isinstance(action, Notify):
                result = ApplyResult(action.key, "skipped", detail="not a platform write", retryable=False)
            elif handler is None:
                result = ApplyResult(action.key, "failed", detail=f"unsupported action {type(action).__name__}",
                                     retryable=False)
            else:
                self._issues.acting = action.key
                try:
                    result = handler(action, ctx, action.key in uncertain)
                except Dependency as exc:
                    result = ApplyResult(action.key, "failed", detail=str(exc), retryable=True)
                except PlatformError as exc:
                    result = ApplyResult(action.key, "failed", detail=str(exc), retryable=exc.retryable)
                finally:
                    self._issues.acting = None
            if isinstance(action, CreateParent):
                if result.status != "failed" and result.created_id:
                    ctx.created[action.target] = result.created_id
                else:
                    ctx.failed[action.target] = action.key
            if isinstance(action, CreateReview) and result.status == "failed":
                ctx.failed_reviews[action.target] = action.key
            results.append(result)
        self._issues.edits.flush_all()
        failed, self._issues.edits.failed = self._issues.edits.failed, {}
        return [ApplyResult(r.key, "failed", created_id=r.created_id, created_key=r.created_key,
                            detail=f"{r.detail}; " * bool(r.detail) + str(failed[r.key]),
                            retryable=failed[r.key].retryable) if r.key in failed else r for r in results]

    def _apply_declare(self, action: DeclareMajor, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        status, detail = self._declare(issue_id, action.mode, action.marker, action.fields, marker_tag(action.key),
                                       action.rule, fresh=uncertain)
        return ApplyResult(action.key, status, detail=detail)

    def _apply_create_parent(self, action: CreateParent, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        tag = marker_tag(action.key)
        found = self._issues.find_tagged(tag) if uncertain else None
        if found is not None:
            issue_id, key = str(found["id"]), str(found.get("key", ""))
            status, detail = self._declare(issue_id, action.mode, action.marker, {}, tag, action.rule, fresh=True)
            return ApplyResult(action.key, status, created_id=issue_id, created_key=key,
                               detail=f"found {key}, created earlier" + (f"; {detail}" if detail else ""))
        incident = (self._discovery.ensure().get("issue_types") or {}).get("incident")
        if not incident:
            return ApplyResult(action.key, "failed", retryable=False,
                               detail=f"issue type {self._write.issue_type!r} does not exist on the site")
        fields, separate, unwritable = self._issues.field_changes(action.fields, None)
        fields.setdefault("summary", "Major incident")
        fields.update({"project": {"key": self._project}, "issuetype": {"id": incident["id"]}})
        # Not "declared" yet: a crash before the flag is set must not read back as a human rejection.
        prop = {"marker": action.marker, "rule": action.rule, "created_by": tag}
        issue_id, key = self._issues.create_issue(fields, tag, prop)
        try:
            status, detail = self._declare(issue_id, action.mode, action.marker,
                                           {k: v for k, v in separate.items() if k == "assignee"}, tag, action.rule,
                                           fresh=True)
        except PlatformError as exc:
            # Keep the id in the ledger: the re-drive finds the issue by its tag and flags it then.
            return ApplyResult(action.key, "failed", created_id=issue_id, created_key=key, retryable=exc.retryable,
                               detail=f"created {key} but could not flag it: {exc}")
        notes = [f"created {key}"] + ([detail] if detail else [])
        if unwritable:
            notes.append(f"not written (no Jira field): {', '.join(unwritable)}")
        return ApplyResult(action.key, "applied", created_id=issue_id, created_key=key, detail="; ".join(notes))

    def _apply_link(self, action: LinkChild, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        child_id = ctx.issue_id(action.target)
        parent_id = ctx.issue_id(action.parent)
        link_type = self._discovery.ensure()["link_types"]["child"]
        child = self._issues.current(child_id, fresh=uncertain)
        if self._issues.has_link(child, link_type, parent_id, "inwardIssue"):
            return ApplyResult(action.key, "skipped", detail="already linked")
        # The link is the marker ("MAJOR causes CHILD" is read back as the child's parent): one request a child.
        self._issues.link(link_type, parent_id, child_id)
        parent, linked = self._issues.key_of(parent_id) or parent_id, self._issues.key_of(child_id) or child_id
        return ApplyResult(action.key, "applied", detail=f"{parent} {link_type['outward']} {linked}")

    def _apply_note(self, action: AddNote, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        tag = marker_tag(action.key)
        if uncertain and self._issues.comment_tagged(issue_id, tag, text=None if action.internal else action.text):
            return ApplyResult(action.key, "skipped", detail="comment already there")
        self._issues.add_comment(issue_id, action.text, tag, action.internal)
        return ApplyResult(action.key, "applied")

    def _apply_fields(self, action: SetFields, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        current = self._issues.current(issue_id, fresh=True) if uncertain else self._cache.get(issue_id)
        fields, separate, unwritable = self._issues.field_changes(action.fields, current)
        wrote: list[str] = []
        if fields:
            self._issues.edit(issue_id, {"fields": fields})
            wrote.extend(fields)
        if separate.get("assignee"):
            self._issues.assign(issue_id, str(separate["assignee"]))
            wrote.append("assignee")
        if separate.get("responders"):
            self._issues.add_responders(issue_id, separate["responders"])
            wrote.append("responders")
        if separate.get("state"):
            status = self._issues.status_for(str(separate["state"]))
            now = str((((current or {}).get("fields") or {}).get("status") or {}).get("name", "")).lower()
            if now != status.lower() and self._issues.transition(issue_id, status):
                wrote.append(f"status {status}")
        detail = f"not written (no Jira field): {', '.join(unwritable)}" if unwritable else ""
        if not wrote:
            return ApplyResult(action.key, "skipped", detail=detail or "already set", retryable=False)
        return ApplyResult(action.key, "applied", detail=detail)

    def _apply_stage(self, action: SetStage, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        current = self._issues.current(issue_id, fresh=True) if uncertain else self._cache.get(issue_id)
        stage = str(action.stage).lower()
        stage_field = self._discovery.field("stage")
        if current is not None:
            fields_now = current.get("fields") or {}
            labels = [str(label) for label in fields_now.get("labels") or []]
            if stage_field:
                if (first_name(fields_now.get(stage_field["id"])) or "").lower() == stage:
                    return ApplyResult(action.key, "skipped", detail="stage already set")
            elif self._fields.stage_of(fields_now, labels) == stage:
                return ApplyResult(action.key, "skipped", detail="stage already set")
        if stage_field:
            value: Any = stage.capitalize()
            if stage_field.get("type") == "option":
                value = {"value": value}
            self._issues.edit(issue_id, {"fields": {stage_field["id"]: value}})
        else:
            prefix = self._write.stage_label_prefix
            ops: list[dict[str, str]] = [{"remove": prefix + other} for other in STAGE_ORDER if other != stage]
            ops.append({"add": prefix + stage})
            self._issues.edit(issue_id, {"update": {"labels": ops}})
        return ApplyResult(action.key, "applied")

    def _create_linked(self, action: Action, ctx: ApplyContext, uncertain: bool, kind: str, summary: str,
                       description: str, owner: str | None = None, due: datetime | None = None,
                       to: str | None = None) -> ApplyResult:
        """A change, post-incident review or review task issue (``kind``: ``change``, ``review``, ``task``) for the
        major incident ``action.target``, linked to it (or to ``to``: a task to its review)."""
        mi_id = ctx.issue_id(action.target)
        to_id = to or mi_id
        disc = self._discovery.ensure()
        link_type = disc["link_types"]["change" if kind == "change" else "review"]
        tag = marker_tag(action.key)
        found = self._issues.find_tagged(tag) if uncertain else None
        if found is not None:
            # Created by a run that died before its other requests: link it, and give it its owner unless it
            # has one (a person's choice stays).
            issue_id, key = str(found["id"]), str(found.get("key", ""))
            detail = f"found {key}, created earlier"
            if not self._issues.has_link(found, link_type, to_id, "inwardIssue"):
                self._issues.link(link_type, to_id, issue_id)
            if owner and not (found.get("fields") or {}).get("assignee"):
                detail += self._give_owner(issue_id, owner)
            return ApplyResult(action.key, "skipped", created_id=issue_id, created_key=key, detail=detail)
        issue_type = disc["issue_types"].get(kind)
        if not issue_type:
            setting = {"review": "review_issue_type", "task": "review_task_type"}.get(kind, "change_issue_type")
            return ApplyResult(action.key, "failed", retryable=False,
                               detail=f"issue type {getattr(self._write, setting)!r} ({setting}) does not exist on the site")
        fields: dict[str, Any] = {"project": {"key": self._project}, "issuetype": {"id": issue_type["id"]},
                                  "summary": summary[:255]}
        if due is not None:
            description = f"{description}\nDue: {due:%Y-%m-%d}".strip()
            if disc["fields"].get("duedate"):
                fields["duedate"] = f"{due:%Y-%m-%d}"
        if description:
            fields["description"] = self._issues.text(description)
        prop = {"kind": kind, "for": mi_id, "for_key": self._issues.key_of(mi_id), "rule": action.rule, "created_by": tag}
        issue_id, key = self._issues.create_issue(fields, tag, prop)
        self._issues.link(link_type, to_id, issue_id)
        detail = f"created {key}" + (self._give_owner(issue_id, owner) if owner else "")
        return ApplyResult(action.key, "applied", created_id=issue_id, created_key=key, detail=detail)

    def _give_owner(self, issue_id: str, owner: str) -> str:
        """Assign a record the connector created to its owner; what to add to the result's detail."""
        try:
            self._issues.assign(issue_id, owner)
        except PlatformError as exc:
            # The record exists and is linked; a rerun would find it by its tag, so do not fail it.
            return f"; owner {owner!r} not assigned: {exc}"
        return ""

    def _apply_task(self, action: CreateTask, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        review = self._review_of(ctx, action.target)
        return self._create_linked(action, ctx, uncertain, "task", action.title, action.description,
                                   owner=action.owner, due=action.due, to=review)

    def _review_of(self, ctx: ApplyContext, target: str) -> str:
        """The issue the review tasks of the major incident ``target`` hang on: its post-incident review (created
        in this apply, or found among its links), else the major incident itself."""
        mi_id = ctx.issue_id(target)
        if target in ctx.failed_reviews:
            raise Dependency(f"depends on {ctx.failed_reviews[target]}, which failed")
        if mi_id not in ctx.reviews:
            review_type = self._discovery.ensure()["issue_types"].get("review")
            link_type = self._discovery.ensure()["link_types"]["review"]
            found = None
            if review_type and self._write.post_incident_review:
                mi = self._issues.current(mi_id, fresh=True)
                found = next((str(link["outwardIssue"]["id"]) for link in (mi.get("fields") or {}).get("issuelinks") or []
                              if same_link_type(link, link_type) and isinstance(link.get("outwardIssue"), dict)
                              and same_issue_type(((link["outwardIssue"].get("fields") or {}).get("issuetype") or {}),
                                                  review_type)), None)
            ctx.reviews[mi_id] = found or mi_id
        return ctx.reviews[mi_id]

    def _apply_review(self, action: CreateReview, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        mi_id = ctx.issue_id(action.target)
        if not self._discovery.ensure()["issue_types"].get("review"):
            ctx.reviews[mi_id] = mi_id
            return ApplyResult(action.key, "skipped", retryable=False,
                               detail=f"no post-incident review issue type ({self._write.review_issue_type!r}) on the "
                                      "site: the review tasks are linked to the major incident")
        result = self._create_linked(action, ctx, uncertain, "review", action.title, action.description,
                                     owner=action.owner)
        if result.created_id:
            ctx.reviews[mi_id] = result.created_id
        return result

    def _apply_stakeholders(self, action: AddStakeholders, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        missing, how = self._issues.add_stakeholders(issue_id, list(action.people))
        unknown = f"no single user of the site matches {', '.join(map(repr, missing))}" if missing else ""
        if not how:
            return ApplyResult(action.key, "failed", retryable=False, detail=unknown)
        added = len(action.people) - len(missing)
        return ApplyResult(action.key, "applied",
                           detail=f"{added} {'person' if added == 1 else 'people'} added {how}"
                                  + (f"; {unknown}" if unknown else ""))

    def _apply_services(self, action: SetServices, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        field = self._discovery.field("services")
        if not field or not self._write.affected_services:
            return ApplyResult(action.key, "skipped", retryable=False, detail="no Affected services field on the site")
        known = {**(self._discovery.ensure().get("service_ids") or {}), **self._write.services}
        lowered = {name.lower(): ident for name, ident in known.items()}
        ids = [lowered[s.lower()] for s in action.services if s.lower() in lowered]
        missing = [s for s in action.services if s.lower() not in lowered]
        # Services a human listed stay: the services this run last read, plus ours (no write of ours touched them).
        current = self._issues.current(issue_id, fresh=True) if uncertain else self._cache.last_known(issue_id)
        listed = [str(item.get("id")) for item in ((current or {}).get("fields") or {}).get(field["id"]) or []
                  if isinstance(item, dict) and item.get("id")]
        wanted = listed + [i for i in dict.fromkeys(ids) if i not in listed]
        unknown = f"no JSM service named {', '.join(map(repr, missing))} (name it in write.services)" if missing else ""
        if wanted == listed:
            return ApplyResult(action.key, "skipped", retryable=False, detail=unknown or "already listed")
        self._issues.edit(issue_id, {"fields": {field["id"]: [{"id": i} for i in wanted]}})
        return ApplyResult(action.key, "applied", detail=unknown)

    def _apply_change(self, action: CreateChange, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        extra = [f"Change type: {action.change_type}"] + ([f"Group: {action.group}"] if action.group else [])
        description = "\n".join([action.description, *extra]).strip()
        return self._create_linked(action, ctx, uncertain, "change", action.title, description)

    def _apply_resolve(self, action: ResolveChild, ctx: ApplyContext, uncertain: bool) -> ApplyResult:
        child_id = ctx.issue_id(action.target)
        parent_id = ctx.issue_id(action.parent)
        # Always read: a human may have resolved (or closed) it since the last poll.
        child = self._issues.current(child_id, fresh=True)
        category = str((((child.get("fields") or {}).get("status") or {}).get("statusCategory") or {}).get("key", ""))
        tag = marker_tag(action.key)
        parent = self._issues.key_of(parent_id) or parent_id
        text = action.notes.strip() or f"Resolved with major incident {parent}."
        prop = self._fields.property(child)
        if category == "done":
            # Resolved by this action before its note went out (the property says so): add the note now.
            if uncertain and prop.get("resolved_by") == tag and not self._issues.comment_tagged(child_id, tag):
                self._issues.add_comment(child_id, text, tag, True)
                return ApplyResult(action.key, "applied", detail=f"resolved with {parent} earlier; note added")
            return ApplyResult(action.key, "skipped", detail="already resolved")
        self._issues.transition(child_id, self._write.resolve_status,
                                properties=[{"key": self._write.property_key, "value": {**prop, "resolved_by": tag}}])
        # The note is its own internal comment: a comment inside the transition could go out public.
        self._issues.add_comment(child_id, text, tag, True)
        return ApplyResult(action.key, "applied", detail=f"resolved with {parent}")

    def _declare(self, issue_id: str, mode: str, marker: str, extra: dict[str, Any], tag: str, rule: str | None,
                 fresh: bool) -> tuple[Literal["applied", "skipped"], str]:
        """Flag ``issue_id`` as a major incident (field where the site has one, else label); returns
        ``(status, detail)``. A major incident a human un-flagged is left alone."""
        # Data Center search returns no entity properties: read the issue with its property before merging.
        issue = self._issues.current(issue_id, fresh or not self._issues.cloud)
        fields_now = issue.get("fields") or {}
        labels = [str(label) for label in fields_now.get("labels") or []]
        derived = self._fields.derived(issue)
        if derived["_major"] == "rejected":
            return "skipped", "a human removed the major incident flag; not declared again"
        fields, separate, unwritable = self._issues.field_changes(extra, issue)
        add: list[str] = []
        wrote = False
        major = self._discovery.field("major")
        flagged = bool(major) and flag_on(fields_now.get(major["id"] if major else ""))
        # The flag first: a crash after our labels and property but before the flag would read back as a
        # human rejection. JSM's flag is set through the Incidents API (a REST write of the field is refused);
        # a site without it (Data Center, a Standard plan) carries the label instead.
        if not flagged and major and self._issues.set_major(issue_id):
            wrote = True
        elif not flagged and self._write.major_label not in labels:
            add.append(self._write.major_label)
        proposed = self._write.proposed_label
        if mode == "propose" and derived["_major"] != "accepted" and proposed not in labels:
            add.append(proposed)
        declared_label = self._write.declared_label
        if declared_label not in labels:
            add.append(declared_label)
        old = self._fields.property(issue)
        prop = {**old, "marker": marker, "declared": True, "mode": mode, "rule": rule, "declared_by": tag}
        body: dict[str, Any] = {}
        if fields:
            body["fields"] = fields
        if add:
            body["update"] = {"labels": [{"add": label} for label in add]}
        if prop != old:
            body["properties"] = [{"key": self._write.property_key, "value": prop}]
        wrote = wrote or bool(body)
        if body:
            self._issues.edit(issue_id, body)
        if separate.get("assignee"):
            self._issues.assign(issue_id, str(separate["assignee"]))
            wrote = True
        if separate.get("responders"):
            self._issues.add_responders(issue_id, separate["responders"])
            wrote = True
        if separate.get("state"):
            self._issues.transition(issue_id, self._issues.status_for(str(separate["state"])))
            wrote = True
        detail = f"not written (no Jira field): {', '.join(unwritable)}" if unwritable else ""
        return ("applied" if wrote else "skipped"), detail or ("" if wrote else "already declared")


__all__ = ["ApplyContext", "Dependency", "JiraWriter"]
