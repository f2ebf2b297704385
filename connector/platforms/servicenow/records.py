"""The incident table as the adapter reads it (its columns, from the mapping) and the records it has read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from connector.core.mapping import Mapping
from connector.platforms.servicenow.query import query_field

CACHE_LIMIT = 50_000


@dataclass(frozen=True)
class IncidentTable:
    """The table polled and written, its id and update-time columns, and the columns every read asks for."""

    name: str
    id_field: str
    updated_field: str
    fields: tuple[str, ...]

    optional: tuple[str, ...] = ()
    """Columns read when the instance has them (our own stage and marker columns): asking for a column that
    does not exist is harmless (``sysparm_fields`` ignores it, reference §2.2)."""

    @classmethod
    def from_mapping(cls, mapping: Mapping, name: str, extra: Sequence[str | None] = (),
                     optional: Sequence[str | None] = ()) -> "IncidentTable":
        """The columns the mapping reads, plus ``sys_mod_count``, the keyset columns, ``extra`` columns the
        adapter needs and ``optional`` ones it reads when they exist."""
        id_field = query_field(mapping.source("id") or "sys_id")
        updated_field = query_field(mapping.source("updated_at") or "sys_updated_on")
        fields = [query_field(column) for column in mapping.platform_fields()]
        for column in ("sys_mod_count", id_field, updated_field, *extra, *optional):
            if column and query_field(column) not in fields:
                fields.append(column)
        return cls(name, id_field, updated_field, tuple(fields), tuple(c for c in optional if c))


class RecordCache:
    """The incidents read most recently (by sys_id, newest last, at most ``CACHE_LIMIT``): what the adapter
    knows to be true on the platform, so that writes skip what is already there."""

    def __init__(self, id_field: str) -> None:
        self._id_field = id_field
        self._rows: dict[str, dict[str, Any]] = {}

    def remember(self, rows: Sequence[dict[str, Any]]) -> None:
        """Keep ``rows`` as the latest known state of their records."""
        for row in rows:
            sys_id = row.get(self._id_field)
            if not isinstance(sys_id, str):
                continue
            self._rows.pop(sys_id, None)
            self._rows[sys_id] = dict(row)
        while len(self._rows) > CACHE_LIMIT:
            self._rows.pop(next(iter(self._rows)))

    def get(self, sys_id: str) -> dict[str, Any] | None:
        """The record as last read, or None."""
        return self._rows.get(sys_id)

    def __contains__(self, sys_id: object) -> bool:
        return sys_id in self._rows

    def written(self, sys_id: str, fields: dict[str, str]) -> None:
        """Fields just written to a known record."""
        if sys_id in self._rows:
            self._rows[sys_id].update(fields)


__all__ = ["CACHE_LIMIT", "IncidentTable", "RecordCache"]
