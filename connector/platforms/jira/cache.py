"""The issues the Jira adapter has read (newest kept), their keys, and the ids written lately."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

CACHE_SIZE = 5000
MAX_RECONCILE = 50
"""Ids per ``reconcileIssues`` (Jira Cloud's limit), so also per ``id IN (...)`` search."""


class IssueCache:
    """Issues as last read (by id, at most ``CACHE_SIZE``), issue keys by id, and the ids written since the last
    poll: Cloud search is eventually consistent, so the next poll asks Jira to reconcile them."""

    def __init__(self) -> None:
        self._issues: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stale: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, str] = {}
        self.written: deque[str] = deque(maxlen=MAX_RECONCILE)

    def remember(self, issue: dict[str, Any]) -> None:
        """Keep ``issue`` as the latest known state (and its key)."""
        ident = str(issue.get("id", ""))
        if not ident:
            return
        if issue.get("key"):
            self._keys[ident] = str(issue["key"])
        self._issues[ident] = issue
        self._stale.pop(ident, None)
        self._issues.move_to_end(ident)
        while len(self._issues) > CACHE_SIZE:
            self._issues.popitem(last=False)

    def forget(self, issue_id: str) -> None:
        """After a write the remembered copy is stale; the issue is also reconciled on the next poll."""
        known = self._issues.pop(issue_id, None)
        if known is not None:
            self._stale[issue_id] = known
            while len(self._stale) > CACHE_SIZE:
                self._stale.pop(next(iter(self._stale)))
        self.written.append(issue_id)

    def created(self, issue_id: str, key: str) -> None:
        """An issue the adapter just created."""
        self._keys[issue_id] = key
        self.written.append(issue_id)

    def get(self, issue_id: str) -> dict[str, Any] | None:
        """The issue as last read, or None."""
        return self._issues.get(issue_id)

    def last_known(self, issue_id: str) -> dict[str, Any] | None:
        """The issue as last read, even if the connector wrote to it since (for fields no write of this run
        touched)."""
        return self._issues.get(issue_id) or self._stale.get(issue_id)

    def __contains__(self, issue_id: object) -> bool:
        return issue_id in self._issues

    def key_of(self, issue_id: str) -> str | None:
        """The key of an issue read or created (``ITSM-12``), if known."""
        return self._keys.get(issue_id)


__all__ = ["CACHE_SIZE", "IssueCache", "MAX_RECONCILE"]
