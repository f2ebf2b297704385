"""What an instance refuses on a Table API write, and how (sections of ``shared/reference/servicenow.md``).

* **Field ACLs** (§2.1 "ACL-hidden fields are absent", §2.3, §6 "Field ACLs on the Table API"): a field the
  API user may not read is absent from answers and a query term on it is dropped like one on an unknown
  field; a field the user may not write keeps its old value while the request still succeeds (200).
  Accepting, rejecting or demoting a major incident (a ``major_incident_state`` other than empty or
  ``proposed``) needs ``major_incident_manager`` (§1.1, §6); ``admin`` passes every ACL.
* **Choice fields** (§1.4, §6 "Resolution codes"): a value that is not an active choice in ``sys_choice``
  is not stored: the field reads as empty, so a resolution code of an older release ("Solved
  (Permanently)") leaves the resolution code missing.
* **Reference fields**: a value that is not the sys_id of a record of the referenced table is stored empty,
  and the write still succeeds (ServiceNow community, developer forum, "Data validation in scripted REST
  API", m-p/2215798: "if you pass in an invalid sys_id, the record is still created with a null value";
  KB0534905: display values are resolved only with ``sysparm_input_display_value=true``). Only tables the
  simulator holds records of are checked, so tests may use plain values for services and configuration
  items they never seed.
* **The resolution data policy** (§1.4 "Resolve: resolution code + notes mandatory", §6 "403 Data Policy
  Exception ... mandatory: Resolution code"): a write that resolves or closes an incident, or changes its
  resolution, without a resolution code and notes is refused with 403.

Writes through the simulator's Python API (``trusted``) act as an administrator and skip all of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from connector.sim.servicenow.schema import (
    ADMIN_ROLE,
    MAJOR_INCIDENT_MANAGER,
    RESOLUTION_MANDATORY,
    RESOLVED_INCIDENT_STATES,
    reference_target,
)

if TYPE_CHECKING:
    from connector.sim.servicenow.instance import Instance, Record

MAJOR_STATES_OPEN_TO_ALL = ("", "proposed")
"""Major incident states any user who may write incidents may set (proposing needs ``itil``)."""


class DataPolicyError(Exception):
    """A save refused by a data policy: ``labels`` are the mandatory fields that are missing."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        super().__init__(self.detail)

    @property
    def message(self) -> str:
        """``error.message`` of the 403 answer."""
        return "Operation Failed"

    @property
    def detail(self) -> str:
        """``error.detail`` of the 403 answer."""
        return "Data Policy Exception: \n\tThe following fields are mandatory: " + ", ".join(self.labels)


class WritePolicy:
    """The field ACLs, choice lists, reference checks and data policies of ``instance`` for its API user.

    ``hidden`` maps a table to the fields the user may neither read nor write."""

    def __init__(self, instance: "Instance", hidden: Mapping[str, Iterable[str]] | None = None) -> None:
        self.instance = instance
        self.hidden: dict[str, frozenset[str]] = {table: frozenset(fields) for table, fields in (hidden or {}).items()}

    def is_hidden(self, table: str, name: str) -> bool:
        """Whether a read ACL hides the field from the API user."""
        return name in self.hidden.get(table, frozenset())

    def roles(self) -> set[str]:
        """The API user's roles (``sys_user_has_role`` of the ``sys_user`` named like the user)."""
        instance = self.instance
        users = {row["sys_id"] for row in instance.rows("sys_user") if row.get("user_name") == instance.user}
        role_ids = {row.get("role", "") for row in instance.rows("sys_user_has_role") if row.get("user") in users}
        return {row.get("name", "") for row in instance.rows("sys_user_role") if row["sys_id"] in role_ids}

    def screen(self, table: str, values: "Record") -> "Record":
        """The part of a REST write that an instance stores: fields the user may not write are left out (they
        keep their old value), a value that is not an active choice, or a reference to no record, is stored
        empty."""
        roles: set[str] | None = None
        kept: Record = {}
        for name, value in values.items():
            if self.is_hidden(table, name):
                continue
            if table == "incident" and name == "major_incident_state" and value not in MAJOR_STATES_OPEN_TO_ALL:
                roles = self.roles() if roles is None else roles
                if not roles & {MAJOR_INCIDENT_MANAGER, ADMIN_ROLE}:
                    continue
            kept[name] = self._stored(table, name, value)
        return kept

    def _stored(self, table: str, name: str, value: str) -> str:
        if value == "":
            return value
        choices = self.choices(table, name)
        if choices is not None and value not in choices:
            return ""
        target = reference_target(table, name)
        if target is not None and self._holds(target) and self.instance.lookup(target, value) is None:
            return ""
        return value

    def _holds(self, table: str) -> bool:
        """Whether the simulator holds records of ``table`` (``task``: of any task table)."""
        tables = [table] if table != "task" else [table, "incident", "incident_task", "change_request", "problem"]
        return any(self.instance.rows(name) for name in tables)

    def choices(self, table: str, element: str) -> set[str] | None:
        """The active choice values of a field (``None``: the field has no choice list)."""
        rows = [row for row in self.instance.rows("sys_choice")
                if row.get("name") == table and row.get("element") == element]
        if not rows:
            return None
        return {row.get("value", "") for row in rows if row.get("inactive", "false") != "true"}

    def check_resolution(self, table: str, before: "Record", after: "Record", explicit: "Record") -> None:
        """Raise :class:`DataPolicyError` when a write resolves or closes an incident (or changes its
        resolution) and leaves a mandatory resolution field empty."""
        if table != "incident" or after.get("state", "") not in RESOLVED_INCIDENT_STATES:
            return
        resolving = before.get("state", "") not in RESOLVED_INCIDENT_STATES
        if not resolving and not any(name in explicit for name in RESOLUTION_MANDATORY):
            return
        missing = [label for name, label in RESOLUTION_MANDATORY.items() if not after.get(name, "")]
        if missing:
            raise DataPolicyError(missing)
