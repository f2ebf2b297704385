"""YAML loading that keeps every node's position, so configuration errors point at ``file:line:col``.

Files are read as a stream of parser events and built into plain data here (PyYAML's composer and
constructor are not used): duplicate keys are rejected (PyYAML would silently keep the last one), and a
hostile file meets hard limits instead of exhausting time or memory:

* :data:`MAX_BYTES` - a file larger than 1 MiB is refused before it is parsed;
* :data:`MAX_DEPTH` - nesting deeper than 32 levels (aliases included) is an error;
* :data:`MAX_VALUES` - more than 50,000 keys and values, counting each use of an alias with everything under
  its anchor, is an error (a few hundred bytes of nested aliases would otherwise expand to billions);
* control characters (other than tab and line breaks), tags other than the plain types (``!!binary``,
  ``!!python/...``, ``!custom``), merge keys (``<<``), recursive or unknown aliases and a second document are
  located errors, and so is a scalar YAML cannot read (``2026-02-30``).

Every problem is a :class:`Diagnostic`; nothing in a file makes :func:`load_yaml` raise. The plain data is then
validated with pydantic and each error's ``loc`` is walked back to the node it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]

MAX_BYTES = 1 << 20
"""Largest configuration file read (1 MiB; the shipped rule, process and mapping files are under 4 KiB)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists, aliases included (the shipped files nest 7 levels)."""
MAX_VALUES = 50_000
"""Most keys and values (scalars, mappings and lists) a file may hold once every alias is expanded (the shipped
files hold 104 to 642; about 1,500 rules like the shipped ones would reach it). Loading that many takes well
under a second; twice as many would approach the two seconds a file may take."""


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, loaded values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One located problem in a configuration file."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class ConfigFileError(Exception):
    """Raised when one or more configuration files are invalid; carries every error found."""

    def __init__(self, errors: list[Diagnostic]) -> None:
        self.errors = sorted(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass
class Located:
    """Plain data from a YAML file plus the position of every key and value in it."""

    path: str
    data: Any
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    reported: set[tuple[int, int]] = field(default_factory=set)
    """Positions the loader already reported (an unreadable scalar, a tag): validation adds nothing there."""

    def where(self, loc: Loc, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) for ``loc``; falls back to the nearest enclosing node."""
        table = self.keys if key else self.values
        probe = tuple(loc)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def error(self, loc: Loc, message: str, key: bool = False) -> Diagnostic:
        """A :class:`Diagnostic` at ``loc``."""
        line, col = self.where(loc, key)
        return Diagnostic(self.path, line, col, message)


# YAML's printable set (YAML 1.1, section 5.1, as PyYAML's reader checks it)
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_MAX_REPORTED_CHARACTERS = 10


def _read(path: str | Path) -> tuple[str | None, list[Diagnostic]]:
    """The text of ``path``: at most :data:`MAX_BYTES`, UTF-8; else one located error."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        return None, [Diagnostic(name, 1, 1, f"cannot read file: {reason}")]
    if len(raw) > MAX_BYTES:
        return None, [Diagnostic(name, 1, 1, f"file is larger than {MAX_BYTES // 1024} KiB (the limit for configuration files)")]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        return None, [Diagnostic(name, line, col, f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded")]


def _control_characters(name: str, text: str) -> list[Diagnostic]:
    """Each character YAML does not allow (the first few), with its position."""
    found = []
    for match in _NON_PRINTABLE.finditer(text):
        before = text[:match.start()]
        line = before.count("\n") + 1
        col = match.start() - (before.rfind("\n") + 1) + 1
        found.append(Diagnostic(name, line, col, f"control character U+{ord(match.group()):04X} is not allowed "
                                                 "(only tab, line breaks and printable characters)"))
        if len(found) == _MAX_REPORTED_CHARACTERS:
            break
    return found


def load_yaml(path: str | Path, text: str | None = None) -> tuple[Located | None, list[Diagnostic]]:
    """Load one YAML document with positions. Returns ``(None, errors)`` when it cannot be read or parsed, or
    crosses a limit; ``(located, errors)`` when it was read but some values are wrong (duplicate keys, tags...).
    Never raises for anything in the file."""
    name = str(path)
    if text is None:
        text, problems_found = _read(path)
        if text is None:
            return None, problems_found
    elif len(text) > MAX_BYTES:
        return None, [Diagnostic(name, 1, 1, f"file is larger than {MAX_BYTES // 1024} KiB (the limit for configuration files)")]
    bad = _control_characters(name, text)
    if bad:
        return None, bad
    builder = _Builder(name)
    try:
        return builder.build(text), builder.errors
    except _Stop as stop:
        return None, [stop.diagnostic]
    except yaml.YAMLError as exc:
        return None, [_syntax_error(name, text, exc)]


def _syntax_error(name: str, text: str, exc: yaml.YAMLError) -> Diagnostic:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Diagnostic(name, 1, 1, f"YAML error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or str(exc)
    if problem == "found character that cannot start any token" and mark is not None and mark.index < len(text):
        problem = f"found character {text[mark.index]!r} that cannot start any token"  # libyaml does not name it
    elif problem == "exceeded maximum nesting depth":
        problem = f"nesting deeper than {MAX_DEPTH} levels (the limit for configuration files)"
    return Diagnostic(name, line, col, f"YAML syntax error: {problem}")


class _Stop(Exception):
    """A limit was crossed: the file is not read any further."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


_T = "tag:yaml.org,2002:"
_SCALAR_TYPES = {_T + "null": "null", _T + "bool": "a boolean", _T + "int": "an integer", _T + "float": "a number",
                 _T + "str": "text", _T + "timestamp": "a date or time", _T + "value": "text"}
_COLLECTION_TAGS = {yaml.MappingStartEvent: _T + "map", yaml.SequenceStartEvent: _T + "seq"}
_NO_KEY = object()
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (ten times faster); the events are the same."""


@dataclass
class _Anchor:
    value: Any
    size: int = 0
    height: int = 1
    done: bool = False


@dataclass
class _Frame:
    """A mapping or list being built."""

    data: dict[Any, Any] | list[Any]
    loc: Loc
    anchor: _Anchor | None
    start: int
    """The value count when it started (its expanded size is the difference at its end)."""
    height: int = 1
    key: Any = _NO_KEY
    skip: bool = False
    """The current key was rejected: its value is read and dropped."""


class _Builder:
    """Plain data with positions from parser events; limits and located errors (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[Diagnostic] = []
        self.located = Located(name, None)
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Frame] = []
        self.count = 0
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, pos: tuple[int, int], message: str) -> None:
        self.errors.append(Diagnostic(self.name, pos[0], pos[1], message))
        self.located.reported.add(pos)

    def stop(self, pos: tuple[int, int], message: str) -> _Stop:
        return _Stop(Diagnostic(self.name, pos[0], pos[1], message))

    def build(self, text: str) -> Located:
        parser = _Parser(text)
        try:
            parser.get_event()  # stream start
            if parser.check_event(yaml.StreamEndEvent):
                self.located.values[()] = (1, 1)
                return self.located
            parser.get_event()  # document start
            root: list[Any] = []
            self._document(parser, root)
            parser.get_event()  # document end
            if parser.check_event(yaml.DocumentStartEvent):
                event = parser.peek_event()
                self.fail(_pos(event), "a configuration file holds one YAML document; found a second one")
            self.located.data = root[0] if root else None
            self.located.values.setdefault((), (1, 1))
            return self.located
        finally:
            parser.dispose()

    def _document(self, parser: Any, root: list[Any]) -> None:
        """Build the document's one value into ``root`` from the events up to its end."""
        while True:
            event = parser.get_event()
            pos = _pos(event)
            if isinstance(event, yaml.ScalarEvent):
                value = self._scalar(event, pos)
                self._place(value, pos, 1, 1, root)
                self._anchor(event.anchor, value, 1, 1)
            elif isinstance(event, yaml.AliasEvent):
                anchor = self.anchors.get(event.anchor or "")
                if anchor is None:
                    self.fail(pos, f"unknown alias *{event.anchor} (no anchor &{event.anchor} before it)")
                    self._place(None, pos, 1, 1, root)
                elif not anchor.done:
                    self.fail(pos, f"alias *{event.anchor} refers to a value that contains it (recursive alias)")
                    self._place(None, pos, 1, 1, root)
                else:
                    self._place(anchor.value, pos, anchor.size, anchor.height, root)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self._open(event, pos, root)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = self.stack.pop()
                size = self.count - frame.start
                if frame.anchor is not None:
                    frame.anchor.size, frame.anchor.height, frame.anchor.done = size, frame.height, True
                if self.stack:
                    parent = self.stack[-1]
                    parent.height = max(parent.height, frame.height + 1)
                    self._attach(frame.data, parent)
            if not self.stack and root:
                return

    def _open(self, event: Any, pos: tuple[int, int], root: list[Any]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise self.stop(pos, f"nesting deeper than {MAX_DEPTH} levels (the limit for configuration files)")
        expected = _COLLECTION_TAGS[type(event)]
        if event.tag not in (None, "!", expected):
            self.fail(pos, f"tag {_tag(event.tag)} is not supported (only plain mappings, lists and values)")
        data: dict[Any, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        loc = self._loc(root)
        self.located.values[loc] = pos
        self._count(pos, 1)
        anchor = None
        if event.anchor is not None:
            anchor = self.anchors[event.anchor] = _Anchor(data)
        if not self.stack:
            root.append(data)
        self.stack.append(_Frame(data, loc, anchor, self.count - 1))

    def _loc(self, root: list[Any]) -> Loc:
        """Where the next value goes."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if isinstance(frame.data, list):
            return frame.loc + (len(frame.data),)
        if frame.key is _NO_KEY:
            return frame.loc + ("<key>",)
        return frame.loc + (frame.key,) if not frame.skip else frame.loc + ("<skipped>",)

    def _count(self, pos: tuple[int, int], size: int) -> None:
        self.count += size
        if self.count > MAX_VALUES:
            raise self.stop(pos, f"more than {MAX_VALUES:,} keys and values once aliases are expanded (the limit for "
                                 "configuration files; each use of an alias counts everything under its anchor)")

    def _place(self, value: Any, pos: tuple[int, int], size: int, height: int, root: list[Any]) -> None:
        """A finished value (scalar or alias) at the current position."""
        if len(self.stack) + height > MAX_DEPTH + 1:
            raise self.stop(pos, f"nesting deeper than {MAX_DEPTH} levels (the limit for configuration files)")
        self._count(pos, size)
        if not self.stack:
            self.located.values[()] = pos
            root.append(value)
            return
        frame = self.stack[-1]
        frame.height = max(frame.height, height + 1)
        if isinstance(frame.data, list) or frame.key is not _NO_KEY:
            self.located.values[self._loc(root)] = pos
        self._attach(value, frame, pos)

    def _attach(self, value: Any, frame: _Frame, pos: tuple[int, int] | None = None) -> None:
        """Add a finished value to ``frame``: a list item, a mapping key, or the value of the pending key."""
        if isinstance(frame.data, list):
            frame.data.append(value)
            return
        if frame.key is _NO_KEY:
            key_pos = pos or self.located.values.get(frame.loc + ("<key>",), (1, 1))
            frame.key, frame.skip = value, False
            if value is _MERGE:
                self.fail(key_pos, "merge keys (<<) are not supported")
                frame.skip = True
            elif not isinstance(value, (str, int, float, bool)) or value is None:
                self.fail(key_pos, "mapping keys must be plain scalars")
                frame.skip = True
            elif value in frame.data:
                first = self.located.keys.get(frame.loc + (value,))
                where = f" (first defined at line {first[0]})" if first else ""
                self.fail(key_pos, f"duplicate key {value!r}{where}")
                frame.skip = True
            else:
                self.located.keys[frame.loc + (value,)] = key_pos
            return
        if not frame.skip:
            frame.data[frame.key] = value
        frame.key, frame.skip = _NO_KEY, False

    def _anchor(self, name: str | None, value: Any, size: int, height: int) -> None:
        if name is not None:
            self.anchors[name] = _Anchor(value, size, height, True)

    def _scalar(self, event: Any, pos: tuple[int, int]) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _T + "merge":
            at_key = bool(self.stack) and isinstance(self.stack[-1].data, dict) and self.stack[-1].key is _NO_KEY
            return _MERGE if at_key else event.value
        kind = _SCALAR_TYPES.get(tag)
        if kind is None:
            self.fail(pos, f"tag {_tag(event.tag)} is not supported (only plain values: text, numbers, booleans, dates, null)")
            return event.value
        if tag in (_T + "str", _T + "value"):
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception as exc:  # noqa: BLE001 - PyYAML's scalar constructors raise ValueError, KeyError,
            # AttributeError or OverflowError for a malformed value; each is this value's located error
            shown = event.value if len(event.value) <= 40 else event.value[:40] + "..."
            reason = str(exc).splitlines()[0] if isinstance(exc, (ValueError, OverflowError)) and str(exc) else "not valid"
            self.fail(pos, f"cannot read {shown!r} as {kind}: {reason}")
            return event.value


class _Merge:
    """The ``<<`` key (rejected wherever it appears)."""

    def __repr__(self) -> str:
        return "<<"


_MERGE = _Merge()


def _tag(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


def _pos(event: Any) -> tuple[int, int]:
    return event.start_mark.line + 1, event.start_mark.column + 1


def _model_at(model: Any, loc: Loc) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` inside ``model`` (through lists, dicts and optionals),
    or None when it is not a model."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    current = _unwrap(current, None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, part: Any) -> Any:
    """One step into ``annotation``: a model's field named ``part``, a list's item, a dict's value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if part is None:
            return annotation
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        for arm in get_args(annotation):
            found = _unwrap(arm, part)
            if found is not None:
                return found
        return None
    if part is None:
        return None
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0], part)
    return None


def _message(err: Any, model: Any = None) -> str:
    loc = [str(part) for part in err["loc"]]
    etype = err["type"]
    if etype == "extra_forbidden":
        inner = _model_at(model, tuple(err["loc"][:-1])) if model is not None else None
        if inner is None:
            return f"unknown key {loc[-1]!r}"
        allowed = ", ".join(info.alias or name for name, info in inner.model_fields.items())
        return f"unknown key {loc[-1]!r} (expected one of: {allowed})"
    if etype == "missing":
        return f"missing required key {loc[-1]!r}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = ".".join(loc)
    return f"{where}: {msg}" if where else msg


Problem = tuple[Loc, str, bool]
"""One problem inside a validated value: where (relative to the value), what, and whether to point at the key."""


def problems(found: list[Problem]) -> PydanticCustomError:
    """An error a validator raises for several problems inside its value (each field of a rule's ``when``,
    each template...): :func:`validate` reports each one at its own key or value, so no problem hides
    another and none is pinned to the start of the enclosing mapping."""
    return PydanticCustomError("located_problems", "; ".join(message for _, message, _ in found),
                               {"located_problems": found})


def validate(model: type[M], located: Located, base: Loc = ()) -> tuple[M | None, list[Diagnostic]]:
    """Validate ``located.data`` (or the part at ``base``) against ``model``; located errors on failure."""
    data = located.data
    for part in base:
        data = data[part]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            loc = base + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            parts = (err.get("ctx") or {}).get("located_problems")
            if err["type"] == "located_problems" and parts:
                for sub, message, key in parts:
                    where = loc + tuple(sub)
                    errors.append(located.error(where, f"{'.'.join(map(str, where))}: {message}", key=key))
                continue
            error = located.error(loc, _message(err, model), key=err["type"] == "extra_forbidden")
            if (error.line, error.col) not in located.reported:  # the loader said what is wrong there
                errors.append(error)
        return None, errors
