"""YAML loading that keeps every node's position, so configuration errors point at ``file:line:col``.

Files are composed into a node tree first; duplicate keys are rejected there (PyYAML would silently keep
the last one). The plain data is then validated with pydantic and each error's ``loc`` is walked back to
the node it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Any, ...]


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


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_yaml(path: str | Path, text: str | None = None) -> tuple[Located | None, list[Diagnostic]]:
    """Load one YAML document with positions. Returns ``(None, errors)`` when it cannot be parsed."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return None, [Diagnostic(name, 1, 1, f"cannot read file: {exc.__class__.__name__}: {exc}")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Diagnostic(name, line, col, f"YAML syntax error: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(name, 1, 1, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    located = Located(name, None)
    errors: list[Diagnostic] = []
    if node is None:
        located.data = None
        located.values[()] = (1, 1)
        return located, errors
    constructor = yaml.SafeLoader("")
    located.data = _build(node, (), located, errors, constructor)
    return located, errors


def _build(node: yaml.Node, loc: Loc, located: Located, errors: list[Diagnostic], ctor: yaml.SafeLoader) -> Any:
    located.values[loc] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                errors.append(Diagnostic(located.path, *_pos(key_node), "merge keys (<<) are not supported"))
                continue
            key = _build(key_node, loc + ("<key>",), located, errors, ctor)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                errors.append(Diagnostic(located.path, *_pos(key_node), "mapping keys must be plain scalars"))
                continue
            if key in out:
                first = located.keys.get(loc + (key,))
                where = f" (first defined at line {first[0]})" if first else ""
                errors.append(Diagnostic(located.path, *_pos(key_node), f"duplicate key {key!r}{where}"))
                continue
            located.keys[loc + (key,)] = _pos(key_node)
            out[key] = _build(value_node, loc + (key,), located, errors, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loc + (i,), located, errors, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)


def _message(err: Any) -> str:
    loc = [str(part) for part in err["loc"]]
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = err.get("ctx", {}).get("allowed")
        return f"unknown key {loc[-1]!r}" + (f" (expected one of: {allowed})" if allowed else "")
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
            errors.append(located.error(loc, _message(err), key=err["type"] == "extra_forbidden"))
        return None, errors
