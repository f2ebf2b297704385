"""The write verbs: each action becomes field writes and journal entries on a record (collected into one PATCH
per record, sent by :class:`~connector.platforms.servicenow.patches.PatchSender`) or a created record. What the
adapter already knows to be true is not written; an uncertain action reads first.

Markers never take a value another tool owns: a declared incident carries its marker in our own column when the
instance has it, else in a line of the declaration's work note; the correlation field (``correlation_id``,
which monitoring and event tools de-duplicate on) is written only on records the connector creates."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from connector.core.actions import (
    Action,
    AddNote,
    CreateChange,
    CreateParent,
    CreateTask,
    DeclareMajor,
    LinkChild,
    Notify,
    ResolveChild,
    SetFields,
    SetStage,
)
from connector.core.ticket import OPEN_STATES
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import ApplyResult, Resolver, marker_tag
from connector.platforms.errors import ClientError, PlatformError, UnexpectedResponse
from connector.platforms.servicenow.client import MaybeApplied, ServiceNowClient
from connector.platforms.servicenow.discovery import ServiceNowDiscovery
from connector.platforms.servicenow.fields import ServiceNowFields, UnknownReference
from connector.platforms.servicenow.patches import Guard, Note, Patch, PatchSender, Run, refusal
from connector.platforms.servicenow.query import query_field, query_time, query_value, stored_text
from connector.platforms.servicenow.records import IncidentTable, RecordCache

Row = dict[str, Any]


class ServiceNowWriter:
    """``apply`` for ServiceNow: plans every action, then sends the collected PATCHes."""

    def __init__(self, client: ServiceNowClient, write: ServiceNowWrite, table: IncidentTable, cache: RecordCache,
                 discovery: ServiceNowDiscovery, fields: ServiceNowFields, sender: PatchSender,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._client = client
        self._clock = clock
        self._write = write
        self._table = table
        self._cache = cache
        self._discovery = discovery
        self._fields = fields
        self._sender = sender
        self._handlers: dict[type, Callable[[Run, int, Any], None]] = {
            DeclareMajor: self._declare, CreateParent: self._create_parent, LinkChild: self._link,
            AddNote: self._note, SetFields: self._set_fields, SetStage: self._set_stage,
            CreateTask: self._create_task, CreateChange: self._create_change, ResolveChild: self._resolve_child,
        }

    def apply(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` idempotently and report each (see the protocol).

        Creates are sent as they come; field writes and journal entries are collected per record and sent
        as one PATCH per record at the end (placed at the record's first write), many of them through the
        Batch API. What the adapter already knows to be true (from the records it read) is not written.
        """
        self._discovery.facts()
        run = Run(actions, resolve, uncertain)
        for index, action in enumerate(actions):
            try:
                self._plan_action(run, index, action)
            except (PlatformError, ValueError) as exc:
                run.results[index] = _failed(action.key, exc)
                if isinstance(action, CreateParent):
                    run.failed_targets.add(action.target)
        self._sender.flush(run)
        return [run.results[index] for index in range(len(actions))]

    def _plan_action(self, run: Run, index: int, action: Action) -> None:
        if isinstance(action, Notify):
            run.results[index] = ApplyResult(action.key, "skipped", detail="not a platform write")
            return
        handler = self._handlers.get(type(action))
        if handler is None:
            raise ClientError(f"the ServiceNow adapter cannot apply {type(action).__name__}")
        handler(run, index, action)

    # -- building blocks ---------------------------------------------------------------------------------

    def _queue(self, run: Run, index: int, action: Action, sys_id: str, fields: dict[str, str],
               note: tuple[str, str] | None = None, result: ApplyResult | None = None,
               verify: Sequence[str] = (), guard: Guard | None = None) -> None:
        """Add writes to the incident's pending PATCH, or report the action skipped when nothing is left.
        A note of an uncertain action is checked against the journal at flush time (one query for many);
        the ``verify`` columns written are read back from the PATCH's own answer; a ``guard`` names the
        columns a person may own, re-read right before the PATCH."""
        if not fields and note is None:
            run.results[index] = result or ApplyResult(action.key, "skipped", detail="already true")
            return
        table = self._table.name
        patch = run.patches.get((table, sys_id))
        if patch is None:
            patch = run.patches[(table, sys_id)] = Patch(table, sys_id)
        patch.fields.update(fields)
        patch.owners.update(dict.fromkeys(fields, index))
        if fields:
            patch.with_fields.add(index)
        if guard is not None and (fields or guard.resolving):
            patch.guards[index] = guard
        for column in verify:
            if column in fields:
                patch.verify[column] = (fields[column], index)
        if note is not None:
            element, text = note
            tag = marker_tag(action.key)
            patch.notes.append(Note(index, element, f"{text}\n[{tag}]", tag, action.key in run.uncertain))
        patch.members.append((index, result or ApplyResult(action.key, "applied")))

    def _current(self, run: Run, action: Action, sys_id: str) -> Row | None:
        """The incident as last read; read now if the action is uncertain and the record was not seen."""
        known = self._cache.get(sys_id)
        if known is None and action.key in run.uncertain:
            answer = self._client.call("GET", f"/table/{self._table.name}/{sys_id}", expect=dict,
                                       params={"sysparm_fields": ",".join(self._table.fields),
                                               "sysparm_display_value": "false",
                                               "sysparm_exclude_reference_link": "true"})
            known = answer.result if isinstance(answer.result, dict) else None
            if known is not None:
                self._cache.remember([known])
                run.fresh.add(sys_id)
        return known

    @staticmethod
    def _unchanged(fields: dict[str, str], current: Row | None) -> dict[str, str]:
        if current is None:
            return fields
        return {name: value for name, value in fields.items() if name not in current or current[name] != value}

    def _find_marked(self, table: str, marker: str, fields: Sequence[str] = ("sys_id", "number")) -> Row | None:
        """The record of ``table`` the connector created with ``marker`` in its correlation field (one
        request), or None.

        The marker is checked in the row returned: an instance drops a query term on a column that does not
        exist or that an ACL hides (reference §2.3, §6), and then answers with any record of the table."""
        marker_field = query_field(self._write.correlation_field)
        answer = self._client.get_page(table, self._client.read_params(
            f"{marker_field}={query_value(marker)}^ORDERBYsys_created_on", list(dict.fromkeys((*fields, marker_field))),
            1))
        rows = [row for row in answer.result if stored_text(row.get(marker_field)) == marker]
        return rows[0] if rows else None

    def _create(self, table: str, payload: dict[str, str], marker: str, answer_fields: Sequence[str] = ()) -> Row:
        """POST one record under the retry policy. A retry after an answer that may have been lost looks the
        marker up first, so a lost answer never creates a second record."""
        maybe_sent = False

        def attempt() -> Row:
            nonlocal maybe_sent
            if maybe_sent:
                found = self._find_marked(table, marker, ("sys_id", "number", *answer_fields))
                if found is not None:
                    return found
            try:
                answer = self._client.attempt("POST", f"/table/{table}", body=payload,
                                              params={"sysparm_fields": ",".join(["sys_id", "number", *answer_fields]),
                                                      "sysparm_exclude_reference_link": "true"})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise
            if not isinstance(answer.result, dict) or not answer.result.get("sys_id"):
                raise UnexpectedResponse("create answer has no sys_id", status=answer.status, method="POST",
                                         path=f"/api/now/table/{table}")
            return answer.result

        return self._client.policy.call(attempt)

    # -- the verbs -----------------------------------------------------------------------------------------

    def _declare(self, run: Run, index: int, action: DeclareMajor) -> None:
        """Propose (or accept) an existing incident as the "Propose major incident" UI action does: the major
        incident state, who proposed it and when, the business impact, and a work note with the reason and
        the impact (reference §1.6, §6). The state is read back from the answer: without the
        ``major_incident_manager`` role an instance keeps the old value and still answers 200."""
        sys_id = run.resolve(action.target)
        current = self._current(run, action, sys_id)
        major_field = self._write.major_field
        target_state = "accepted" if action.mode == "accept" else "proposed"
        fields, notes = self._fields.columns(action.fields)
        now_state = self._fields.major_state(current.get(major_field)) if current else None
        if now_state in ("rejected", "canceled"):
            run.results[index] = ApplyResult(action.key, "skipped", retryable=False,
                                             detail=f"the major incident state is {now_state} (a person decided): not proposed again")
            return
        if now_state not in ("accepted", target_state):
            fields[major_field] = self._fields.major(target_state)
            notes[:0] = self._declaration_lines(action, target_state)
            if now_state in (None, "none"):
                fields.update(self._proposal(action, target_state, current))
        own = self._discovery.facts().get("marker_field")
        if own:
            fields[own] = action.marker
        else:
            # no column of our own: the marker is a line of the work note (rebuild reads it from the journal)
            notes.append(f"Major incident marker: [{action.marker}]")
        note = ("work_notes", "\n".join(notes)) if notes else None
        # a person who changed the major incident state since the poll decided: nothing of this is written;
        # a field of `set` a person changed keeps the person's value
        guard = Guard(tuple(c for c in fields if c != own), decisive=(major_field,))
        self._queue(run, index, action, sys_id, self._unchanged(fields, current), note, verify=[major_field],
                    guard=guard)

    @staticmethod
    def _declaration_lines(action: DeclareMajor | CreateParent, state: str) -> list[str]:
        """The reason and business impact of a declaration, as the propose dialog asks for them."""
        verb = "Proposed as a major incident" if state == "proposed" else "Declared a major incident (accepted)"
        rule = f" (rule {action.rule})" if action.rule else ""
        lines = [f"{verb} by the major incident connector{rule}."]
        if action.reason:
            lines += [f"Reason: {action.reason}.", f"Business impact: {business_impact(action)}."]
        return lines

    def _proposal(self, action: DeclareMajor | CreateParent, state: str, current: Row | None) -> dict[str, str]:
        """Who proposed, when, and the business impact (each column a write setting; see
        :class:`~connector.core.write_settings.ServiceNowWrite`). A business impact a person wrote is kept."""
        out: dict[str, str] = {}
        write = self._write
        if state == "proposed" and write.proposed_by_field:
            try:
                out[write.proposed_by_field] = self._fields.reference("users", self._client.username)
            except UnknownReference:
                pass  # the integration user's own record is not readable: the proposal still stands
        if state == "proposed" and write.proposed_on_field:
            out[write.proposed_on_field] = query_time(self._clock())
        if write.business_impact_field and action.reason and not (current or {}).get(write.business_impact_field):
            out[write.business_impact_field] = business_impact(action)
        return out

    def _create_parent(self, run: Run, index: int, action: CreateParent) -> None:
        if action.key in run.uncertain:
            found = self._find_marked(self._table.name, action.marker)
            if found is not None:
                run.created[action.target] = str(found["sys_id"])
                run.results[index] = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                                 created_key=found.get("number") or None, detail="already created")
                return
        fields, notes = self._fields.columns(action.fields)
        state = "accepted" if action.mode == "accept" else "proposed"
        major_field = self._write.major_field
        fields[major_field] = self._fields.major(state)
        fields.update(self._proposal(action, state, None))
        fields[self._write.correlation_field] = action.marker  # a record we create: the correlation field is ours
        own = self._discovery.facts().get("marker_field")
        if own:
            fields[own] = action.marker
        fields["work_notes"] = "\n".join(self._declaration_lines(action, state) + notes)
        record = self._create(self._table.name, fields, action.marker, answer_fields=(major_field,))
        run.created[action.target] = str(record["sys_id"])
        created_id, created_key = str(record["sys_id"]), record.get("number") or None
        kept = stored_text(record.get(major_field))
        if kept != fields[major_field]:
            # created, but not as a major incident: the links of this cycle still go to it
            run.results[index] = ApplyResult(action.key, "failed", created_id=created_id, created_key=created_key,
                                             detail=f"POST /api/now/table/{self._table.name}: "
                                                    + refusal(major_field, fields[major_field], kept))
            return
        run.results[index] = ApplyResult(action.key, "applied", created_id=created_id, created_key=created_key)

    def _link(self, run: Run, index: int, action: LinkChild) -> None:
        parent = run.resolve(action.parent)
        child = run.resolve(action.target)
        current = self._cache.get(child)
        self._queue(run, index, action, child, self._unchanged({self._write.parent_field: parent}, current))

    def _note(self, run: Run, index: int, action: AddNote) -> None:
        sys_id = run.resolve(action.target)
        self._queue(run, index, action, sys_id, {}, ("work_notes" if action.internal else "comments", action.text))

    def _set_fields(self, run: Run, index: int, action: SetFields) -> None:
        sys_id = run.resolve(action.target)
        canonical = dict(action.fields)
        fields, notes = self._fields.columns(canonical)
        if canonical.get("state") == "resolved":
            for name, value in self._fields.resolution(None).items():
                fields.setdefault(name, value)
        current = self._current(run, action, sys_id)
        note = ("work_notes", "\n".join(notes)) if notes else None
        resolving = canonical.get("state") == "resolved"
        self._queue(run, index, action, sys_id, self._unchanged(fields, current), note,
                    guard=Guard(tuple(fields), resolving=resolving))

    def _set_stage(self, run: Run, index: int, action: SetStage) -> None:
        sys_id = run.resolve(action.target)
        stage_field = self._discovery.facts().get("stage_field")
        if stage_field:
            value = self._fields.stage(action.stage)
            self._queue(run, index, action, sys_id, self._unchanged({stage_field: value}, self._cache.get(sys_id)),
                        guard=Guard((stage_field,)))
            return
        self._queue(run, index, action, sys_id, {}, ("work_notes", f"Major incident stage: {action.stage}"))

    def _create_task(self, run: Run, index: int, action: CreateTask) -> None:
        mi = run.resolve(action.target)
        table = self._write.task_table
        tag = marker_tag(action.key)
        if action.key in run.uncertain:
            found = self._find_marked(table, tag)
            if found is not None:
                run.results[index] = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                                 created_key=found.get("number") or None, detail="already created")
                return
        payload = {self._write.task_parent_field: mi,
                   self._fields.column("title", "short_description"): action.title,
                   self._fields.column("description", "description"): action.description,
                   self._write.correlation_field: tag}
        if action.owner:
            payload[self._fields.column("assignee", "assigned_to")] = self._fields.reference("users", action.owner)
        if action.due is not None:
            payload[self._write.task_due_field] = query_time(action.due)
        record = self._create(table, payload, tag)
        run.results[index] = ApplyResult(action.key, "applied", created_id=str(record["sys_id"]),
                                         created_key=record.get("number") or None)

    def _create_change(self, run: Run, index: int, action: CreateChange) -> None:
        mi = run.resolve(action.target)
        table = self._write.change_table
        tag = marker_tag(action.key)
        found = self._find_marked(table, tag) if action.key in run.uncertain else None
        if found is not None:
            result = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                 created_key=found.get("number") or None, detail="already created")
            record = found
        else:
            payload = {self._fields.column("title", "short_description"): action.title,
                       self._fields.column("description", "description"): action.description,
                       "type": action.change_type,
                       self._write.correlation_field: tag}
            if action.group:
                payload[self._fields.column("assignment_group", "assignment_group")] = self._fields.reference(
                    "groups", action.group)
            record = self._create(table, payload, tag)
            result = ApplyResult(action.key, "applied", created_id=str(record["sys_id"]),
                                 created_key=record.get("number") or None)
        current = self._cache.get(mi)
        if found is not None and current is None:
            current = self._current(run, action, mi)
        link = self._unchanged({self._write.change_link_field: str(record["sys_id"])}, current)
        if link and result.status == "skipped":
            result = ApplyResult(action.key, "applied", created_id=result.created_id, created_key=result.created_key)
        self._queue(run, index, action, mi, link, result=result)

    def _resolve_child(self, run: Run, index: int, action: ResolveChild) -> None:
        child = run.resolve(action.target)
        current = self._current(run, action, child)
        state_column = self._fields.column("state", "state")
        if current is not None and state_column in current:
            state = self._fields.state(current[state_column])
            if state not in OPEN_STATES:
                run.results[index] = ApplyResult(action.key, "skipped", detail=f"child is already {state}")
                return
        resolution = self._fields.resolution(action.notes)
        self._queue(run, index, action, child, resolution, guard=Guard(tuple(resolution), resolving=True))


def business_impact(action: DeclareMajor | CreateParent) -> str:
    """The business impact of a declaration: its reason without the rule ("6 tickets on service=web-shop")."""
    reason = action.reason
    if action.rule and reason.startswith(f"rule {action.rule}: "):
        return reason[len(f"rule {action.rule}: "):]
    return reason


def _failed(key: str, exc: BaseException) -> ApplyResult:
    retryable = bool(getattr(exc, "retryable", False))
    return ApplyResult(key, "failed", detail=str(exc), retryable=retryable)


__all__ = ["ServiceNowWriter"]
