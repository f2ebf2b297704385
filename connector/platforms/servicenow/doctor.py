"""The read-only checks of ``mim doctor`` for a ServiceNow instance: the mapped fields, the stage and marker
fields, the tables the connector reads and writes, the Batch API, the values it writes into choice fields, and
what the rules and the process file need: the integration user's roles."""

from __future__ import annotations

import functools
from typing import Any

from connector.core.mapping import Mapping
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import DoctorCheck, ProcessNeeds, doctor_check
from connector.platforms.errors import ClientError, NotFound, PermissionDenied, UnexpectedResponse
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.query import query_field, query_in, query_value, stored_text
from connector.platforms.servicenow.read import ServiceNowReader
from connector.platforms.servicenow.records import IncidentTable

WRITE_ROLES = ("itil", "sn_incident_write")
"""Roles that may write incidents (propose a major incident, link children, add notes)."""
ACCEPT_ROLE = "major_incident_manager"
"""Accepting a major incident needs it (reference §1.1, §6)."""
ADMIN = "admin"


class ServiceNowDoctor:
    """Checks what the connector needs from an instance, reading only."""

    def __init__(self, client: ServiceNowClient, reader: ServiceNowReader, mapping: Mapping, write: ServiceNowWrite,
                 table: IncidentTable, batch: bool) -> None:
        self._client = client
        self._reader = reader
        self._mapping = mapping
        self._write = write
        self._table = table
        self._batch = batch

    def checks(self, discovery: dict[str, Any]) -> list[DoctorCheck]:
        """Read-only checks for ``mim doctor``: the mapped incident fields exist, the stage field, every table
        the connector reads or writes is readable, the Batch API answers (with a GET item), and every value
        the connector writes into a choice field is an active choice of the instance."""
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
        checks.append(self._marker_check(discovery))
        checks.append(doctor_check("choice values", self._check_choices,
                                   "set write.close_code (and the other values named) in mappings/servicenow.yaml "
                                   "to one of the instance's choices listed, or activate the choice"))
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

    def _marker_check(self, discovery: dict[str, Any]) -> DoctorCheck:
        """Where markers go: our own column, or tagged work notes; a marker column that another tool owns
        (the correlation field, as in mappings of earlier versions) is a finding."""
        table, own, correlation = self._table.name, discovery.get("marker_field"), self._write.correlation_field
        if self._write.marker_field and self._write.marker_field == correlation:
            return ("marker field", False, f"write.marker_field is {correlation}, which monitoring and event tools "
                    "de-duplicate on: it is never written on an existing incident, markers go in work notes",
                    "set write.marker_field to a column of our own (u_mim_marker, string) or remove the key")
        if own:
            return ("marker field", True, f"{own} exists on {table}: markers go there ({correlation} only on "
                    "records the connector creates)", "")
        return ("marker field", True, f"no {self._write.marker_field or 'marker column'} on {table}: markers are "
                "tagged work notes (rebuilding the state reads the journal)",
                f"add {self._write.marker_field or 'u_mim_marker'} (string, 100) to {table} to see the marker "
                "as a field")

    def needs_checks(self, needs: ProcessNeeds) -> list[DoctorCheck]:
        """What the rules and the process file need: the integration user's roles (``sys_user_has_role``),
        and every person and group the process file names (one query each)."""
        checks = [doctor_check("roles", lambda: self._check_roles(needs),
                               f"give the integration user {WRITE_ROLES[0]}"
                               + (f" and {ACCEPT_ROLE} (a rule declares with mode accept), or declare with mode "
                                  "propose" if needs.accepts else ""))]
        write = self._write
        for label, names, table, column in (("people", needs.people, write.user_table, write.user_name_field),
                                            ("groups", needs.groups, write.group_table, write.group_name_field)):
            if names:
                checks.append(doctor_check(
                    f"process file {label}", functools.partial(self._check_named, names, table, column),
                    f"create them in {table} (the {column} must match), or fix the names in the process file"))
        return checks

    def _check_named(self, names: tuple[str, ...], table: str, column: str) -> str:
        """Every name exists (and is active) in ``table``."""
        rows = list(self._reader.select(query_field(table), f"{query_field(column)}IN{query_in(names)}",
                                        [column, "active"]))
        found = {stored_text(row.get(column)): stored_text(row.get("active")) for row in rows}
        missing = [name for name in names if name not in found]
        inactive = [name for name in names if found.get(name) == "false"]
        problems = ([f"no {table} with {column} {', '.join(repr(n) for n in missing)}"] if missing else []) + \
                   ([f"inactive: {', '.join(repr(n) for n in inactive)}"] if inactive else [])
        if problems:
            raise ClientError("; ".join(problems))
        return f"all {len(names)} exist in {table}"

    def _check_roles(self, needs: ProcessNeeds) -> str:
        user = self._client.username
        try:
            rows = list(self._reader.select("sys_user_has_role", f"user.user_name={query_value(user)}",
                                            ["role.name"]))
        except (PermissionDenied, NotFound):
            return "sys_user_has_role is not readable: not checked"
        roles = sorted({stored_text(row.get("role.name")) for row in rows} - {""})
        shown = ", ".join(roles) or "none"
        if ADMIN in roles:
            return f"{user} has {shown}"
        missing = []
        if not set(roles) & set(WRITE_ROLES):
            missing.append(f"one of {', '.join(WRITE_ROLES)} (to propose major incidents and write incidents)")
        if needs.accepts and ACCEPT_ROLE not in roles:
            missing.append(f"{ACCEPT_ROLE} (a rule declares with mode accept: without it the instance keeps the "
                           "old major incident state)")
        if missing:
            raise ClientError(f"{user} has {shown}; missing {'; '.join(missing)}")
        return f"{user} has {shown}"

    def _check_fields(self) -> str:
        # our own stage and marker columns are optional: their own lines say what is missing
        wanted = [f for f in self._table.fields if not f.startswith("sys_") and f not in self._table.optional]
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

    def written_choices(self) -> dict[str, set[str]]:
        """The values the connector writes into choice fields of the incident table, by column: the resolved
        state and resolution code, the major incident states it declares, and impact and urgency of the
        priorities it sets (``write.priority_via``)."""
        state = self._mapping.source("state") or "state"
        wanted: dict[str, set[str]] = {
            state: {self._write.resolved_state},
            "close_code": {self._write.close_code},
            self._write.major_field: {stored_text(self._mapping.to_platform("major", m)) for m in ("proposed", "accepted")},
        }
        for via in self._write.priority_via.values():
            for canonical, value in via.items():
                wanted.setdefault(self._mapping.source(canonical) or canonical, set()).add(stored_text(value))
        return {column: {v for v in values if v} for column, values in wanted.items()}

    def _check_choices(self) -> str:
        """One ``sys_choice`` query for the written choice fields; a field without any choice there is not a
        choice field on this instance (or its choices are not readable) and is not judged."""
        wanted = self.written_choices()
        elements = query_in(query_field(column) for column in wanted)
        try:
            rows = list(self._reader.select("sys_choice", f"name={query_field(self._table.name)}^elementIN{elements}"
                                            "^inactive=false", ["element", "value"]))
        except (PermissionDenied, NotFound):
            return "sys_choice is not readable: not checked"
        choices: dict[str, set[str]] = {}
        for row in rows:
            choices.setdefault(str(row.get("element")), set()).add(stored_text(row.get("value")))
        problems = []
        for column, values in wanted.items():
            offered = choices.get(column)
            if offered is None:
                continue
            for value in sorted(values - offered):
                shown = ", ".join(sorted(offered)[:12]) + (" ..." if len(offered) > 12 else "")
                problems.append(f"{column} {value!r} is not a choice of this instance (it has: {shown})")
        if problems:
            raise ClientError("; ".join(problems))
        judged = [c for c in wanted if c in choices]
        return f"written values are choices of {', '.join(judged)}" if judged else "no choice lists found: not checked"

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


__all__ = ["ServiceNowDoctor"]
