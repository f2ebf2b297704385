"""Canonical fields and values in ServiceNow's terms (through the mapping and the write settings), and back."""

from __future__ import annotations

from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.errors import ClientError, NotFound, PermissionDenied
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.discovery import ServiceNowDiscovery
from connector.platforms.servicenow.query import COLUMN, SYS_ID, query_field, query_value, stored_text


class UnknownReference(ClientError):
    """A group or user name that matches no record of the instance."""

    retryable = True


class ServiceNowFields:
    """Translates canonical fields to incident columns (groups and users to sys_ids, looked up once and kept
    in the discovery facts) and reads canonical states back from stored values."""

    def __init__(self, client: ServiceNowClient, mapping: Mapping, write: ServiceNowWrite,
                 discovery: ServiceNowDiscovery) -> None:
        self._client = client
        self._mapping = mapping
        self._write = write
        self._discovery = discovery

    def columns(self, canonical: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """Canonical fields as platform columns and values; stage values that have no field become notes."""
        out: dict[str, str] = {}
        notes: list[str] = []
        stage_field = self._discovery.facts().get("stage_field")
        for name, value in canonical.items():
            if name == "stage" and not stage_field:
                notes.append(f"Major incident stage: {stored_text(value)}")
                continue
            column = stage_field if name == "stage" else self._mapping.source(name)
            if column is None or not COLUMN.fullmatch(column) or "." in column:
                raise ClientError(f"canonical field {name!r} has no writable ServiceNow column in the mapping")
            via = self._priority_via(value) if name == "priority" else None
            if via:
                # priority lookup rules derive priority from impact x urgency and overwrite a direct write
                for field_name, field_value in via.items():
                    out[str(self._mapping.source(field_name) or field_name)] = stored_text(field_value)
                out[column] = stored_text(self._mapping.to_platform(name, value))
            elif name == "assignment_group":
                out[column] = self.reference("groups", stored_text(value))
            elif name == "assignee":
                out[column] = self.reference("users", stored_text(value))
            else:
                out[column] = stored_text(self._mapping.to_platform(name, value))
        return out, notes

    def _priority_via(self, priority: Any) -> dict[str, int | str] | None:
        """The impact and urgency that make ``priority`` (``write.priority_via``), if the mapping says."""
        via = self._write.priority_via
        return via.get(priority) or via.get(str(priority))

    def reference(self, kind: str, value: str) -> str:
        """A group or user name as its sys_id (looked up once, kept in the discovery facts), or the value itself
        when it is a sys_id already. A name the instance does not know raises :class:`UnknownReference`: a
        reference field never receives a raw name (the instance would store it as empty, wiping the field)."""
        if not value or SYS_ID.fullmatch(value):
            return value
        cache: dict[str, str | None] = self._discovery.facts().setdefault(kind, {})
        if cache.get(value):
            return str(cache[value])
        table, column = self.directory(kind)
        try:
            answer = self._client.get_page(table, self._client.read_params(
                f"{query_field(column)}={query_value(value)}", ["sys_id", column], 2))
        except (PermissionDenied, NotFound) as exc:
            raise UnknownReference(f"cannot look up {value!r} in {table}: the integration user may not read it "
                                   f"({exc})") from None
        rows = [row for row in answer.result if row.get("sys_id") and stored_text(row.get(column)) == value]
        if not rows:
            raise UnknownReference(f"no {table} with {column} {value!r} on the instance: not written (a reference "
                                   f"field takes a sys_id); create it or fix the name in the process file")
        cache[value] = str(rows[0]["sys_id"])
        return cache[value] or value

    def directory(self, kind: str) -> tuple[str, str]:
        """The table and the name column of ``groups`` or ``users``."""
        if kind == "groups":
            return self._write.group_table, self._write.group_name_field
        return self._write.user_table, self._write.user_name_field

    def major_state(self, raw: Any) -> str:
        """A stored major incident state as a canonical one (``none`` when it is none of them)."""
        for canonical in ("proposed", "accepted", "rejected", "canceled"):
            if raw == self._mapping.to_platform("major", canonical):
                return canonical
        return "none"

    def state(self, raw: Any) -> str:
        """A stored incident state as a canonical one (``unknown`` when it is none of them)."""
        for canonical in ("new", "in_progress", "on_hold", "resolved", "closed", "canceled"):
            if raw == self._mapping.to_platform("state", canonical):
                return canonical
        return "unknown"

    def major(self, state: str) -> str:
        """The stored value of a canonical major incident state."""
        return stored_text(self._mapping.to_platform("major", state))

    def stage(self, stage: Any) -> str:
        """The stored value of a stage."""
        return stored_text(self._mapping.to_platform("stage", stage))

    def resolution(self, notes: str | None) -> dict[str, str]:
        """The fields that resolve an incident: state, close code and notes (mandatory on most instances)."""
        state_column = self._mapping.source("state") or "state"
        return {state_column: self._write.resolved_state, "close_code": self._write.close_code,
                "close_notes": notes or self._write.close_notes}

    def column(self, canonical: str, default: str) -> str:
        """The column of a canonical field in the mapping, or ``default``."""
        return self._mapping.source(canonical) or default


__all__ = ["ServiceNowFields", "UnknownReference"]
