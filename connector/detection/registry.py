"""The major incident registry record: the engine's view of an incident plus the process bookkeeping.
Plain data (no I/O), so the pure modules can use it; the state store persists it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from connector.detection.engine import MajorIncident


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


@dataclass
class MIRecord:
    """A major incident as the connector tracks it (the engine's view plus process bookkeeping)."""

    id: str
    rule: str
    group: list[str]
    started_at: datetime
    declared_at: datetime
    status: str = "open"
    key: str | None = None
    synthetic_id: str | None = None
    stage: str | None = None
    children: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_engine(self) -> MajorIncident:
        """The engine's view of this record."""
        status = self.status if self.status in ("open", "rejected", "closed") else "closed"
        return MajorIncident(self.id, self.rule, tuple(self.group), self.started_at, self.declared_at,
                             status, key=self.key, children=set(self.children))  # type: ignore[arg-type]

    def to_json(self) -> str:
        data = asdict(self)
        data["started_at"] = _iso(self.started_at)
        data["declared_at"] = _iso(self.declared_at)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MIRecord":
        data = json.loads(text)
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["declared_at"] = datetime.fromisoformat(data["declared_at"])
        return cls(**data)
