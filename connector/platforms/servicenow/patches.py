"""Sending what an ``apply`` collected: one PATCH per record (its field writes and journal entries together),
many of them through the Batch API, each journal entry at most once even when an answer is lost."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from connector.core.actions import Action
from connector.platforms.base import ApplyResult, Resolver, marker_tag
from connector.platforms.errors import (
    ClientError,
    NotFound,
    PermissionDenied,
    PlatformError,
    ResponseAction,
    UnexpectedResponse,
)
from connector.platforms.servicenow.client import Answer, MaybeApplied, ServiceNowClient, as_int, error_for, parse_json
from connector.platforms.servicenow.discovery import ServiceNowDiscovery
from connector.platforms.servicenow.query import PATH_ID, QueryValueError, query_in, shorten, stored_text
from connector.platforms.servicenow.read import ServiceNowReader
from connector.platforms.servicenow.records import IncidentTable, RecordCache

if TYPE_CHECKING:
    from connector.platforms.servicenow.recheck import Recheck

JOURNAL = ("work_notes", "comments")
JOURNAL_CHUNK = 60
"""Records per journal look-up (``element_idIN…``)."""
TAG_PREFIX = marker_tag("")[:4]
BATCH_ROUNDS = 3
"""Batch API calls for one chunk before unserviced items are sent one by one."""


@dataclass
class Note:
    """One journal entry an action adds: ``found`` when it was on the record before this apply (the action
    is then skipped), ``landed`` when it must not be sent (found, or sent by an attempt whose answer was lost)."""

    index: int
    element: str
    text: str
    tag: str
    uncertain: bool
    landed: bool = False
    found: bool = False


@dataclass(frozen=True)
class Guard:
    """Columns of one action that a person may own: re-read right before the PATCH (see
    :mod:`~connector.platforms.servicenow.recheck`). A person's change to a ``decisive`` column (default:
    all of them) skips the whole action; a change to another one leaves out just that column.
    ``resolving``: the action resolves the record, which must still be open."""

    columns: tuple[str, ...]
    decisive: tuple[str, ...] | None = None
    resolving: bool = False

    def skips_all(self, changed: Sequence[str]) -> bool:
        """Whether a person's change to ``changed`` skips the whole action."""
        decisive = self.columns if self.decisive is None else self.decisive
        return any(column in decisive for column in changed)


@dataclass
class Patch:
    """Field writes and journal entries for one record, sent as one PATCH; ``members`` are the actions
    (by index) that ride on it, with the result each gets when it succeeds."""

    table: str
    sys_id: str
    fields: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    members: list[tuple[int, ApplyResult]] = field(default_factory=list)
    with_fields: set[int] = field(default_factory=set)
    verify: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Columns read back from the answer: column -> (the value written, the action that wrote it). A field
    ACL answers 200 and keeps the old value (reference §6), so what matters is checked, not assumed."""
    refused: dict[int, str] = field(default_factory=dict)
    """Actions whose write the instance answered but did not keep, with what it kept."""
    unsure: bool = False
    """An answer to this patch was lost or was a server error after the work may have been done: its notes
    are looked up in the journal before it is sent again."""
    owners: dict[str, int] = field(default_factory=dict)
    """The action (by index) that wrote each field."""
    guards: dict[int, Guard] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    """Actions left out because a person changed the record since it was read, with why."""
    error: PlatformError | None = None

    def drop(self, index: int, columns: Sequence[str] | None, why: str) -> None:
        """Leave out what action ``index`` writes: ``columns`` of it (None: all its fields and notes)."""
        for column, owner in list(self.owners.items()):
            if owner == index and (columns is None or column in columns):
                del self.owners[column]
                self.fields.pop(column, None)
                self.verify.pop(column, None)
        if columns is None:
            self.notes = [note for note in self.notes if note.index != index]
            self.with_fields.discard(index)
            self.skipped[index] = why

    def payload(self) -> dict[str, str]:
        """The PATCH body: the fields, and the journal entries not yet on the record."""
        body = dict(self.fields)
        for element in JOURNAL:
            texts = [note.text for note in self.notes if note.element == element and not note.landed]
            if texts:
                # One PATCH carries one entry per journal field, so notes for the same record are joined.
                body[element] = "\n\n".join(texts)
        return body

    @property
    def path(self) -> str:
        """The record's Table API path."""
        return f"/table/{self.table}/{self.sys_id}"

    @property
    def answer_fields(self) -> str:
        """``sysparm_fields`` of the write: the sys_id and the columns read back."""
        return ",".join(["sys_id", *(column for column in self.verify if column in self.fields)])

    def check(self, result: Any) -> None:
        """Compare the record in a write's answer with what was written (see ``verify``)."""
        row = result if isinstance(result, dict) else {}
        for column, (expected, index) in self.verify.items():
            if column not in self.fields:
                continue
            if column not in row:
                self.refused[index] = f"the answer has no {column}: the instance does not have the column or an ACL hides it"
                continue
            kept = stored_text(row.get(column))
            if kept != expected:
                self.refused[index] = refusal(column, expected, kept)


def refusal(column: str, expected: str, kept: str) -> str:
    """What to say about a write the instance answered with 200 but did not keep."""
    why = "a field ACL or a business rule refused it"
    if column == "major_incident_state" and expected not in ("", "proposed"):
        why = ("a field ACL refused it: accepting a major incident needs the major_incident_manager role for the "
               "integration user (mim doctor lists its roles), or declare with mode propose")
    return f"the instance answered 200 but kept {column} {kept!r} instead of {expected!r}: {why}"


class DependencyFailed(PlatformError):
    """An action depends on a record whose creation failed."""

    retryable = True


class Run:
    """The bookkeeping of one ``apply`` call: results by action index, parents created (synthetic id ->
    sys_id), creations that failed, and the PATCH collected for each record."""

    def __init__(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str]) -> None:
        self.actions = actions
        self.resolve_fn = resolve
        self.uncertain = uncertain
        self.results: dict[int, ApplyResult] = {}
        self.created: dict[str, str] = {}
        self.failed_targets: set[str] = set()
        self.patches: dict[tuple[str, str], Patch] = {}
        self.fresh: set[str] = set()
        """Records read during this apply (nothing to re-read before writing)."""

    def resolve(self, target: str) -> str:
        """The sys_id of ``target`` (a parent created earlier in this run or before), checked for a URL."""
        if target in self.failed_targets:
            raise DependencyFailed(f"{target} was not created in this cycle")
        real = self.created.get(target) or self.resolve_fn(target)
        if real is None and not target.startswith("new-"):
            real = target
        if real is None:
            raise DependencyFailed(f"{target} has not been created yet")
        if not PATH_ID.fullmatch(real):
            raise QueryValueError(f"{shorten(real)!r} is not a ServiceNow sys_id")
        return real


class PatchSender:
    """Sends the PATCHes of a :class:`Run` and settles each action riding on them."""

    def __init__(self, client: ServiceNowClient, reader: ServiceNowReader, discovery: ServiceNowDiscovery,
                 table: IncidentTable, cache: RecordCache, batch: bool, batch_size: int, recheck: "Recheck") -> None:
        self._recheck = recheck
        self._client = client
        self._reader = reader
        self._discovery = discovery
        self._table = table
        self._cache = cache
        self._batch = batch
        self._batch_size = batch_size

    def flush(self, run: Run) -> None:
        """Send every patch of ``run`` (the records a person may have changed re-read first, uncertain notes
        looked up) and record each action's result."""
        patches = list(run.patches.values())
        try:
            self._recheck.run(run, patches)
        except PlatformError as exc:
            for patch in [p for p in patches if p.guards]:
                self._settle(run, patch, exc)
            patches = [p for p in patches if not p.guards]
        try:
            self._find_landed_notes([n for p in patches for n in p.notes if n.uncertain], patches, found=True)
        except PlatformError as exc:
            for patch in patches:
                if any(n.uncertain for n in patch.notes):
                    self._settle(run, patch, exc)
            patches = [p for p in patches if not any(n.uncertain for n in p.notes)]
        for patch in [p for p in patches if not p.payload()]:
            self._settle(run, patch, None)
            patches.remove(patch)
        use_batch = self._batch and self._discovery.facts().get("batch_api", True) and len(patches) > 1
        if use_batch:
            leftover = self._send_batches(patches)
        else:
            leftover = patches
        for patch in leftover:
            try:
                self._send_patch(patch)
            except PlatformError as exc:
                self._settle(run, patch, exc)
            else:
                self._settle(run, patch, None)
        sent_alone = {id(patch) for patch in leftover}
        for patch in patches:
            if id(patch) not in sent_alone:
                self._settle(run, patch, patch.error)

    def _settle(self, run: Run, patch: Patch, error: PlatformError | None) -> None:
        for index, result in patch.members:
            notes = [n for n in patch.notes if n.index == index]
            if error is not None:
                run.results[index] = ApplyResult(result.key, "failed", created_id=result.created_id,
                                                 created_key=result.created_key, detail=str(error),
                                                 retryable=error.retryable)
            elif index in patch.skipped:
                run.results[index] = ApplyResult(result.key, "skipped", created_id=result.created_id,
                                                 created_key=result.created_key, detail=patch.skipped[index])
            elif index in patch.refused:
                run.results[index] = ApplyResult(result.key, "failed", created_id=result.created_id,
                                                 created_key=result.created_key,
                                                 detail=f"PATCH /api/now{patch.path}: {patch.refused[index]}")
            elif notes and all(n.found for n in notes) and index not in patch.with_fields:
                run.results[index] = ApplyResult(result.key, "skipped", created_id=result.created_id,
                                                 created_key=result.created_key, detail="note already on the record")
            else:
                run.results[index] = result
        if error is None and patch.table == self._table.name:
            self._cache.written(patch.sys_id, patch.fields)

    def _send_patch(self, patch: Patch) -> None:
        """One PATCH under the retry policy; a retry after a possibly lost answer drops journal entries that
        already landed (a note must not appear twice)."""
        maybe_sent = patch.unsure

        def attempt() -> None:
            nonlocal maybe_sent
            if maybe_sent:
                self._find_landed_notes(patch.notes, [patch])
            body = patch.payload()
            if not body:
                return
            try:
                answer = self._client.attempt("PATCH", patch.path, body=body,
                                              params={"sysparm_fields": patch.answer_fields,
                                                      "sysparm_exclude_reference_link": "true"})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise
            patch.check(answer.result)

        self._client.policy.call(attempt)

    def _find_landed_notes(self, notes: Sequence[Note], patches: Sequence[Patch], found: bool = False) -> None:
        """Mark ``notes`` already in the journal as landed (``found`` too: they were there before this
        apply). One query per chunk of records, on the indexed ``element_id`` plus our tag prefix, so a huge
        ``sys_journal_field`` is never scanned."""
        pending = [n for n in notes if not n.landed]
        if not pending:
            return
        owner = {id(n): p.sys_id for p in patches for n in p.notes}
        ids = list(dict.fromkeys(owner[id(n)] for n in pending))
        landed: set[tuple[str, str]] = set()
        for start in range(0, len(ids), JOURNAL_CHUNK):
            chunk = query_in(ids[start:start + JOURNAL_CHUNK])
            for row in self._reader.select("sys_journal_field", f"element_idIN{chunk}^valueLIKE{TAG_PREFIX}",
                                           ["element_id", "value"]):
                value = str(row.get("value", ""))
                for note in pending:
                    if note.tag in value and row.get("element_id") == owner[id(note)]:
                        landed.add((owner[id(note)], note.tag))
        for note in pending:
            if (owner[id(note)], note.tag) in landed:
                note.landed = True
                note.found = found

    def _send_batches(self, patches: list[Patch]) -> list[Patch]:
        """Send ``patches`` through the Batch API in chunks; returns those to send one by one (the Batch API
        is unavailable, or items stayed unserviced). Each patch that got an answer carries ``error``."""
        leftover: list[Patch] = []
        for start in range(0, len(patches), self._batch_size):
            chunk = patches[start:start + self._batch_size]
            if self._discovery.facts().get("batch_api", True) is False:
                leftover.extend(chunk)
                continue
            queue = chunk
            wait: float | None = None
            for round_number in range(1, BATCH_ROUNDS + 1):
                if not queue:
                    break
                if round_number > 1:
                    self._pause(round_number - 1, wait)
                try:
                    queue, wait = self._batch_round(queue)
                except (ClientError, PermissionDenied, NotFound):
                    # The Batch API is switched off or not allowed for this user: one PATCH per record.
                    self._discovery.facts()["batch_api"] = False
                    break
                except PlatformError as exc:
                    for patch in queue:
                        patch.error = exc
                    queue = []
            leftover.extend(queue)
        return leftover

    def _pause(self, rounds_done: int, retry_after: float | None) -> None:
        """Wait before the next round: the longest ``Retry-After`` an item gave, else a backoff that grows."""
        policy = self._client.policy
        wait = min(retry_after, policy.max_retry_after) if retry_after is not None else policy.backoff(rounds_done)
        policy.retries += 1
        policy.sleep(wait)

    def _batch_round(self, queue: list[Patch]) -> tuple[list[Patch], float | None]:
        """One Batch API call; returns the patches to try again (unserviced, or a retryable item error) and
        the longest ``Retry-After`` their items asked for. Before sending, the notes of patches whose earlier
        answer may hide a landed write are looked up in the journal (one query for all of them)."""
        maybe_sent = False
        unsure = [p for p in queue if p.unsure]
        if unsure:
            self._find_landed_notes([n for p in unsure for n in p.notes], unsure)

        def attempt() -> tuple[dict[str, Patch], Answer | None]:
            nonlocal maybe_sent
            if maybe_sent:
                self._find_landed_notes([n for p in queue for n in p.notes], queue)
            items: dict[str, Patch] = {}
            requests_: list[dict[str, Any]] = []
            for number, patch in enumerate(queue, start=1):
                body = patch.payload()
                if not body:
                    patch.error = None
                    continue
                items[str(number)] = patch
                requests_.append({
                    "id": str(number), "method": "PATCH",
                    "url": f"/api/now{patch.path}?sysparm_fields={patch.answer_fields}&sysparm_exclude_reference_link=true",
                    "headers": [{"name": "Content-Type", "value": "application/json"},
                                {"name": "Accept", "value": "application/json"}],
                    "body": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii"),
                    # the headers of an item carry its Retry-After when it is rate limited
                    "exclude_response_headers": False,
                })
            if not requests_:
                return items, None
            try:
                answer = self._client.attempt("POST", "/v1/batch",
                                              body={"batch_request_id": str(int(time.time() * 1000)),
                                                    "rest_requests": requests_})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise
            return items, answer

        items, answer = self._client.policy.call(attempt)
        if answer is None:
            return [], None
        data = answer.data if isinstance(answer.data, dict) else {}
        serviced = data.get("serviced_requests")
        if not isinstance(serviced, list):
            raise UnexpectedResponse("batch answer has no serviced_requests", status=answer.status,
                                     method="POST", path="/api/now/v1/batch")
        again: list[Patch] = []
        answered: set[str] = set()
        waits: list[float] = []
        for item in serviced:
            if not isinstance(item, dict) or str(item.get("id")) not in items:
                continue
            patch = items[str(item["id"])]
            answered.add(str(item["id"]))
            error = item_error(item, patch)
            if error is not None and error.retryable:
                patch.unsure = patch.unsure or error.action is ResponseAction.REREAD
                hinted = getattr(error, "retry_after", None)
                if hinted is not None:
                    waits.append(float(hinted))
                patch.error = error  # what the patch fails with if no later round gets through
                again.append(patch)
                continue
            patch.error = error
            if error is None:
                patch.check(item_result(item))
        for ident in data.get("unserviced_requests") or []:
            if str(ident) in items and str(ident) not in answered:
                again.append(items[str(ident)])
                answered.add(str(ident))
        # An item the answer does not mention at all is treated like an unserviced one.
        again.extend(patch for ident, patch in items.items() if ident not in answered)
        return again, (max(waits) if waits else None)


def _item_body(item: dict[str, Any]) -> Any:
    try:
        raw = base64.b64decode(str(item.get("body") or ""), validate=False)
    except (ValueError, TypeError):
        raw = b""
    return parse_json(raw)[1]


def item_result(item: dict[str, Any]) -> Any:
    """The ``result`` of one Batch API item's answer, if any."""
    data = _item_body(item)
    return data.get("result") if isinstance(data, dict) else None


def item_error(item: dict[str, Any], patch: Patch) -> PlatformError | None:
    """The typed error of one Batch API item (its body is base64 JSON)."""
    status = as_int(item.get("status_code")) or 0
    headers = {str(h.get("name")): str(h.get("value")) for h in item.get("headers") or [] if isinstance(h, dict)}
    return error_for(status, headers, _item_body(item), "PATCH", "/api/now" + patch.path)


__all__ = ["DependencyFailed", "Guard", "Note", "Patch", "PatchSender", "Run", "item_error", "item_result", "refusal"]
