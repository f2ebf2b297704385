"""Humans who edit between the poll and the write: the records an apply is about to change in fields a person
may own are read again right before the PATCH, and what a person changed since the poll is left as it is.

The Table API has no conditional write (no ETag or If-Match), so the adapter compares ``sys_mod_count`` with
the version it polled: one ``sys_idIN`` query for up to :data:`~connector.platforms.servicenow.read.ID_CHUNK`
records. When the version moved on, each guarded column is compared with its polled value; a column a person
changed is not written (the person wins; the planner sees the change in the next poll). A child the connector
is about to resolve is read again even when it was not polled: ServiceNow's parent-to-child resolution sync
may have resolved it meanwhile and copied the parent's resolution code and notes (reference §1.6
"Parent/child sync", §6), which must not be overwritten.
"""

from __future__ import annotations

from typing import Sequence

from connector.platforms.servicenow.fields import ServiceNowFields
from connector.platforms.servicenow.patches import Patch, Run
from connector.platforms.servicenow.query import query_in, stored_text
from connector.platforms.servicenow.read import ID_CHUNK, ServiceNowReader
from connector.platforms.servicenow.records import IncidentTable, RecordCache

Row = dict[str, object]
OPEN = ("new", "in_progress", "on_hold")


class Recheck:
    """Reads the guarded records of an apply again and drops what a person changed since the poll."""

    def __init__(self, reader: ServiceNowReader, table: IncidentTable, cache: RecordCache,
                 fields: ServiceNowFields) -> None:
        self._reader = reader
        self._table = table
        self._cache = cache
        self._fields = fields

    def run(self, run: Run, patches: Sequence[Patch]) -> None:
        """Re-read and compare (see the module); the patches are changed in place."""
        due = [p for p in patches if p.table == self._table.name and p.guards and p.sys_id not in run.fresh
               and (p.sys_id in self._cache or any(g.resolving for g in p.guards.values()))]
        if not due:
            return
        state = self._fields.column("state", "state")
        columns = {"sys_mod_count", "sys_updated_by", state}
        for patch in due:
            for guard in patch.guards.values():
                columns.update(guard.columns)
        fresh = self._read([p.sys_id for p in due], sorted(columns))
        for patch in due:
            now = fresh.get(patch.sys_id)
            if now is not None:
                self._compare(patch, self._cache.get(patch.sys_id), now, state)

    def _read(self, ids: list[str], columns: list[str]) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        ident = self._table.id_field
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            chunk = query_in(unique[start:start + ID_CHUNK])
            for row in self._reader.select(self._table.name, f"{ident}IN{chunk}", columns):
                rows[stored_text(row.get(ident))] = row
        return rows

    def _compare(self, patch: Patch, polled: dict[str, object] | None, now: Row, state: str) -> None:
        who = stored_text(now.get("sys_updated_by")) or "someone"
        for index, guard in list(patch.guards.items()):
            if guard.resolving and self._fields.state(now.get(state)) not in OPEN:
                patch.drop(index, None, f"already {self._fields.state(now.get(state))} (by {who}; ServiceNow's "
                                        "parent-to-child sync copies the parent's resolution): left as it is")
                continue
            if polled is None or stored_text(now.get("sys_mod_count")) == stored_text(polled.get("sys_mod_count")):
                continue
            changed = [c for c in guard.columns if c in polled and c in now
                       and stored_text(now.get(c)) != stored_text(polled.get(c))]
            if not changed:
                continue
            why = (f"{', '.join(changed)} changed by {who} since it was read: left as set there (a person's change "
                   "wins)")
            patch.drop(index, None if guard.skips_all(changed) else changed, why)
        if polled is not None:
            self._cache.remember([{**polled, **now}])


__all__ = ["Recheck"]
