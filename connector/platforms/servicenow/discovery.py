"""What the adapter learns about an instance: whether our own stage and marker columns exist, group and user
ids, whether the Batch API answers."""

from __future__ import annotations

from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.errors import NotFound, PermissionDenied
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.query import query_field, query_in
from connector.platforms.servicenow.read import ServiceNowReader
from connector.platforms.servicenow.records import IncidentTable

FACTS_VERSION = 2
"""2: the facts say whether our own marker column exists (``marker_field``)."""


class ServiceNowDiscovery:
    """The instance's facts, found once and kept by the state store (see :meth:`discover`)."""

    def __init__(self, client: ServiceNowClient, reader: ServiceNowReader, mapping: Mapping, write: ServiceNowWrite,
                 table: IncidentTable, batch: bool) -> None:
        self._client = client
        self._reader = reader
        self._mapping = mapping
        self._write = write
        self._table = table
        self._batch = batch
        self._facts: dict[str, Any] | None = None

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Whether our own stage and marker columns exist on the incident table (one ``sys_dictionary``
        query), plus room for the group and user lookups ``apply`` makes. With ``cached`` no request is sent.

        ``apply`` adds name → sys_id lookups to the dict returned here; storing it again after a cycle
        keeps them for the next run.
        """
        if cached is not None and cached.get("version") == FACTS_VERSION and "stage_field" in cached:
            cached.setdefault("groups", {})
            cached.setdefault("users", {})
            self._facts = cached
            return cached
        stage, marker = self._write.stage_field, self.own_marker_column()
        facts: dict[str, Any] = {"version": FACTS_VERSION, "stage_field": None, "marker_field": None,
                                 "groups": {}, "users": {}}
        wanted = [query_field(column) for column in (stage, marker) if column]
        found = self._fields_exist(wanted) if wanted else set()
        facts["stage_field"] = stage if stage in found else None
        facts["marker_field"] = marker if marker in found else None
        self._facts = facts
        return facts

    def own_marker_column(self) -> str | None:
        """``write.marker_field`` unless it names a column another tool writes (the correlation field)."""
        marker = self._write.marker_field
        return marker if marker and marker != self._write.correlation_field else None

    def facts(self) -> dict[str, Any]:
        """The facts, discovered now if nothing was discovered or handed over yet."""
        return self._facts if self._facts is not None else self.discover(None)

    def _fields_exist(self, elements: list[str]) -> set[str]:
        """Which of ``elements`` are columns of the incident table (or of ``task``, which it extends)."""
        tables = query_in(dict.fromkeys((self._table.name, "task")))
        try:
            rows = list(self._reader.select("sys_dictionary", f"nameIN{tables}^elementIN{query_in(elements)}",
                                            ["name", "element"], limit=10))
            return {str(row.get("element")) for row in rows} & set(elements)
        except (PermissionDenied, NotFound):
            # Integration users often may not read the dictionary: look at one incident instead.
            answer = self._client.get_page(self._table.name, self._client.read_params("", ["sys_id", *elements], 1))
            rows = answer.result
            return set(rows[0]) & set(elements) if rows else set()


__all__ = ["FACTS_VERSION", "ServiceNowDiscovery"]
