"""A Jira Cloud / Data Center (plus JSM major-incident bits) simulator for tests and the demo.

The simulator keeps one project (``ITSM``) in memory and answers the REST calls a major-incident
connector makes, with the shapes, status codes and traps of the real products:

* Cloud: ``/rest/api/3`` (and ``/rest/api/2``), ``GET|POST /search/jql`` with opaque ``nextPageToken``
  paging, no ``total``, ``id``-only default fields and ``reconcileIssues``; the removed
  ``/rest/api/{2,3}/search`` answers **410**; ADF bodies on v3; users by ``accountId``.
* Data Center: ``/rest/api/2`` only, ``/search`` with ``startAt``/``maxResults``/``total``; plain-text
  bodies; users by ``name``; ``Authorization: Bearer <PAT>``.
* JQL subset with Jira's time-zone trap: quoted date literals are read in the *user's* time zone at
  minute precision; unquoted numbers are epoch milliseconds.
* Optional search lag (eventual consistency), per-issue write limits (413), link-direction semantics,
  entity properties, JSM internal comments (``sd.public.comment``), the major-incident custom field and
  the JSM Incidents API ``.../incident/{issueId}/major``.

Use :class:`JiraSim` from Python (seed issues, inspect state) and :meth:`JiraSim.server` to serve it over
HTTP via :class:`connector.sim.base.SimServer`; :func:`serve` runs it in the foreground.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from connector.sim.base import ANY_METHOD, FaultRule, Groups, Route, Router, SimRequest, SimResponse, SimServer

__all__ = ["JiraSim", "JqlError", "serve", "jira_time", "adf_from_text", "adf_to_text"]

UTC = timezone.utc

MAJOR_INCIDENT_FIELD = "customfield_10050"
STAGE_FIELD = "customfield_10060"
MAJOR_INCIDENT_VALUE = "MAJOR_INCIDENT"
MAJOR_INCIDENT_CFTYPE = (
    "com.atlassian.jira.modules.servicemanagement.major-incident-entity:major-incident-entity-field-cftype"
)
TEXTFIELD_CFTYPE = "com.atlassian.jira.plugin.system.customfieldtypes:textfield"

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
TOKEN_INVALID = "The provided next page token is invalid or expired."
DATE_FORMATS_HINT = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
    "or a period format e.g. '-5d', '4w 2d'."
)

TOKEN_LIFETIME = timedelta(days=7)
SEARCH_PAGE_CAP = 100
SEARCH_PAGE_CAP_IDS = 5000
DC_SEARCH_PAGE_CAP = 1000
MAX_RECONCILE = 50
MAX_PROPERTIES = 5
MAX_ORDER_BY = 7

# --------------------------------------------------------------------------------------------------
# Static configuration of the simulated site
# --------------------------------------------------------------------------------------------------

PROJECT = {"id": "10000", "key": "ITSM", "name": "IT Service Management", "projectTypeKey": "service_desk"}

ISSUE_TYPES: list[dict[str, Any]] = [
    {"id": "10001", "name": "Incident", "description": "For system outages or incidents."},
    {"id": "10002", "name": "Post-incident review", "description": "Review of a major incident."},
    {"id": "10003", "name": "Change", "description": "For changes to IT systems."},
    {"id": "10004", "name": "Task", "description": "A small piece of work."},
]

PRIORITIES: list[dict[str, Any]] = [
    {"id": "1", "name": "Highest", "statusColor": "#d04437"},
    {"id": "2", "name": "High", "statusColor": "#f15C75"},
    {"id": "3", "name": "Medium", "statusColor": "#f79232"},
    {"id": "4", "name": "Low", "statusColor": "#707070"},
    {"id": "5", "name": "Lowest", "statusColor": "#999999"},
]
DEFAULT_PRIORITY = "3"

STATUS_CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}

STATUSES: list[dict[str, Any]] = [
    {"id": "1", "name": "Open", "category": "new", "description": "The issue is open and ready for work."},
    {"id": "3", "name": "In Progress", "category": "indeterminate", "description": "Work is in progress."},
    {"id": "10100", "name": "Pending", "category": "indeterminate", "description": "Waiting on someone."},
    {"id": "5", "name": "Resolved", "category": "done", "description": "A resolution has been taken."},
    {"id": "6", "name": "Closed", "category": "done", "description": "The issue is closed."},
    {"id": "10101", "name": "Canceled", "category": "done", "description": "The issue was canceled."},
]
INITIAL_STATUS = "1"

# (id, name, target status id, source status ids)
TRANSITIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("11", "Start progress", "3", ("1", "10100")),
    ("21", "Pending", "10100", ("1", "3")),
    ("31", "Resolve", "5", ("1", "3", "10100")),
    ("41", "Close", "6", ("1", "3", "10100", "5")),
    ("51", "Reopen", "1", ("5", "6", "10101")),
    ("61", "Cancel", "10101", ("1", "3", "10100")),
]

LINK_TYPES: list[dict[str, str]] = [
    {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
    {"id": "10001", "name": "Cloners", "inward": "is cloned by", "outward": "clones"},
    {"id": "10002", "name": "Duplicate", "inward": "is duplicated by", "outward": "duplicates"},
    {"id": "10007", "name": "Initiative", "inward": "is included by", "outward": "includes"},
    {"id": "10006", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
    {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
]

RESOLUTION_DONE = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}

SEED_USERS: list[dict[str, str]] = [
    {"accountId": "5b10ac8d82e05b22cc7d4e01", "name": "admin", "displayName": "Sim Admin"},
    {"accountId": "5b10ac8d82e05b22cc7d4e02", "name": "alice", "displayName": "Alice Ng",
     "emailAddress": "alice@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e03", "name": "bob", "displayName": "Bob Okafor",
     "emailAddress": "bob@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e04", "name": "carol", "displayName": "Carol Diaz",
     "emailAddress": "carol@example.com"},
    {"accountId": "5b10ac8d82e05b22cc7d4e05", "name": "dave", "displayName": "Dave Smith",
     "emailAddress": "dave@example.com"},
]


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def jira_time(value: datetime) -> str:
    """Format an aware datetime the way Jira does: ``2023-06-24T19:24:50.000+0000`` (UTC, milliseconds)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(value: datetime) -> int:
    # Integer arithmetic: float timestamps are off by one millisecond for some values.
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _truncate_ms(value: datetime) -> datetime:
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def _parse_iso(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _truncate_ms(parsed.astimezone(UTC))


def adf_from_text(text: str) -> dict[str, Any]:
    """Wrap plain text in a minimal Atlassian Document Format document (one paragraph per line)."""
    content: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        content.append(paragraph)
    return {"type": "doc", "version": 1, "content": content if text else []}


def adf_to_text(node: Any) -> str:
    """Flatten an ADF document to plain text (block nodes become lines)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    parts = [adf_to_text(child) for child in node.get("content", []) or []]
    if kind in ("doc", "bulletList", "orderedList", "table", "tableRow"):
        return "\n".join(parts)
    return "".join(parts)


def _adf_problem(node: Any, top: bool = True) -> str | None:
    """Why ``node`` is not a valid ADF document (``None`` when it is)."""
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return "not an ADF node"
    if top:
        if node.get("type") != "doc" or node.get("version") != 1:
            return "top-level node must be {'type': 'doc', 'version': 1}"
        if not isinstance(node.get("content"), list):
            return "doc must have a content list"
    if node.get("type") == "text" and not isinstance(node.get("text"), str):
        return "text node without text"
    content = node.get("content")
    if content is not None:
        if not isinstance(content, list):
            return "content must be a list"
        for child in content:
            problem = _adf_problem(child, top=False)
            if problem:
                return problem
    return None


def _error(status: int, messages: Iterable[str] = (), errors: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(status, {"errorMessages": list(messages), "errors": dict(errors or {})}, dict(headers or {}))


class _HttpError(Exception):
    """Raised inside handlers to answer with an error response."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _fail(status: int, *messages: str, errors: dict[str, str] | None = None) -> _HttpError:
    return _HttpError(_error(status, messages, errors))


def _split_list(values: Iterable[Any] | None) -> list[str]:
    """Flatten ``["a,b", "c"]`` (repeated or comma-separated parameters) into ``["a", "b", "c"]``."""
    out: list[str] = []
    for value in values or []:
        for part in str(value).split(","):
            part = part.strip()
            if part:
                out.append(part)
    return out


def _int_arg(value: Any, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _fail(400, f"The value '{value}' of '{name}' is not a valid integer.") from None


def _bool_arg(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


REST_API = "/rest/api/{version:2|3|latest}"


def _numbered_version(handler: Callable[..., SimResponse]) -> Callable[..., SimResponse]:
    """``handler`` called with the REST API version as a number (``latest`` is 2)."""

    def call(request: SimRequest, version: str, **groups: str) -> SimResponse:
        return handler(request, 3 if version == "3" else 2, **groups)

    return call


# --------------------------------------------------------------------------------------------------
# JQL
# --------------------------------------------------------------------------------------------------


class JqlError(ValueError):
    """A JQL syntax or semantic error; the simulator answers it with HTTP 400."""


_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_UNSUPPORTED_OPERATORS = {"was", "changed"}

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<dq>"(?:[^"\\]|\\.)*")
  | (?P<sq>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|>=|<=|!~|=|>|<|~)
  | (?P<punct>[(),])
  | (?P<word>[^\s"'(),=!<>~]+)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class _Token:
    kind: str  # "str", "word", "op", "punct"
    text: str
    pos: int

    def keyword(self, *names: str) -> bool:
        return self.kind == "word" and self.text.lower() in names


@dataclass
class _Literal:
    text: str
    quoted: bool = False
    function: str | None = None
    args: list[str] = field(default_factory=list)


@dataclass
class _Clause:
    field: str
    operator: str  # "=", "!=", ">", ">=", "<", "<=", "~", "!~", "in", "not in", "is", "is not"
    values: list[_Literal]
    raw_field: str


@dataclass
class _BoolNode:
    op: str  # "and" | "or" | "not"
    children: list[Any]


@dataclass
class JqlQuery:
    """A parsed JQL query: a where tree (``None`` when unbounded) and ORDER BY terms."""

    where: Any
    order_by: list[tuple[str, bool]]  # (canonical field, descending)


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokenise(jql: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(jql):
        match = _TOKEN_RE.match(jql, pos)
        if match is None:
            snippet = jql[pos:pos + 10]
            if jql[pos] in "\"'":
                raise JqlError(f"Error in the JQL Query: The quoted string starting at character {pos} is not "
                               "terminated.")
            raise JqlError(f"Error in the JQL Query: The character '{jql[pos]}' is a reserved JQL character. "
                           f"You must enclose it in a string or use the escape '\\u{ord(jql[pos]):04x}' instead. "
                           f"(line 1, character {pos + 1}) near {snippet!r}")
        kind = match.lastgroup or ""
        text = match.group(0)
        if kind == "dq" or kind == "sq":
            tokens.append(_Token("str", _unescape(text[1:-1]), pos))
        elif kind != "space":
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, jql: str, resolve_field: Callable[[str, bool], str]) -> None:
        self.tokens = _tokenise(jql)
        self.i = 0
        self.resolve_field = resolve_field

    def peek(self, offset: int = 0) -> _Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def next(self, expected: str = "a token") -> _Token:
        token = self.peek()
        if token is None:
            raise JqlError(f"Error in the JQL Query: Expecting {expected} but reached the end of the query.")
        self.i += 1
        return token

    def fail(self, token: _Token, expected: str) -> JqlError:
        return JqlError(f"Error in the JQL Query: Expecting {expected} but got '{token.text}'. "
                        f"(line 1, character {token.pos + 1})")

    def parse(self) -> JqlQuery:
        where = None
        token = self.peek()
        if token is not None and not token.keyword("order"):
            where = self.parse_or()
        order: list[tuple[str, bool]] = []
        token = self.peek()
        if token is not None:
            if not token.keyword("order"):
                raise self.fail(token, "either 'OR' or 'AND'")
            self.next()
            by = self.next("'by'")
            if not by.keyword("by"):
                raise self.fail(by, "'by'")
            while True:
                name = self.next("a field name")
                if name.kind not in ("word", "str"):
                    raise self.fail(name, "a field name")
                canonical = self.resolve_field(name.text, name.kind == "str")
                descending = False
                direction = self.peek()
                if direction is not None and direction.keyword("asc", "desc"):
                    descending = direction.text.lower() == "desc"
                    self.next()
                order.append((canonical, descending))
                sep = self.peek()
                if sep is None:
                    break
                if sep.kind == "punct" and sep.text == ",":
                    self.next()
                    continue
                raise self.fail(sep, "',' or the end of the query")
            if len(order) > MAX_ORDER_BY:
                raise JqlError(f"The ORDER BY clause can contain at most {MAX_ORDER_BY} fields.")
        return JqlQuery(where, order)

    def parse_or(self) -> Any:
        children = [self.parse_and()]
        while (token := self.peek()) is not None and token.keyword("or"):
            self.next()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else _BoolNode("or", children)

    def parse_and(self) -> Any:
        children = [self.parse_not()]
        while (token := self.peek()) is not None and token.keyword("and"):
            self.next()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else _BoolNode("and", children)

    def parse_not(self) -> Any:
        token = self.peek()
        if token is not None and token.keyword("not"):
            self.next()
            return _BoolNode("not", [self.parse_not()])
        return self.parse_primary()

    def parse_primary(self) -> Any:
        token = self.next("a field name or '('")
        if token.kind == "punct" and token.text == "(":
            node = self.parse_or()
            close = self.next("')'")
            if not (close.kind == "punct" and close.text == ")"):
                raise self.fail(close, "')'")
            return node
        if token.kind not in ("word", "str") or (token.kind == "word" and token.text.lower() in _KEYWORDS):
            raise self.fail(token, "a field name")
        canonical = self.resolve_field(token.text, token.kind == "str")
        operator = self.parse_operator()
        values = self.parse_operand(operator)
        return _Clause(canonical, operator, values, token.text)

    def parse_operator(self) -> str:
        token = self.next("an operator")
        if token.kind == "op":
            return token.text
        if token.keyword("in"):
            return "in"
        if token.keyword("is"):
            nxt = self.peek()
            if nxt is not None and nxt.keyword("not"):
                self.next()
                return "is not"
            return "is"
        if token.keyword("not"):
            nxt = self.next("'in'")
            if nxt.keyword("in"):
                return "not in"
            raise self.fail(nxt, "'in'")
        if token.kind == "word" and token.text.lower() in _UNSUPPORTED_OPERATORS:
            raise JqlError(f"Error in the JQL Query: the operator '{token.text}' is not supported by this "
                           "simulator.")
        raise self.fail(token, "an operator ('=', '!=', '~', '<', '>', '<=', '>=', 'in', 'not in', 'is')")

    def parse_literal(self) -> _Literal:
        token = self.next("a value")
        if token.kind == "str":
            return _Literal(token.text, quoted=True)
        if token.kind != "word" or token.text.lower() in (_KEYWORDS - {"empty", "null"}):
            raise self.fail(token, "a value")
        nxt = self.peek()
        if nxt is not None and nxt.kind == "punct" and nxt.text == "(":
            self.next()
            args: list[str] = []
            while True:
                arg = self.next("')'")
                if arg.kind == "punct" and arg.text == ")":
                    break
                if arg.kind == "punct" and arg.text == ",":
                    continue
                args.append(arg.text)
            return _Literal(token.text, function=token.text.lower(), args=args)
        return _Literal(token.text)

    def parse_operand(self, operator: str) -> list[_Literal]:
        if operator in ("in", "not in"):
            open_ = self.next("'('")
            if not (open_.kind == "punct" and open_.text == "("):
                raise self.fail(open_, "'('")
            values = [self.parse_literal()]
            while True:
                sep = self.next("')'")
                if sep.kind == "punct" and sep.text == ")":
                    return values
                if sep.kind == "punct" and sep.text == ",":
                    values.append(self.parse_literal())
                    continue
                raise self.fail(sep, "',' or ')'")
        if operator in ("is", "is not"):
            token = self.next("'EMPTY'")
            if not token.keyword("empty", "null"):
                raise self.fail(token, "'EMPTY' or 'NULL'")
            return [_Literal("EMPTY")]
        return [self.parse_literal()]


def _is_empty_literal(lit: _Literal) -> bool:
    return not lit.quoted and lit.function is None and lit.text.lower() in ("empty", "null")


# --------------------------------------------------------------------------------------------------
# Store records
# --------------------------------------------------------------------------------------------------


@dataclass
class _Link:
    id: str
    type_id: str
    source: str  # issue id of the POST body's inwardIssue: the subject of the outward phrase
    target: str  # issue id of the POST body's outwardIssue


@dataclass
class _PageToken:
    jql_hash: str
    offset: int
    issued: datetime


# --------------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------------


class JiraSim:
    """In-memory Jira Cloud (``flavour="cloud"``) or Data Center (``flavour="dc"``) site.

    ``clock`` returns the current aware UTC time (default: real time); every timestamp the simulator
    writes comes from it. ``user_time_zone`` is the API user's zone, used to read quoted JQL dates.
    ``search_lag`` (seconds) delays the visibility of writes in search results, except for issue ids passed
    in ``reconcileIssues``. ``per_issue_write_limit`` caps comments and links per issue (413 beyond).
    With ``record_exchanges`` every request answered is appended to :attr:`exchanges`.
    """

    def __init__(
        self,
        email: str = "admin@example.com",
        token: str = "token",
        flavour: str = "cloud",
        clock: Callable[[], datetime] | None = None,
        user_time_zone: str = "America/New_York",
        major_incident_field: bool = True,
        search_lag: float = 0.0,
        record_exchanges: bool = False,
        per_issue_write_limit: int | None = None,
        seed: int = 1,
    ) -> None:
        if flavour not in ("cloud", "dc"):
            raise ValueError("flavour must be 'cloud' or 'dc'")
        self.email = email
        self.token = token
        self.flavour = flavour
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.user_time_zone = user_time_zone
        self._zone = ZoneInfo(user_time_zone)
        self.major_incident_field = major_incident_field
        self.search_lag = float(search_lag)
        self.record_exchanges = record_exchanges
        self.per_issue_write_limit = per_issue_write_limit
        self.exchanges: list[dict[str, Any]] = []
        self.base_url = "https://your-domain.atlassian.net" if flavour == "cloud" else "https://jira.example.com"
        self._random = random.Random(seed)
        self.cloud_id = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        self._lock = threading.RLock()
        self._issues: dict[str, dict[str, Any]] = {}  # id -> current state
        self._keys: dict[str, str] = {}  # upper-case key -> id
        self._versions: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
        self._links: dict[str, _Link] = {}
        self._components: dict[str, str] = {}  # name -> id
        self._next_issue_id = 10001
        self._next_issue_num = 1
        self._next_comment_id = 10000
        self._next_link_id = 10100
        self._next_component_id = 10200
        self._tokens: dict[str, _PageToken] = {}
        self._users: dict[str, dict[str, Any]] = {}
        for seed_user in SEED_USERS:
            self._add_user(dict(seed_user))
        self._me = SEED_USERS[0]["accountId"]
        self._users[self._me]["emailAddress"] = email
        self.router = Router(self.routes(), not_found=self._null_for_uri, wrong_method=lambda request: SimResponse(405),
                             authorised=self.authorised, unauthorised=self._unauthorised)

    # ------------------------------------------------------------------ Python-side (human) API

    def create_issue(self, fields: dict[str, Any], project: str = "ITSM") -> dict[str, Any]:
        """Create an issue as a human would in the UI and return it as ``GET /issue`` renders it.

        ``fields`` uses simple values: ``summary``, ``description`` (str), ``issuetype`` / ``priority``
        (names), ``components`` (names), ``reporter`` / ``assignee`` (accountId or name; unknown ones are
        created), ``labels``, ``status`` (name), ``created`` / ``updated`` (ISO strings, to seed history),
        ``major_incident`` (bool) or ``customfield_10050``, ``customfield_10060`` (stage text).
        """
        with self._lock:
            if project.upper() != PROJECT["key"]:
                raise KeyError(f"unknown project {project!r}")
            now = self._now()
            created = _parse_iso(fields["created"]) if fields.get("created") else now
            issue_type = self._find_issue_type(fields.get("issuetype", "Incident"))
            if issue_type is None:
                raise ValueError(f"unknown issue type {fields.get('issuetype')!r}")
            st = self._new_state(created)
            st["issuetype"] = issue_type["id"]
            st["summary"] = str(fields.get("summary", "Untitled"))
            st["creator"] = self._me
            st["reporter"] = self._me
            self._apply_human_fields(st, {k: v for k, v in fields.items() if k not in ("issuetype", "created")},
                                     initial=True)
            st["updated"] = _parse_iso(fields["updated"]) if fields.get("updated") else created
            self._register(st)
            return self._render_issue(st, self._default_version())

    def edit_issue(self, key: str, fields: dict[str, Any]) -> None:
        """Change an issue as a human in the UI would: ``status`` (any status, no workflow), ``summary``,
        ``description``, ``priority``, ``labels`` (replaces), ``components``, ``assignee``, ``reporter``,
        ``major_incident`` / ``customfield_10050`` (falsy removes the flag), ``customfield_10060``.
        ``updated`` (ISO) overrides the new timestamp; otherwise it is the clock's now.
        """
        with self._lock:
            st = self._get_state(key)
            if st is None:
                raise KeyError(key)
            self._apply_human_fields(st, fields, initial=False)
            self._touch(st, _parse_iso(fields["updated"]) if fields.get("updated") else None)

    def issue(self, key: str, version: int | None = None) -> dict[str, Any]:
        """The stored issue with all fields and properties, as ``GET /rest/api/{version}/issue`` renders it
        (default v3 on Cloud, v2 on DC)."""
        with self._lock:
            st = self._get_state(key)
            if st is None:
                raise KeyError(key)
            rendered = self._render_issue(st, version or self._default_version())
            if st["properties"]:
                rendered["properties"] = copy.deepcopy(st["properties"])
            return rendered

    def comments(self, key: str) -> list[dict[str, Any]]:
        """All comments of an issue as the REST API renders them, each with its ``properties`` list."""
        with self._lock:
            st = self._get_state(key)
            if st is None:
                raise KeyError(key)
            v = self._default_version()
            return [self._render_comment(st, c, v, with_properties=True) for c in st["comments"]]

    def links(self, key: str) -> list[dict[str, Any]]:
        """``fields.issuelinks`` of an issue (relative to that issue)."""
        with self._lock:
            st = self._get_state(key)
            if st is None:
                raise KeyError(key)
            return self._render_links(st, self._default_version())

    def properties(self, key: str) -> dict[str, Any]:
        """The entity properties of an issue, ``{key: value}``."""
        with self._lock:
            st = self._get_state(key)
            if st is None:
                raise KeyError(key)
            return copy.deepcopy(st["properties"])

    def users(self) -> list[dict[str, Any]]:
        """The known users (internal records: accountId, name, displayName, emailAddress)."""
        with self._lock:
            return [dict(u) for u in self._users.values()]

    def issue_keys(self) -> list[str]:
        """Every issue key, in creation order."""
        with self._lock:
            return [st["key"] for st in self._issues.values()]

    # ------------------------------------------------------------------ HTTP entry points

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one REST request (no authentication check; :meth:`server` adds it)."""
        return self._respond(request, check_auth=False)

    def server(self, port: int = 0) -> SimServer:
        """A :class:`SimServer` (not started) serving this simulator with authentication checked:
        Cloud Basic ``email:token``; DC ``Authorization: Bearer <token>`` (Basic also accepted)."""
        sim = self

        def handler(request: SimRequest) -> SimResponse:
            return sim._respond(request, check_auth=True)

        srv = _JiraSimServer(self, handler, port=port)
        self.base_url = srv.url
        return srv

    def authorised(self, request: SimRequest) -> bool:
        """Whether the request carries this site's credentials."""
        header = request.header("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user, _, secret = base64.b64decode(credentials.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            if secret != self.token:
                return False
            if self.flavour == "cloud":
                return user == self.email
            return user in (self.email, self._users[self._me]["name"])
        if scheme == "bearer" and self.flavour == "dc":
            return credentials.strip() == self.token
        return False

    # ------------------------------------------------------------------ dispatch

    def _respond(self, request: SimRequest, check_auth: bool) -> SimResponse:
        with self._lock:
            try:
                response = self.router.dispatch(request, path=request.path.rstrip("/") or "/", authenticate=check_auth)
            except _HttpError as exc:
                response = exc.response
            except JqlError as exc:
                response = _error(400, [str(exc)])
            self._record_exchange(request, response)
            return response

    def _unauthorised(self, request: SimRequest) -> SimResponse:
        headers = {"WWW-Authenticate": 'Basic realm="protected-area"' if self.flavour == "cloud"
                   else 'Bearer realm="jira"'}
        return _error(401, [NOT_AUTHENTICATED], headers=headers)

    def _record_exchange(self, request: SimRequest, response: SimResponse, fault: str | None = None) -> None:
        if not self.record_exchanges or request.path.startswith("/__sim/"):
            return
        try:
            body: Any = request.json()
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": {k: list(v) for k, v in request.query.items()},
            "request_body": body,
            "status": response.status,
            "response_body": copy.deepcopy(response.body) if response.raw is None else response.raw.decode(
                "utf-8", "replace"),
        }
        if fault:
            entry["fault"] = fault
        self.exchanges.append(entry)

    def _null_for_uri(self, request: SimRequest) -> SimResponse:
        return SimResponse(404, {"message": f"null for uri: {self.base_url}{request.path}", "status-code": 404})

    def _cloud(self, groups: Groups) -> bool:
        return self.flavour == "cloud"

    def _serves_api(self, groups: Groups) -> bool:
        """REST v2 (and ``latest``) everywhere, v3 on Cloud only."""
        return groups.get("version") != "3" or self.flavour == "cloud"

    def _incidents_api(self, groups: Groups) -> bool:
        return self.flavour == "cloud" and self.major_incident_field

    def routes(self) -> list[Route]:
        """The site's endpoints: the REST API (v2, v3 on Cloud), JSM request comments and the Incidents API."""

        def rest(methods: str, path: str, handler: Callable[..., SimResponse]) -> Route:
            return Route(methods, REST_API + path, _numbered_version(handler), serves=self._serves_api)

        return [
            Route(ANY_METHOD, "/_edge/tenant_info", self._tenant_info, serves=self._cloud),
            # Both answer the issue's 404 before a wrong method's 405: the handlers check the method.
            Route(ANY_METHOD, "/jsm/incidents/cloudId/{cloud_id}/v1/incident/{issue_id}/major", self._incident_major,
                  serves=self._incidents_api),
            Route(ANY_METHOD, "/rest/servicedeskapi/request/{key}/comment", self._servicedesk_comment),
            rest("GET", "/serverInfo", self._server_info),
            rest("GET", "/myself", self._myself),
            rest("GET", "/field", self._fields),
            rest("GET", "/issueLinkType", self._link_types),
            rest("GET", "/issuetype", self._issue_types),
            rest("GET", "/priority", self._priorities),
            rest("GET", "/status", self._statuses),
            rest("GET", "/project/{key}", self._project),
            rest("GET", "/user/search", self._user_search),
            rest("GET POST", "/search/jql", self._search_jql),
            rest("POST", "/search/approximate-count", self._approximate_count),
            rest("GET POST", "/search", self._search_old),
            rest("POST", "/issue", self._create),
            rest("GET", "/issue/{key}", self._get_issue),
            rest("PUT", "/issue/{key}", self._edit),
            rest("PUT", "/issue/{key}/assignee", self._assign),
            rest("GET", "/issue/{key}/transitions", self._get_transitions),
            rest("POST", "/issue/{key}/transitions", self._do_transition),
            rest("GET", "/issue/{key}/comment", self._list_comments),
            rest("POST", "/issue/{key}/comment", self._add_comment),
            rest("GET", "/issue/{key}/properties", self._list_properties),
            rest("GET", "/issue/{key}/properties/{prop}", self._get_property),
            rest("PUT", "/issue/{key}/properties/{prop}", self._put_property),
            rest("DELETE", "/issue/{key}/properties/{prop}", self._delete_property),
            rest("POST", "/issueLink", self._create_link),
            rest("GET", "/issueLink/{link_id}", self._get_link),
            rest("DELETE", "/issueLink/{link_id}", self._delete_link),
        ]

    def _tenant_info(self, request: SimRequest) -> SimResponse:
        return SimResponse(200, {"cloudId": self.cloud_id})

    # ------------------------------------------------------------------ internals: state

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return _truncate_ms(now.astimezone(UTC))

    def _default_version(self) -> int:
        return 3 if self.flavour == "cloud" else 2

    def _new_state(self, created: datetime) -> dict[str, Any]:
        custom: dict[str, Any] = {STAGE_FIELD: None}
        if self.major_incident_field:
            custom[MAJOR_INCIDENT_FIELD] = None
        return {
            "id": "", "key": "", "project": PROJECT["key"], "summary": "", "description": None,
            "issuetype": ISSUE_TYPES[0]["id"], "priority": DEFAULT_PRIORITY, "status": INITIAL_STATUS,
            "components": [], "reporter": None, "assignee": None, "creator": None, "labels": [],
            "created": created, "updated": created, "resolutiondate": None,
            "statuscategorychangedate": created, "custom": custom, "properties": {}, "comments": [],
            "links": [],
        }

    def _register(self, st: dict[str, Any]) -> None:
        st["id"] = str(self._next_issue_id)
        st["key"] = f"{st['project']}-{self._next_issue_num}"
        self._next_issue_id += 1
        self._next_issue_num += 1
        self._issues[st["id"]] = st
        self._keys[st["key"].upper()] = st["id"]
        self._versions[st["id"]] = []
        self._snapshot(st)

    def _get_state(self, id_or_key: str) -> dict[str, Any] | None:
        if id_or_key in self._issues:
            return self._issues[id_or_key]
        issue_id = self._keys.get(str(id_or_key).upper())
        return self._issues.get(issue_id) if issue_id else None

    def _require(self, id_or_key: str) -> dict[str, Any]:
        st = self._get_state(id_or_key)
        if st is None:
            raise _fail(404, ISSUE_NOT_FOUND)
        return st

    def _touch(self, st: dict[str, Any], when: datetime | None = None) -> None:
        st["updated"] = when or self._now()
        self._snapshot(st)

    def _snapshot(self, st: dict[str, Any]) -> None:
        versions = self._versions[st["id"]]
        versions.append((st["updated"], copy.deepcopy(st)))
        if self.search_lag <= 0:
            del versions[:-1]
            return
        cutoff = self._now() - timedelta(seconds=self.search_lag)
        # Keep the newest version that is already visible plus every newer one.
        while len(versions) > 1 and versions[1][0] <= cutoff:
            versions.pop(0)

    def _visible_state(self, issue_id: str, now: datetime, reconcile: set[str]) -> dict[str, Any] | None:
        current = self._issues[issue_id]
        if self.search_lag <= 0 or issue_id in reconcile:
            return current
        cutoff = now - timedelta(seconds=self.search_lag)
        for when, snap in reversed(self._versions[issue_id]):
            if when <= cutoff:
                return dict(snap)
        return None

    def _status(self, status_id: str) -> dict[str, Any]:
        return next(s for s in STATUSES if s["id"] == status_id)

    def _set_status(self, st: dict[str, Any], status_id: str) -> None:
        old = self._status(st["status"])
        new = self._status(status_id)
        st["status"] = status_id
        if old["category"] != new["category"]:
            st["statuscategorychangedate"] = self._now()
        if new["category"] == "done" and st["resolutiondate"] is None:
            st["resolutiondate"] = self._now()
        elif new["category"] != "done":
            st["resolutiondate"] = None

    def _find_issue_type(self, value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower()
        for item in ISSUE_TYPES:
            if text in (item["id"], item["name"].lower(), f"[system] {item['name'].lower()}"):
                return item
        return None

    def _find_priority(self, value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower()
        return next((p for p in PRIORITIES if text in (p["id"], p["name"].lower())), None)

    def _find_status(self, value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            value = value.get("id") or value.get("name")
        text = str(value).strip().lower()
        return next((s for s in STATUSES if text in (s["id"], s["name"].lower())), None)

    def _component_id(self, name: str) -> str:
        if name not in self._components:
            self._components[name] = str(self._next_component_id)
            self._next_component_id += 1
        return self._components[name]

    def _add_user(self, record: dict[str, Any]) -> dict[str, Any]:
        record.setdefault("key", "JIRAUSER" + record["accountId"][-5:] if self.flavour == "dc" else record["name"])
        record.setdefault("emailAddress", f"{record['name']}@example.com")
        record.setdefault("displayName", record["name"].replace(".", " ").title())
        record.setdefault("timeZone", self.user_time_zone)
        record.setdefault("active", True)
        self._users[record["accountId"]] = record
        return record

    def _find_user(self, value: str) -> dict[str, Any] | None:
        text = str(value).strip().lower()
        if not text:
            return None
        for user in self._users.values():
            if text in (user["accountId"].lower(), user["name"].lower(), str(user.get("key", "")).lower(),
                        user["emailAddress"].lower(), user["displayName"].lower()):
                return user
        return None

    def _human_user(self, value: Any) -> str | None:
        """accountId for a user given loosely from Python; unknown users are created."""
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            value = value.get("accountId") or value.get("name") or value.get("emailAddress")
        found = self._find_user(str(value))
        if found:
            return str(found["accountId"])
        text = str(value)
        if re.fullmatch(r"[0-9a-f]{24}|\d+:[0-9a-f-]{36}|[0-9a-zA-Z:_-]{20,128}", text):
            record = {"accountId": text, "name": "user" + hashlib.sha1(text.encode()).hexdigest()[:6]}
        else:
            name = text.split("@")[0]
            digest = hashlib.sha1(text.encode()).hexdigest()[:24]
            record = {"accountId": digest, "name": name}
            if "@" in text:
                record["emailAddress"] = text
        return str(self._add_user(record)["accountId"])

    def _api_user(self, value: Any, field_name: str) -> str | None:
        """accountId for a user given in a REST body (Cloud: accountId only; DC: name or key)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _fail(400, errors={field_name: "expected an object"})
        if self.flavour == "cloud":
            if "accountId" not in value and ("name" in value or "key" in value):
                raise _fail(400, errors={field_name: "'name' and 'key' are not supported in GDPR strict mode; "
                                                     "identify the user by 'accountId'."})
            account = value.get("accountId")
            if account is None:
                return None
            user = self._users.get(str(account))
        else:
            ident = value.get("name") or value.get("key")
            if ident is None:
                return None
            user = next((u for u in self._users.values() if str(ident).lower() in
                         (u["name"].lower(), str(u.get("key", "")).lower())), None)
        if user is None:
            raise _fail(400, errors={field_name: f"User '{next(iter(value.values()), '')}' does not exist."})
        return str(user["accountId"])

    def _apply_human_fields(self, st: dict[str, Any], fields: dict[str, Any], initial: bool) -> None:
        for name, value in fields.items():
            if name in ("created", "updated"):
                continue
            if name == "summary":
                st["summary"] = str(value)
            elif name == "description":
                st["description"] = None if value in (None, "") else (
                    value if isinstance(value, dict) else adf_from_text(str(value)))
            elif name == "issuetype":
                found = self._find_issue_type(value)
                if found is None:
                    raise ValueError(f"unknown issue type {value!r}")
                st["issuetype"] = found["id"]
            elif name == "priority":
                found = self._find_priority(value)
                if found is None:
                    raise ValueError(f"unknown priority {value!r}")
                st["priority"] = found["id"]
            elif name == "status":
                found = self._find_status(value)
                if found is None:
                    raise ValueError(f"unknown status {value!r}")
                self._set_status(st, found["id"])
                if initial:
                    st["statuscategorychangedate"] = st["created"]
                    if self._status(found["id"])["category"] == "done":
                        st["resolutiondate"] = st["created"]
            elif name == "components":
                names = [c.get("name") if isinstance(c, dict) else str(c) for c in value or []]
                for comp in names:
                    self._component_id(str(comp))
                st["components"] = [str(c) for c in names]
            elif name in ("reporter", "assignee"):
                st[name] = self._human_user(value)
            elif name == "labels":
                st["labels"] = [str(v) for v in value or []]
            elif name in ("major_incident", MAJOR_INCIDENT_FIELD):
                if not self.major_incident_field:
                    raise ValueError("this site has no major incident field")
                on = value not in (None, False, "", 0) and value != "false"
                st["custom"][MAJOR_INCIDENT_FIELD] = MAJOR_INCIDENT_VALUE if on else None
            elif name in ("stage", STAGE_FIELD):
                st["custom"][STAGE_FIELD] = None if value in (None, "") else str(value)
            elif name == "resolutiondate":
                st["resolutiondate"] = _parse_iso(value) if value else None
            elif name.startswith("customfield_"):
                st["custom"][name] = value
            else:
                raise ValueError(f"unsupported field {name!r}")

    # ------------------------------------------------------------------ internals: rendering

    def _api(self, version: int) -> str:
        return f"{self.base_url}/rest/api/{version}"

    def _avatars(self, seed: str) -> dict[str, str]:
        return {f"{n}x{n}": f"https://avatar-management.sim.invalid/{seed}.png?size={n}" for n in (48, 24, 16, 32)}

    def _render_user(self, account_id: str | None, version: int, full: bool = False) -> dict[str, Any] | None:
        if account_id is None:
            return None
        user = self._users[account_id]
        out: dict[str, Any]
        if self.flavour == "cloud":
            out = {"self": f"{self._api(version)}/user?accountId={user['accountId']}", "accountId": user["accountId"],
                   "emailAddress": user["emailAddress"], "avatarUrls": self._avatars(user["accountId"]),
                   "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"],
                   "accountType": "atlassian"}
        else:
            out = {"self": f"{self._api(version)}/user?username={user['name']}", "name": user["name"],
                   "key": user["key"], "emailAddress": user["emailAddress"], "avatarUrls": self._avatars(user["name"]),
                   "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"]}
        if full:
            out["locale"] = "en_US"
            out["groups"] = {"size": 2, "items": []}
            out["applicationRoles"] = {"size": 1, "items": []}
            out["expand"] = "groups,applicationRoles"
        return out

    def _render_status(self, status_id: str, version: int) -> dict[str, Any]:
        status = self._status(status_id)
        category = STATUS_CATEGORIES[status["category"]]
        return {
            "self": f"{self._api(version)}/status/{status['id']}", "description": status["description"],
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png", "name": status["name"],
            "id": status["id"],
            "statusCategory": {"self": f"{self._api(version)}/statuscategory/{category['id']}", **category},
        }

    def _render_issue_type(self, type_id: str, version: int) -> dict[str, Any]:
        item = next(t for t in ISSUE_TYPES if t["id"] == type_id)
        return {"self": f"{self._api(version)}/issuetype/{item['id']}", "id": item["id"],
                "description": item["description"],
                "iconUrl": f"{self.base_url}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{item['id']}",
                "name": item["name"], "subtask": False, "avatarId": int(item["id"]), "hierarchyLevel": 0}

    def _render_priority(self, priority_id: str, version: int) -> dict[str, Any]:
        item = next(p for p in PRIORITIES if p["id"] == priority_id)
        return {"self": f"{self._api(version)}/priority/{item['id']}",
                "iconUrl": f"{self.base_url}/images/icons/priorities/{item['name'].lower()}.svg",
                "name": item["name"], "id": item["id"]}

    def _render_project(self, version: int) -> dict[str, Any]:
        return {"self": f"{self._api(version)}/project/{PROJECT['id']}", "id": PROJECT["id"], "key": PROJECT["key"],
                "name": PROJECT["name"], "projectTypeKey": PROJECT["projectTypeKey"], "simplified": False,
                "avatarUrls": self._avatars("project-" + PROJECT["id"])}

    def _render_text(self, value: dict[str, Any] | None, version: int) -> Any:
        if value is None:
            return None
        return copy.deepcopy(value) if version == 3 else adf_to_text(value)

    def _render_comment(self, st: dict[str, Any], comment: dict[str, Any], version: int,
                        with_properties: bool = False) -> dict[str, Any]:
        author = self._render_user(comment["author"], version)
        internal = comment["properties"].get("sd.public.comment", {})
        out: dict[str, Any] = {
            "self": f"{self._api(version)}/issue/{st['id']}/comment/{comment['id']}",
            "id": comment["id"], "author": author, "body": self._render_text(comment["body"], version),
            "updateAuthor": author, "created": jira_time(comment["created"]),
            "updated": jira_time(comment["updated"]),
            "jsdPublic": not (isinstance(internal, dict) and internal.get("internal") is True),
        }
        if comment.get("visibility"):
            out["visibility"] = copy.deepcopy(comment["visibility"])
        if with_properties:
            out["properties"] = [{"key": k, "value": copy.deepcopy(v)} for k, v in comment["properties"].items()]
        return out

    def _linked_issue(self, issue_id: str, version: int) -> dict[str, Any]:
        other = self._issues[issue_id]
        return {"id": other["id"], "key": other["key"], "self": f"{self._api(version)}/issue/{other['id']}",
                "fields": {"summary": other["summary"], "status": self._render_status(other["status"], version),
                           "priority": self._render_priority(other["priority"], version),
                           "issuetype": self._render_issue_type(other["issuetype"], version)}}

    def _render_link_type(self, type_id: str, version: int) -> dict[str, Any]:
        item = next(t for t in LINK_TYPES if t["id"] == type_id)
        return {**item, "self": f"{self._api(version)}/issueLinkType/{item['id']}"}

    def _render_links(self, st: dict[str, Any], version: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for link_id in st["links"]:
            link = self._links.get(link_id)
            if link is None:
                continue
            entry: dict[str, Any] = {"id": link.id, "self": f"{self._api(version)}/issueLink/{link.id}",
                                     "type": self._render_link_type(link.type_id, version)}
            # Relative to the viewed issue: the source "<outward phrase>" the target.
            if link.source == st["id"]:
                entry["outwardIssue"] = self._linked_issue(link.target, version)
            else:
                entry["inwardIssue"] = self._linked_issue(link.source, version)
            out.append(entry)
        return out

    def _all_field_ids(self) -> list[str]:
        ids = ["summary", "description", "issuetype", "project", "priority", "status", "components", "reporter",
               "assignee", "creator", "labels", "created", "updated", "resolutiondate", "resolution",
               "statuscategorychangedate", "issuelinks", "comment"]
        if self.major_incident_field:
            ids.append(MAJOR_INCIDENT_FIELD)
        ids.append(STAGE_FIELD)
        return ids

    def _field_value(self, st: dict[str, Any], field_id: str, version: int) -> Any:
        if field_id == "summary":
            return st["summary"]
        if field_id == "description":
            return self._render_text(st["description"], version)
        if field_id == "issuetype":
            return self._render_issue_type(st["issuetype"], version)
        if field_id == "project":
            return self._render_project(version)
        if field_id == "priority":
            return self._render_priority(st["priority"], version)
        if field_id == "status":
            return self._render_status(st["status"], version)
        if field_id == "components":
            return [{"self": f"{self._api(version)}/component/{self._component_id(name)}",
                     "id": self._component_id(name), "name": name} for name in st["components"]]
        if field_id in ("reporter", "assignee", "creator"):
            return self._render_user(st[field_id], version)
        if field_id == "labels":
            return list(st["labels"])
        if field_id in ("created", "updated", "statuscategorychangedate"):
            return jira_time(st[field_id])
        if field_id == "resolutiondate":
            return jira_time(st["resolutiondate"]) if st["resolutiondate"] else None
        if field_id == "resolution":
            if st["resolutiondate"] is None:
                return None
            return {"self": f"{self._api(version)}/resolution/{RESOLUTION_DONE['id']}", **RESOLUTION_DONE}
        if field_id == "issuelinks":
            return self._render_links(st, version)
        if field_id == "comment":
            comments = [self._render_comment(st, c, version) for c in st["comments"]]
            return {"comments": comments, "self": f"{self._api(version)}/issue/{st['id']}/comment",
                    "maxResults": len(comments), "total": len(comments), "startAt": 0}
        return copy.deepcopy(st["custom"].get(field_id))

    def _field_names(self) -> dict[str, str]:
        return {f["id"]: f["name"] for f in self._field_catalogue()}

    def _select_fields(self, requested: list[str], default: str) -> list[str]:
        tokens = requested or [default]
        all_ids = self._all_field_ids()
        navigable = [f for f in all_ids if f != "comment"]
        selected: list[str] = []
        excluded: set[str] = set()
        for token in tokens:
            if token == "*all":
                selected.extend(all_ids)
            elif token == "*navigable":
                selected.extend(navigable)
            elif token.startswith("-"):
                excluded.add(token[1:])
            elif token in all_ids:
                selected.append(token)
        out: list[str] = []
        for name in selected:
            if name not in excluded and name not in out:
                out.append(name)
        return out

    def _render_issue(self, st: dict[str, Any], version: int, fields: list[str] | None = None,
                      properties: list[str] | None = None, expand: list[str] | None = None) -> dict[str, Any]:
        field_ids = self._all_field_ids() if fields is None else fields
        out: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": st["id"], "self": f"{self._api(version)}/issue/{st['id']}", "key": st["key"],
            "fields": {f: self._field_value(st, f, version) for f in field_ids},
        }
        if properties:
            wanted = list(st["properties"]) if "*all" in properties else properties
            props = {k: copy.deepcopy(st["properties"][k]) for k in wanted if k in st["properties"]}
            if props:
                out["properties"] = props
        if expand:
            names = self._field_names()
            if "names" in expand:
                out["names"] = {f: names.get(f, f) for f in field_ids}
            if "schema" in expand:
                schemas = {f["id"]: f["schema"] for f in self._field_catalogue() if "schema" in f}
                out["schema"] = {f: schemas[f] for f in field_ids if f in schemas}
            if "transitions" in expand:
                out["transitions"] = self._available_transitions(st, version)
        return out

    def _field_catalogue(self) -> list[dict[str, Any]]:
        def system(fid: str, name: str, schema: dict[str, Any] | None, clauses: list[str],
                   orderable: bool = True, navigable: bool = True, searchable: bool = True) -> dict[str, Any]:
            item: dict[str, Any] = {"id": fid, "key": fid, "name": name, "custom": False, "orderable": orderable,
                                    "navigable": navigable, "searchable": searchable, "clauseNames": clauses}
            if schema is not None:
                item["schema"] = schema
            return item

        fields = [
            system("issuekey", "Key", None, ["id", "issue", "issuekey", "key"], orderable=False),
            system("summary", "Summary", {"type": "string", "system": "summary"}, ["summary"]),
            system("description", "Description", {"type": "string", "system": "description"}, ["description"]),
            system("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}, ["issuetype", "type"]),
            system("project", "Project", {"type": "project", "system": "project"}, ["project"]),
            system("priority", "Priority", {"type": "priority", "system": "priority"}, ["priority"]),
            system("status", "Status", {"type": "status", "system": "status"}, ["status"], orderable=False),
            system("statusCategory", "Status Category", None, ["statusCategory"], orderable=False,
                   navigable=False),
            system("components", "Components", {"type": "array", "items": "component", "system": "components"},
                   ["component"]),
            system("reporter", "Reporter", {"type": "user", "system": "reporter"}, ["reporter"]),
            system("assignee", "Assignee", {"type": "user", "system": "assignee"}, ["assignee"]),
            system("creator", "Creator", {"type": "user", "system": "creator"}, ["creator"], orderable=False),
            system("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}, ["labels"]),
            system("created", "Created", {"type": "datetime", "system": "created"}, ["created", "createdDate"],
                   orderable=False),
            system("updated", "Updated", {"type": "datetime", "system": "updated"}, ["updated", "updatedDate"],
                   orderable=False),
            system("resolutiondate", "Resolved", {"type": "datetime", "system": "resolutiondate"},
                   ["resolutiondate", "resolved"], orderable=False),
            system("resolution", "Resolution", {"type": "resolution", "system": "resolution"}, ["resolution"]),
            system("statuscategorychangedate", "Status Category Changed",
                   {"type": "datetime", "system": "statuscategorychangedate"}, ["statusCategoryChangedDate"],
                   orderable=False),
            system("issuelinks", "Linked Issues", {"type": "array", "items": "issuelinks", "system": "issuelinks"},
                   ["issueLink"]),
            system("comment", "Comment", {"type": "comments-page", "system": "comment"}, ["comment"],
                   navigable=False),
        ]
        if self.major_incident_field:
            fields.append({"id": MAJOR_INCIDENT_FIELD, "key": MAJOR_INCIDENT_FIELD, "name": "Major incident",
                           "untranslatedName": "Major incident", "custom": True, "orderable": True,
                           "navigable": True, "searchable": True, "clauseNames": ["cf[10050]", "Major incident"],
                           "schema": {"type": "any", "custom": MAJOR_INCIDENT_CFTYPE, "customId": 10050}})
        fields.append({"id": STAGE_FIELD, "key": STAGE_FIELD, "name": "Major incident stage", "custom": True,
                       "orderable": True, "navigable": True, "searchable": True,
                       "clauseNames": ["cf[10060]", "Major incident stage", "Major incident stage[Short text]"],
                       "schema": {"type": "string", "custom": TEXTFIELD_CFTYPE, "customId": 10060}})
        for item in fields:
            item.pop("untranslatedName", None)
        return fields

    def _available_transitions(self, st: dict[str, Any], version: int) -> list[dict[str, Any]]:
        out = []
        for tid, name, target, sources in TRANSITIONS:
            if st["status"] in sources:
                out.append({"id": tid, "name": name, "to": self._render_status(target, version), "hasScreen": False,
                            "isGlobal": False, "isInitial": False, "isAvailable": True, "isConditional": False,
                            "isLooped": False})
        return out

    # ------------------------------------------------------------------ handlers: metadata

    def _server_info(self, request: SimRequest, version: int) -> SimResponse:
        now = self._now()
        if self.flavour == "cloud":
            body = {"baseUrl": self.base_url, "displayUrl": self.base_url, "version": "1001.0.0-SNAPSHOT",
                    "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud", "buildNumber": 100288,
                    "buildDate": "2025-12-01T00:00:00.000+0000", "serverTime": jira_time(now),
                    "scmInfo": "57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71", "serverTitle": "Jira",
                    "serverTimeZone": "Etc/UTC"}
        else:
            body = {"baseUrl": self.base_url, "version": "9.12.15", "versionNumbers": [9, 12, 15],
                    "deploymentType": "Server", "buildNumber": 9120015, "buildDate": "2024-10-01T00:00:00.000+0000",
                    "serverTime": jira_time(now), "scmInfo": "0f5d7f1ec4fe2e2f6c5c5c8e9e4d3c2b1a0f9e8d",
                    "serverTitle": "Jira", "serverTimeZone": "Etc/UTC"}
        return SimResponse(200, body)

    def _myself(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, self._render_user(self._me, version, full=True))

    def _fields(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, self._field_catalogue())

    def _link_types(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, {"issueLinkTypes": [self._render_link_type(t["id"], version) for t in LINK_TYPES]})

    def _issue_types(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, [self._render_issue_type(t["id"], version) for t in ISSUE_TYPES])

    def _priorities(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, [{**self._render_priority(p["id"], version), "statusColor": p["statusColor"],
                                  "description": p["name"]} for p in PRIORITIES])

    def _statuses(self, request: SimRequest, version: int) -> SimResponse:
        return SimResponse(200, [self._render_status(s["id"], version) for s in STATUSES])

    def _project(self, request: SimRequest, version: int, key: str) -> SimResponse:
        if key.upper() not in (PROJECT["key"], PROJECT["id"]):
            raise _fail(404, f"No project could be found with key '{key}'.")
        body = self._render_project(version)
        body["issueTypes"] = [self._render_issue_type(t["id"], version) for t in ISSUE_TYPES]
        body["components"] = [{"self": f"{self._api(version)}/component/{cid}", "id": cid, "name": name}
                              for name, cid in self._components.items()]
        return SimResponse(200, body)

    def _user_search(self, request: SimRequest, version: int) -> SimResponse:
        query = (request.arg("query") or request.arg("username") or "").strip().lower()
        account = request.arg("accountId")
        out = []
        for user in self._users.values():
            if account is not None:
                if user["accountId"] != account:
                    continue
            elif query and not any(str(user.get(k, "")).lower().startswith(query)
                                   for k in ("displayName", "emailAddress", "name")):
                continue
            out.append(self._render_user(user["accountId"], version))
        start = _int_arg(request.arg("startAt"), 0, "startAt")
        limit = _int_arg(request.arg("maxResults"), 50, "maxResults")
        return SimResponse(200, out[start:start + limit])

    # ------------------------------------------------------------------ handlers: search

    def _search_old(self, request: SimRequest, version: int) -> SimResponse:
        if self.flavour == "cloud":
            raise _fail(410, SEARCH_REMOVED)
        params = self._search_params(request, allowed={"jql", "startAt", "maxResults", "fields", "expand",
                                                        "properties", "fieldsByKeys", "validateQuery"})
        query = self._parse_jql(str(params.get("jql") or ""))
        start = max(0, _int_arg(params.get("startAt"), 0, "startAt"))
        limit = min(max(0, _int_arg(params.get("maxResults"), 50, "maxResults")), DC_SEARCH_PAGE_CAP)
        states = self._run_query(query, set())
        fields = self._select_fields(_split_list(params.get("fields")), "*navigable")
        properties = _split_list(params.get("properties"))
        expand = _split_list([params.get("expand")] if params.get("expand") else [])
        issues = [self._render_issue(st, version, fields, properties, expand) for st in states[start:start + limit]]
        body: dict[str, Any] = {"expand": "schema,names", "startAt": start, "maxResults": limit,
                                "total": len(states), "issues": issues}
        self._add_names_schema(body, fields, expand)
        return SimResponse(200, body)

    def _search_params(self, request: SimRequest, allowed: set[str]) -> dict[str, Any]:
        if request.method == "GET":
            params: dict[str, Any] = {}
            for name, values in request.query.items():
                if name in ("fields", "properties", "reconcileIssues"):
                    params[name] = values
                else:
                    params[name] = values[0] if values else None
            return params
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, "Request body must be a JSON object.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise _fail(400, f'Unrecognized field "{unknown[0]}" (class SearchAndReconcileRequestBean), not marked '
                             "as ignorable")
        for name in ("fields", "properties", "reconcileIssues"):
            if name in body and body[name] is not None and not isinstance(body[name], list):
                raise _fail(400, f"'{name}' must be an array.")
        if body.get("expand") is not None and not isinstance(body["expand"], str):
            raise _fail(400, "'expand' must be a comma-separated string.")
        return body

    def _search_jql(self, request: SimRequest, version: int) -> SimResponse:
        if self.flavour != "cloud":
            return self._null_for_uri(request)
        params = self._search_params(request, allowed={"jql", "nextPageToken", "maxResults", "fields", "expand",
                                                        "properties", "fieldsByKeys", "reconcileIssues"})
        jql = str(params.get("jql") or "")
        query = self._parse_jql(jql)
        if query.where is None:
            raise _fail(400, UNBOUNDED_JQL)
        reconcile = {str(_int_arg(v, 0, "reconcileIssues")) for v in _split_list(params.get("reconcileIssues"))}
        max_results = _int_arg(params.get("maxResults"), 50, "maxResults")
        if len(reconcile) > MAX_RECONCILE:
            raise _fail(400, f"The maximum number of issues that can be reconciled is {MAX_RECONCILE}.")
        properties = _split_list(params.get("properties"))
        if len(properties) > MAX_PROPERTIES:
            raise _fail(400, f"A maximum of {MAX_PROPERTIES} issue properties can be requested.")
        requested = _split_list(params.get("fields"))
        ids_only = not requested or set(requested) <= {"id", "key"}
        cap = SEARCH_PAGE_CAP_IDS if ids_only else SEARCH_PAGE_CAP
        max_results = max(1, min(max_results, cap))
        jql_hash = hashlib.sha256(jql.encode("utf-8")).hexdigest()[:16]
        offset = 0
        now = self._now()
        token = params.get("nextPageToken")
        if token:
            saved = self._tokens.get(str(token))
            if saved is None or saved.jql_hash != jql_hash or now - saved.issued > TOKEN_LIFETIME:
                raise _fail(400, TOKEN_INVALID)
            offset = saved.offset
        states = self._run_query(query, reconcile)
        page = states[offset:offset + max_results]
        fields = [] if ids_only else self._select_fields(requested, "id")
        expand = _split_list([params.get("expand")] if params.get("expand") else [])
        issues: list[dict[str, Any]] = []
        for st in page:
            if ids_only and not properties and "key" not in requested:
                issues.append({"id": st["id"]})
            else:
                issues.append(self._render_issue(st, version, fields, properties, expand))
        body: dict[str, Any] = {"issues": issues}
        if offset + max_results < len(states):
            if len(self._tokens) > 10000:
                self._tokens = {k: t for k, t in self._tokens.items() if now - t.issued <= TOKEN_LIFETIME}
            new_token = self._new_token()
            self._tokens[new_token] = _PageToken(jql_hash, offset + max_results, now)
            body["nextPageToken"] = new_token
            body["isLast"] = False
        else:
            body["isLast"] = True
        self._add_names_schema(body, fields, expand)
        return SimResponse(200, body)

    def _add_names_schema(self, body: dict[str, Any], fields: list[str], expand: list[str]) -> None:
        if "names" in expand:
            names = self._field_names()
            body["names"] = {f: names.get(f, f) for f in fields}
        if "schema" in expand:
            schemas = {f["id"]: f["schema"] for f in self._field_catalogue() if "schema" in f}
            body["schema"] = {f: schemas[f] for f in fields if f in schemas}

    def _new_token(self) -> str:
        raw = self._random.getrandbits(192).to_bytes(24, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def _approximate_count(self, request: SimRequest, version: int) -> SimResponse:
        if self.flavour != "cloud":
            return self._null_for_uri(request)
        body = self._json_body(request)
        if not isinstance(body, dict) or set(body) - {"jql"}:
            raise _fail(400, "Request body must be {\"jql\": \"...\"}.")
        query = self._parse_jql(str(body.get("jql") or ""))
        if query.where is None:
            raise _fail(400, UNBOUNDED_JQL)
        return SimResponse(200, {"count": len(self._run_query(query, set()))})

    def _parse_jql(self, jql: str) -> JqlQuery:
        return _Parser(jql, self._resolve_field).parse()

    def _run_query(self, query: JqlQuery, reconcile: set[str]) -> list[dict[str, Any]]:
        now = self._now()
        evaluator = _Evaluator(self, now)
        if query.where is not None:
            evaluator.validate(query.where)
        matches: list[dict[str, Any]] = []
        for issue_id in self._issues:
            st = self._visible_state(issue_id, now, reconcile)
            if st is not None and (query.where is None or evaluator.matches(query.where, st)):
                matches.append(st)
        order = query.order_by or [("key", True)]
        matches.sort(key=lambda s: int(s["id"]))
        for field_name, descending in reversed(order):
            present = [s for s in matches if evaluator.sort_value(field_name, s) is not None]
            missing = [s for s in matches if evaluator.sort_value(field_name, s) is None]
            present.sort(key=lambda s: evaluator.sort_value(field_name, s), reverse=descending)
            # Jira puts empty values last ascending and first descending.
            matches = (missing + present) if descending else (present + missing)
        return matches

    def _resolve_field(self, name: str, quoted: bool) -> str:
        lowered = name.strip().lower()
        aliases = {
            "project": "project", "key": "key", "issuekey": "key", "issue": "key", "id": "key",
            "issuetype": "issuetype", "type": "issuetype", "status": "status", "statuscategory": "statuscategory",
            "priority": "priority", "labels": "labels", "label": "labels", "component": "component",
            "components": "component", "reporter": "reporter", "assignee": "assignee", "creator": "creator",
            "created": "created", "createddate": "created", "updated": "updated", "updateddate": "updated",
            "resolved": "resolved", "resolutiondate": "resolved", "summary": "summary",
            "description": "description", "text": "text", "comment": "comment",
        }
        if lowered in aliases:
            return aliases[lowered]
        match = re.fullmatch(r"cf\[(\d+)\]|customfield_(\d+)", lowered)
        custom_ids = {STAGE_FIELD: "major incident stage"}
        if self.major_incident_field:
            custom_ids[MAJOR_INCIDENT_FIELD] = "major incident"
        if match:
            fid = f"customfield_{match.group(1) or match.group(2)}"
            if fid in custom_ids:
                return fid
        for fid, fname in custom_ids.items():
            if lowered == fname:
                return fid
        raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")

    # ------------------------------------------------------------------ handlers: issues

    def _json_body(self, request: SimRequest) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise _fail(400, f"Unexpected character in the request body: {exc}")

    def _text_input(self, value: Any, version: int, field_name: str) -> dict[str, Any] | None:
        """A rich-text field value from a REST body: ADF on v3, string on v2."""
        if value is None:
            return None
        if version == 3:
            if _adf_problem(value) is not None:
                raise _fail(400, errors={field_name: "Operation value must be an Atlassian Document (see the "
                                                     "Atlassian Document Format)"})
            return dict(copy.deepcopy(value))
        if not isinstance(value, str):
            raise _fail(400, errors={field_name: "Operation value must be a string"})
        return adf_from_text(value) if value else None

    def _apply_api_fields(self, st: dict[str, Any], fields: dict[str, Any], version: int, creating: bool) -> None:
        errors: dict[str, str] = {}
        for name, value in fields.items():
            try:
                self._apply_api_field(st, name, value, version, creating)
            except _HttpError as exc:
                field_errors = exc.response.body.get("errors") if isinstance(exc.response.body, dict) else None
                if not field_errors:
                    raise
                # Jira reports every invalid field at once, not just the first.
                errors.update(field_errors)
        if errors:
            raise _fail(400, errors=errors)

    def _apply_api_field(self, st: dict[str, Any], name: str, value: Any, version: int, creating: bool) -> None:
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                raise _fail(400, errors={"summary": "You must specify a summary of the issue."})
            if len(value) > 255:
                raise _fail(400, errors={"summary": "Summary must be less than 255 characters."})
            st["summary"] = value
        elif name == "description":
            st["description"] = self._text_input(value, version, "description")
        elif name == "project":
            if not creating:
                raise _fail(400, errors={"project": "Field 'project' cannot be set. It is not on the appropriate "
                                                    "screen, or unknown."})
        elif name == "issuetype":
            found = self._find_issue_type(value) if isinstance(value, dict) else None
            if found is None:
                raise _fail(400, errors={"issuetype": "Specify a valid issue type"})
            st["issuetype"] = found["id"]
        elif name == "priority":
            found = self._find_priority(value) if isinstance(value, dict) else None
            if found is None:
                raise _fail(400, errors={"priority": "Specify the Priority (id or name) in the string format"})
            st["priority"] = found["id"]
        elif name == "components":
            if not isinstance(value, list):
                raise _fail(400, errors={"components": "expected 'components' to be an array"})
            st["components"] = [self._api_component(item) for item in value]
        elif name == "labels":
            st["labels"] = self._api_labels(value)
        elif name in ("reporter", "assignee"):
            st[name] = self._api_user(value, name)
        elif name == MAJOR_INCIDENT_FIELD and self.major_incident_field:
            if value not in (None, MAJOR_INCIDENT_VALUE):
                raise _fail(400, errors={name: f"Specify '{MAJOR_INCIDENT_VALUE}' or null."})
            st["custom"][name] = value
        elif name == STAGE_FIELD:
            if value is not None and not isinstance(value, str):
                raise _fail(400, errors={name: "Operation value must be a string"})
            if isinstance(value, str) and len(value) > 255:
                raise _fail(400, errors={name: "Text is too long. Please shorten it to 255 characters or less."})
            st["custom"][name] = value or None
        else:
            raise _fail(400, errors={name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                                           "unknown."})

    def _api_component(self, item: Any) -> str:
        if isinstance(item, dict):
            if "name" in item:
                self._component_id(str(item["name"]))
                return str(item["name"])
            if "id" in item:
                for name, cid in self._components.items():
                    if cid == str(item["id"]):
                        return name
        raise _fail(400, errors={"components": f"Component with id '{item}' does not exist."})

    def _api_labels(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(400, errors={"labels": "expected 'labels' to be an array of strings"})
        for label in value:
            if " " in label:
                raise _fail(400, errors={"labels": f"The label '{label}' contains spaces which is invalid."})
            if len(label) > 255:
                raise _fail(400, errors={"labels": "The label is too long."})
        out: list[str] = []
        for label in value:
            if label not in out:
                out.append(label)
        return out

    def _apply_update(self, st: dict[str, Any], update: dict[str, Any], version: int) -> None:
        for name, operations in update.items():
            if not isinstance(operations, list):
                raise _fail(400, errors={name: "Operations must be an array."})
            for operation in operations:
                if not isinstance(operation, dict) or len(operation) != 1:
                    raise _fail(400, errors={name: "Each operation must have exactly one verb."})
                verb, value = next(iter(operation.items()))
                self._apply_operation(st, name, verb, value, version)

    def _apply_operation(self, st: dict[str, Any], name: str, verb: str, value: Any, version: int) -> None:
        if name == "labels":
            if verb == "set":
                st["labels"] = self._api_labels(value)
            elif verb == "add":
                for label in self._api_labels([value]):
                    if label not in st["labels"]:
                        st["labels"].append(label)
            elif verb == "remove":
                st["labels"] = [label for label in st["labels"] if label != value]
            else:
                raise _fail(400, errors={name: f"Unsupported operation '{verb}'."})
        elif name == "components":
            if verb == "set":
                st["components"] = [self._api_component(item) for item in value or []]
            elif verb == "add":
                comp = self._api_component(value)
                if comp not in st["components"]:
                    st["components"].append(comp)
            elif verb == "remove":
                comp = self._api_component(value)
                st["components"] = [c for c in st["components"] if c != comp]
            else:
                raise _fail(400, errors={name: f"Unsupported operation '{verb}'."})
        elif name == "comment":
            if verb != "add" or not isinstance(value, dict):
                raise _fail(400, errors={name: f"Unsupported operation '{verb}'."})
            self._append_comment(st, value, version)
        elif verb == "set":
            self._apply_api_field(st, name, value, version, creating=False)
        else:
            raise _fail(400, errors={name: f"Field '{name}' does not support the '{verb}' operation."})

    def _apply_properties(self, st: dict[str, Any], properties: Any) -> None:
        if properties is None:
            return
        if not isinstance(properties, list):
            raise _fail(400, "'properties' must be an array.")
        for prop in properties:
            if not isinstance(prop, dict) or not isinstance(prop.get("key"), str) or "value" not in prop:
                raise _fail(400, "Each property must have a 'key' and a 'value'.")
            self._check_property_key(prop["key"])
            st["properties"][prop["key"]] = copy.deepcopy(prop["value"])

    def _check_property_key(self, key: str) -> None:
        if not key or len(key) > 255:
            raise _fail(400, "The property key cannot be empty or longer than 255 characters.")

    def _create(self, request: SimRequest, version: int) -> SimResponse:
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, "Request body must be a JSON object.")
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise _fail(400, "'fields' and 'update' must be objects.")
        errors: dict[str, str] = {}
        project = fields.get("project")
        if not isinstance(project, dict) or str(project.get("key", project.get("id", ""))).upper() not in (
                PROJECT["key"], PROJECT["id"]):
            errors["project"] = "Specify a valid project ID or key"
        if "issuetype" not in fields:
            errors["issuetype"] = "Specify an issue type"
        if "summary" not in fields and "summary" not in update:
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            raise _fail(400, errors=errors)
        both = sorted(set(fields) & set(update))
        if both:
            raise _fail(400, errors={both[0]: f"Field '{both[0]}' cannot be set in both 'fields' and 'update'."})
        st = self._new_state(self._now())
        st["creator"] = self._me
        st["reporter"] = self._me
        self._apply_api_fields(st, fields, version, creating=True)
        comments_later = update.pop("comment", None)
        self._apply_update(st, update, version)
        self._apply_properties(st, body.get("properties"))
        self._register(st)
        if comments_later:
            self._apply_update(st, {"comment": comments_later}, version)
            self._touch(st)
        transition = body.get("transition")
        if isinstance(transition, dict) and transition.get("id"):
            self._transition(st, str(transition["id"]))
            self._touch(st)
        return SimResponse(201, {"id": st["id"], "key": st["key"], "self": f"{self._api(version)}/issue/{st['id']}"})

    def _issue_query(self, request: SimRequest) -> tuple[list[str], list[str], list[str]]:
        fields = _split_list(request.query.get("fields"))
        properties = _split_list(request.query.get("properties"))
        expand = _split_list(request.query.get("expand"))
        return fields, properties, expand

    def _get_issue(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        fields, properties, expand = self._issue_query(request)
        selected = self._select_fields(fields, "*all")
        return SimResponse(200, self._render_issue(st, version, selected, properties, expand))

    def _edit(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, "Request body must be a JSON object.")
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise _fail(400, "'fields' and 'update' must be objects.")
        both = sorted(set(fields) & set(update))
        if both:
            raise _fail(400, errors={both[0]: f"Field '{both[0]}' cannot be set in both 'fields' and 'update'."})
        if "status" in fields or "status" in update:
            raise _fail(400, errors={"status": "Field 'status' cannot be set. It is not on the appropriate screen, "
                                               "or unknown."})
        work = copy.deepcopy(st)
        self._apply_api_fields(work, fields, version, creating=False)
        self._apply_update(work, update, version)
        self._apply_properties(work, body.get("properties"))
        st.clear()
        st.update(work)
        self._touch(st)
        if _bool_arg(request.arg("returnIssue")):
            f, p, e = self._issue_query(request)
            return SimResponse(200, self._render_issue(st, version, self._select_fields(f, "*all"), p, e))
        return SimResponse(204)

    def _assign(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, "Request body must be a JSON object.")
        identifiers = [k for k in ("accountId", "name", "key") if k in body]
        if len(identifiers) > 1:
            raise _fail(400, "Only one of 'accountId', 'name' or 'key' can be provided.")
        if self.flavour == "cloud" and identifiers and identifiers[0] != "accountId":
            raise _fail(400, "The 'name' and 'key' properties are not supported in GDPR strict mode; identify the "
                             "user by 'accountId'.")
        if not identifiers:
            raise _fail(400, errors={"assignee": "Specify 'accountId'" if self.flavour == "cloud" else
                                     "Specify 'name'"})
        ident = body[identifiers[0]]
        if ident is None or ident == "-1":
            st["assignee"] = None
        else:
            if self.flavour == "cloud":
                user = self._users.get(str(ident))
            else:
                user = next((u for u in self._users.values()
                             if str(ident).lower() in (u["name"].lower(), str(u["key"]).lower())), None)
            if user is None:
                raise _fail(404, f"User '{ident}' does not exist.")
            st["assignee"] = user["accountId"]
        self._touch(st)
        return SimResponse(204)

    def _get_transitions(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        return SimResponse(200, {"expand": "transitions", "transitions": self._available_transitions(st, version)})

    def _transition(self, st: dict[str, Any], transition_id: str) -> None:
        found = next((t for t in TRANSITIONS if t[0] == transition_id and st["status"] in t[3]), None)
        if found is None:
            raise _fail(400, f"Transition id '{transition_id}' is not valid for this issue.")
        self._set_status(st, found[2])

    def _do_transition(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        body = self._json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("transition"), dict):
            raise _fail(400, "Missing 'transition' identifier")
        transition_id = body["transition"].get("id")
        if transition_id is None:
            raise _fail(400, "Missing 'transition' identifier")
        work = copy.deepcopy(st)
        self._transition(work, str(transition_id))
        fields = body.get("fields") or {}
        if isinstance(fields, dict):
            fields = {k: v for k, v in fields.items() if k != "resolution"}
            self._apply_api_fields(work, fields, version, creating=False)
        if isinstance(body.get("update"), dict):
            self._apply_update(work, body["update"], version)
        self._apply_properties(work, body.get("properties"))
        st.clear()
        st.update(work)
        self._touch(st)
        return SimResponse(204)

    # ------------------------------------------------------------------ handlers: comments

    def _check_limit(self, st: dict[str, Any], what: str, current: int) -> None:
        if self.per_issue_write_limit is not None and current >= self.per_issue_write_limit:
            raise _HttpError(_error(413, [f"The issue {st['key']} has reached the limit of "
                                          f"{self.per_issue_write_limit} {what}."],
                                    headers={"RateLimit-Reason": "jira-per-issue-on-write"}))

    def _append_comment(self, st: dict[str, Any], body: dict[str, Any], version: int) -> dict[str, Any]:
        text = body.get("body")
        if version == 3:
            if text is None or _adf_problem(text) is not None:
                raise _fail(400, errors={"comment": "Comment body is not valid!"})
            if not adf_to_text(text).strip() and not text.get("content"):
                raise _fail(400, errors={"comment": "Comment body can not be empty!"})
            stored = copy.deepcopy(text)
        else:
            if not isinstance(text, str):
                raise _fail(400, errors={"comment": "Comment body is not valid!"})
            if not text.strip():
                raise _fail(400, errors={"comment": "Comment body can not be empty!"})
            stored = adf_from_text(text)
        properties: dict[str, Any] = {}
        for prop in body.get("properties") or []:
            if not isinstance(prop, dict) or not isinstance(prop.get("key"), str):
                raise _fail(400, "Each property must have a 'key' and a 'value'.")
            properties[prop["key"]] = copy.deepcopy(prop.get("value"))
        visibility = body.get("visibility")
        if visibility is not None and (not isinstance(visibility, dict) or visibility.get("type") not in
                                       ("group", "role")):
            raise _fail(400, errors={"visibility": "Visibility type must be 'group' or 'role'."})
        self._check_limit(st, "comments", len(st["comments"]))
        now = self._now()
        comment = {"id": str(self._next_comment_id), "author": self._me, "body": stored, "created": now,
                   "updated": now, "properties": properties, "visibility": copy.deepcopy(visibility)}
        self._next_comment_id += 1
        st["comments"].append(comment)
        return comment

    def _add_comment(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, errors={"comment": "Comment body is not valid!"})
        comment = self._append_comment(st, body, version)
        self._touch(st)
        expand = _split_list(request.query.get("expand"))
        return SimResponse(201, self._render_comment(st, comment, version, with_properties="properties" in expand))

    def _list_comments(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        start = max(0, _int_arg(request.arg("startAt"), 0, "startAt"))
        limit = max(0, min(_int_arg(request.arg("maxResults"), 100, "maxResults"), 5000))
        expand = _split_list(request.query.get("expand"))
        ordered = list(st["comments"])
        if (request.arg("orderBy") or "").startswith("-"):
            ordered.reverse()
        page = [self._render_comment(st, c, version, with_properties="properties" in expand)
                for c in ordered[start:start + limit]]
        return SimResponse(200, {"startAt": start, "maxResults": limit, "total": len(ordered), "comments": page})

    # ------------------------------------------------------------------ handlers: properties

    def _list_properties(self, request: SimRequest, version: int, key: str) -> SimResponse:
        st = self._require(key)
        return SimResponse(200, {"keys": [{"self": f"{self._api(version)}/issue/{st['id']}/properties/{k}", "key": k}
                                          for k in st["properties"]]})

    def _get_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        st = self._require(key)
        if prop not in st["properties"]:
            raise _fail(404, f"The property with key '{prop}' does not exist.")
        return SimResponse(200, {"key": prop, "value": copy.deepcopy(st["properties"][prop])})

    def _put_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        st = self._require(key)
        self._check_property_key(prop)
        if not request.body:
            raise _fail(400, "The property value must be valid JSON.")
        value = self._json_body(request)
        existed = prop in st["properties"]
        st["properties"][prop] = value
        self._touch(st)
        return SimResponse(200 if existed else 201)

    def _delete_property(self, request: SimRequest, version: int, key: str, prop: str) -> SimResponse:
        st = self._require(key)
        if prop not in st["properties"]:
            raise _fail(404, f"The property with key '{prop}' does not exist.")
        del st["properties"][prop]
        self._touch(st)
        return SimResponse(204)

    # ------------------------------------------------------------------ handlers: links

    def _find_link_type(self, value: Any) -> dict[str, str] | None:
        if not isinstance(value, dict):
            return None
        if value.get("id") is not None:
            return next((t for t in LINK_TYPES if t["id"] == str(value["id"])), None)
        name = str(value.get("name", "")).lower()
        return next((t for t in LINK_TYPES if t["name"].lower() == name), None)

    def _link_side(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(404, ISSUE_NOT_FOUND)
        ident = value.get("key") or value.get("id")
        st = self._get_state(str(ident)) if ident is not None else None
        if st is None:
            raise _fail(404, ISSUE_NOT_FOUND)
        return st

    def _create_link(self, request: SimRequest, version: int) -> SimResponse:
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _fail(400, "Request body must be a JSON object.")
        missing = [k for k in ("type", "inwardIssue", "outwardIssue") if k not in body]
        if missing:
            raise _fail(400, f"'{missing[0]}' is required.")
        link_type = self._find_link_type(body["type"])
        if link_type is None:
            raise _fail(404, f"No issue link type with name '{(body['type'] or {}).get('name')}' found.")
        source = self._link_side(body["inwardIssue"])
        target = self._link_side(body["outwardIssue"])
        if source["id"] == target["id"]:
            raise _fail(400, "You cannot link an issue to itself.")
        for link in self._links.values():
            if link.type_id == link_type["id"] and link.source == source["id"] and link.target == target["id"]:
                return SimResponse(201, None)
        self._check_limit(source, "issue links", len(source["links"]))
        self._check_limit(target, "issue links", len(target["links"]))
        if body.get("comment") is not None:
            if not isinstance(body["comment"], dict):
                raise _fail(400, errors={"comment": "Comment body is not valid!"})
            self._append_comment(target, body["comment"], version)
        link = _Link(str(self._next_link_id), link_type["id"], source["id"], target["id"])
        self._next_link_id += 1
        self._links[link.id] = link
        source["links"].append(link.id)
        target["links"].append(link.id)
        self._touch(source)
        self._touch(target)
        return SimResponse(201, None)

    def _get_link(self, request: SimRequest, version: int, link_id: str) -> SimResponse:
        link = self._links.get(link_id)
        if link is None:
            raise _fail(404, f"No issue link with id '{link_id}' exists.")
        return SimResponse(200, {"id": link.id, "self": f"{self._api(version)}/issueLink/{link.id}",
                                 "type": self._render_link_type(link.type_id, version),
                                 "inwardIssue": self._linked_issue(link.source, version),
                                 "outwardIssue": self._linked_issue(link.target, version)})

    def _delete_link(self, request: SimRequest, version: int, link_id: str) -> SimResponse:
        link = self._links.pop(link_id, None)
        if link is None:
            raise _fail(404, f"No issue link with id '{link_id}' exists.")
        for issue_id in (link.source, link.target):
            st = self._issues[issue_id]
            st["links"] = [lid for lid in st["links"] if lid != link_id]
            self._touch(st)
        return SimResponse(204)

    # ------------------------------------------------------------------ JSM servicedeskapi comments

    def _servicedesk_comment_dto(self, st: dict[str, Any], comment: dict[str, Any]) -> dict[str, Any]:
        user = self._users[comment["author"]]
        author: dict[str, Any] = {"accountId": user["accountId"], "emailAddress": user["emailAddress"],
                                  "displayName": user["displayName"], "active": user["active"],
                                  "timeZone": user["timeZone"]}
        if self.flavour == "dc":
            author = {"name": user["name"], "key": user["key"], **author}
            del author["accountId"]
        internal = comment["properties"].get("sd.public.comment", {})
        created = comment["created"]
        return {
            "id": comment["id"], "body": adf_to_text(comment["body"]),
            "public": not (isinstance(internal, dict) and internal.get("internal") is True),
            "author": author,
            "created": {"iso8601": created.strftime("%Y-%m-%dT%H:%M:%S+0000"), "jira": jira_time(created),
                        "friendly": created.strftime("%d/%b/%y %I:%M %p"), "epochMillis": _ms(created)},
            "_links": {"self": f"{self.base_url}/rest/servicedeskapi/request/{st['id']}/comment/{comment['id']}"},
        }

    def _servicedesk_comment(self, request: SimRequest, key: str) -> SimResponse:
        st = self._get_state(key)
        if st is None:
            raise _fail(404, ISSUE_NOT_FOUND)
        if request.method == "GET":
            start = max(0, _int_arg(request.arg("start"), 0, "start"))
            limit = max(1, _int_arg(request.arg("limit"), 50, "limit"))
            values = [self._servicedesk_comment_dto(st, c) for c in st["comments"]]
            if request.arg("public") == "false":
                values = [v for v in values if not v["public"]]
            elif request.arg("internal") == "false":
                values = [v for v in values if v["public"]]
            page = values[start:start + limit]
            return SimResponse(200, {"size": len(page), "start": start, "limit": limit,
                                     "isLastPage": start + limit >= len(values), "values": page, "_links": {}})
        if request.method != "POST":
            return SimResponse(405, None)
        body = self._json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"].strip():
            return SimResponse(400, {"errorMessage": "Comment body can not be empty!", "i18nErrorMessage": {
                "i18nKey": "sd.comment.empty", "parameters": []}})
        public = body.get("public", True)
        if not isinstance(public, bool):
            return SimResponse(400, {"errorMessage": "'public' must be a boolean.", "i18nErrorMessage": {
                "i18nKey": "sd.comment.public.invalid", "parameters": []}})
        self._check_limit(st, "comments", len(st["comments"]))
        now = self._now()
        comment = {"id": str(self._next_comment_id), "author": self._me, "body": adf_from_text(body["body"]),
                   "created": now, "updated": now,
                   "properties": {} if public else {"sd.public.comment": {"internal": True}}, "visibility": None}
        self._next_comment_id += 1
        st["comments"].append(comment)
        self._touch(st)
        return SimResponse(201, self._servicedesk_comment_dto(st, comment))

    # ------------------------------------------------------------------ JSM Incidents API

    def _incident_major(self, request: SimRequest, cloud_id: str, issue_id: str) -> SimResponse:
        if cloud_id != self.cloud_id:
            raise _fail(404, f"Site '{cloud_id}' not found.")
        st = self._issues.get(issue_id)
        if st is None:
            raise _fail(404, ISSUE_NOT_FOUND)
        if request.method == "GET":
            return SimResponse(200, {"majorIncident": st["custom"].get(MAJOR_INCIDENT_FIELD) == MAJOR_INCIDENT_VALUE})
        if request.method != "POST":
            return SimResponse(405, None)
        body = self._json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("majorIncident"), bool):
            raise _fail(400, errors={"majorIncident": "majorIncident must be a boolean."})
        st["custom"][MAJOR_INCIDENT_FIELD] = MAJOR_INCIDENT_VALUE if body["majorIncident"] else None
        self._touch(st)
        return SimResponse(204)


# --------------------------------------------------------------------------------------------------
# JQL evaluation
# --------------------------------------------------------------------------------------------------

_DATE_FIELDS = {"created", "updated", "resolved"}
_TEXT_FIELDS = {"summary", "description", "text", "comment", STAGE_FIELD}
_MULTI_FIELDS = {"labels", "component"}
_USER_FIELDS = {"reporter", "assignee", "creator"}
_RELATIVE_RE = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_LOCAL_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")


class _Evaluator:
    """Evaluates a parsed JQL tree against issue states."""

    def __init__(self, sim: JiraSim, now: datetime) -> None:
        self.sim = sim
        self.now = now

    # -- validation (Jira rejects unknown values before searching) ---------------------------------

    def validate(self, node: Any) -> None:
        if isinstance(node, _BoolNode):
            for child in node.children:
                self.validate(child)
            return
        clause: _Clause = node
        op = clause.operator
        fname = clause.field
        if fname in _TEXT_FIELDS and op not in ("~", "!~", "is", "is not"):
            raise JqlError(f"The operator '{op.upper() if op.isalpha() or ' ' in op else op}' is not supported by "
                           f"the '{clause.raw_field}' field.")
        if fname not in _TEXT_FIELDS and op in ("~", "!~"):
            raise JqlError(f"The operator '{op}' is not supported by the '{clause.raw_field}' field.")
        if op in (">", ">=", "<", "<=") and fname not in _DATE_FIELDS | {"key", "priority"}:
            raise JqlError(f"The operator '{op}' is not supported by the '{clause.raw_field}' field.")
        for lit in clause.values:
            if _is_empty_literal(lit):
                continue
            if fname in _DATE_FIELDS:
                self.date_ms(lit, clause.raw_field)
            elif fname == "project":
                if lit.text.upper() not in (PROJECT["key"], PROJECT["id"]) and lit.text.lower() != PROJECT[
                        "name"].lower():
                    raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "issuetype" and self.sim._find_issue_type(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "status" and self.sim._find_status(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "priority" and self.sim._find_priority(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "statuscategory" and self.category_key(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname in _USER_FIELDS and not (lit.function == "currentuser" or self.sim._find_user(lit.text)):
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "key" and not re.fullmatch(r"\d+", lit.text):
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*-\d+", lit.text):
                    raise JqlError(f"The issue key '{lit.text}' for field '{clause.raw_field}' is invalid.")
                if lit.text.upper() not in self.sim._keys and op in ("=", "in"):
                    raise JqlError(f"An issue with key '{lit.text}' does not exist for field '{clause.raw_field}'.")

    @staticmethod
    def category_key(text: str) -> str | None:
        lowered = text.strip().lower()
        for key, category in STATUS_CATEGORIES.items():
            if lowered in (key, category["name"].lower(), str(category["id"])):
                return key
        return None

    # -- literals ------------------------------------------------------------------------------------

    def date_ms(self, lit: _Literal, field_name: str) -> int:
        if lit.function is not None:
            local_now = self.now.astimezone(self.sim._zone)
            if lit.function == "now":
                return _ms(self.now)
            if lit.function in ("startofday", "endofday"):
                start = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
                value = start if lit.function == "startofday" else start + timedelta(days=1) - timedelta(
                    milliseconds=1)
                return _ms(value)
            raise JqlError(f"Unable to find JQL function '{lit.text}({', '.join(lit.args)})'.")
        text = lit.text.strip()
        if not lit.quoted and re.fullmatch(r"-?\d+", text):
            return int(text)
        relative = _RELATIVE_RE.match(text)
        if relative:
            sign = -1 if relative.group(1) == "-" else 1
            delta = timedelta()
            for amount, unit in re.findall(r"(\d+)\s*([wdhm])", relative.group(2).lower()):
                delta += {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
                          "m": timedelta(minutes=1)}[unit] * int(amount)
            return _ms(self.now + sign * delta)
        for fmt in _LOCAL_FORMATS:
            try:
                naive = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return _ms(naive.replace(tzinfo=self.sim._zone).astimezone(UTC))
        raise JqlError(f"Date value '{lit.text}' for field '{field_name}' is invalid. {DATE_FORMATS_HINT}")

    # -- matching --------------------------------------------------------------------------------------

    def matches(self, node: Any, st: dict[str, Any]) -> bool:
        if isinstance(node, _BoolNode):
            if node.op == "and":
                return all(self.matches(c, st) for c in node.children)
            if node.op == "or":
                return any(self.matches(c, st) for c in node.children)
            return not self.matches(node.children[0], st)
        return self.clause(node, st)

    def identifiers(self, fname: str, st: dict[str, Any]) -> list[set[str]]:
        """Each value of the field as the set of strings that name it (empty list = field empty)."""
        sim = self.sim
        if fname == "project":
            return [{PROJECT["key"].lower(), PROJECT["id"], PROJECT["name"].lower()}]
        if fname == "key":
            return [{st["key"].lower(), st["id"]}]
        if fname == "issuetype":
            item = next(t for t in ISSUE_TYPES if t["id"] == st["issuetype"])
            return [{item["id"], item["name"].lower(), f"[system] {item['name'].lower()}"}]
        if fname == "status":
            status = sim._status(st["status"])
            return [{status["id"], status["name"].lower()}]
        if fname == "statuscategory":
            return [{sim._status(st["status"])["category"]}]
        if fname == "priority":
            item = next(p for p in PRIORITIES if p["id"] == st["priority"])
            return [{item["id"], item["name"].lower()}]
        if fname == "labels":
            return [{label.lower()} for label in st["labels"]]
        if fname == "component":
            return [{name.lower(), sim._component_id(name)} for name in st["components"]]
        if fname in _USER_FIELDS:
            account = st[fname]
            if account is None:
                return []
            user = sim._users[account]
            return [{str(user[k]).lower() for k in ("accountId", "name", "key", "emailAddress", "displayName")}]
        value = st["custom"].get(fname)
        return [] if value in (None, "", []) else [{str(value).lower()}]

    def literal_ids(self, fname: str, lit: _Literal) -> set[str]:
        if lit.function == "currentuser":
            return {self.sim._me.lower()}
        text = lit.text.strip().lower()
        if fname == "statuscategory":
            key = self.category_key(text)
            return {key} if key else set()
        if fname in _USER_FIELDS:
            user = self.sim._find_user(text)
            return {user["accountId"].lower()} if user else {text}
        if fname == "issuetype":
            found = self.sim._find_issue_type(text)
            return {found["id"]} if found else {text}
        return {text}

    def clause(self, clause: _Clause, st: dict[str, Any]) -> bool:
        fname, op = clause.field, clause.operator
        if fname in _DATE_FIELDS:
            return self.date_clause(clause, st)
        if fname in _TEXT_FIELDS:
            return self.text_clause(clause, st)
        values = self.identifiers(fname, st)
        if op in ("is", "is not") or (len(clause.values) == 1 and _is_empty_literal(clause.values[0])
                                      and op in ("=", "!=")):
            empty = not values
            return empty if op in ("is", "=") else not empty
        if op in (">", ">=", "<", "<="):
            return self.ordered_clause(clause, st)
        wanted: list[set[str]] = [self.literal_ids(fname, lit) for lit in clause.values
                                  if not _is_empty_literal(lit)]
        wants_empty = any(_is_empty_literal(lit) for lit in clause.values)
        hit = any(w & v for w in wanted for v in values)
        if op in ("=", "in"):
            return hit or (wants_empty and not values)
        # "!=" and "not in" never match an empty field (a well-known Jira behaviour).
        if not values:
            return False
        return not hit

    def ordered_clause(self, clause: _Clause, st: dict[str, Any]) -> bool:
        fname, op = clause.field, clause.operator
        lit = clause.values[0]
        if fname == "key":
            mine = int(st["id"]) if re.fullmatch(r"\d+", lit.text) else int(st["key"].rsplit("-", 1)[1])
            other = int(lit.text) if re.fullmatch(r"\d+", lit.text) else int(lit.text.rsplit("-", 1)[1])
        else:
            found = self.sim._find_priority(lit.text)
            mine = 6 - int(st["priority"])
            other = 6 - int(found["id"]) if found else 0
        return {">": mine > other, ">=": mine >= other, "<": mine < other, "<=": mine <= other}[op]

    def date_value(self, fname: str, st: dict[str, Any]) -> int | None:
        value = st["resolutiondate"] if fname == "resolved" else st[fname]
        return _ms(value) if value is not None else None

    def date_clause(self, clause: _Clause, st: dict[str, Any]) -> bool:
        mine = self.date_value(clause.field, st)
        op = clause.operator
        if op in ("is", "is not") or (_is_empty_literal(clause.values[0]) and op in ("=", "!=")):
            return (mine is None) == (op in ("is", "="))
        if mine is None:
            return False
        targets = [self.date_ms(lit, clause.raw_field) for lit in clause.values if not _is_empty_literal(lit)]
        if op == "in":
            return mine in targets
        if op == "not in":
            return mine not in targets
        other = targets[0]
        return {"=": mine == other, "!=": mine != other, ">": mine > other, ">=": mine >= other,
                "<": mine < other, "<=": mine <= other}[op]

    def text_of(self, fname: str, st: dict[str, Any]) -> str | None:
        if fname == "summary":
            return str(st["summary"])
        if fname == "description":
            return adf_to_text(st["description"]) if st["description"] else None
        if fname == "comment":
            texts = [adf_to_text(c["body"]) for c in st["comments"]]
            return "\n".join(texts) if texts else None
        if fname == "text":
            parts = [st["summary"], adf_to_text(st["description"]) if st["description"] else ""]
            parts += [adf_to_text(c["body"]) for c in st["comments"]]
            return "\n".join(parts)
        value = st["custom"].get(fname)
        return None if value in (None, "") else str(value)

    def text_clause(self, clause: _Clause, st: dict[str, Any]) -> bool:
        text = self.text_of(clause.field, st)
        op = clause.operator
        if op in ("is", "is not"):
            return (text is None) == (op == "is")
        if text is None:
            return False
        haystack = text.lower()
        needle = clause.values[0].text.strip().lower()
        if len(needle) >= 2 and needle[0] == needle[-1] == '"':
            found = needle[1:-1] in haystack
        else:
            terms = [t.rstrip("*") for t in re.split(r"[^\w*]+", needle) if t.strip("*")]
            found = all(term in haystack for term in terms) if terms else False
        return found if op == "~" else not found

    # -- ordering ------------------------------------------------------------------------------------------

    def sort_value(self, fname: str, st: dict[str, Any]) -> Any:
        if fname == "key":
            return int(st["id"])
        if fname in _DATE_FIELDS:
            return self.date_value(fname, st)
        if fname == "priority":
            return 6 - int(st["priority"])
        if fname == "status":
            return [s["id"] for s in STATUSES].index(st["status"])
        if fname == "statuscategory":
            return ["new", "indeterminate", "done"].index(self.sim._status(st["status"])["category"])
        if fname == "issuetype":
            return [t["id"] for t in ISSUE_TYPES].index(st["issuetype"])
        if fname == "project":
            return PROJECT["key"]
        if fname in _USER_FIELDS:
            account = st[fname]
            return self.sim._users[account]["displayName"].lower() if account else None
        if fname in ("labels", "component"):
            items = st["labels"] if fname == "labels" else st["components"]
            return ",".join(sorted(i.lower() for i in items)) or None
        if fname in _TEXT_FIELDS:
            value = self.text_of(fname, st)
            return value.lower() if value else None
        value = st["custom"].get(fname)
        return None if value in (None, "") else str(value).lower()


# --------------------------------------------------------------------------------------------------
# Server wrapper and CLI entry point
# --------------------------------------------------------------------------------------------------


class _JiraSimServer(SimServer):
    """:class:`SimServer` with Jira-looking rate-limit faults and fault responses recorded as exchanges."""

    def __init__(self, sim: JiraSim, handler: Callable[[SimRequest], SimResponse], port: int = 0) -> None:
        # A short poll interval so that stop() returns quickly in tests.
        super().__init__(handler, port=port, poll_interval=0.02, name="jira-sim")
        self.sim = sim

    def _fault_response(self, rule: FaultRule, request: SimRequest) -> SimResponse | None:
        response = super()._fault_response(rule, request)
        if response is None:
            return None
        if rule.kind == "429":
            now = self.sim._now()
            reset = now + timedelta(seconds=float(rule.retry_after or 0))
            response.body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
            response.headers.update({
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                "RateLimit-Reason": "jira-burst-based",
            })
        with self.sim._lock:
            self.sim._record_exchange(request, response, fault=rule.kind)
        return response


def serve(port: int, email: str, token: str, flavour: str = "cloud") -> None:
    """Serve a fresh simulator on ``127.0.0.1:port`` until interrupted (``mim simulate jira``)."""
    sim = JiraSim(email=email, token=token, flavour=flavour)
    server = sim.server(port)
    auth = "Basic email:token" if flavour == "cloud" else "Authorization: Bearer <token>"
    print(f"Jira {flavour} simulator listening on {server.url} ({auth}; user {email})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
