"""JQL syntax: the tokeniser, a recursive-descent parser of the subset the simulator answers, and the names
of the fields a clause may use. Matching a parsed query against issues is :mod:`.jql_eval`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from connector.sim.jira.catalogue import MAJOR_INCIDENT_FIELD, STAGE_FIELD

MAX_ORDER_BY = 7


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
class Literal:
    """A clause's value: a word or quoted string, or a function call such as ``currentUser()``."""

    text: str
    quoted: bool = False
    function: str | None = None
    args: list[str] = field(default_factory=list)


@dataclass
class Clause:
    """``field operator value(s)``, the field already canonical."""

    field: str
    operator: str  # "=", "!=", ">", ">=", "<", "<=", "~", "!~", "in", "not in", "is", "is not"
    values: list[Literal]
    raw_field: str


@dataclass
class BoolNode:
    """AND, OR or NOT over clauses and other nodes."""

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
        return children[0] if len(children) == 1 else BoolNode("or", children)

    def parse_and(self) -> Any:
        children = [self.parse_not()]
        while (token := self.peek()) is not None and token.keyword("and"):
            self.next()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else BoolNode("and", children)

    def parse_not(self) -> Any:
        token = self.peek()
        if token is not None and token.keyword("not"):
            self.next()
            return BoolNode("not", [self.parse_not()])
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
        return Clause(canonical, operator, values, token.text)

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

    def parse_literal(self) -> Literal:
        token = self.next("a value")
        if token.kind == "str":
            return Literal(token.text, quoted=True)
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
            return Literal(token.text, function=token.text.lower(), args=args)
        return Literal(token.text)

    def parse_operand(self, operator: str) -> list[Literal]:
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
            return [Literal("EMPTY")]
        return [self.parse_literal()]


def is_empty_literal(lit: Literal) -> bool:
    """Whether ``lit`` is the bare word ``EMPTY`` or ``NULL``."""
    return not lit.quoted and lit.function is None and lit.text.lower() in ("empty", "null")


def parse_jql(jql: str, resolve_field: Callable[[str, bool], str]) -> JqlQuery:
    """Parse ``jql``; ``resolve_field(name, quoted)`` names each field canonically or raises :class:`JqlError`."""
    return _Parser(jql, resolve_field).parse()


def resolve_field(name: str, quoted: bool, major_incident_field: bool) -> str:
    """The canonical name of a JQL field (an alias, ``cf[N]``, ``customfield_N`` or a custom field's name)."""
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
    if major_incident_field:
        custom_ids[MAJOR_INCIDENT_FIELD] = "major incident"
    if match:
        fid = f"customfield_{match.group(1) or match.group(2)}"
        if fid in custom_ids:
            return fid
    for fid, fname in custom_ids.items():
        if lowered == fname:
            return fid
    raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
