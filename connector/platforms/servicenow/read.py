"""Reading incidents: the delta poll, the marked major incidents (state rebuild) and the follow-ups (the
change and the review tasks of each major incident). Every read is a keyset-paged encoded query.

Each incident read carries ``_marker``, the connector's marker as the mapping's ``marker: _marker`` reads it:
our own marker column, else the correlation field when it holds a ``mim:`` marker (a major incident this
connector created, or one an earlier version marked there), else, for the state rebuild, the tagged work
note (:data:`MARKER_NOTE`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Sequence

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import Watermark
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.query import query_field, query_in, query_time, query_value, stored_text
from connector.platforms.servicenow.records import IncidentTable, RecordCache

ID_CHUNK = 100
"""Ids per ``IN`` condition (the URL of a GET must stay short)."""
JOURNAL_CHUNK = 60
"""Records per journal look-up (``element_idIN…``)."""
MARKER_PREFIX = "mim:"
MARKER_NOTE = re.compile(r"\[(mim:[^\]\s]+)\]")
"""The marker in a work note: ``[mim:<rule>[:<new id>]]`` on a line of the declaration note."""
DERIVED_MARKER = "_marker"

Row = dict[str, Any]


class ServiceNowReader:
    """The read side of the adapter over one incident table."""

    def __init__(self, client: ServiceNowClient, mapping: Mapping, write: ServiceNowWrite, table: IncidentTable,
                 cache: RecordCache, page_size: int) -> None:
        self._client = client
        self._mapping = mapping
        self._write = write
        self._table = table
        self._cache = cache
        self._page_size = page_size
        self._seen: dict[tuple[str, str], str] = {}

    def select(self, table: str, query: str, fields: Sequence[str], limit: int | None = None) -> Iterator[Row]:
        """Rows of ``table`` matching ``query`` (no ``^NQ``), every page, keyset by ``sys_id``."""
        return self._client.select(table, query, fields, limit or self._page_size)

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[Row]:
        """Incidents updated at or after ``since`` minus the overlap (or ``horizon``), in
        ``(sys_updated_on, sys_id)`` order, every page. A quiet poll is one request.

        Each ``(sys_id, sys_mod_count)`` comes once per call. A version this adapter already returned in an
        earlier call is left out again only when it lies at or before ``since``: the overlap re-reads those
        on purpose (rows committed late within the same second), while anything after ``since`` may belong
        to a cycle that never committed and must be returned again.
        """
        overlap: timedelta = self._write.overlap
        start = query_time(since.updated_at - overlap if since is not None else horizon)
        mark = (query_time(since.updated_at), since.id) if since is not None else None
        updated, ident = self._table.updated_field, self._table.id_field
        poll_filter = self._write.poll_filter
        shared = f"{poll_filter}^" if poll_filter else ""
        order = f"ORDERBY{updated}^ORDERBY{ident}"
        first = f"{shared}{updated}>={start}^{order}"

        def after(row: Row) -> str:
            ts, sys_id = query_value(row.get(updated, "")), query_value(row.get(ident, ""))
            return f"{shared}{updated}>{ts}^NQ{shared}{updated}={ts}^{ident}>{sys_id}^{order}"

        earlier = {k: v for k, v in self._seen.items() if v >= start}
        self._seen = dict(earlier)
        returned: set[tuple[str, str]] = set()
        for page in self._client.pages(self._table.name, first, after,
                                       lambda row: (str(row.get(updated, "")), str(row.get(ident, ""))),
                                       self._table.fields, self._page_size):
            page = self.marked(page)
            self._cache.remember(page)
            for row in page:
                stamp, sys_id = str(row.get(updated, "")), str(row.get(ident, ""))
                version = (sys_id, str(row.get("sys_mod_count", "")))
                if version in returned:
                    continue
                returned.add(version)
                if version in earlier and mark is not None and (stamp, sys_id) <= mark:
                    continue
                self._seen[version] = stamp
                yield row

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[Row]:
        """Incidents opened at or after ``since``, with only the canonical ``fields`` (and the id): what the
        detection baselines learn from when they warm up. Keyset-paged by ``sys_id``, not cached."""
        opened = query_field(self._mapping.source("opened_at") or "opened_at")
        shared = f"{self._write.poll_filter}^" if self._write.poll_filter else ""
        columns: list[str] = [self._table.id_field]
        for name in fields:
            source = self._mapping.spec.fields.get(name)
            for column in [source] if isinstance(source, str) else (source or []):
                top = column.split(".", 1)[0]
                if not top.startswith("_") and top not in columns:
                    columns.append(top)
        return self.select(self._table.name, f"{shared}{opened}>={query_time(since)}", columns)

    def fetch_marked(self) -> list[Row]:
        """Incidents carrying the connector's marker whose major incident state is proposed, accepted or
        rejected, and that are not closed or canceled.

        The open major incidents of the instance are read (a few), and each keeps its marker from our own
        column or the correlation field; for those without one, the journal is read (one query per
        :data:`JOURNAL_CHUNK` incidents) for the marker line of the declaration note. An incident without a
        marker is a human's major incident and is left out."""
        major = query_field(self._write.major_field)
        state = query_field(self._mapping.source("state") or "state")
        majors = query_in(self._mapping.to_platform("major", m) for m in ("proposed", "accepted", "rejected"))
        closed = query_in(self._mapping.to_platform("state", s) for s in ("closed", "canceled"))
        # IN on the major state, never !=: a != condition also drops the rows where the field is empty.
        query = f"{major}IN{majors}^{state}NOT IN{closed}"
        rows = self.marked(self.select(self._table.name, query, self._table.fields))
        unmarked = [row for row in rows if not row.get(DERIVED_MARKER)]
        if unmarked:
            notes = self._journal_markers([str(row.get(self._table.id_field)) for row in unmarked])
            for row in unmarked:
                row[DERIVED_MARKER] = notes.get(str(row.get(self._table.id_field)), "")
        rows = [row for row in rows if row.get(DERIVED_MARKER)]
        self._cache.remember(rows)
        return rows

    def marked(self, rows: Iterable[Row]) -> list[Row]:
        """``rows`` with ``_marker`` from our own marker column or the correlation field (see the module)."""
        own = self._write.marker_field if self._write.marker_field != self._write.correlation_field else None
        out = []
        for row in rows:
            found = ""
            for column in (own, self._write.correlation_field):
                value = stored_text(row.get(column)) if column else ""
                if value.startswith(MARKER_PREFIX):
                    found = value
                    break
            row[DERIVED_MARKER] = found
            out.append(row)
        return out

    def _journal_markers(self, ids: list[str]) -> dict[str, str]:
        """The marker of each incident in ``ids`` whose work notes hold one (the latest wins)."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), JOURNAL_CHUNK):
            chunk = query_in(ids[start:start + JOURNAL_CHUNK])
            query = f"element_idIN{chunk}^element=work_notes^valueLIKE[{MARKER_PREFIX}"
            for row in self.select("sys_journal_field", query, ["element_id", "value", "sys_created_on"]):
                match = MARKER_NOTE.search(stored_text(row.get("value")))
                ident, created = stored_text(row.get("element_id")), stored_text(row.get("sys_created_on"))
                if match and (ident not in found or created >= found[ident][1]):
                    found[ident] = (match.group(1), created)
        return {ident: marker for ident, (marker, _) in found.items()}

    def fetch_records(self, ids: Sequence[str]) -> list[Row]:
        """Fresh incidents by sys_id (``sys_idIN…`` in chunks)."""
        rows: list[Row] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            chunk = query_in(unique[start:start + ID_CHUNK])
            rows.extend(self.marked(self.select(self._table.name, f"{self._table.id_field}IN{chunk}",
                                                self._table.fields)))
        self._cache.remember(rows)
        return rows

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change (the incident's ``rfc``) and the review tasks (``incident_task`` with
        ``incident=<mi>``) of each major incident: one ``sys_idIN`` query for the changes, one ``incidentIN``
        query for the tasks. The incidents are read first only for ids whose change is neither given nor
        cached from this adapter's poll."""
        unique = [i for i in dict.fromkeys(str(i) for i in mi_ids) if i and not i.startswith("new-")]
        out: dict[str, dict[str, Any]] = {i: {"change": None, "tasks": []} for i in unique}
        if not unique:
            return out
        known = dict(changes or {})
        missing = [i for i in unique if i not in known and i not in self._cache]
        if missing:
            self.fetch_records(missing)
        for mi in unique:
            if mi not in known:
                known[mi] = stored_text((self._cache.get(mi) or {}).get(self._write.change_link_field)) or None
        title = self._mapping.source("title") or "short_description"
        fields = ["sys_id", "number", "state", title]
        self._read_changes(unique, known, fields, out)
        self._read_tasks(unique, fields, title, out)
        return out

    def _read_changes(self, unique: list[str], known: dict[str, str | None], fields: list[str],
                      out: dict[str, dict[str, Any]]) -> None:
        change_ids = list(dict.fromkeys(c for c in (known.get(mi) for mi in unique) if c))
        found: dict[str, Row] = {}
        for start in range(0, len(change_ids), ID_CHUNK):
            chunk = query_in(change_ids[start:start + ID_CHUNK])
            for row in self.select(self._write.change_table, f"sys_idIN{chunk}", fields):
                found[str(row.get("sys_id"))] = row
        for mi in unique:
            hit = found.get(known.get(mi) or "")
            if hit is not None:
                out[mi]["change"] = {"id": str(hit.get("sys_id")), "key": stored_text(hit.get("number")) or None,
                                     "state": self._write.change_states.get(stored_text(hit.get("state")), "unknown")}

    def _read_tasks(self, unique: list[str], fields: list[str], title: str, out: dict[str, dict[str, Any]]) -> None:
        parent = query_field(self._write.task_parent_field)
        for start in range(0, len(unique), ID_CHUNK):
            chunk = query_in(unique[start:start + ID_CHUNK])
            for row in self.select(self._write.task_table, f"{parent}IN{chunk}", fields + [parent]):
                mi = stored_text(row.get(parent))
                if mi in out:
                    out[mi]["tasks"].append({"id": str(row.get("sys_id")),
                                             "key": stored_text(row.get("number")) or None,
                                             "state": self._write.task_states.get(stored_text(row.get("state")),
                                                                                  "unknown"),
                                             "title": stored_text(row.get(title))})
        for entry in out.values():
            entry["tasks"].sort(key=lambda t: (t["key"] or "", t["id"]))


__all__ = ["DERIVED_MARKER", "ID_CHUNK", "JOURNAL_CHUNK", "MARKER_NOTE", "ServiceNowReader"]
