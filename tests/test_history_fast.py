"""The fast path for large CSV exports (connector/tools/history.py ``quote_free_collapse`` and
connector/core/mapping.py ``Mapping.row_reader``) gives exactly what the general path gives: ``csv`` rows
through ``collapse_rows`` and ``to_ticket``. Hypothesis draws quote-free exports with scattered, unordered,
short, keyless and oddly versioned rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connector.core.mapping import Mapping, MappingError, load_mapping
from connector.tools.history import collapse_rows, quote_free_collapse, quote_free_lines

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["number", "incident_state", "sys_mod_count", "caller_id", "opened_at", "cmdb_ci", "priority",
          "parent_incident", "resolved_at"]


def servicenow() -> Mapping:
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    return mapping


VALUES = {
    "number": ["INC1", "INC2", "INC3", "INC4", "?", ""],
    "incident_state": ["New", "Active", "Resolved", "Bogus", "?"],
    "sys_mod_count": ["0", "1", "2", "10", "3", "x", ""],
    "caller_id": ["Caller 1", "Caller 2", "?", ""],
    "opened_at": ["29/2/2016 01:16", "1/3/2016 10:05", "2016-03-02 08:00:00", "not a time", "?"],
    "cmdb_ci": ["ci 1", "?", ""],
    "priority": ["3 - Moderate", "1 - Critical", "9 - Weird", "?"],
    "parent_incident": ["INC9", "?", ""],
    "resolved_at": ["2/3/2016 11:00", "?"],
}


@st.composite
def exports(draw: st.DrawFn) -> str:
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        row = [draw(st.sampled_from(VALUES[name])) for name in HEADER]
        if draw(st.integers(0, 9)) == 0:
            row = row[:draw(st.integers(1, len(HEADER) - 1))]  # a short row
        rows.append(row)
    if draw(st.booleans()):
        rows.sort(key=lambda r: r[0])  # grouped, as exports usually are
    text = "\n".join(",".join(row) for row in [HEADER, *rows])
    return text + ("\n" if draw(st.booleans()) else "")


def general(text: str, mapping: Mapping, last: list[str]) -> list[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    restricted = mapping.for_columns(header)
    return [(line, outcome(lambda r=record: restricted.to_ticket(r, export=True)))
            for line, record in collapse_rows(header, reader, restricted, last_columns=last)]


def fast(text: str, mapping: Mapping, last: list[str]) -> list[tuple[int, Any]] | None:
    lines = quote_free_lines(text, ",", "number")
    if lines is None:
        return None
    columns, restricted, rows = quote_free_collapse(lines, ",", mapping, last_columns=last)
    read = restricted.row_reader(columns)
    assert read is not None
    return [(line, outcome(lambda r=row: read(r))) for line, row in rows]


def outcome(make: Any) -> Any:
    try:
        ticket = make()
    except MappingError as exc:
        return ("error", str(exc))
    return ("ticket", ticket.canonical_dict(), ticket.raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=exports(), restrict=st.booleans(), labels=st.booleans())
def test_the_fast_path_reads_an_export_exactly_as_csv_and_collapse_rows(text: str, restrict: bool, labels: bool) -> None:
    mapping = servicenow()
    if restrict:
        mapping = mapping.restricted({"ci", "caller", "priority"})
    last = ["parent_incident"] if labels else []
    got = fast(text, mapping, last)
    assume(got is not None)  # (a row that is a blank line sends the file the general way)
    assert got == general(text, mapping, last)


@pytest.mark.parametrize(("text", "why"), [
    pytest.param('number,opened_at\nINC1,"29/2/2016, 01:16"\n', "a quoted field", id="quotes"),
    pytest.param("number,opened_at\n\nINC1,29/2/2016 01:16\n", "a blank line", id="blank-line"),
    pytest.param("opened_at,number\n29/2/2016 01:16,INC1\n", "the key is not first", id="key-not-first"),
    pytest.param("number,opened_at\rINC1,29/2/2016 01:16\r", "old Mac line ends", id="lone-cr"),
])
def test_exports_the_fast_path_cannot_read_go_the_general_way(text: str, why: str) -> None:
    assert quote_free_lines(text, ",", "number") is None, why


def test_windows_line_ends_are_read_by_the_fast_path() -> None:
    lines = quote_free_lines("number,opened_at\r\nINC1,29/2/2016 01:16\r\n", ",", "number")
    assert lines == ["number,opened_at", "INC1,29/2/2016 01:16"]
