"""An in-memory platform that fulfils the adapter contract, for sync-cycle tests that are about ordering,
the ledger and crash safety rather than HTTP. Records are canonical dicts; writes are counted."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

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
from connector.core.mapping import Mapping, load_mapping
from connector.core.ticket import Ticket
from connector.platforms.base import ApplyResult, Resolver, Watermark, marker_tag

ROOT = Path(__file__).resolve().parent.parent


class Crash(Exception):
    """Raised by the fake to simulate a process dying in the middle of a cycle."""


class FakePlatform:
    """Canonical records in a dict; ``crash_after`` writes raises :class:`Crash`."""

    name = "fake"
    base_url = "memory://"

    def __init__(self, clock: Any) -> None:
        mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
        assert mapping is not None, errors
        self.mapping: Mapping = mapping
        self.clock = clock
        self.records: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[str]] = {}
        self.writes: list[str] = []
        self._requests = 0
        self.crash_after: int | None = None
        self._seq = 0
        self.history_fields: list[str] = []

    @property
    def requests_sent(self) -> int:
        return self._requests

    def add(self, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        now = self.clock()
        record = {"id": fields.pop("id", f"t{self._seq:04d}"), "key": f"INC{self._seq:05d}", "state": "new",
                  "major": "none", "opened_at": now, "updated_at": now, **fields}
        self.records[record["id"]] = record
        return record

    def _touch(self, record_id: str) -> dict[str, Any]:
        if self.crash_after is not None:
            if self.crash_after <= 0:
                raise Crash()
            self.crash_after -= 1
        record = self.records[record_id]
        record["updated_at"] = self.clock()
        return record

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        if cached is not None:
            return cached
        self._requests += 1
        return {"fake": True}

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        self._requests += 1
        floor = since.updated_at if since else horizon
        rows = sorted((r for r in self.records.values() if r["updated_at"] >= floor), key=lambda r: (r["updated_at"], r["id"]))
        yield from (dict(r) for r in rows)

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Records opened at or after ``since`` with only ``fields`` (the baselines' warm-up); the fields
        asked for are kept in ``history_fields``."""
        self._requests += 1
        self.history_fields = list(fields)
        for record in sorted(self.records.values(), key=lambda r: (r["opened_at"], r["id"])):
            if record["opened_at"] >= since:
                yield {k: v for k, v in record.items() if k in fields or k in ("id", "opened_at")}

    def fetch_marked(self) -> list[dict[str, Any]]:
        self._requests += 1
        return [dict(r) for r in self.records.values() if str(r.get("marker") or "").startswith("mim:")]

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The created change and review tasks of each major incident (one request for all)."""
        self._requests += 1
        out: dict[str, dict[str, Any]] = {i: {"change": None, "tasks": []} for i in mi_ids}
        for record in sorted(self.records.values(), key=lambda r: r["id"]):
            entry = out.get(record.get("_for") or "")
            if entry is None:
                continue
            item = {"id": record["id"], "key": record["key"], "state": record["state"]}
            if record.get("_kind") == "change":
                entry["change"] = item
            elif record.get("_kind") == "task":
                entry["tasks"].append({**item, "title": record.get("title", "")})
        return out

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        data = {k: v for k, v in raw.items() if not k.startswith("_")}
        return Ticket(**data)

    def apply(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        results = []
        for action in actions:
            self._requests += 1
            results.append(self._apply(action, resolve, uncertain))
        return results

    def _apply(self, action: Action, resolve: Resolver, uncertain: frozenset[str]) -> ApplyResult:
        target = resolve(action.target)
        if target is None and not isinstance(action, CreateParent):
            return ApplyResult(action.key, "failed", detail="unknown target")
        if isinstance(action, CreateParent):
            existing = [r for r in self.records.values() if r.get("marker") == action.marker]
            if existing:
                return ApplyResult(action.key, "skipped", created_id=existing[0]["id"], created_key=existing[0]["key"])
            if self.crash_after is not None and self.crash_after <= 0:
                raise Crash()
            record = self.add(**{k: v for k, v in action.fields.items() if k in Ticket.model_fields},
                              marker=action.marker, major="proposed" if action.mode == "propose" else "accepted")
            self.writes.append(action.key)
            return ApplyResult(action.key, "applied", created_id=record["id"], created_key=record["key"])
        assert target is not None
        if isinstance(action, DeclareMajor):
            if action.key in uncertain and self.records[target].get("marker") == action.marker:
                return ApplyResult(action.key, "skipped", detail="already declared")
            record = self._touch(target)
            record.update(major="proposed" if action.mode == "propose" else "accepted", marker=action.marker, **action.fields)
        elif isinstance(action, LinkChild):
            parent = resolve(action.parent)
            if parent is None:
                return ApplyResult(action.key, "failed", detail="parent not created yet")
            if self.records[target].get("parent") == parent:
                return ApplyResult(action.key, "skipped")
            self._touch(target)["parent"] = parent
        elif isinstance(action, AddNote):
            tag = marker_tag(action.key)
            if action.key in uncertain and any(tag in n for n in self.notes.get(target, [])):
                return ApplyResult(action.key, "skipped")
            self._touch(target)
            self.notes.setdefault(target, []).append(f"{action.text}\n[{tag}]")
        elif isinstance(action, SetFields):
            self._touch(target).update(action.fields)
        elif isinstance(action, SetStage):
            if self.records[target].get("stage") == action.stage:
                return ApplyResult(action.key, "skipped")
            self._touch(target)["stage"] = action.stage
        elif isinstance(action, (CreateTask, CreateChange)):
            tag = marker_tag(action.key)
            if any(r.get("marker") == tag for r in self.records.values()):
                return ApplyResult(action.key, "skipped")
            self._touch(target)
            record = self.add(title=getattr(action, "title", ""), marker=tag, parent=None,
                              _kind="task" if isinstance(action, CreateTask) else "change", _for=target)
            return ApplyResult(action.key, "applied", created_id=record["id"])
        elif isinstance(action, ResolveChild):
            self._touch(target).update(state="resolved", resolved_at=self.clock())
        elif isinstance(action, Notify):
            return ApplyResult(action.key, "skipped", detail="not a platform write")
        self.writes.append(action.key)
        return ApplyResult(action.key, "applied")

    def close(self) -> None:
        return None


class Clock:
    """A manual UTC clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start if start.tzinfo else start.replace(tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        from datetime import timedelta

        self.now = self.now + timedelta(**kwargs)
        return self.now
