"""Safe text templates with named placeholders only.

Templates come from configuration written by people who should not be able to run code or read
object internals through them, so this is deliberately far smaller than :meth:`str.format`:

* ``{name}`` is replaced by ``str(values[name])``; a name is ASCII letters, digits and ``_``, not
  starting with a digit.
* ``{{`` and ``}}`` are a literal ``{`` and ``}``.
* Everything else in braces is an error: attribute access ``{a.b}``, indexing ``{a[0]}``,
  conversions ``{a!r}``, format specs ``{a:>10}``, positional ``{0}`` and empty ``{}``; so is a
  lone ``{`` or ``}`` and any name that is not in the values.

Values are only ever looked up by name in the mapping and turned into text with :func:`str`; the
template text itself never reaches :meth:`str.format`.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(r"\{\{|\}\}|\{(?P<body>[^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORBIDDEN = {
    ".": "attribute access is not allowed",
    "[": "indexing is not allowed",
    "]": "indexing is not allowed",
    "!": "conversions like !r are not allowed",
    ":": "format specs are not allowed",
}


class TemplateError(ValueError):
    """A template problem, located by the offending placeholder text and its 1-based position."""

    def __init__(self, reason: str, *, placeholder: str, line: int, column: int) -> None:
        self.reason = reason
        self.placeholder = placeholder
        self.line = line
        self.column = column
        where = f"column {column}" if line == 1 else f"line {line}, column {column}"
        super().__init__(f"placeholder {placeholder!r} at {where}: {reason}")


@dataclass(frozen=True)
class _Placeholder:
    name: str
    text: str
    line: int
    column: int


_Part = str | _Placeholder | TemplateError


def _locate(template: str, offset: int) -> tuple[int, int]:
    line = template.count("\n", 0, offset) + 1
    column = offset - (template.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _diagnose(body: str) -> str | None:
    """Why ``body`` (the text between braces) is not a valid placeholder, or None if it is."""
    if _NAME.fullmatch(body):
        return None
    if not body.strip():
        return "empty placeholder; write {{ and }} for literal braces"
    for char in body:
        if char in _FORBIDDEN:
            return _FORBIDDEN[char]
    if body.isdigit():
        return "positional placeholders are not allowed; use a name"
    return "a placeholder name may only contain letters, digits and '_' and not start with a digit"


def _parse(template: str) -> list[_Part]:
    if not isinstance(template, str):
        raise TypeError(f"template must be a string, not {type(template).__name__}")
    parts: list[_Part] = []
    position = 0
    for match in _TOKEN.finditer(template):
        if match.start() > position:
            parts.append(template[position : match.start()])
        position = match.end()
        token = match.group()
        line, column = _locate(template, match.start())
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif token == "{":
            parts.append(
                TemplateError(
                    "unmatched '{'; write '{{' for a literal brace",
                    placeholder=token,
                    line=line,
                    column=column,
                )
            )
        elif token == "}":
            parts.append(
                TemplateError(
                    "unmatched '}'; write '}}' for a literal brace",
                    placeholder=token,
                    line=line,
                    column=column,
                )
            )
        else:
            body = match.group("body")
            reason = _diagnose(body)
            if reason is None:
                parts.append(_Placeholder(body, token, line, column))
            else:
                parts.append(TemplateError(reason, placeholder=token, line=line, column=column))
    if position < len(template):
        parts.append(template[position:])
    return parts


def _unknown(placeholder: _Placeholder, known: Iterable[str]) -> TemplateError:
    names = ", ".join(sorted(known)) or "none"
    return TemplateError(
        f"unknown name {placeholder.name!r} (known names: {names})",
        placeholder=placeholder.text,
        line=placeholder.line,
        column=placeholder.column,
    )


def _problems(parts: list[_Part], known: Container[str]) -> list[_Placeholder | TemplateError]:
    return [
        part
        for part in parts
        if isinstance(part, TemplateError)
        or (isinstance(part, _Placeholder) and part.name not in known)
    ]


def render(template: str, values: Mapping[str, object]) -> str:
    """Replace every ``{name}`` in ``template`` with ``str(values[name])``.

    The whole template is checked before any value is touched, so a bad template never causes a
    value to be converted. Raises :class:`TemplateError` for the first problem in the template.
    """
    parts = _parse(template)
    for problem in _problems(parts, values):
        if isinstance(problem, TemplateError):
            raise problem
        raise _unknown(problem, values.keys())
    return "".join(
        part if isinstance(part, str) else str(values[part.name])
        for part in parts
        if not isinstance(part, TemplateError)
    )


def check(template: str, allowed: Iterable[str]) -> list[str]:
    """Every problem in ``template`` as a message, in order; empty if it would render.

    ``allowed`` is the set of names that will be available at render time. Nothing is rendered,
    so configuration can be validated when it is loaded.
    """
    known = frozenset(allowed)
    return [
        str(problem if isinstance(problem, TemplateError) else _unknown(problem, known))
        for problem in _problems(_parse(template), known)
    ]


def placeholders(template: str) -> list[str]:
    """The names used by the valid placeholders in ``template``, in order of first use."""
    seen: dict[str, None] = {}
    for part in _parse(template):
        if isinstance(part, _Placeholder):
            seen.setdefault(part.name)
    return list(seen)
