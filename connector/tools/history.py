"""Reading ticket history for backtests: canonical JSONL, or a platform export read through its mapping
(ServiceNow CSV/JSON, Jira JSON), from plain, ``.gz`` or ``.zip`` files."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

from pydantic import ValidationError

from connector.core.mapping import Mapping, MappingError
from connector.core.ticket import CANONICAL_FIELDS, Ticket
from connector.tools import prefetch


class HistoryError(Exception):
    """The history file cannot be read at all (missing, not an archive we understand, wrong format)."""


@dataclass
class Skipped:
    """Rows that were reported and skipped."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.examples) < 20:
            self.examples.append(message)


def _member_name(names: list[str]) -> str:
    name = prefetch.data_member(names)
    if name is None:
        raise HistoryError("the zip archive holds no .csv, .json or .jsonl file")
    return name


def open_text(path: Path, encoding: str = "utf-8-sig") -> tuple[IO[str], str]:
    """Open ``path`` for text reading, looking inside ``.zip``/``.gz``; returns the stream and the inner
    file name (whose extension tells the format). Bytes already read by :func:`connector.tools.prefetch.start`
    are used instead of reading the file again."""
    if not path.exists():
        raise HistoryError(f"{path}: no such file")
    read = prefetch.take(path)
    if read is not None:
        data, name = read
        return io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace", newline=""), name
    try:
        if path.suffix.lower() == ".zip":
            archive = zipfile.ZipFile(path)
            name = _member_name(archive.namelist())
            raw = archive.open(name)
            return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=""), name
        if path.suffix.lower() == ".gz":
            return io.TextIOWrapper(gzip.open(path), encoding=encoding, errors="replace", newline=""), path.stem
        return open(path, encoding=encoding, errors="replace", newline=""), path.name
    except (zipfile.BadZipFile, OSError) as exc:
        raise HistoryError(f"{path}: cannot open: {exc}") from None


def detect_format(inner_name: str) -> str:
    """``jsonl``, ``json`` or ``csv`` from a file name."""
    ext = inner_name.rsplit(".", 1)[-1].lower()
    if ext in ("jsonl", "ndjson"):
        return "jsonl"
    if ext in ("json", "csv"):
        return ext
    raise HistoryError(f"{inner_name}: unknown format (expected .jsonl, .json or .csv, optionally .gz or .zip)")


def read_canonical_jsonl(stream: IO[str], skipped: Skipped, label: str = "input") -> Iterator[Ticket]:
    """Tickets from canonical JSONL (``id`` and ``opened_at`` required). Unknown keys go to ``raw``."""
    known = set(CANONICAL_FIELDS)
    for line_no, line in enumerate(stream, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("a line must be a JSON object")
            data = {k: v for k, v in obj.items() if k in known}
            extra = {k: v for k, v in obj.items() if k not in known and k != "raw"}
            data["raw"] = {**(obj.get("raw") or {}), **extra} if isinstance(obj.get("raw", {}), dict) else extra
            yield Ticket(**data)
        except json.JSONDecodeError as exc:
            skipped.add(f"{label}:{line_no}: invalid JSON: {exc.msg}")
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            skipped.add(f"{label}:{line_no}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
        except ValueError as exc:
            skipped.add(f"{label}:{line_no}: {exc}")


def _records_from_json(stream: IO[str], label: str) -> list[dict[str, Any]]:
    try:
        data = json.load(stream)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if isinstance(data, dict):
        for key in ("records", "result", "issues", "tickets"):
            if isinstance(data.get(key), list):
                return data[key]
        raise HistoryError(f"{label}: expected a list, or an object with 'records', 'result' or 'issues'")
    if isinstance(data, list):
        return data
    raise HistoryError(f"{label}: expected a JSON list of records")


def _sort_key(value: str | None) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    try:
        return (1, float(value))
    except ValueError:
        return (2, value)


def _first_last(chunk: list[list[str]], order_at: int, version: Callable[[list[str]], Any]) -> tuple[list[str], list[str]]:
    """The lowest and highest version in a ticket's rows. Equal-length digit strings (the usual case)
    compare as text, which keeps the work in C."""
    try:
        versions = list(map(itemgetter(order_at), chunk))
    except IndexError:
        return min(chunk, key=version), max(chunk, key=version)
    if "".join(versions).isdigit() and all(versions):
        numbers = list(map(int, versions))
        low, high = min(numbers), max(numbers)
        # rows usually come in version order: then the ends are the answer, without searching
        first = chunk[0] if numbers[0] == low else chunk[numbers.index(low)]
        last = chunk[-1] if numbers[-1] == high else chunk[len(numbers) - 1 - numbers[::-1].index(high)]
        return first, last
    return min(chunk, key=version), max(chunk, key=version)


class _CollapsePlan:
    """How an export with one row per update collapses to one record per ticket (see :func:`collapse_rows`):
    the key, version and last-version columns, and the columns kept of each row."""

    def __init__(self, header: list[str], mapping: Mapping, last_columns: Sequence[str] = ()) -> None:
        export = mapping.spec.export
        if export is None:
            raise ValueError("the mapping has no export section")
        self.keep_last = export.keep == "last"
        self.key_at = header.index(export.key)
        self.order_at = header.index(export.order_by) if export.order_by in header else None
        last_at = []
        for canonical in export.resolved_from_last:
            column = export.fields.get(canonical) or mapping.spec.fields.get(canonical)
            for name in [column] if isinstance(column, str) else (column or []):
                if name in header:
                    last_at.append(header.index(name))
        last_at += [header.index(name) for name in last_columns
                    if name in header and header.index(name) not in last_at]
        # A mapping restricted to a few fields (a backtest) keeps only the columns it reads: each ticket's
        # rows are held until the end of the file, and 36 columns of every row is most of the memory.
        columns = mapping.export_columns()
        self.keep: list[int] | None = None
        if columns is not None:
            # a resolution column the restricted mapping does not read need not be kept (labels are)
            labels = {header.index(name) for name in last_columns if name in header}
            last_at = [i for i in last_at if header[i] in columns or i in labels]
            wanted = {header.index(c) for c in columns if c in header} | {self.key_at} | set(last_at)
            keep = self.keep = sorted(wanted | ({self.order_at} if self.order_at is not None else set()))
            self.trim: Callable[[Sequence[str]], Sequence[str]] = (
                itemgetter(*keep) if len(keep) > 1 else (lambda row: (row[keep[0]],)))
            self.out_header = [header[i] for i in keep]
            self.order_in = keep.index(self.order_at) if self.order_at is not None else None
            self.last_at = [keep.index(i) for i in last_at]
        else:
            self.out_header, self.order_in, self.last_at = header, self.order_at, last_at
        self.missing = set(export.missing)
        self.row_version = self.version_at(self.order_at)  # of a file row
        self.kept_version = self.version_at(self.order_in)  # of a kept row

    @staticmethod
    def version_at(at: int | None) -> Callable[[Sequence[str]], Any]:
        """A row's version for ordering: numbers, then other text, then a row too short to have one (it
        never passes for a ticket's first version)."""
        def version(row: Sequence[str]) -> Any:
            if at is None:
                return (0, 0, "")
            raw = row[at] if len(row) > at else None
            if raw is None:
                return (2, 0, "")
            return (0, int(raw), "") if raw.isdigit() else (1, 0, raw)

        return version

    def shrink(self, row: Sequence[str]) -> Sequence[str]:
        """The kept columns of a row."""
        keep = self.keep
        if keep is None:
            return row
        try:
            return self.trim(row)
        except IndexError:  # a short row: its missing columns read as absent
            return tuple(row[i] if i < len(row) else None for i in keep)  # type: ignore[misc]

    def emit(self, groups: dict[str, list[Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each ticket's record: its first version with the last version's resolution and label columns."""
        out_header = self.out_header
        for line_no, row in self.emit_rows(groups):
            yield line_no, dict(zip(out_header, row))

    def emit_rows(self, groups: dict[str, list[Any]]) -> Iterator[tuple[int, Sequence[str]]]:
        """:meth:`emit`'s records as rows of :attr:`out_header`'s columns."""
        last_at = self.last_at
        for line_no, first, last in groups.values():
            if self.keep_last:
                yield line_no, last
                continue
            if last is not first and last_at:
                merged = list(first)
                for i in last_at:
                    if i < len(last) and i < len(merged):
                        merged[i] = last[i]
                yield line_no, merged
            else:
                yield line_no, first


def _merge(groups: dict[str, list[Any]], key: str, first_line: int, first: Sequence[str], last: Sequence[str],
           kept_version: Callable[[Sequence[str]], Any]) -> None:
    """Add one run of a ticket's rows to ``groups`` (``key`` -> [line of its first version, first, last]): a
    ticket whose rows are scattered through the file keeps its earliest and its latest version."""
    slot = groups.get(key)
    if slot is None:
        groups[key] = [first_line, first, last]
        return
    if kept_version(first) < kept_version(slot[1]):
        slot[0], slot[1] = first_line, first
    if kept_version(last) >= kept_version(slot[2]):
        slot[2] = last


def collapse_rows(header: list[str], rows: Iterable[list[str]], mapping: Mapping,
                  progress: Callable[[int], None] | None = None,
                  last_columns: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """An export with one row per update becomes one record per ticket: the first version (by the
    export's ``order_by``) supplies the fields, the last version the resolution fields and
    ``last_columns`` (the links a scored backtest reads as labels: made after the ticket arrived). Yields
    the line number of each ticket's first row (exact for files without line breaks inside fields) and the
    record.

    Consecutive rows of one ticket are taken as a group by ``itertools.groupby`` so that the per-row cost
    stays in C; a ticket whose rows are scattered through the file is merged all the same.
    """
    export = mapping.spec.export
    if export is None or export.key not in header:
        for line_no, row in enumerate(rows, start=2):
            yield line_no, dict(zip(header, row))
        return
    plan = _CollapsePlan(header, mapping, last_columns)
    key_at, order_at, missing, shrink = plan.key_at, plan.order_at, plan.missing, plan.shrink
    row_version, kept_version = plan.row_version, plan.kept_version
    groups: dict[str, list[Any]] = {}
    line = 2
    seen = 0

    def key_of(row: list[str]) -> str | None:
        return row[key_at] if len(row) > key_at else None

    grouping: Callable[[list[str]], str | None] = key_of
    source: Iterable[list[str]] = rows
    physical = hasattr(rows, "line_num")  # a csv reader knows the physical line of the row it last read
    if key_at == 0 and physical:
        # the usual layout (the ticket number first): every non-empty row has the key, so C does the
        # grouping; blank lines carry nothing
        source, grouping = filter(None, rows), itemgetter(0)
    for key, grouped in groupby(source, grouping):
        # groupby has just read this group's first row, so the reader is on its line
        first_line = rows.line_num if physical else line  # type: ignore[attr-defined]
        chunk = list(grouped)
        line = first_line + len(chunk)
        if key is None or key in missing:
            for offset, row in enumerate(chunk):
                kept = shrink(row)
                groups[f"\x00line{first_line + offset}"] = [first_line + offset, kept, kept]
            continue
        if len(chunk) == 1:
            first = last = shrink(chunk[0])
        else:
            if order_at is None:
                first, last = chunk[0], chunk[-1]
            else:
                first, last = _first_last(chunk, order_at, row_version)
            first, last = shrink(first), shrink(last)
        _merge(groups, key, first_line, first, last, kept_version)
        if progress is not None and len(groups) - seen >= 5000:
            seen = len(groups)
            progress(line - 2)
    yield from plan.emit(groups)


def jira_parent(record: dict[str, Any], link_type: str) -> str | None:
    """The major incident a Jira issue of an export is linked to as a child: seen from the child, "MAJOR
    causes CHILD" shows the major incident as the ``inwardIssue`` of a link of ``link_type`` (its id, else
    its key). The live adapter reads the link type from the site; an export is read with the mapping's."""
    fields = record.get("fields")
    wanted = link_type.casefold()
    for link in (fields.get("issuelinks") if isinstance(fields, dict) else None) or []:
        if not isinstance(link, dict):
            continue
        kind = link.get("type")
        names = {str(kind.get(k) or "").casefold() for k in ("name", "inward", "outward")} if isinstance(kind, dict) else set()
        other = link.get("inwardIssue")
        if wanted in names and isinstance(other, dict) and (other.get("id") or other.get("key")):
            return str(other.get("id") or other.get("key"))
    return None


def quote_free_lines(text: str, delimiter: str, key: str) -> list[str] | None:
    """The lines of a CSV export when :func:`quote_free_collapse` can read it: no quote character anywhere
    (so no field holds a delimiter or a line break), no blank line, the ticket key (``key``) in the first
    column. None when it cannot."""
    if len(delimiter) != 1 or delimiter == "\n" or '"' in text:
        return None
    body = text.replace("\r\n", "\n") if "\r" in text else text
    if "\r" in body:
        return None
    if body.endswith("\n"):
        body = body[:-1]
    first = body.split("\n", 1)[0]
    if first.split(delimiter, 1)[0] != key:
        return None
    lines = body.split("\n")
    if len(lines) < 2 or "" in lines:
        return None
    return lines


def quote_free_collapse(lines: list[str], delimiter: str, mapping: Mapping, progress: Callable[[int], None] | None = None,
                        last_columns: Sequence[str] = ()) -> tuple[list[str], Mapping, Iterator[tuple[int, Sequence[str]]]]:
    """:func:`collapse_rows` over the ``lines`` of an export :func:`quote_free_lines` accepted (one row per
    update, the ticket key first). Lines are grouped by their key (the text before the first delimiter)
    with :func:`itertools.groupby`; only each ticket's first and last version are split into fields. The
    result is exactly what :func:`collapse_rows` gives over :mod:`csv` rows, at a fraction of the cost.
    Returns the columns kept, the mapping for the file's columns and the records as rows of the kept
    columns."""
    header = lines[0].split(delimiter)
    mapping = mapping.for_columns(header)
    plan = _CollapsePlan(header, mapping, last_columns)
    keys = [line[:cut] if (cut := line.find(delimiter)) >= 0 else line for line in lines]
    groups = _quote_free_groups(lines, keys, delimiter, plan, progress)
    return plan.out_header, mapping, plan.emit_rows(groups)


def _quote_free_groups(lines: list[str], keys: list[str], delimiter: str, plan: "_CollapsePlan",
                       progress: Callable[[int], None] | None) -> dict[str, list[Any]]:
    order_at, shrink, missing = plan.order_at, plan.shrink, plan.missing
    kept_version = plan.kept_version
    groups: dict[str, list[Any]] = {}
    seen = 0
    # only the kept columns are needed: split no further than the last of them
    most = max(plan.keep) + 1 if plan.keep else -1
    first_only = order_at is not None and not plan.last_at and not plan.keep_last
    if order_at is not None:
        split_head = methodcaller("split", delimiter, order_at + 1)
        version_of = itemgetter(order_at)

    def row_of(index: int) -> list[str]:
        return lines[index].split(delimiter, most)

    for key, grouped in groupby(range(1, len(lines)), keys.__getitem__):
        chunk = list(grouped)
        first_line = chunk[0] + 1
        if key in missing:
            for index in chunk:
                kept = shrink(row_of(index))
                groups[f"\x00line{index + 1}"] = [index + 1, kept, kept]
            continue
        if len(chunk) == 1:
            first = last = shrink(row_of(chunk[0]))
        elif first_only and len(head := split_head(lines[chunk[0]])) > order_at and head[order_at] == "0":  # type: ignore[operator]
            # version 0 first: it is the first version whatever follows (and no last column is wanted)
            first = last = shrink(row_of(chunk[0]))
        elif order_at is None:
            first, last = shrink(row_of(chunk[0])), shrink(row_of(chunk[-1]))
        else:
            heads = [split_head(lines[index]) for index in chunk]
            if min(map(len, heads)) <= order_at:
                rows = [lines[index].split(delimiter) for index in chunk]  # a short row: judged the general way
                low, high = _first_last(rows, order_at, plan.row_version)
                first, last = shrink(low), shrink(high)
            else:
                low_at, high_at = _version_picks(list(map(version_of, heads)))
                first, last = shrink(row_of(chunk[low_at])), shrink(row_of(chunk[high_at]))
        _merge(groups, key, first_line, first, last, kept_version)
        if progress is not None and len(groups) - seen >= 5000:
            seen = len(groups)
            progress(chunk[-1])
    return groups


def _version_picks(versions: list[str]) -> tuple[int, int]:
    """The indexes :func:`_first_last` picks as a ticket's first and last version among ``versions``."""
    if "".join(versions).isdigit() and all(versions):
        numbers = list(map(int, versions))
        low, high = min(numbers), max(numbers)
        first = 0 if numbers[0] == low else numbers.index(low)
        last = len(numbers) - 1 if numbers[-1] == high else len(numbers) - 1 - numbers[::-1].index(high)
        return first, last
    keys = [(0, int(v), "") if v.isdigit() else (1, 0, v) for v in versions]
    return min(range(len(keys)), key=keys.__getitem__), max(range(len(keys)), key=keys.__getitem__)


def read_export(stream: IO[str], fmt: str, mapping: Mapping, skipped: Skipped, label: str = "input",
                progress: Callable[[int], None] | None = None,
                last_columns: Sequence[str] = ()) -> Iterator[Ticket]:
    """Tickets from a platform export (CSV or JSON) read through ``mapping``; bad rows are skipped with
    their line number. ``last_columns`` of a CSV export with one row per update come from each ticket's
    last row (see :func:`collapse_rows`)."""
    export = mapping.spec.export
    records: Iterable[tuple[int, dict[str, Any]]]
    if fmt == "csv":
        delimiter = export.delimiter if export else ","
        text = stream.read()
        stream.close()  # frees the bytes it was decoded from (a prefetched archive member) before the work starts
        lines = quote_free_lines(text, delimiter, export.key) if export is not None else None
        if lines is not None:
            del text  # (the lines hold it now)
            columns, mapping, rows = quote_free_collapse(lines, delimiter, mapping, progress, last_columns)
            read = mapping.row_reader(columns)
            for line_no, row in rows:
                try:
                    yield read(row) if read is not None else mapping.to_ticket(dict(zip(columns, row)), export=True)
                except MappingError as exc:
                    skipped.add(f"{label}: line {line_no}: {exc}")
            return
        else:
            reader = csv.reader(io.StringIO(text), delimiter=delimiter)
            del text
            try:
                header = next(reader)
            except StopIteration:
                return
            mapping = mapping.for_columns(header)
            records = collapse_rows(header, reader, mapping, progress, last_columns)
    else:
        records = enumerate(_records_from_json(stream, label), start=1)
        if mapping.platform == "jira":
            records = _with_jira_links(records, str(getattr(mapping.write, "link_type", "") or ""))
    where = "line" if fmt == "csv" else "record"
    for line_no, record in records:
        try:
            yield mapping.to_ticket(record, export=True)
        except MappingError as exc:
            skipped.add(f"{label}: {where} {line_no}: {exc}")


def _with_jira_links(records: Iterable[tuple[int, Any]], link_type: str) -> Iterator[tuple[int, Any]]:
    """Jira export records with ``_parent`` derived from their issue links (what the adapter derives live)."""
    for number, record in records:
        if isinstance(record, dict) and "_parent" not in record and link_type:
            parent = jira_parent(record, link_type)
            if parent is not None:
                record = {**record, "_parent": parent}
        yield number, record


def read_history(path: Path, mapping_for: Callable[[str], Mapping], platform: str | None, skipped: Skipped,
                 progress: Callable[[int], None] | None = None,
                 last_columns: Callable[[Mapping], Sequence[str]] | None = None) -> Iterator[Ticket]:
    """Every ticket in ``path``. Canonical JSONL needs no mapping; CSV/JSON exports are read through the
    mapping of ``platform`` (default: servicenow for CSV, detected for JSON). ``last_columns`` names, for
    the mapping an export is read with, the columns taken from each ticket's last version."""
    encoding = "utf-8-sig"
    stream, inner = open_text(path, encoding)
    fmt = detect_format(inner)
    label = str(path) if inner == path.name else f"{path}!{inner}"
    try:
        with stream:
            if fmt == "jsonl" and platform is None:
                yield from read_canonical_jsonl(stream, skipped, label)
                return
            chosen = platform or "servicenow"
            if fmt == "json" and platform is None:
                head = stream.read(4096)
                chosen = "jira" if '"issues"' in head or '"fields"' in head else "servicenow"
                stream = io.StringIO(head + stream.read())
            if fmt == "jsonl":
                records = (json.loads(line) for line in stream if line.strip())
                stream = io.StringIO(json.dumps(list(records)))
                fmt = "json"
            mapping = mapping_for(chosen)
            yield from read_export(stream, fmt, mapping, skipped, label, progress,
                                   last_columns(mapping) if last_columns is not None else ())
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, csv.Error) as exc:
        # a damaged archive (bad CRC, truncated gzip, not gzip at all) only shows while reading
        raise HistoryError(f"{label}: cannot read: {exc.__class__.__name__}: {exc}") from None
