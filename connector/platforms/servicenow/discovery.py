"""What the adapter learns about an instance (whether the stage column exists, group and user ids, whether the
Batch API answers) and the read-only checks of ``mim doctor``."""

from __future__ import annotations

import functools
from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import DoctorCheck, doctor_check
from connector.platforms.errors import ClientError, NotFound, PermissionDenied, UnexpectedResponse
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

    # -- mim doctor ------------------------------------------------------------------------------------------

    def doctor_checks(self, discovery: dict[str, Any]) -> list[DoctorCheck]:
        """Read-only checks for ``mim doctor``: the mapped incident fields exist, the stage field, every
        table the connector reads or writes is readable, and the Batch API answers (with a GET item)."""
        table = self._table.name
        checks: list[DoctorCheck] = []
        checks.append(doctor_check("mapped incident fields", self._check_fields,
                                   "fix mappings/servicenow.yaml or install the plugin that adds the field "
                                   "(major_incident_state comes with Major Incident Management)"))
        stage = discovery.get("stage_field")
        checks.append(("stage field", True, f"{stage} exists on {table}" if stage else
                       "no stage field: stages are written as work notes",
                       "" if stage else f"add {self._write.stage_field or 'u_mim_stage'} (string) to "
                                        f"{table} to see the stage as a field"))
        tables = [table, "sys_journal_field", self._write.task_table, self._write.change_table,
                  self._write.group_table, self._write.user_table]
        for name in dict.fromkeys(tables):
            checks.append(doctor_check(f"table {name} readable", functools.partial(self._check_table, name),
                                       f"give the integration user read access to {name} (writes are not tried: "
                                       f"doctor is read-only)"))
        if self._batch:
            checks.append(doctor_check("Batch API", self._check_batch,
                                       "allow /api/now/v1/batch for the integration user, or set write.batch: false"))
        return checks

    def _check_fields(self) -> str:
        wanted = [f for f in self._table.fields if not f.startswith("sys_")]
        names = query_in(wanted)
        tables = query_in(dict.fromkeys((self._table.name, "task")))
        try:
            rows = list(self._reader.select("sys_dictionary", f"nameIN{tables}^elementIN{names}", ["element"]))
            found = {str(r.get("element")) for r in rows}
        except (PermissionDenied, NotFound):
            sample = self._client.get_page(self._table.name, self._client.read_params("", wanted, 1)).result
            if not sample:
                return "sys_dictionary is not readable and there is no incident to look at: not checked"
            found = set(sample[0])
        missing = [f for f in wanted if f not in found]
        if missing:
            raise ClientError(f"{self._table.name} has no field {', '.join(missing)}")
        return f"{len(wanted)} fields found"

    def _check_table(self, table: str) -> str:
        self._client.get_page(query_field(table), self._client.read_params("", ["sys_id"], 1))
        return "readable"

    def _check_batch(self) -> str:
        table = self._table.name
        item = {"id": "1", "method": "GET", "url": f"/api/now/table/{table}?sysparm_limit=1&sysparm_fields=sys_id",
                "headers": [{"name": "Accept", "value": "application/json"}], "exclude_response_headers": True}
        answer = self._client.call("POST", "/v1/batch", body={"batch_request_id": "doctor", "rest_requests": [item]})
        serviced = answer.data.get("serviced_requests") if isinstance(answer.data, dict) else None
        if not serviced:
            raise UnexpectedResponse("the Batch API serviced nothing", method="POST", path="/api/now/v1/batch")
        return "answers"


__all__ = ["FACTS_VERSION", "ServiceNowDiscovery"]
