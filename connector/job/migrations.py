"""Upgrades of the state store's contents that SQL alone cannot express (run by :class:`StateStore` inside the
migration's transaction, see :data:`connector.job.store.MIGRATIONS`).

Schema 2 replaced the registry record's ``facts`` dict (string keys, ISO strings for times) with typed parts
(:mod:`connector.detection.process_state`). :func:`record_v1_to_v2` moves every key any version wrote to its
new place; a value read back under its new name means what it meant under the old one, so the upgrade changes
no behaviour. Keys no version wrote are left behind (``title`` and ``review_tasks_done`` were read, never
written); the count of review tasks that early versions kept as ``review_tasks`` becomes the number planned.
"""

from __future__ import annotations

import json
from typing import Any

from connector.detection.registry import MIRecord
from connector.job.statedb import StateDb, StateError

_DECLARATION = ("first_opened_at", "declared_at", "detected_at", "triggered_by", "group_fields", "mode", "service")
_READING = ("major", "state", "resolved_at")
_FOLLOWUP = ("followed_at", "change_state", "change_key", "review_open")
_COMMS = ("declared_sent", "last_update", "updates_sent")
_CONTAINMENT = ("contained", "contained_at", "manager", "manager_source", "team", "initial", "ooh_checked",
                "ooh_routed")
_RESOLUTION = {"resolution": "entered", "resolution_at": "entered_at", "change": "change",
               "change_linked_at": "change_linked_at", "change_planned": "change_planned",
               "change_title": "change_title", "change_state_seen": "change_state_seen",
               "change_done_noted": "change_done_noted"}
_MAINTENANCE = {"maintained": "maintained", "mi_resolved_at": "resolved_at", "review_planned": "review_planned",
                "review_tasks_planned": "review_tasks_planned", "waiting_noted": "waiting_noted"}
_CLOSURE = ("closed", "closed_at")
_PROGRESS = {"epoch": "epoch", "adopted": "adopted", "seen_state": "seen_state", "reopened_at": "reopened_at",
             "stage_keys": "stage_keys", "stage_human_at": "stage_human_at", "process_done": "done"}
_OWNERSHIP = ("owned", "human", "human_at")


V1_KEYS = frozenset({*_DECLARATION, *_READING, *_FOLLOWUP, *_COMMS, *_CONTAINMENT, *_RESOLUTION, *_MAINTENANCE,
                     *_CLOSURE, *_PROGRESS, *_OWNERSHIP, "process", "rota_seq", "rota_next", "stage_event_at",
                     "timeline", "review_tasks"})
"""Every ``facts`` key a version of schema 1 wrote: each has a place in schema 2."""


def _pick(facts: dict[str, Any], names: Any) -> dict[str, Any]:
    pairs = names.items() if isinstance(names, dict) else ((name, name) for name in names)
    return {new: facts[old] for old, new in pairs if old in facts and facts[old] is not None}


def _stage_events(events: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"maintenance": {}, "closed": {}}
    for name, at in events.items():
        stage, _, round_ = name.partition(":")
        if round_:
            out[stage][int(round_)] = at
        else:
            out[stage] = at
    return out


def facts_v1_to_v2(facts: dict[str, Any]) -> dict[str, Any]:
    """The typed parts of a record (as JSON-ready data) from its schema 1 ``facts``."""
    facts = dict(facts)
    review = facts.pop("review_tasks", None)
    if isinstance(review, int):  # early versions: the number planned
        facts.setdefault("review_tasks_planned", review)
        review = None
    rota = None
    if facts.get("rota_seq"):
        rota = {"seq": facts["rota_seq"], "next": facts.get("rota_next", 0)}
    progress = {**_pick(facts, _PROGRESS), "started": "process" in facts,
                "stage_events": _stage_events(facts.get("stage_event_at") or {}),
                "comms": _pick(facts, _COMMS),
                "containment": {**_pick(facts, _CONTAINMENT), "rota": rota},
                "resolution": _pick(facts, _RESOLUTION),
                "maintenance": _pick(facts, _MAINTENANCE),
                "closure": _pick(facts, _CLOSURE)}
    return {
        "declaration": _pick(facts, _DECLARATION),
        "reading": _pick(facts, _READING),
        "followup": {**_pick(facts, _FOLLOWUP), "review_tasks": review if isinstance(review, dict) else None},
        "progress": progress,
        "ownership": _pick(facts, _OWNERSHIP),
        "timeline": list(facts.get("timeline") or []),
    }


def record_v1_to_v2(text: str) -> str:
    """A registry record as schema 2 keeps it, from its schema 1 JSON (validated: a record that does not fit
    fails the migration, which then changes nothing)."""
    data = json.loads(text)
    facts = data.pop("facts", None) or {}
    return MIRecord.model_validate({**data, **facts_v1_to_v2(facts)}).to_json()


def upgrade_records_to_v2(db: StateDb) -> None:
    """Schema 2: every registry record's ``facts`` become its typed parts."""
    rows = db.execute("SELECT platform, id, data FROM major_incidents").fetchall()
    for platform, mi_id, data in rows:
        try:
            upgraded = record_v1_to_v2(data)
        except ValueError as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise StateError(f"the state's record of major incident {mi_id} ({platform}) cannot be upgraded to "
                             f"schema 2: {first}",
                             "keep the file for a bug report, move it aside and run again: the next cycle rebuilds "
                             "the state from the markers on the platform") from exc
        db.execute("UPDATE major_incidents SET data = ? WHERE platform = ? AND id = ?", (upgraded, platform, mi_id))


__all__ = ["V1_KEYS", "facts_v1_to_v2", "record_v1_to_v2", "upgrade_records_to_v2"]
