"""Edits of one issue made by several actions of one ``apply`` (the declaration's labels and property, the stage,
the priority, affected services...) sent as one ``PUT /issue/{id}``: Jira has no batch API, and a major incident
declared and contained in one cycle would otherwise cost a PUT per action. Each action is still reported on its
own; when the combined edit fails, every action that contributed to it fails with it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from connector.platforms.errors import PlatformError

Body = dict[str, Any]


@dataclass
class PendingEdit:
    """One issue's combined edit body and the keys of the actions it carries."""

    body: Body
    keys: list[str] = field(default_factory=list)


def merge(into: Body, body: Body) -> bool:
    """Merge ``body`` (``fields``, ``update``, ``properties``) into ``into`` in place; False (and ``into``
    unchanged) when they cannot be one request: the same field set twice in ``update`` with ``set``, or a
    field in ``fields`` of one and ``update`` of the other (Jira refuses a field in both)."""
    fields = {**into.get("fields", {})}
    update = {name: list(ops) for name, ops in into.get("update", {}).items()}
    for name, value in (body.get("fields") or {}).items():
        if name in update:
            return False
        fields[name] = value
    for name, ops in (body.get("update") or {}).items():
        if name in fields:
            return False
        update.setdefault(name, []).extend(ops)
    properties = {p["key"]: p for p in into.get("properties", [])}
    for prop in body.get("properties") or []:
        properties[prop["key"]] = prop
    for name, value in (("fields", fields), ("update", update), ("properties", list(properties.values()))):
        if value:
            into[name] = value
    return True


class EditBuffer:
    """Edits waiting to be sent, by issue id; ``send(issue_id, body)`` makes the request."""

    def __init__(self, send: Callable[[str, Body], None]) -> None:
        self._send = send
        self._pending: dict[str, PendingEdit] = {}
        self.failed: dict[str, PlatformError] = {}
        """Action key -> the error of the combined edit it was part of (read and cleared by the writer)."""

    def add(self, issue_id: str, body: Body, key: str | None) -> None:
        """Queue ``body`` for ``issue_id`` on behalf of the action ``key`` (sent at once when ``key`` is None)."""
        if key is None:
            self.flush(issue_id)
            self._send(issue_id, body)
            return
        pending = self._pending.get(issue_id)
        if pending is not None and not merge(pending.body, body):
            self.flush(issue_id)
            pending = None
        if pending is None:
            self._pending[issue_id] = PendingEdit(copy.deepcopy(body), [key])
        elif key not in pending.keys:
            pending.keys.append(key)

    def pending(self, issue_id: str) -> bool:
        """Whether an edit of ``issue_id`` waits to be sent."""
        return issue_id in self._pending

    def flush(self, issue_id: str) -> None:
        """Send the waiting edit of ``issue_id``; a failure is recorded against its actions, not raised."""
        pending = self._pending.pop(issue_id, None)
        if pending is None:
            return
        try:
            self._send(issue_id, pending.body)
        except PlatformError as exc:
            for key in pending.keys:
                self.failed[key] = exc

    def flush_all(self) -> None:
        """Send every waiting edit."""
        for issue_id in list(self._pending):
            self.flush(issue_id)


__all__ = ["EditBuffer", "PendingEdit", "merge"]
