"""Mappings: each platform's dialect (field names, value maps, time formats, write settings).

``mappings/<platform>.yaml`` says where each canonical field comes from in a platform record, as a
path (``short_description``, ``fields.components[0].name``) or a list of paths tried in order, and how
platform values translate (``values:``). The ``export:`` section does the same for history exports read
by ``mim backtest`` (ServiceNow CSV: one row per update, ``?`` as missing, ``d/m/Y H:M`` dates).
"""

from __future__ import annotations

import codecs
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator

from connector.core import templating
from connector.core.ticket import (
    CANONICAL_FIELDS,
    INT_FIELDS,
    TIME_FIELDS,
    Major,
    Stage,
    State,
    Ticket,
)
from connector.core.write_settings import WriteSettings, write_settings_for
from connector.core.yamlfile import Diagnostic, Problem, Strict, load_yaml, problems, validate

_ENUM_VALUES = {"state": frozenset(m.value for m in State), "major": frozenset(m.value for m in Major),
                "stage": frozenset(m.value for m in Stage)}
_UNSET = object()
PlanEntry = tuple[str, list[tuple[str | int, ...]], tuple[str, ...] | None, Any, dict[str, Any]]
"""A mapped field: canonical name, source paths, flat column names (or None), converter, memo of conversions."""
FlatEntry = tuple[str, tuple[str, ...], Any, dict[str, Any]]
"""A mapped field read from plain columns: canonical name, column names, converter, memo of conversions."""
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
URL_VALUES = ("base", "id", "key")
"""The names a mapping's ``url`` template may use."""
ID_PATTERNS = {"servicenow": "[0-9a-f]{32}", "jira": "[1-9][0-9]{0,18}"}
"""What a record id looks like on each platform (a mapping's ``id_pattern`` overrides it): a ServiceNow sys_id
is 32 hexadecimal digits, a Jira issue id a number."""
ID_FIELDS = ("id", "parent", "change")
"""Canonical fields that hold a record id of the platform (the ticket's own, its major incident's, its change's)."""


class MappingError(ValueError):
    """A platform record that cannot be read through the mapping (reported and skipped by callers)."""


def _compile_path(path: str) -> tuple[str | int, ...]:
    steps: list[str | int] = []
    pos = 0
    for match in _STEP.finditer(path):
        if match.start() != pos and path[pos] != ".":
            raise ValueError(f"invalid field path {path!r}")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
        if pos < len(path) and path[pos] == ".":
            pos += 1
    if pos != len(path) or not steps:
        raise ValueError(f"invalid field path {path!r}")
    return tuple(steps)


def extract(record: Any, steps: tuple[str | int, ...]) -> Any:
    """Follow ``steps`` into nested dicts/lists; None when any step is missing."""
    value = record
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(step)
        if value is None:
            return None
    if isinstance(value, dict) and "value" in value and "link" in value:
        return value["value"]  # a ServiceNow reference object
    return value


class TimeFormat(Strict):
    """How times are written: strptime formats tried in order (ISO 8601 always works), and the zone of
    naive values."""

    formats: list[str] = Field(default_factory=list)
    zone: str = "UTC"

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        found: list[Problem] = []
        for i, pattern in enumerate(value):
            try:
                datetime.strptime("", pattern)
            except ValueError as exc:
                # "does not match" is the expected answer for an empty input; a bad directive is the problem
                if "does not match" not in str(exc):
                    found.append(((i,), f"time format {pattern!r} cannot be used: {exc}", False))
        if found:
            raise problems(found)
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


FieldSource = str | list[str]


def _check_fields(value: dict[str, FieldSource]) -> dict[str, FieldSource]:
    found: list[Problem] = []
    for name, source in value.items():
        if name not in CANONICAL_FIELDS:
            found.append(((name,), f"{name!r} is not a canonical field (known: {', '.join(CANONICAL_FIELDS)})", True))
            continue
        for path in [source] if isinstance(source, str) else source:
            try:
                _compile_path(path)
            except ValueError as exc:
                found.append(((name,), str(exc), False))
    if found:
        raise problems(found)
    return value


def _check_values(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: list[Problem] = []
    for name, table in value.items():
        if name not in CANONICAL_FIELDS:
            found.append(((name,), f"{name!r} is not a canonical field", True))
            continue
        for raw, canonical in table.items():
            if name in _ENUM_VALUES:
                if not isinstance(canonical, str) or canonical not in _ENUM_VALUES[name]:
                    found.append(((name, raw), f"{raw!r} maps to {canonical!r}, which is not a valid {name}", False))
            elif name in INT_FIELDS:
                if not isinstance(canonical, int) or isinstance(canonical, bool) or not 1 <= canonical <= 5:
                    found.append(((name, raw), f"{raw!r} must map to an integer 1..5", False))
            elif name in TIME_FIELDS:
                found.append(((name, raw), f"{name} is a time; it is read with times.formats, not a value map", False))
            elif not isinstance(canonical, str):
                found.append(((name, raw), f"{raw!r} must map to text, not {canonical!r}", False))
    if found:
        raise problems(found)
    return value


class _FieldsAndValues(Strict):
    """Validation shared by a mapping and its export section: canonical field names, known values."""

    @field_validator("fields", check_fields=False)
    @classmethod
    def _fields_known(cls, value: dict[str, FieldSource]) -> dict[str, FieldSource]:
        return _check_fields(value)

    @field_validator("values", check_fields=False)
    @classmethod
    def _values_known(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return _check_values(value)


class ExportFormat(_FieldsAndValues):
    """How history exports of this platform are read (``mim backtest``)."""

    key: str = "number"
    order_by: str | None = None
    keep: Literal["first", "last"] = "first"
    missing: list[str] = Field(default_factory=lambda: [""])
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    times: TimeFormat = Field(default_factory=TimeFormat)
    fields: dict[str, FieldSource] = Field(default_factory=dict)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    resolved_from_last: list[str] = Field(default_factory=lambda: ["resolved_at"])

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (for instance utf-8, utf-8-sig, latin-1)") from None
        return value


class MappingFile(_FieldsAndValues):
    """The top level of ``mappings/<platform>.yaml``."""

    version: Literal[1]
    platform: Literal["servicenow", "jira"]
    fields: dict[str, FieldSource]
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    times: TimeFormat = Field(default_factory=TimeFormat)
    url: str | None = None
    """Template of a ticket's link: ``{base}``, ``{id}`` and ``{key}``."""
    id_pattern: str | None = None
    """A regular expression every record id read from the platform must match in full (default: the platform's,
    :data:`ID_PATTERNS`); a record with another id, or referring to one, is reported and skipped."""
    write: WriteSettings = Field(default_factory=dict, validate_default=True)
    export: ExportFormat | None = None

    @field_validator("id_pattern")
    @classmethod
    def _id_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
            if compiled.fullmatch(""):
                raise ValueError("id_pattern must not match an empty id")
        return value


    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            found = templating.check(value, URL_VALUES)
            if found:
                raise ValueError("; ".join(found))
        return value

    @field_validator("fields", mode="after")
    @classmethod
    def _required(cls, value: dict[str, FieldSource]) -> dict[str, FieldSource]:
        for name in ("id", "opened_at"):
            if name not in value:
                raise ValueError(f"fields must map {name!r}")
        return value

    @field_validator("write", mode="wrap")
    @classmethod
    def _write_of_platform(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """The ``write:`` section as the typed settings of this mapping's platform (see
        :mod:`connector.core.write_settings`); not checked when the platform itself is invalid."""
        platform = info.data.get("platform")
        if platform is None:
            return value
        return handler(write_settings_for(platform, value, info.data.get("fields"), info.data.get("values")))


class Mapping:
    """A loaded mapping: converts platform records into :class:`Ticket` and canonical values back."""

    def __init__(self, spec: MappingFile, path: str = "<mapping>") -> None:
        self.spec = spec
        self.path = path
        self.platform = spec.platform
        self.write: WriteSettings = spec.write
        """The typed ``write:`` settings of this platform."""
        self._fields = {name: self._paths(src) for name, src in spec.fields.items()}
        self._values = {name: {str(k): v for k, v in table.items()} for name, table in spec.values.items()}
        self._reverse = {name: _reverse(table) for name, table in spec.values.items()}
        self._flat_plans: dict[int, tuple[list[PlanEntry], list[FlatEntry] | None]] = {}
        self._missing = {""}
        self._export_missing = set(spec.export.missing) if spec.export else {""}
        self._export_fields = dict(self._fields)
        self._export_values = dict(self._values)
        if spec.export is not None:
            self._export_fields.update({n: self._paths(s) for n, s in spec.export.fields.items()})
            self._export_values.update({n: {str(k): v for k, v in t.items()} for n, t in spec.export.values.items()})
        self._restricted = False
        self.id_pattern = re.compile(spec.id_pattern or ID_PATTERNS[spec.platform])
        """What an id read from the platform must look like (the mapping's ``id_pattern``, else the platform's)."""
        self._plan = self._compile_plan(self._fields, self._values, spec.times)
        self._export_plan = self._compile_plan(self._export_fields, self._export_values,
                                               spec.export.times if spec.export else spec.times)

    def _compile_plan(self, fields: dict[str, list[tuple[str | int, ...]]], values: dict[str, dict[str, Any]],
                      times: TimeFormat) -> list[PlanEntry]:
        plan: list[PlanEntry] = []
        for name, paths in fields.items():
            # flat paths (a plain column name) are read with one dict lookup each
            flats = tuple(str(p[0]) for p in paths) if all(len(p) == 1 for p in paths) else None
            table = values.get(name)
            needs = table is not None or name in TIME_FIELDS or name in INT_FIELDS or name in _ENUM_VALUES
            convert = (lambda raw, n=name, t=table: self._convert(n, raw, t, times)) if needs else None
            if name in TIME_FIELDS and table is None:
                # the usual text time goes straight to the (cached) parser: a large export has thousands
                convert = (lambda raw, n=name, f=tuple(times.formats), z=times.zone, general=convert:
                           _parse_time_cached(raw.strip(), f, z) if type(raw) is str else general(raw))
            # converted values are memoised per field: exports repeat the same few values endlessly
            plan.append((name, paths, flats, convert, {}))
        return plan

    @staticmethod
    def _paths(source: FieldSource) -> list[tuple[str | int, ...]]:
        return [_compile_path(p) for p in ([source] if isinstance(source, str) else source)]

    def restricted(self, fields: set[str]) -> "Mapping":
        """A copy that reads only ``fields`` (plus id, key, opened_at and the lifecycle fields): a backtest
        of a large export needs a handful of columns, and each one read costs time."""
        keep = set(fields) | {"id", "key", "opened_at", "state", "parent", "major", "marker"}
        copy = Mapping.__new__(Mapping)
        copy.__dict__.update(self.__dict__)
        copy._plan = [entry for entry in self._plan if entry[0] in keep]
        copy._export_plan = [entry for entry in self._export_plan if entry[0] in keep]
        copy._restricted = True
        return copy

    def export_columns(self) -> set[str] | None:
        """For a :meth:`restricted` copy, the only export columns it reads, so that a reader may keep just
        those (a ticket's ``raw`` then holds only them); None when every column must be kept."""
        if not self._restricted:
            return None
        columns: set[str] = set()
        for _, _, flats, _, _ in self._export_plan:
            if flats is None:
                return None
            columns.update(flats)
        return columns

    def for_columns(self, columns: Iterable[str]) -> "Mapping":
        """A copy for an export with these columns (a CSV header): alternatives the export does not have
        are not looked up for every row, and a field none of whose columns exists is not read at all."""
        present = set(columns)
        copy = Mapping.__new__(Mapping)
        copy.__dict__.update(self.__dict__)
        plan: list[PlanEntry] = []
        for name, paths, flats, convert, memo in self._export_plan:
            if flats is not None:
                flats = tuple(flat for flat in flats if flat in present)
                if not flats:
                    continue
            plan.append((name, paths, flats, convert, memo))
        copy._export_plan = plan
        return copy

    @property
    def provided(self) -> set[str]:
        """Canonical fields this mapping can fill."""
        return set(self._fields)

    def source(self, canonical: str) -> str | None:
        """The first platform path for ``canonical`` (e.g. ``business_service``), or None."""
        src = self.spec.fields.get(canonical)
        if src is None:
            return None
        return src if isinstance(src, str) else src[0]

    def platform_fields(self) -> list[str]:
        """Top-level platform fields to request (``sysparm_fields`` / Jira ``fields``)."""
        out: list[str] = []
        for paths in self._fields.values():
            for steps in paths:
                top = str(steps[0]) if steps[0] != "fields" or len(steps) < 2 else str(steps[1])
                if not top.startswith("_") and top not in out:
                    out.append(top)
        return out

    def _flat_plan(self, plan: list[PlanEntry]) -> list[FlatEntry] | None:
        """The plan as plain column reads when every field is a plain column (CSV exports), else None."""
        cached = self._flat_plans.get(id(plan))
        if cached is not None and cached[0] is plan:
            return cached[1]
        flat: list[FlatEntry] | None = []
        for name, _, columns, convert, memo in plan:
            if columns is None or flat is None:
                flat = None
                continue
            flat.append((name, columns, convert, memo))
        self._flat_plans[id(plan)] = (plan, flat)
        return flat

    @staticmethod
    def _read_flat(record: dict[str, Any], plan: list[FlatEntry],
                   missing: set[str]) -> dict[str, Any]:
        """The hot path of a large export: text columns, memoised conversions. Raises on anything unusual,
        and the caller then takes the general path, which names the field in its error."""
        data: dict[str, Any] = {}
        get = record.get
        for name, flats, convert, memo in plan:
            for column in flats:
                raw = get(column)
                if raw is not None and raw not in missing:
                    break
            else:
                continue
            if convert is None:
                if type(raw) is not str:
                    raise TypeError(name)
                data[name] = raw
                continue
            value = memo.get(raw, _UNSET)
            if value is _UNSET:
                value = convert(raw)
                if len(memo) > 50_000:
                    memo.clear()
                memo[raw] = value
            if value is not None:
                data[name] = value
        return data

    def to_ticket(self, record: dict[str, Any], base_url: str | None = None, export: bool = False) -> Ticket:
        """Convert a platform record; raises :class:`MappingError` naming the field when it is malformed."""
        plan = self._export_plan if export else self._plan
        missing = self._export_missing if export else self._missing
        flat = self._flat_plan(plan) if export else None
        if flat is not None:
            try:
                data = self._read_flat(record, flat, missing)
                if "id" in data and "opened_at" in data:
                    return Ticket.trusted_from(data, record)
            except (ValueError, TypeError):
                pass  # the general path below reports it properly
        data = {}
        for name, paths, flats, convert, memo in plan:
            raw = None
            if flats is not None:
                for column in flats:
                    raw = record.get(column)
                    if raw is not None and not (type(raw) is str and raw in missing):
                        break
                    raw = None
                if raw is None:
                    continue
                if convert is None and type(raw) is str:
                    data[name] = raw
                    continue
            else:
                for steps in paths:
                    raw = extract(record, steps)
                    if raw is not None and not (type(raw) is str and raw in missing):
                        break
                    raw = None
                if raw is None:
                    continue
            if isinstance(raw, dict) and "value" in raw and "link" in raw:
                raw = raw["value"]
            hashable = type(raw) is str
            converted = memo.get(raw, _UNSET) if hashable else _UNSET
            if converted is _UNSET:
                try:
                    converted = convert(raw) if convert is not None else self._convert(name, raw, None, self.spec.times)
                except (ValueError, TypeError) as exc:
                    if len(paths) < 2:
                        raise MappingError(f"field {name!r} (from {self._describe(paths)}): {exc}") from None
                    # several sources: a value the first cannot translate falls back to the next one
                    # (a Jira status name not in the value map falls back to its status category)
                    converted = self._fallback(name, record, paths, convert, missing, exc)
                if hashable:
                    if len(memo) > 50_000:
                        memo.clear()
                    memo[raw] = converted
            if converted is not None:
                data[name] = converted
        fields = self._export_fields if export else self._fields
        if "id" not in data:
            raise MappingError(f"record has no id (from {self._describe(fields['id'])})")
        if not export:
            # an id is used as a major incident's id and written into other records (parent_incident): never
            # one the platform cannot have issued (a record with id 12345 became a phantom major incident)
            for name in ID_FIELDS:
                value = data.get(name)
                if value is not None and not self.id_pattern.fullmatch(value):
                    shown = value if len(value) <= 40 else value[:40] + "..."
                    raise MappingError(f"field {name!r} (from {self._describe(fields[name])}): {shown!r} is not a "
                                       f"{self.platform} record id (id_pattern {self.id_pattern.pattern})")
        if "opened_at" not in data:
            raise MappingError(f"record {data['id']} has no opened_at (from {self._describe(fields['opened_at'])})")
        if self.spec.url and base_url is not None and "url" not in data:
            data["url"] = templating.render(self.spec.url, {"base": base_url.rstrip("/"), "id": data["id"],
                                                            "key": data.get("key", "")})
        # Every value was converted and checked above, so skip a second validation pass (it doubles the
        # cost of reading a large export).
        return Ticket.trusted(**data, raw=record)

    def row_reader(self, columns: Sequence[str]) -> Callable[[Sequence[Any]], Ticket] | None:
        """For export rows holding the values of ``columns`` in that order, as text (None for a value a
        short row lacks): a function that reads a row as ``to_ticket(dict(zip(columns, row)), export=True)``
        does, by position (the hot path of a large CSV export); a row it cannot read plainly goes to
        :meth:`to_ticket`, which names the problem. None when the export is not read from plain columns.

        The function is generated for the columns at hand, one statement per field with its column's
        position and its memo of conversions as constants (as :func:`collections.namedtuple` does): a loop
        over the fields costs more than the work itself on a file of a hundred thousand rows."""
        flat = self._flat_plan(self._export_plan)
        if flat is None:
            return None
        where = {column: at for at, column in enumerate(columns)}
        scope: dict[str, Any] = {"UNSET": _UNSET, "missing": self._export_missing, "trusted": Ticket.trusted_from,
                                 "general": self.to_ticket, "columns": tuple(columns), "zip": zip, "dict": dict,
                                 "len": len}
        body = ["def read(row):", "    data = {}", "    try:"]
        for index, (name, flats, convert, memo) in enumerate(flat):
            positions = [where[c] for c in flats if c in where]
            if not positions:
                continue
            scope[f"convert{index}"], scope[f"memo{index}"] = convert, memo
            for number, at in enumerate(positions):
                test = "if" if number == 0 else "elif"
                body.append(f"        {test} (raw := row[{at}]) is not None and raw not in missing:")
                if convert is None:
                    body.append(f"            data[{name!r}] = raw")
                    continue
                body += [f"            value = memo{index}.get(raw, UNSET)",
                         "            if value is UNSET:",
                         f"                value = convert{index}(raw)",
                         f"                if len(memo{index}) > 50000:",
                         f"                    memo{index}.clear()",
                         f"                memo{index}[raw] = value",
                         "            if value is not None:",
                         f"                data[{name!r}] = value"]
        body += ["    except (ValueError, TypeError, IndexError):",
                 "        data = {}  # the general path reports it properly",
                 "    record = dict(zip(columns, row))",
                 "    if 'id' in data and 'opened_at' in data:",
                 "        return trusted(data, record)",
                 "    return general(record, export=True)"]
        exec("\n".join(body), scope)  # noqa: S102 - source built above from column positions and field names
        read: Callable[[Sequence[Any]], Ticket] = scope["read"]
        return read

    def _fallback(self, name: str, record: dict[str, Any], paths: list[tuple[str | int, ...]], convert: Any,
                  missing: set[str], first: Exception) -> Any:
        for steps in paths[1:]:
            raw = extract(record, steps)
            if raw is None or (type(raw) is str and raw in missing):
                continue
            try:
                return convert(raw) if convert is not None else self._convert(name, raw, None, self.spec.times)
            except (ValueError, TypeError):
                continue
        raise MappingError(f"field {name!r} (from {self._describe(paths)}): {first}")

    @staticmethod
    def _describe(paths: list[tuple[str | int, ...]]) -> str:
        return " or ".join(".".join(str(s) for s in steps) for steps in paths)

    @staticmethod
    def _convert(name: str, raw: Any, table: dict[str, Any] | None, times: TimeFormat) -> Any:
        if isinstance(raw, dict):
            raw = raw.get("name") or raw.get("value") or raw.get("key") or raw.get("displayName")
            if raw is None:
                return None
        if table is not None:
            text = raw if isinstance(raw, str) else str(raw)
            if text in table:
                return table[text]
            if name in _ENUM_VALUES or (name in INT_FIELDS and not text.strip().isdigit()):
                raise ValueError(f"unknown value {text!r} (mapped values: {', '.join(table) or 'none'})")
        if name in TIME_FIELDS:
            return parse_time(str(raw), times)
        if name in INT_FIELDS:
            number = int(str(raw).strip())
            if not 1 <= number <= 5:
                raise ValueError(f"{number} is outside 1..5")
            return number
        if name in _ENUM_VALUES:
            text = str(raw)
            if text not in _ENUM_VALUES[name]:
                raise ValueError(f"{text!r} is not a valid {name}")
            return text
        if isinstance(raw, (list, tuple)):
            raw = raw[0] if raw else None
        if raw is None:
            return None
        text = raw if isinstance(raw, str) else str(raw)
        return text if text.strip() else None

    def to_platform(self, canonical: str, value: Any) -> Any:
        """A canonical value in the platform's terms (through the reverse value map)."""
        table = self._reverse.get(canonical)
        key = value.value if hasattr(value, "value") else value
        if table is not None and key in table:
            return table[key]
        return value


def _reverse(table: dict[str, Any]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for raw, canonical in table.items():
        out.setdefault(canonical, str(raw))
    return out


_FAST = {"%d": r"(?P<d>\d{1,2})", "%m": r"(?P<m>\d{1,2})", "%Y": r"(?P<Y>\d{4})", "%H": r"(?P<H>\d{1,2})",
         "%M": r"(?P<M>\d{2})", "%S": r"(?P<S>\d{2})"}


@lru_cache(maxsize=64)
def _fast_pattern(pattern: str) -> re.Pattern[str] | None:
    """A regex for strptime patterns made only of %d %m %Y %H %M %S and literals (strptime is slow)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "%":
            token = pattern[i:i + 2]
            if token not in _FAST:
                return None
            out.append(_FAST[token])
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@lru_cache(maxsize=64)
def _fast_order(pattern: str) -> tuple[int, int, int, int | None, int | None, int | None] | None:
    """Where year, month, day, hour, minute and second are among a fast pattern's groups (positional
    groups read faster than a dict of named ones)."""
    fast = _fast_pattern(pattern)
    if fast is None:
        return None
    index = fast.groupindex
    at = [index.get(name) for name in ("Y", "m", "d", "H", "M", "S")]
    if at[0] is None or at[1] is None or at[2] is None:
        return None
    return (at[0] - 1, at[1] - 1, at[2] - 1, *(None if a is None else a - 1 for a in at[3:]))  # type: ignore[return-value]


@lru_cache(maxsize=65536)
def _parse_time_cached(text: str, formats: tuple[str, ...], zone: str) -> datetime:
    value: datetime | None = None
    for pattern in formats:
        fast = _fast_pattern(pattern)
        order = _fast_order(pattern) if fast is not None else None
        if fast is not None and order is not None:
            match = fast.match(text)
            if match is None:
                continue
            g = match.groups()
            y, mo, d, h, mi, sec = order
            try:
                value = datetime(int(g[y]), int(g[mo]), int(g[d]), 0 if h is None else int(g[h]),
                                 0 if mi is None else int(g[mi]), 0 if sec is None else int(g[sec]),
                                 tzinfo=timezone.utc if zone == "UTC" else None)
            except ValueError:
                continue
            if value.tzinfo is not None:
                return value
            break
        try:
            value = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    if value is None:
        iso = text.replace("Z", "+00:00")
        if re.search(r"[+-]\d{4}$", iso):
            iso = iso[:-2] + ":" + iso[-2:]
        try:
            value = datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(f"cannot read time {text!r} (formats: {', '.join(formats + ('ISO 8601',))})") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(timezone.utc)


def parse_time(text: str, fmt: TimeFormat) -> datetime:
    """Parse a time with the mapping's formats (then ISO 8601); naive times are in ``fmt.zone``."""
    return _parse_time_cached(text.strip(), tuple(fmt.formats), fmt.zone)


def load_mapping(path: Path) -> tuple[Mapping | None, list[Diagnostic]]:
    """Load and validate one mapping file."""
    located, errors = load_yaml(path)
    if located is None:
        return None, errors
    model, verrors = validate(MappingFile, located)
    errors.extend(verrors)
    if model is None:
        return None, errors
    return Mapping(model, str(path)), errors


__all__ = ["Mapping", "MappingError", "MappingFile", "load_mapping", "parse_time"]
