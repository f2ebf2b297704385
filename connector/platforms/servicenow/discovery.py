"""What the adapter learns about an instance: whether the stage column exists, group and user ids, whether the
Batch API answers."""

from __future__ import annotations

from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.errors import NotFound, PermissionDenied
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.query import query_field, query_in
from connector.platforms.servicenow.read import ServiceNowReader
from connector.platforms.servicenow.records import IncidentTable

FACTS_VERSION = 1


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
        """Whether the stage field exists on the incident table (``sys_dictionary``), plus room for the
        group and user lookups ``apply`` makes. With ``cached`` no request is sent.

        ``apply`` adds name → sys_id lookups to the dict returned here; storing it again after a cycle
        keeps them for the next run.
        """
        if cached is not None and cached.get("version") == FACTS_VERSION and "stage_field" in cached:
            cached.setdefault("groups", {})
            cached.setdefault("users", {})
            self._facts = cached
            return cached
        stage = self._write.stage_field
        facts: dict[str, Any] = {"version": FACTS_VERSION, "stage_field": None, "groups": {}, "users": {}}
        if stage:
            facts["stage_field"] = stage if self._field_exists(query_field(stage)) else None
        self._facts = facts
        return facts

    def facts(self) -> dict[str, Any]:
        """The facts, discovered now if nothing was discovered or handed over yet."""
        return self._facts if self._facts is not None else self.discover(None)

    def _field_exists(self, element: str) -> bool:
        tables = query_in(dict.fromkeys((self._table.name, "task")))
        try:
            rows = list(self._reader.select("sys_dictionary", f"nameIN{tables}^element={element}", ["name", "element"],
                                            limit=10))
            return any(row.get("element") == element for row in rows)
        except (PermissionDenied, NotFound):
            # Integration users often may not read the dictionary: look at one incident instead.
            answer = self._client.get_page(self._table.name, self._client.read_params("", ["sys_id", element], 1))
            rows = answer.result
            return bool(rows) and element in rows[0]


__all__ = ["FACTS_VERSION", "ServiceNowDiscovery"]
