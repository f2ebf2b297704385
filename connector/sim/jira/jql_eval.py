"""JQL evaluation: a parsed query validated and matched against the site's issues as search sees them (with
Jira's time-zone trap: quoted dates are read in the user's zone at minute precision, unquoted numbers are
epoch milliseconds), and the ordering of the matches."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from connector.sim.jira.adf import adf_to_text
from connector.sim.jira.catalogue import ISSUE_TYPES, PRIORITIES, PROJECT, STAGE_FIELD, STATUS_CATEGORIES, STATUSES
from connector.sim.jira.jql import BoolNode, Clause, JqlError, JqlQuery, Literal, is_empty_literal
from connector.sim.jira.site import Issue, JiraSite
from connector.sim.jira.times import UTC, epoch_ms

DATE_FORMATS_HINT = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
    "or a period format e.g. '-5d', '4w 2d'."
)

_DATE_FIELDS = {"created", "updated", "resolved"}
_TEXT_FIELDS = {"summary", "description", "text", "comment", STAGE_FIELD}
_USER_FIELDS = {"reporter", "assignee", "creator"}
_RELATIVE_RE = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_LOCAL_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")


class Evaluator:
    """Evaluates a parsed JQL tree against the issues of ``site`` at ``now``."""

    def __init__(self, site: JiraSite, now: datetime) -> None:
        self.site = site
        self.now = now

    # -- validation (Jira rejects unknown values before searching) ---------------------------------

    def validate(self, node: Any) -> None:
        """Raise :class:`JqlError` for an operator a field does not support or a value that does not exist."""
        if isinstance(node, BoolNode):
            for child in node.children:
                self.validate(child)
            return
        clause: Clause = node
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
            if is_empty_literal(lit):
                continue
            if fname in _DATE_FIELDS:
                self.date_ms(lit, clause.raw_field)
            elif fname == "project":
                if lit.text.upper() not in (PROJECT["key"], PROJECT["id"]) and lit.text.lower() != PROJECT[
                        "name"].lower():
                    raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "issuetype" and self.site.find_issue_type(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "status" and self.site.find_status(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "priority" and self.site.find_priority(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "statuscategory" and self.category_key(lit.text) is None:
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname in _USER_FIELDS and not (lit.function == "currentuser" or self.site.find_user(lit.text)):
                raise JqlError(f"The value '{lit.text}' does not exist for the field '{clause.raw_field}'.")
            elif fname == "key" and not re.fullmatch(r"\d+", lit.text):
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*-\d+", lit.text):
                    raise JqlError(f"The issue key '{lit.text}' for field '{clause.raw_field}' is invalid.")
                if lit.text.upper() not in self.site.keys and op in ("=", "in"):
                    raise JqlError(f"An issue with key '{lit.text}' does not exist for field '{clause.raw_field}'.")

    @staticmethod
    def category_key(text: str) -> str | None:
        """The key of a status category given by key, name or id."""
        lowered = text.strip().lower()
        for key, category in STATUS_CATEGORIES.items():
            if lowered in (key, category["name"].lower(), str(category["id"])):
                return key
        return None

    # -- literals ------------------------------------------------------------------------------------

    def date_ms(self, lit: Literal, field_name: str) -> int:
        """A date value in epoch milliseconds: a function, epoch millis, a period (``-5d``) or a local date."""
        if lit.function is not None:
            local_now = self.now.astimezone(self.site.zone)
            if lit.function == "now":
                return epoch_ms(self.now)
            if lit.function in ("startofday", "endofday"):
                start = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
                value = start if lit.function == "startofday" else start + timedelta(days=1) - timedelta(
                    milliseconds=1)
                return epoch_ms(value)
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
            return epoch_ms(self.now + sign * delta)
        for fmt in _LOCAL_FORMATS:
            try:
                naive = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return epoch_ms(naive.replace(tzinfo=self.site.zone).astimezone(UTC))
        raise JqlError(f"Date value '{lit.text}' for field '{field_name}' is invalid. {DATE_FORMATS_HINT}")

    # -- matching --------------------------------------------------------------------------------------

    def matches(self, node: Any, st: Issue) -> bool:
        """Whether an issue matches a where tree."""
        if isinstance(node, BoolNode):
            if node.op == "and":
                return all(self.matches(c, st) for c in node.children)
            if node.op == "or":
                return any(self.matches(c, st) for c in node.children)
            return not self.matches(node.children[0], st)
        return self.clause(node, st)

    def identifiers(self, fname: str, st: Issue) -> list[set[str]]:
        """Each value of the field as the set of strings that name it (empty list = field empty)."""
        site = self.site
        if fname == "project":
            return [{PROJECT["key"].lower(), PROJECT["id"], PROJECT["name"].lower()}]
        if fname == "key":
            return [{st["key"].lower(), st["id"]}]
        if fname == "issuetype":
            name = site.issue_type(st["issuetype"])["name"].lower()
            return [{st["issuetype"], name, name.removeprefix("[system] ")}]
        if fname == "status":
            status = site.status(st["status"])
            return [{status["id"], status["name"].lower()}]
        if fname == "statuscategory":
            return [{site.status(st["status"])["category"]}]
        if fname == "priority":
            item = next(p for p in PRIORITIES if p["id"] == st["priority"])
            return [{item["id"], item["name"].lower()}]
        if fname == "labels":
            return [{label.lower()} for label in st["labels"]]
        if fname == "component":
            return [{name.lower(), site.component_id(name)} for name in st["components"]]
        if fname in _USER_FIELDS:
            account = st[fname]
            if account is None:
                return []
            user = site.users[account]
            return [{str(user[k]).lower() for k in ("accountId", "name", "key", "emailAddress", "displayName")}]
        value = st["custom"].get(fname)
        return [] if value in (None, "", []) else [{str(value).lower()}]

    def literal_ids(self, fname: str, lit: Literal) -> set[str]:
        """The strings that name a clause's value, to compare with :meth:`identifiers`."""
        if lit.function == "currentuser":
            return {self.site.me.lower()}
        text = lit.text.strip().lower()
        if fname == "statuscategory":
            key = self.category_key(text)
            return {key} if key else set()
        if fname in _USER_FIELDS:
            user = self.site.find_user(text)
            return {user["accountId"].lower()} if user else {text}
        if fname == "issuetype":
            found = self.site.find_issue_type(text)
            return {found["id"]} if found else {text}
        return {text}

    def clause(self, clause: Clause, st: Issue) -> bool:
        """Whether an issue matches one clause."""
        fname, op = clause.field, clause.operator
        if fname in _DATE_FIELDS:
            return self.date_clause(clause, st)
        if fname in _TEXT_FIELDS:
            return self.text_clause(clause, st)
        values = self.identifiers(fname, st)
        if op in ("is", "is not") or (len(clause.values) == 1 and is_empty_literal(clause.values[0])
                                      and op in ("=", "!=")):
            empty = not values
            return empty if op in ("is", "=") else not empty
        if op in (">", ">=", "<", "<="):
            return self.ordered_clause(clause, st)
        wanted: list[set[str]] = [self.literal_ids(fname, lit) for lit in clause.values
                                  if not is_empty_literal(lit)]
        wants_empty = any(is_empty_literal(lit) for lit in clause.values)
        hit = any(w & v for w in wanted for v in values)
        if op in ("=", "in"):
            return hit or (wants_empty and not values)
        # "!=" and "not in" never match an empty field (a well-known Jira behaviour).
        if not values:
            return False
        return not hit

    def ordered_clause(self, clause: Clause, st: Issue) -> bool:
        """``<``, ``>``... on issue keys and priorities."""
        fname, op = clause.field, clause.operator
        lit = clause.values[0]
        if fname == "key":
            mine = int(st["id"]) if re.fullmatch(r"\d+", lit.text) else int(st["key"].rsplit("-", 1)[1])
            other = int(lit.text) if re.fullmatch(r"\d+", lit.text) else int(lit.text.rsplit("-", 1)[1])
        else:
            found = self.site.find_priority(lit.text)
            mine = 6 - int(st["priority"])
            other = 6 - int(found["id"]) if found else 0
        return {">": mine > other, ">=": mine >= other, "<": mine < other, "<=": mine <= other}[op]

    def date_value(self, fname: str, st: Issue) -> int | None:
        """A date field in epoch milliseconds (``None`` when empty)."""
        value = st["resolutiondate"] if fname == "resolved" else st[fname]
        return epoch_ms(value) if value is not None else None

    def date_clause(self, clause: Clause, st: Issue) -> bool:
        """Whether an issue matches a clause on a date field."""
        mine = self.date_value(clause.field, st)
        op = clause.operator
        if op in ("is", "is not") or (is_empty_literal(clause.values[0]) and op in ("=", "!=")):
            return (mine is None) == (op in ("is", "="))
        if mine is None:
            return False
        targets = [self.date_ms(lit, clause.raw_field) for lit in clause.values if not is_empty_literal(lit)]
        if op == "in":
            return mine in targets
        if op == "not in":
            return mine not in targets
        other = targets[0]
        return {"=": mine == other, "!=": mine != other, ">": mine > other, ">=": mine >= other,
                "<": mine < other, "<=": mine <= other}[op]

    def text_of(self, fname: str, st: Issue) -> str | None:
        """The text a ``~`` clause searches in (``None`` when empty)."""
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

    def text_clause(self, clause: Clause, st: Issue) -> bool:
        """Whether an issue matches ``~`` / ``!~``: a phrase in quotes, otherwise every word (``*`` a wildcard)."""
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

    def sort_value(self, fname: str, st: Issue) -> Any:
        """The key an ORDER BY field sorts an issue by (``None`` when empty)."""
        if fname == "key":
            return int(st["id"])
        if fname in _DATE_FIELDS:
            return self.date_value(fname, st)
        if fname == "priority":
            return 6 - int(st["priority"])
        if fname == "status":
            return [s["id"] for s in STATUSES].index(st["status"])
        if fname == "statuscategory":
            return ["new", "indeterminate", "done"].index(self.site.status(st["status"])["category"])
        if fname == "issuetype":
            return [t["id"] for t in ISSUE_TYPES].index(st["issuetype"])  # the catalogue's order
        if fname == "project":
            return PROJECT["key"]
        if fname in _USER_FIELDS:
            account = st[fname]
            return self.site.users[account]["displayName"].lower() if account else None
        if fname in ("labels", "component"):
            items = st["labels"] if fname == "labels" else st["components"]
            return ",".join(sorted(i.lower() for i in items)) or None
        if fname in _TEXT_FIELDS:
            value = self.text_of(fname, st)
            return value.lower() if value else None
        value = st["custom"].get(fname)
        return None if value in (None, "") else str(value).lower()


def matching_issues(site: JiraSite, query: JqlQuery, reconcile: set[str]) -> list[Issue]:
    """The issues search sees now that match ``query``, in its order (default: newest key first); issue ids in
    ``reconcile`` are seen as they are, search lag or not."""
    now = site.now()
    evaluator = Evaluator(site, now)
    if query.where is not None:
        evaluator.validate(query.where)
    matches: list[Issue] = []
    for issue_id in site.issues:
        st = site.visible_state(issue_id, now, reconcile)
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
