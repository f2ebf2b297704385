"""The records of an in-memory instance and the business rules that run on every write: numbers, defaults,
``sys_*`` stamps, the incident lifecycle (state mirrors, priority lookup, resolution, cascade to children),
journal entries in ``sys_journal_field``, the ``sys_dictionary`` of fixed-schema tables, the choice lists in
``sys_choice``, the API user with its roles, and queries. What a REST write may not do is
:mod:`connector.sim.servicenow.policies`."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from connector.sim.servicenow.policies import WritePolicy
from connector.sim.servicenow.query import Condition, EncodedQuery, sort_key
from connector.sim.servicenow.schema import (
    ADMIN_ROLE,
    CHOICE_LABELS,
    FIELD_NAME,
    FINAL_INCIDENT_STATES,
    INACTIVE_INCIDENT_STATES,
    JOURNAL_FIELDS,
    NUMBER_PREFIXES,
    PRIORITY_MATRIX,
    ROLES,
    SYSTEM_FIELDS,
    TABLE_DEFAULTS,
    TABLE_NAME,
    format_time,
    internal_type,
    label,
    number_prefix,
    reference_target,
    to_text,
)

Record = dict[str, str]
"""A stored record: column -> string value (unset columns are absent)."""

Readable = Callable[[str, Record], bool]


class Instance:
    """The tables of an instance. ``user`` stamps ``sys_created_by``/``sys_updated_by``; ``clock`` gives the
    times; ``incident_fields`` are the incident table's columns (it has a fixed schema; other tables take any
    column written); see :class:`~connector.sim.servicenow.ServiceNowSim` for the other settings."""

    def __init__(self, user: str, clock: Callable[[], datetime], cascade_resolve: bool, incident_fields: Iterable[str],
                 seed: int, strict_query: bool, readable: Readable | None, roles: Iterable[str] | None = None,
                 hidden_fields: Mapping[str, Iterable[str]] | None = None) -> None:
        self.user = user
        self.clock = clock
        self.cascade_resolve = cascade_resolve
        self.strict_query = strict_query
        self.readable = readable
        self.policy = WritePolicy(self, hidden_fields)
        self._random = random.Random(seed)
        self._tables: dict[str, dict[str, Record]] = {}
        self._columns: dict[str, dict[str, None]] = {}
        self._fixed_schema: set[str] = {"incident"}
        self._numbers: dict[str, int] = {}
        self._columns["incident"] = dict.fromkeys((*SYSTEM_FIELDS, "number", "sys_class_name", *incident_fields))
        self._seed_dictionary("incident")
        self._seed_choices()
        self._seed_user((ADMIN_ROLE,) if roles is None else tuple(roles))

    def record(self, table: str, sys_id: str) -> Record | None:
        """The stored record (not a copy), or ``None``."""
        return self._tables.get(table, {}).get(sys_id)

    def rows(self, table: str) -> list[Record]:
        """The stored records of a table in insertion order."""
        return list(self._tables.get(table, {}).values())

    def columns(self, table: str) -> list[str]:
        """A table's columns, system columns first."""
        return list(self._columns.get(table, {}))

    def visible_columns(self, table: str) -> list[str]:
        """The columns the API user may read."""
        return [name for name in self._columns.get(table, {}) if not self.policy.is_hidden(table, name)]

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record; ``False`` when there was none."""
        return self._tables.get(table, {}).pop(sys_id, None) is not None

    def _now(self) -> str:
        return format_time(self.clock())

    def _new_sys_id(self) -> str:
        return f"{self._random.getrandbits(128):032x}"

    def known(self, table: str, name: str) -> bool:
        """Whether a table has the column."""
        return name in self._columns.get(table, {})

    def _writable(self, table: str, name: str) -> bool:
        if table in self._fixed_schema:
            return self.known(table, name)
        return bool(FIELD_NAME.fullmatch(name))

    def _accept(self, table: str, fields: dict[str, Any], trusted: bool) -> Record:
        """The writable subset of ``fields`` as strings; unknown columns are dropped silently, and over
        REST so are ``sys_*`` columns."""
        return {name: to_text(value) for name, value in fields.items()
                if isinstance(name, str) and (trusted or not name.startswith("sys_")) and self._writable(table, name)}

    def _journaled(self, table: str, values: Record) -> Record:
        if table.startswith("sys_"):
            return {}
        entries = {name: values.pop(name) for name in JOURNAL_FIELDS if name in values}
        self._columns.setdefault(table, dict.fromkeys(SYSTEM_FIELDS)).update(dict.fromkeys(entries))
        return {name: text for name, text in entries.items() if text}

    def insert(self, table: str, fields: dict[str, Any], trusted: bool) -> Record:
        """Store a new record (``trusted``: ``sys_*`` columns may be given, as from Python) with the
        table's defaults, number and lifecycle rules."""
        if not TABLE_NAME.fullmatch(table):
            raise ValueError(f"invalid table name {table!r}")
        values = self._accept(table, fields, trusted)
        if not trusted:
            values = self.policy.screen(table, values)
        journal = self._journaled(table, values)
        now = values.get("sys_created_on") or self._now()
        record: Record = {"sys_id": values.pop("sys_id", "") or self._new_sys_id()}
        record.update(TABLE_DEFAULTS.get(table, {}))
        prefix = number_prefix(table)
        if prefix is not None:
            record["number"] = self._number(prefix, values.get("number", ""), table)
            record["sys_class_name"] = table
        if table == "incident":
            record["opened_at"] = now
        record.update(values)
        self._lifecycle(table, {}, record, explicit=values, now=now)
        if not trusted:
            self.policy.check_resolution(table, {}, record, values)
        record["sys_created_on"] = values.get("sys_created_on") or now
        record["sys_created_by"] = values.get("sys_created_by") or self.user
        record["sys_updated_on"] = values.get("sys_updated_on") or record["sys_created_on"]
        record["sys_updated_by"] = values.get("sys_updated_by") or record["sys_created_by"]
        record["sys_mod_count"] = values.get("sys_mod_count") or "0"
        record = {name: value for name, value in record.items()
                  if self._writable(table, name) or name.startswith("sys_")}
        columns = self._columns.setdefault(table, dict.fromkeys(SYSTEM_FIELDS))
        columns.update(dict.fromkeys(record))
        self._tables.setdefault(table, {})[record["sys_id"]] = record
        self._add_journal(table, record, journal)
        return record

    def _number(self, prefix: str, given: str, table: str) -> str:
        counter = self._numbers.get(table, 10000)
        if given:
            digits = given.removeprefix(prefix)
            if digits.isdigit():
                self._numbers[table] = max(counter, int(digits))
            return given
        self._numbers[table] = counter + 1
        return f"{prefix}{counter + 1:07d}"

    def update(self, table: str, sys_id: str, fields: dict[str, Any], trusted: bool,
                cascading: frozenset[str] = frozenset()) -> Record | None:
        """Change a record as a save on an instance does (``None``: no such record); a resolved parent
        incident resolves its open children when ``cascade_resolve``."""
        record = self._tables.get(table, {}).get(sys_id)
        if record is None:
            return None
        values = self._accept(table, fields, trusted)
        if not trusted:
            values = self.policy.screen(table, values)
        journal = self._journaled(table, values)
        overrides = {name: values.pop(name) for name in list(values) if name.startswith("sys_")}
        overrides.pop("sys_id", None)
        now = overrides.get("sys_updated_on") or self._now()
        changes = dict(values)
        self._lifecycle(table, record, changes, explicit=values, now=now)
        changes = {name: value for name, value in changes.items()
                   if self._writable(table, name) and record.get(name, "") != value}
        if not trusted:
            self.policy.check_resolution(table, record, {**record, **changes}, values)
        if not changes and not journal and not overrides:
            return record  # an update that changes nothing is not saved, as on an instance
        before_state = record.get("state", "")
        record.update(changes)
        record.update(overrides)
        record["sys_updated_on"] = now
        record["sys_updated_by"] = overrides.get("sys_updated_by") or self.user
        record["sys_mod_count"] = overrides.get("sys_mod_count") or str(int(record.get("sys_mod_count") or 0) + 1)
        self._columns.setdefault(table, dict.fromkeys(SYSTEM_FIELDS)).update(dict.fromkeys(record))
        self._add_journal(table, record, journal)
        if (table == "incident" and self.cascade_resolve and record.get("state") == "6" and before_state != "6"
                and sys_id not in cascading):
            self._resolve_children(record, cascading | {sys_id})
        return record

    def _lifecycle(self, table: str, before: Record, changes: Record, explicit: Record,
                   now: str) -> None:
        """Business rules that run on every incident write: state mirrors, priority lookup, resolution
        and closure stamps, ``active``."""
        if table != "incident":
            return
        if "state" in explicit:
            changes["incident_state"] = explicit["state"]
        elif "incident_state" in explicit:
            changes["state"] = explicit["incident_state"]
        if "priority" not in explicit and ("impact" in changes or "urgency" in changes):
            impact = changes.get("impact", before.get("impact", ""))
            urgency = changes.get("urgency", before.get("urgency", ""))
            if (impact, urgency) in PRIORITY_MATRIX:
                changes["priority"] = PRIORITY_MATRIX[(impact, urgency)]
        state = changes.get("state", "")
        if state and state != before.get("state"):
            if state == "6" and "resolved_at" not in explicit:
                changes["resolved_at"] = now
            if state == "7" and "closed_at" not in explicit:
                changes["closed_at"] = now
            changes["active"] = "false" if state in INACTIVE_INCIDENT_STATES else "true"

    def _resolve_children(self, parent: Record, cascading: frozenset[str]) -> None:
        children = [row["sys_id"] for row in self._tables.get("incident", {}).values()
                    if row.get("parent_incident") == parent["sys_id"]
                    and row.get("state", "") not in FINAL_INCIDENT_STATES]
        for child in children:
            self.update("incident", child, {"state": "6", "close_code": parent.get("close_code", ""),
                                             "close_notes": parent.get("close_notes", ""),
                                             "sys_updated_by": parent["sys_updated_by"]},
                         trusted=True, cascading=cascading)

    def _add_journal(self, table: str, record: Record, entries: Record) -> None:
        for element, text in entries.items():
            self.insert("sys_journal_field", {
                "element_id": record["sys_id"], "element": element, "name": table, "value": text,
                "sys_created_on": record["sys_updated_on"], "sys_created_by": record["sys_updated_by"],
            }, trusted=True)

    def _seed_choices(self) -> None:
        for table, fields in CHOICE_LABELS.items():
            for element, labels in fields.items():
                for sequence, (value, text) in enumerate(labels.items(), start=1):
                    self.insert("sys_choice", {"name": table, "element": element, "value": value, "label": text,
                                               "sequence": str(sequence), "inactive": "false", "language": "en"},
                                trusted=True)

    def _seed_user(self, roles: tuple[str, ...]) -> None:
        """The API user in ``sys_user`` with its roles (``sys_user_role``, ``sys_user_has_role``)."""
        user = self.insert("sys_user", {"user_name": self.user, "name": self.user, "active": "true"}, trusted=True)
        by_name = {name: self.insert("sys_user_role", {"name": name}, trusted=True)["sys_id"]
                   for name in dict.fromkeys((*ROLES, *roles))}
        for role in roles:
            self.insert("sys_user_has_role", {"user": user["sys_id"], "role": by_name[role], "state": "active",
                                              "inherited": "false"}, trusted=True)

    def _seed_dictionary(self, table: str) -> None:
        self.insert("sys_dictionary", {"name": table, "element": "", "internal_type": "collection",
                                        "column_label": label(table), "reference": "", "active": "true"},
                     trusted=True)
        for element in self._columns[table]:
            self.insert("sys_dictionary", {
                "name": table, "element": element, "internal_type": internal_type(element, table),
                "column_label": label(element), "reference": reference_target(table, element) or "",
                "active": "true",
            }, trusted=True)

    def full(self, table: str, record: Record) -> Record:
        """A copy of a record with every column of its table (``""`` when unset)."""
        full = {name: record.get(name, "") for name in self._columns.get(table, {})}
        full.update(record)
        return full

    def select(self, table: str, query: EncodedQuery, plain: list[Condition]) -> list[Record]:
        """Rows matching an encoded query and plain ``name=value`` conditions, ordered."""
        conditions = [c for group in query.groups for clause in group for c in clause] + plain
        if self.strict_query and any(not self.field_known(table, c.field) for c in conditions):
            return []
        groups = [[kept for kept in ([c for c in clause if self.field_known(table, c.field)] for clause in group)
                   if kept] for group in query.groups] or [[]]
        plain = [c for c in plain if self.field_known(table, c.field)]

        def matches(row: Record) -> bool:
            if not all(c.matches(self.value(table, row, c.field)) for c in plain):
                return False
            return any(all(any(c.matches(self.value(table, row, c.field)) for c in clause) for clause in group)
                       for group in groups)

        rows = [row for row in self._tables.get(table, {}).values() if matches(row)]
        for name, descending in reversed(query.order):
            if self.field_known(table, name):
                key = sort_key([self.value(table, row, name) for row in rows])
                rows.sort(key=lambda row: key(self.value(table, row, name)), reverse=descending)
        return rows

    def field_known(self, table: str, path: str) -> bool:
        """Whether a field or dot-walked path (through a reference) exists on a table and the API user may
        read it (an ACL-hidden field is as unknown to a query as a misspelt one)."""
        head, dot, _ = path.partition(".")
        if not self.known(table, head) or self.policy.is_hidden(table, head):
            return False
        return not dot or reference_target(table, head) is not None

    def value(self, table: str, row: Record, path: str) -> str:
        """A field's stored value, following dot-walks through reference fields."""
        head, dot, rest = path.partition(".")
        value = row.get(head, "")
        if not dot:
            return value
        target = reference_target(table, head)
        found = self.lookup(target, value) if target else None
        return "" if found is None else self.value(found[0], found[1], rest)

    def lookup(self, table: str, sys_id: str) -> tuple[str, Record] | None:
        """A referenced record and its table; a reference to ``task`` finds a record of any task table."""
        for name in (table, *NUMBER_PREFIXES) if table == "task" else (table,):
            record = self._tables.get(name, {}).get(sys_id)
            if record is not None:
                return name, record
        return None

    def visible(self, table: str, row: Record) -> bool:
        """Whether ``readable`` lets the API user see a row."""
        return self.readable is None or self.readable(table, self.full(table, row))
