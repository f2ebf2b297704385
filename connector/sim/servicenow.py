"""A ServiceNow Table API simulator for tests, ``mim demo`` and ``mim simulate servicenow``.

It follows the platform facts in ``shared/reference/servicenow.md``:

* Table API on any table: ``/api/now[/v1|/v2]/table/<table>[/<sys_id>]`` with GET, POST, PUT, PATCH and
  DELETE; ``{"result": ...}`` bodies whose values are all strings; 32-hex ``sys_id``; UTC
  ``YYYY-MM-DD HH:MM:SS`` timestamps from an injectable clock; ``sys_mod_count``; per-table numbers
  (``INC0010001``); reference fields as ``{"link", "value"}`` unless excluded; ``sysparm_display_value``;
  journal fields (``work_notes``, ``comments``) that read back empty and land in ``sys_journal_field``.
* An encoded-query subset (see :func:`parse_encoded_query`), ``sysparm_fields``, ``sysparm_limit`` /
  ``sysparm_offset``, ``X-Total-Count`` and ``Link`` paging headers, v1's 404 on an empty list.
* The Batch API (``/api/now/v1/batch``), the Aggregate API (``/api/now/stats/<table>``: count, group by,
  min/max/sum/avg), OAuth password and refresh-token grants (``/oauth_token.do``) and basic auth.
* Incident lifecycle: priority from impact x urgency, ``resolved_at`` / ``closed_at``, ``active``, and a
  parent's resolution cascading to its open child incidents (Major Incident Management).

Faults and the request log come from :class:`connector.sim.base.SimServer`.
"""

from __future__ import annotations

import base64
import binascii
import operator
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

from connector.sim.base import Route, Router, SimRequest, SimResponse, SimServer, compile_path

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LIMIT = 10000
TOKEN_LIFETIME = 1799

SYSTEM_FIELDS = ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
                 "sys_mod_count")
JOURNAL_FIELDS = ("work_notes", "comments")

#: The incident columns a default instance has (with MIM installed and our custom ``u_mim_stage``).
INCIDENT_FIELDS: tuple[str, ...] = (
    "number", "state", "incident_state", "impact", "urgency", "priority", "severity", "active",
    "short_description", "description", "category", "subcategory", "contact_type",
    "caller_id", "opened_by", "opened_at", "assignment_group", "assigned_to",
    "resolved_at", "resolved_by", "closed_at", "closed_by", "close_code", "close_notes", "hold_reason",
    "parent", "parent_incident", "child_incidents", "problem_id", "rfc", "caused_by",
    "cmdb_ci", "business_service", "location", "company",
    "work_notes", "comments", "work_notes_list", "comments_and_work_notes", "watch_list",
    "correlation_id", "correlation_display", "reassignment_count", "reopen_count",
    "major_incident_state", "business_impact", "proposed_by", "proposed_on", "promoted_by", "promoted_on",
    "probable_cause", "u_mim_stage", "sys_class_name",
)

NUMBER_PREFIXES = {
    "incident": "INC", "change_request": "CHG", "incident_task": "TASK", "problem": "PRB", "task": "TASK",
    "change_task": "CTASK", "problem_task": "PTASK", "sc_request": "REQ", "sc_req_item": "RITM",
    "sc_task": "SCTASK", "incident_alert": "ICP",
}
# System and CMDB tables have no number column; other unlisted tables get a prefix made from their name.
UNNUMBERED_TABLE_PREFIXES = ("sys_", "cmdb", "cmn_", "core_")

TABLE_DEFAULTS: dict[str, dict[str, str]] = {
    "incident": {"state": "1", "incident_state": "1", "impact": "3", "urgency": "3", "severity": "3",
                 "active": "true", "child_incidents": "0", "reassignment_count": "0", "reopen_count": "0"},
    "change_request": {"state": "-5", "active": "true", "type": "normal"},
    "incident_task": {"state": "1", "active": "true", "priority": "4"},
    "problem": {"state": "101", "active": "true"},
}

#: Priority lookup rules, (impact, urgency) -> priority, as documented (I3U3 -> 4).
PRIORITY_MATRIX = {
    ("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "3",
    ("2", "1"): "2", ("2", "2"): "3", ("2", "3"): "4",
    ("3", "1"): "3", ("3", "2"): "4", ("3", "3"): "4",
}
INACTIVE_INCIDENT_STATES = ("7", "8")
FINAL_INCIDENT_STATES = ("6", "7", "8")

#: Reference columns and the table they point at; TABLE_REFERENCES overrides per table.
REFERENCES = {
    "caller_id": "sys_user", "opened_by": "sys_user", "assigned_to": "sys_user", "resolved_by": "sys_user",
    "closed_by": "sys_user", "proposed_by": "sys_user", "promoted_by": "sys_user", "manager": "sys_user",
    "assignment_group": "sys_user_group", "parent_incident": "incident", "problem_id": "problem",
    "rfc": "change_request", "caused_by": "change_request", "cmdb_ci": "cmdb_ci",
    "business_service": "cmdb_ci_service", "location": "cmn_location", "company": "core_company",
    "parent": "task",
}
TABLE_REFERENCES: dict[str, dict[str, str]] = {
    "incident_task": {"incident": "incident"},
    "sys_user_group": {"parent": "sys_user_group"},
}

CHOICE_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "incident": {
        "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
                  "8": "Canceled"},
        "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low",
                     "5": "5 - Planning"},
        "major_incident_state": {"proposed": "Proposed", "accepted": "Accepted", "rejected": "Rejected",
                                 "canceled": "Canceled"},
    },
}
CHOICE_LABELS["incident"]["incident_state"] = CHOICE_LABELS["incident"]["state"]

COLUMN_LABELS = {"rfc": "Change Request", "caused_by": "Caused by Change", "caller_id": "Caller",
                 "cmdb_ci": "Configuration item", "u_mim_stage": "MIM stage", "sys_id": "Sys ID"}

NO_RECORD_LIST = ("No Record found", "Records matching query not found. Check query parameter or offset parameter")
NO_RECORD_ID = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
BAD_URI = ("Requested URI does not represent any resource", None)

TABLE_PATH = "/api/now[/{version:v1|v2}]/table/{table}"
BATCH_PATH = "/api/now[/v1]/batch[/]"
STATS_PATH = "/api/now[/v1]/stats/{table}[/]"
OAUTH_PATH = "/oauth_token.do"
_BATCH_REGEX = compile_path(BATCH_PATH)
_TABLE_NAME = re.compile(r"[a-z0-9_]+")
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_INTEGER = re.compile(r"-?\d{1,18}")

Readable = Callable[[str, dict[str, str]], bool]


# -- encoded queries --------------------------------------------------------------------------------

_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "ANYTHING", "EMPTYSTRING", "NOT IN", "NOT LIKE", "NOTIN", "NOTLIKE",
              "INSTANCEOF", "IN", "LIKE", "STARTSWITH", "ENDSWITH", "BETWEEN", "!=", ">=", "<=", "=", ">", "<")
_CONDITION = re.compile(r"(?P<field>[a-z0-9_.]+)(?P<op>" + "|".join(re.escape(op) for op in _OPERATORS)
                        + r")(?P<value>.*)", re.S)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                     "<=": operator.le}
_DATE_GENERATE = re.compile(r"javascript:\s*gs\.dateGenerate\(\s*'([^']*)'\s*,\s*'([^']*)'\s*\)")


@dataclass(frozen=True)
class Condition:
    """One ``<field><op><value>`` term of an encoded query."""

    field: str
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        """Whether a stored value satisfies the condition.

        Negative operators (``!=``, ``NOT IN``, ``NOT LIKE``) and comparisons never match an empty value,
        like SQL NULL on an instance (the "NULL trap").
        """
        op, value = self.op, self.value
        if op == "=":
            return actual == value
        if op in ("ISEMPTY", "EMPTYSTRING"):
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op == "ANYTHING":
            return True
        if op == "INSTANCEOF":
            # No class hierarchy here beyond "every numbered table extends task".
            return actual == value or (value == "task" and actual in NUMBER_PREFIXES)
        if op == "IN":
            return actual in value.split(",")
        if op == "LIKE":
            return value.lower() in actual.lower()
        if op == "STARTSWITH":
            return actual.lower().startswith(value.lower())
        if op == "ENDSWITH":
            return actual.lower().endswith(value.lower())
        if actual == "":
            return False
        if op == "!=":
            return actual != value
        if op in ("NOT IN", "NOTIN"):
            return actual not in value.split(",")
        if op in ("NOT LIKE", "NOTLIKE"):
            return value.lower() not in actual.lower()
        if op == "BETWEEN":
            low, _, high = value.partition("@")
            return _compare(actual, ">=", low) and _compare(actual, "<=", high)
        return _compare(actual, op, value)


def _compare(actual: str, op: str, value: str) -> bool:
    compare = _COMPARISONS.get(op)
    if compare is None:
        return False
    if _INTEGER.fullmatch(actual) and _INTEGER.fullmatch(value):
        return compare(int(actual), int(value))
    return compare(actual, value)


@dataclass
class EncodedQuery:
    """A parsed ``sysparm_query``: ``groups`` are OR'ed (``^NQ``); a group is a list of clauses that are
    AND'ed (``^``); a clause is a list of conditions that are OR'ed (``^OR``). ``order`` holds
    ``(field, descending)`` in the order given."""

    groups: list[list[list[Condition]]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)


def parse_encoded_query(text: str) -> EncodedQuery:
    """Parse the encoded-query subset the simulator supports.

    ``^`` AND, ``^OR`` OR with the previous condition, ``^NQ`` a new OR'ed group, ``ORDERBY<f>`` /
    ``ORDERBYDESC<f>``; operators ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``IN``, ``NOT IN``, ``LIKE``,
    ``NOT LIKE``, ``STARTSWITH``, ``ENDSWITH``, ``ISEMPTY``, ``ISNOTEMPTY``, ``ANYTHING``, ``EMPTYSTRING``,
    ``BETWEEN a@b``, ``INSTANCEOF``; ``javascript:gs.dateGenerate('d','t')`` values (the simulated user's zone is UTC).
    Terms it cannot parse are ignored, like unknown fields on an instance. ServiceNow has no escape for
    ``^`` inside values, so neither does this parser.
    """
    query = EncodedQuery()
    seen_order: set[str] = set()
    for group_text in text.split("^NQ"):
        clauses: list[list[Condition]] = []
        for token in group_text.split("^"):
            if token in ("", "EQ"):
                continue
            if token.startswith("ORDERBY"):
                descending = token.startswith("ORDERBYDESC")
                name = token[len("ORDERBYDESC"):] if descending else token[len("ORDERBY"):]
                if name and name not in seen_order:
                    seen_order.add(name)
                    query.order.append((name, descending))
                continue
            is_or = token.startswith("OR")
            condition = _parse_condition(token[2:] if is_or else token)
            if condition is None:
                continue
            if is_or and clauses:
                clauses[-1].append(condition)
            else:
                clauses.append([condition])
        query.groups.append(clauses)
    return query


def _parse_condition(token: str) -> Condition | None:
    match = _CONDITION.fullmatch(token)
    if match is None:
        return None
    value = _DATE_GENERATE.sub(lambda m: f"{m.group(1)} {_day_time(m.group(2))}", match["value"])
    return Condition(match["field"], match["op"], value)


def _day_time(text: str) -> str:
    return {"start": "00:00:00", "end": "23:59:59"}.get(text, text)


# -- helpers ----------------------------------------------------------------------------------------


def _error(status: int, message: str, detail: str | None = "", headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(status, {"error": {"message": message, "detail": detail}, "status": "failure"},
                       headers or {})


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def _to_text(value: Any) -> str:
    """A JSON or Python value as the string ServiceNow would store."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, dict):
        return _to_text(value.get("value", value.get("sys_id", "")))
    if isinstance(value, (list, tuple)):
        return ",".join(_to_text(item) for item in value)
    return str(value)


def _flag(request: SimRequest, name: str) -> bool:
    # pysnow sends Python-style "True"/"False".
    return (request.arg(name) or "").strip().lower() == "true"


def _display_mode(request: SimRequest) -> str:
    mode = (request.arg("sysparm_display_value") or "").strip().lower()
    return mode if mode in ("true", "all") else "false"


def _int_arg(request: SimRequest, name: str, default: int) -> int:
    try:
        return int(request.arg(name) or default)
    except ValueError:
        return default


def _accepts_json(request: SimRequest) -> bool:
    accept = (request.header("Accept") or "").lower()
    return not accept or any(kind in accept for kind in ("json", "*/*", "application/*"))


def _sort_key(values: list[str]) -> Callable[[str], tuple[int, int | str]]:
    numeric = all(_INTEGER.fullmatch(v) for v in values if v)

    def key(value: str) -> tuple[int, int | str]:
        if value == "":
            return (0, 0 if numeric else "")
        return (1, int(value) if numeric else value)

    return key


def _label(element: str) -> str:
    if element in COLUMN_LABELS:
        return COLUMN_LABELS[element]
    words = element.removeprefix("u_").replace("_", " ")
    return words[:1].upper() + words[1:]


def _internal_type(element: str, table: str) -> str:
    if _reference_target(table, element):
        return "reference"
    if element in JOURNAL_FIELDS:
        return "journal_input"
    if element == "comments_and_work_notes":
        return "journal_list"
    if element in ("work_notes_list", "watch_list"):
        return "glide_list"
    if element == "active":
        return "boolean"
    if element.endswith(("_at", "_on")):
        return "glide_date_time"
    if element in ("state", "incident_state", "impact", "urgency", "priority", "severity", "sys_mod_count",
                   "child_incidents", "reassignment_count", "reopen_count", "hold_reason"):
        return "integer"
    if element == "sys_id":
        return "GUID"
    return "string"


def _reference_target(table: str, element: str) -> str | None:
    per_table = TABLE_REFERENCES.get(table, {})
    if element in per_table:
        return per_table[element]
    return REFERENCES.get(element)


def _number_prefix(table: str) -> str | None:
    if table in NUMBER_PREFIXES:
        return NUMBER_PREFIXES[table]
    if table.startswith(UNNUMBERED_TABLE_PREFIXES):
        return None
    return re.sub(r"[^a-z]", "", table.removeprefix("u_"))[:4].upper() or "REC"


@dataclass
class _ReadOptions:
    fields: list[str]
    display: str
    exclude_links: bool
    base: str


# -- the simulator ----------------------------------------------------------------------------------


class ServiceNowSim:
    """An in-memory ServiceNow instance behind the Table, Batch, Aggregate and OAuth APIs.

    ``clock`` returns the current time (aware, UTC; default real time). ``cascade_resolve`` makes a
    resolved incident resolve its open children. ``incident_fields`` replaces :data:`INCIDENT_FIELDS`
    (system fields and ``number`` are always there); writes to other incident fields are ignored.
    ``seed`` makes ``sys_id`` values reproducible. ``batch_enabled`` / ``batch_max_items`` control the
    Batch API; ``strict_query`` makes a query naming an unknown field return no rows (as with
    ``glide.invalid_query.returns_no_rows``); ``readable(table, record)`` hides records after paging,
    like ACLs do, so pages can come back short or empty while more rows exist.
    """

    def __init__(
        self,
        user: str = "admin",
        password: str = "admin",
        clock: Callable[[], datetime] | None = None,
        cascade_resolve: bool = True,
        incident_fields: Iterable[str] | None = None,
        seed: int = 1,
        *,
        batch_enabled: bool = True,
        batch_max_items: int = 100,
        strict_query: bool = False,
        readable: Readable | None = None,
    ) -> None:
        self.user = user
        self.password = password
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(timezone.utc))
        self.cascade_resolve = cascade_resolve
        self.batch_enabled = batch_enabled
        self.batch_max_items = batch_max_items
        self.strict_query = strict_query
        self.readable = readable
        self.seed = seed
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._tables: dict[str, dict[str, dict[str, str]]] = {}
        self._columns: dict[str, dict[str, None]] = {}
        self._fixed_schema: set[str] = {"incident"}
        self._numbers: dict[str, int] = {}
        self._tokens: dict[str, datetime] = {}
        self._refresh_tokens: set[str] = set()
        fields = INCIDENT_FIELDS if incident_fields is None else tuple(incident_fields)
        self._columns["incident"] = dict.fromkeys((*SYSTEM_FIELDS, "number", "sys_class_name", *fields))
        self._seed_dictionary("incident")
        self.router = Router(self.routes(), not_found=lambda request: _error(400, *BAD_URI),
                             wrong_method=self._not_supported, authorised=self._authorised,
                             unauthorised=self._unauthorised)

    def routes(self) -> list[Route]:
        """The instance's endpoints: OAuth, Batch, Aggregate and Table APIs."""
        record = TABLE_PATH + "/{sys_id}[/]"
        table = TABLE_PATH + "[/]"
        return [
            Route("POST", OAUTH_PATH, self._oauth, public=True),
            Route("POST", BATCH_PATH, self._batch, serves=lambda groups: self.batch_enabled),
            Route("GET HEAD", STATS_PATH, self._stats),
            Route("GET HEAD", table, self._list, check=self._table_check),
            Route("POST", table, self._create, check=self._table_check),
            Route("GET HEAD", record, self._read_one, check=self._table_check),
            Route("PUT PATCH", record, self._write, check=self._table_check),
            Route("DELETE", record, self._delete, check=self._table_check),
        ]

    # -- Python API ------------------------------------------------------------------------------

    def insert(self, table: str, fields: dict[str, Any]) -> dict[str, str]:
        """Store a record directly (no HTTP) and return it as the API would store it.

        Unlike the REST API this accepts ``sys_*`` fields (``sys_created_on``, ``sys_id``...) and any
        ``opened_at``, so tests can seed history.
        """
        with self._lock:
            return self._full(table, self._insert(table, fields, trusted=True))

    def update(self, table: str, sys_id: str, fields: dict[str, Any]) -> dict[str, str]:
        """Change a record as a person in the UI would: bumps ``sys_updated_on`` / ``sys_mod_count`` and
        runs the lifecycle rules (cascades). Pass ``sys_updated_by`` to act as another user.

        Raises ``KeyError`` for an unknown record.
        """
        with self._lock:
            record = self._update(table, sys_id, fields, trusted=True)
            if record is None:
                raise KeyError(f"{table}/{sys_id}")
            return self._full(table, record)

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        """A copy of one record with every column (``""`` when unset), or ``None``."""
        with self._lock:
            record = self._tables.get(table, {}).get(sys_id)
            return None if record is None else self._full(table, record)

    def records(self, table: str) -> list[dict[str, str]]:
        """Copies of every record of ``table`` in insertion order."""
        with self._lock:
            return [self._full(table, record) for record in self._tables.get(table, {}).values()]

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record; ``False`` when there was none."""
        with self._lock:
            return self._tables.get(table, {}).pop(sys_id, None) is not None

    def journal(self, sys_id: str, element: str | None = None) -> list[dict[str, str]]:
        """The ``sys_journal_field`` rows of a record, oldest first, optionally of one element."""
        with self._lock:
            return [self._full("sys_journal_field", row)
                    for row in self._tables.get("sys_journal_field", {}).values()
                    if row.get("element_id") == sys_id and (element is None or row.get("element") == element)]

    def server(self, port: int = 0) -> SimServer:
        """A (not yet started) :class:`SimServer` on 127.0.0.1 serving :meth:`handle` behind basic or
        bearer auth. Use it as a context manager or call ``start()``."""
        return SimServer(self._authenticated, port=port, seed=self.seed)

    # -- HTTP ------------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one HTTP request (authentication is checked by :meth:`server`, not here)."""
        with self._lock:
            return self.router.dispatch(request, authenticate=False)

    def _authenticated(self, request: SimRequest) -> SimResponse:
        with self._lock:
            return self.router.dispatch(request)

    @staticmethod
    def _unauthorised(request: SimRequest) -> SimResponse:
        return _error(401, "User Not Authenticated", "Required to provide Auth information",
                      {"WWW-Authenticate": 'BASIC realm="Service-now"'})

    def _authorised(self, request: SimRequest) -> bool:
        scheme, _, credentials = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            return bool(sep) and user == self.user and password == self.password
        if scheme.lower() == "bearer":
            with self._lock:
                expiry = self._tokens.get(credentials.strip())
                return expiry is not None and self.clock() < expiry
        return False

    @staticmethod
    def _checked(request: SimRequest, table: str) -> SimResponse | None:
        """The error for a bad table name or an unacceptable ``Accept`` header, if any."""
        if not _TABLE_NAME.fullmatch(table):
            return _error(400, f"Invalid table {table}", None)
        if not _accepts_json(request):
            return _error(406, "Not Acceptable", "The Accept header must allow application/json")
        return None

    @classmethod
    def _table_check(cls, request: SimRequest, table: str, **_: str | None) -> SimResponse | None:
        """What the Table API rejects before it looks at the method: the table name, ``Accept``, and a
        write's ``Content-Type``."""
        checked = cls._checked(request, table)
        if checked is not None:
            return checked
        if request.method in ("POST", "PUT", "PATCH"):
            content_type = (request.header("Content-Type") or "").lower()
            if content_type and "json" not in content_type:
                return _error(415, "Unsupported Media Type", "Content-Type must be application/json")
        return None

    @staticmethod
    def _not_supported(request: SimRequest) -> SimResponse:
        return _error(405, "Method not Supported", f"{request.method} method not supported for API")

    def _delete(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        return SimResponse(204) if self.delete(table, sys_id) else _error(404, *NO_RECORD_ID)

    def _list(self, request: SimRequest, table: str, version: str | None) -> SimResponse:
        options = self._read_options(request, table)
        rows = self._select(request, table)
        total = len(rows)
        limit = _int_arg(request, "sysparm_limit", DEFAULT_LIMIT)
        limit = limit if limit > 0 else DEFAULT_LIMIT
        offset = max(_int_arg(request, "sysparm_offset", 0), 0)
        page = [row for row in rows[offset:offset + limit] if self._visible(table, row)]
        if not page and version == "v1":
            return _error(404, *NO_RECORD_LIST)
        headers: dict[str, str] = {}
        if not _flag(request, "sysparm_no_count"):
            headers["X-Total-Count"] = str(total)
        if not _flag(request, "sysparm_suppress_pagination_header") and (offset > 0 or total > limit):
            headers["Link"] = self._link_header(request, options.base, offset, limit, total)
        return SimResponse(200, {"result": [self._render(table, row, options) for row in page]}, headers)

    def _read_one(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        record = self._tables.get(table, {}).get(sys_id)
        if record is None or not self._visible(table, record):
            return _error(404, *NO_RECORD_ID)
        return SimResponse(200, {"result": self._render(table, record, self._read_options(request, table))})

    def _create(self, request: SimRequest, table: str, version: str | None) -> SimResponse:
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        record = self._insert(table, body, trusted=False)
        base = self._base_url(request)
        headers = {"Location": f"{base}/api/now/table/{table}/{record['sys_id']}"}
        return self._write_response(request, table, record, 201, headers)

    def _write(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        record = self._update(table, sys_id, body, trusted=False)
        if record is None:
            return _error(404, *NO_RECORD_ID)
        return self._write_response(request, table, record, 200, {})

    def _write_response(self, request: SimRequest, table: str, record: dict[str, str], status: int,
                        headers: dict[str, str]) -> SimResponse:
        if (request.header("X-no-response-body") or "").strip().lower() == "true":
            return SimResponse(status, None, headers)
        return SimResponse(status, {"result": self._render(table, record, self._read_options(request, table))},
                           headers)

    @staticmethod
    def _body(request: SimRequest) -> dict[str, Any] | SimResponse:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Exception while reading request", "The payload is not valid JSON.")
        if body is None:
            return {}
        if not isinstance(body, dict):
            return _error(400, "Exception while reading request", "The payload must be a JSON object.")
        return body

    def _stats(self, request: SimRequest, table: str) -> SimResponse:
        checked = self._checked(request, table)
        if checked is not None:
            return checked
        rows = self._select(request, table)
        group_by = [name.strip() for name in (request.arg("sysparm_group_by") or "").split(",") if name.strip()]
        if not group_by:
            return SimResponse(200, {"result": {"stats": self._aggregate(request, table, rows)}})
        groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for row in rows:
            groups.setdefault(tuple(self._value(table, row, name) for name in group_by), []).append(row)
        result = [{"stats": self._aggregate(request, table, members),
                   "groupby_fields": [{"field": name, "value": value} for name, value in zip(group_by, key)]}
                  for key, members in groups.items()]
        return SimResponse(200, {"result": result})

    def _aggregate(self, request: SimRequest, table: str, rows: list[dict[str, str]]) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        if _flag(request, "sysparm_count"):
            stats["count"] = str(len(rows))
        for kind in ("min", "max", "sum", "avg"):
            names = [n.strip() for n in (request.arg(f"sysparm_{kind}_fields") or "").split(",") if n.strip()]
            for name in names:
                values = [v for v in (self._value(table, row, name) for row in rows) if v != ""]
                stats.setdefault(kind, {})[name] = self._aggregate_value(kind, values)
        return stats

    @staticmethod
    def _aggregate_value(kind: str, values: list[str]) -> str:
        if not values:
            return ""
        numbers = [float(v) for v in values if re.fullmatch(r"-?\d+(\.\d+)?", v)]
        if kind in ("sum", "avg"):
            total = sum(numbers)
            result = total if kind == "sum" else total / len(numbers) if numbers else 0.0
            return str(int(result)) if float(result).is_integer() else f"{result:.4f}"
        key = _sort_key(values)
        return min(values, key=key) if kind == "min" else max(values, key=key)

    # -- Batch API -------------------------------------------------------------------------------

    def _batch(self, request: SimRequest) -> SimResponse:
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        items = body.get("rest_requests")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return _error(400, "Invalid batch request", "rest_requests must be a list of objects")
        serviced, unserviced = [], []
        for index, item in enumerate(items):
            if index >= self.batch_max_items:
                unserviced.append(str(item.get("id", "")))
            else:
                serviced.append(self._batch_item(request, item))
        return SimResponse(200, {"batch_request_id": _to_text(body.get("batch_request_id")),
                                 "serviced_requests": serviced, "unserviced_requests": unserviced})

    def _batch_item(self, outer: SimRequest, item: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        parts = urlsplit(str(item.get("url", "")))
        headers = {str(h.get("name")): str(h.get("value", "")) for h in item.get("headers") or []
                   if isinstance(h, dict) and h.get("name")}
        if outer.header("Host") and not any(k.lower() == "host" for k in headers):
            headers["Host"] = outer.header("Host") or ""
        try:
            body = base64.b64decode(str(item.get("body") or ""), validate=True)
        except (binascii.Error, ValueError):
            response = _error(400, "Invalid request body", "The body must be base64 encoded.")
        else:
            if _BATCH_REGEX.fullmatch(parts.path):
                response = _error(400, "Invalid batch request", "Batch requests cannot be nested.")
            else:
                sub = SimRequest(method=str(item.get("method", "GET")).upper(), path=parts.path,
                                 query=parse_qs(parts.query, keep_blank_values=True), headers=headers, body=body)
                response = self.router.dispatch(sub, authenticate=False)
        payload = response.encode()
        response_headers = dict(response.headers)
        if payload and not any(k.lower() == "content-type" for k in response_headers):
            response_headers["Content-Type"] = "application/json;charset=UTF-8"
        exclude = _to_text(item.get("exclude_response_headers")).lower() == "true"
        return {
            "id": _to_text(item.get("id")),
            "status_code": response.status,
            "status_text": HTTPStatus(response.status).phrase,
            "body": base64.b64encode(payload).decode("ascii"),
            "headers": [] if exclude else [{"name": k, "value": v} for k, v in response_headers.items()],
            "execution_time": int((time.perf_counter() - started) * 1000),
            "error_message": "",
            "redirect_url": "",
        }

    # -- OAuth -----------------------------------------------------------------------------------

    def _oauth(self, request: SimRequest) -> SimResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == "password":
            granted = form.get("username") == self.user and form.get("password") == self.password
        elif grant == "refresh_token":
            granted = form.get("refresh_token") in self._refresh_tokens
        else:
            return SimResponse(400, {"error": "unsupported_grant_type", "error_description": "access_denied"})
        if not granted:
            return SimResponse(401, {"error": "server_error", "error_description": "access_denied"})
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._tokens[access] = self.clock() + timedelta(seconds=TOKEN_LIFETIME)
        self._refresh_tokens.add(refresh)
        return SimResponse(200, {"access_token": access, "refresh_token": refresh, "scope": "useraccount",
                                 "token_type": "Bearer", "expires_in": TOKEN_LIFETIME})

    # -- store -----------------------------------------------------------------------------------

    def _now(self) -> str:
        return _format_time(self.clock())

    def _new_sys_id(self) -> str:
        return f"{self._random.getrandbits(128):032x}"

    def _known(self, table: str, name: str) -> bool:
        return name in self._columns.get(table, {})

    def _writable(self, table: str, name: str) -> bool:
        if table in self._fixed_schema:
            return self._known(table, name)
        return bool(_FIELD_NAME.fullmatch(name))

    def _accept(self, table: str, fields: dict[str, Any], trusted: bool) -> dict[str, str]:
        """The writable subset of ``fields`` as strings; unknown columns are dropped silently, and over
        REST so are ``sys_*`` columns."""
        return {name: _to_text(value) for name, value in fields.items()
                if isinstance(name, str) and (trusted or not name.startswith("sys_")) and self._writable(table, name)}

    def _journaled(self, table: str, values: dict[str, str]) -> dict[str, str]:
        if table.startswith("sys_"):
            return {}
        entries = {name: values.pop(name) for name in JOURNAL_FIELDS if name in values}
        self._columns.setdefault(table, dict.fromkeys(SYSTEM_FIELDS)).update(dict.fromkeys(entries))
        return {name: text for name, text in entries.items() if text}

    def _insert(self, table: str, fields: dict[str, Any], trusted: bool) -> dict[str, str]:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"invalid table name {table!r}")
        values = self._accept(table, fields, trusted)
        journal = self._journaled(table, values)
        now = values.get("sys_created_on") or self._now()
        record: dict[str, str] = {"sys_id": values.pop("sys_id", "") or self._new_sys_id()}
        record.update(TABLE_DEFAULTS.get(table, {}))
        prefix = _number_prefix(table)
        if prefix is not None:
            record["number"] = self._number(prefix, values.get("number", ""), table)
            record["sys_class_name"] = table
        if table == "incident":
            record["opened_at"] = now
        record.update(values)
        self._lifecycle(table, {}, record, explicit=values, now=now)
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

    def _update(self, table: str, sys_id: str, fields: dict[str, Any], trusted: bool,
                cascading: frozenset[str] = frozenset()) -> dict[str, str] | None:
        record = self._tables.get(table, {}).get(sys_id)
        if record is None:
            return None
        values = self._accept(table, fields, trusted)
        journal = self._journaled(table, values)
        overrides = {name: values.pop(name) for name in list(values) if name.startswith("sys_")}
        overrides.pop("sys_id", None)
        now = overrides.get("sys_updated_on") or self._now()
        changes = dict(values)
        self._lifecycle(table, record, changes, explicit=values, now=now)
        changes = {name: value for name, value in changes.items()
                   if self._writable(table, name) and record.get(name, "") != value}
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

    def _lifecycle(self, table: str, before: dict[str, str], changes: dict[str, str], explicit: dict[str, str],
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

    def _resolve_children(self, parent: dict[str, str], cascading: frozenset[str]) -> None:
        children = [row["sys_id"] for row in self._tables.get("incident", {}).values()
                    if row.get("parent_incident") == parent["sys_id"]
                    and row.get("state", "") not in FINAL_INCIDENT_STATES]
        for child in children:
            self._update("incident", child, {"state": "6", "close_code": parent.get("close_code", ""),
                                             "close_notes": parent.get("close_notes", ""),
                                             "sys_updated_by": parent["sys_updated_by"]},
                         trusted=True, cascading=cascading)

    def _add_journal(self, table: str, record: dict[str, str], entries: dict[str, str]) -> None:
        for element, text in entries.items():
            self._insert("sys_journal_field", {
                "element_id": record["sys_id"], "element": element, "name": table, "value": text,
                "sys_created_on": record["sys_updated_on"], "sys_created_by": record["sys_updated_by"],
            }, trusted=True)

    def _seed_dictionary(self, table: str) -> None:
        self._insert("sys_dictionary", {"name": table, "element": "", "internal_type": "collection",
                                        "column_label": _label(table), "reference": "", "active": "true"},
                     trusted=True)
        for element in self._columns[table]:
            self._insert("sys_dictionary", {
                "name": table, "element": element, "internal_type": _internal_type(element, table),
                "column_label": _label(element), "reference": _reference_target(table, element) or "",
                "active": "true",
            }, trusted=True)

    def _full(self, table: str, record: dict[str, str]) -> dict[str, str]:
        full = {name: record.get(name, "") for name in self._columns.get(table, {})}
        full.update(record)
        return full

    # -- queries and rendering -------------------------------------------------------------------

    def _select(self, request: SimRequest, table: str) -> list[dict[str, str]]:
        """Rows matching ``sysparm_query`` and plain ``name=value`` parameters, ordered."""
        query = parse_encoded_query(request.arg("sysparm_query") or "")
        plain = [Condition(name, "=", values[0]) for name, values in request.query.items()
                 if not name.startswith("sysparm_") and values]
        conditions = [c for group in query.groups for clause in group for c in clause] + plain
        if self.strict_query and any(not self._field_known(table, c.field) for c in conditions):
            return []
        groups = [[kept for kept in ([c for c in clause if self._field_known(table, c.field)] for clause in group)
                   if kept] for group in query.groups] or [[]]
        plain = [c for c in plain if self._field_known(table, c.field)]

        def matches(row: dict[str, str]) -> bool:
            if not all(c.matches(self._value(table, row, c.field)) for c in plain):
                return False
            return any(all(any(c.matches(self._value(table, row, c.field)) for c in clause) for clause in group)
                       for group in groups)

        rows = [row for row in self._tables.get(table, {}).values() if matches(row)]
        for name, descending in reversed(query.order):
            if self._field_known(table, name):
                key = _sort_key([self._value(table, row, name) for row in rows])
                rows.sort(key=lambda row: key(self._value(table, row, name)), reverse=descending)
        return rows

    def _field_known(self, table: str, path: str) -> bool:
        head, dot, _ = path.partition(".")
        if not self._known(table, head):
            return False
        return not dot or _reference_target(table, head) is not None

    def _value(self, table: str, row: dict[str, str], path: str) -> str:
        """A field's stored value, following dot-walks through reference fields."""
        head, dot, rest = path.partition(".")
        value = row.get(head, "")
        if not dot:
            return value
        target = _reference_target(table, head)
        found = self._lookup(target, value) if target else None
        return "" if found is None else self._value(found[0], found[1], rest)

    def _lookup(self, table: str, sys_id: str) -> tuple[str, dict[str, str]] | None:
        """A referenced record and its table; a reference to ``task`` finds a record of any task table."""
        for name in (table, *NUMBER_PREFIXES) if table == "task" else (table,):
            record = self._tables.get(name, {}).get(sys_id)
            if record is not None:
                return name, record
        return None

    def _visible(self, table: str, row: dict[str, str]) -> bool:
        return self.readable is None or self.readable(table, self._full(table, row))

    def _read_options(self, request: SimRequest, table: str) -> _ReadOptions:
        requested = [name.strip() for name in (request.arg("sysparm_fields") or "").split(",") if name.strip()]
        fields = [name for name in requested if self._field_known(table, name)] if requested \
            else list(self._columns.get(table, {}))
        return _ReadOptions(fields, _display_mode(request), _flag(request, "sysparm_exclude_reference_link"),
                            self._base_url(request))

    @staticmethod
    def _base_url(request: SimRequest) -> str:
        return f"http://{request.header('Host') or '127.0.0.1'}"

    def _render(self, table: str, row: dict[str, str], options: _ReadOptions) -> dict[str, Any]:
        return {name: self._render_value(table, row, name, options) for name in options.fields}

    def _render_value(self, table: str, row: dict[str, str], name: str, options: _ReadOptions) -> Any:
        value = "" if name in JOURNAL_FIELDS else self._value(table, row, name)
        target = None if "." in name else _reference_target(table, name)
        display = self._display(table, name, value, target)
        if target is None or value == "":
            if options.display == "all":
                return {"display_value": display, "value": value}
            return display if options.display == "true" else value
        link = {} if options.exclude_links else {"link": f"{options.base}/api/now/table/{target}/{value}"}
        if options.display == "all":
            return {"display_value": display, **link, "value": value}
        if options.display == "true":
            return {"display_value": display, **link} if link else display
        return {**link, "value": value} if link else value

    def _display(self, table: str, name: str, value: str, target: str | None) -> str:
        if target is not None:
            found = self._lookup(target, value)
            if found is None:
                return value
            referenced = found[1]
            return referenced.get("number") or referenced.get("name") or referenced.get("user_name") or value
        return CHOICE_LABELS.get(table, {}).get(name, {}).get(value, value)

    @staticmethod
    def _link_header(request: SimRequest, base: str, offset: int, limit: int, total: int) -> str:
        def url(page_offset: int) -> str:
            params = [(k, v) for k, values in request.query.items() if k not in ("sysparm_offset", "sysparm_limit")
                      for v in values]
            params += [("sysparm_offset", str(page_offset)), ("sysparm_limit", str(limit))]
            return f"<{base}{request.path}?{urlencode(params)}>"

        links = [f'{url(0)};rel="first"']
        if offset > 0:
            links.append(f'{url(max(offset - limit, 0))};rel="prev"')
        if offset + limit < total:
            links.append(f'{url(offset + limit)};rel="next"')
        links.append(f'{url(max((total - 1) // limit * limit, 0))};rel="last"')
        return ",".join(links)


def serve(port: int, user: str = "admin", password: str = "admin") -> None:
    """Run a simulator on 127.0.0.1:``port`` until Ctrl-C (``mim simulate servicenow``)."""
    sim = ServiceNowSim(user=user, password=password)
    server = sim.server(port)
    server.start()
    print(f"ServiceNow simulator on {server.url} (user {user})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
