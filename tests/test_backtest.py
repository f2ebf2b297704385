"""``mim backtest``: replay history files (canonical JSONL, ServiceNow CSV exports, archives) through the rules."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli import main
from connector.core.mapping import Mapping, load_mapping
from connector.tools.history import Skipped, read_history

ROOT = Path(__file__).resolve().parent.parent
UCI_ZIP = ROOT.parent / "shared" / "data" / "uci-incident-event-log" / "incident_event_log.zip"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def backtest(*args: str) -> Result:
    return CliRunner().invoke(main, ["backtest", "--no-progress", *args])


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


# -- canonical JSONL -----------------------------------------------------------------------------

BURST = [f"burst-{i}" for i in range(1, 10)]


def history() -> list[dict[str, Any]]:
    """A burst of 9 callers on web-shop within 16 minutes, noise on other services spread over the day,
    and a trickle of 8 tickets over 8 hours on printing. (A backtest starts with empty baselines: the
    shipped surge rules use their fixed threshold, 8, until the baselines have learned a week.)"""
    tickets = [{"id": tid, "opened_at": iso(60 + 2 * i), "service": "web-shop", "caller": f"caller-{i}",
                "priority": 3, "state": "new", "title": "checkout fails"} for i, tid in enumerate(BURST)]
    tickets += [{"id": f"noise-{i}", "opened_at": iso(7 * i), "service": f"service-{i % 12}", "caller": f"n-{i}",
                 "priority": 4, "state": "in_progress"} for i in range(60)]
    tickets += [{"id": f"trickle-{i}", "opened_at": iso(30 + 60 * i), "service": "printing", "caller": f"t-{i}",
                 "priority": 3, "state": "new"} for i in range(8)]
    tickets.sort(key=lambda t: t["id"])  # file order is not time order
    return tickets


def write_jsonl(path: Path, tickets: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tickets), encoding="utf-8")
    return path


def expected_incident() -> dict[str, Any]:
    return {"parent": "burst-1", "rule": "service-surge", "declared_at": iso(60 + 2 * 7),
            "children": BURST[1:], "time_to_declare_seconds": 14 * 60}


def test_burst_is_one_major_incident_and_trickle_and_noise_are_not(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "history.jsonl", history())

    result = backtest("--tickets", str(path), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tickets"] == 77
    assert data["skipped_rows"] == 0
    (incident,) = data["major_incidents"]
    assert {k: incident[k] for k in expected_incident()} == expected_incident()
    assert incident["late_children"] == ["burst-9"]
    assert incident["group"] == {"service": "web-shop"}


def test_table_output_lists_the_major_incident(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "history.jsonl", history())

    result = backtest("--tickets", str(path))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("77 tickets replayed, 1 major incidents declared")
    assert lines[2].split()[:4] == ["declared", "at", "(UTC)", "rule"]
    (row,) = [line for line in lines if "burst-1" in line]
    assert row.split() == ["2026-03-02", "10:14:00", "service-surge", "burst-1", "service=web-shop", "8", "14", "min"]


def _gzipped(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


def _zipped(path: Path) -> Path:
    target = path.with_suffix(".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__MACOSX/._history.jsonl", b"\x00\x05")
        archive.write(path, "export/" + path.name)
    return target


@pytest.mark.parametrize("pack", [pytest.param(_gzipped, id="gzip"), pytest.param(_zipped, id="zip")])
def test_compressed_history_gives_the_same_result(tmp_path: Path, pack: Any) -> None:
    plain = write_jsonl(tmp_path / "history.jsonl", history())

    packed = backtest("--tickets", str(pack(plain)), "--json")
    unpacked = backtest("--tickets", str(plain), "--json")

    assert packed.exit_code == 0, packed.output
    assert json.loads(packed.stdout)["major_incidents"] == json.loads(unpacked.stdout)["major_incidents"]
    assert json.loads(packed.stdout)["tickets"] == 77


def test_malformed_jsonl_lines_are_skipped_with_their_line_number(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "opened_at": iso(0)})
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([good, "{not json", json.dumps({"id": "b"}), "[1, 2]",
                               json.dumps({"id": "c", "opened_at": iso(1), "priority": 9}), ""]) + "\n",
                    encoding="utf-8")

    result = backtest("--tickets", str(path), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tickets"], data["skipped_rows"]) == (1, 4)
    assert [e.split(": ", 1)[0] for e in data["skipped_examples"]] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "invalid JSON" in data["skipped_examples"][0]
    assert "opened_at" in data["skipped_examples"][1]
    assert "priority" in data["skipped_examples"][3]
    assert f"4 rows skipped; first: {path}:2: invalid JSON" in result.stderr


# -- unreadable input ----------------------------------------------------------------------------


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.jsonl"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "folder.jsonl").mkdir()
    return tmp_path / "folder.jsonl"


def _not_a_zip(tmp_path: Path) -> Path:
    (tmp_path / "export.zip").write_bytes(b"plain text, not an archive")
    return tmp_path / "export.zip"


def _zip_without_data(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    return tmp_path / "export.zip"


def _damaged_zip(tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("history.jsonl", json.dumps({"id": "a", "opened_at": iso(0)}) + "\n" * 5000)
    data = bytearray(buffer.getvalue())
    data[60:80] = bytes(20)  # inside the compressed member: its CRC no longer matches
    (tmp_path / "export.zip").write_bytes(bytes(data))
    return tmp_path / "export.zip"


def _not_gzip(tmp_path: Path) -> Path:
    (tmp_path / "history.jsonl.gz").write_bytes(b"plain text, not gzip")
    return tmp_path / "history.jsonl.gz"


def _truncated_gzip(tmp_path: Path) -> Path:
    data = gzip.compress((json.dumps({"id": "a", "opened_at": iso(0)}) + "\n").encode() * 2000)
    (tmp_path / "history.jsonl.gz").write_bytes(data[: len(data) // 2])
    return tmp_path / "history.jsonl.gz"


def _unknown_format(tmp_path: Path) -> Path:
    (tmp_path / "history.txt").write_text("id,opened_at\n", encoding="utf-8")
    return tmp_path / "history.txt"


@pytest.mark.parametrize(("make", "fragment"), [
    pytest.param(_missing, "no such file", id="missing"),
    pytest.param(_directory, "cannot open", id="directory"),
    pytest.param(_not_a_zip, "not a zip file", id="not-a-zip"),
    pytest.param(_zip_without_data, "holds no .csv, .json or .jsonl", id="zip-without-data"),
    pytest.param(_damaged_zip, "cannot read", id="damaged-zip"),
    pytest.param(_not_gzip, "Not a gzipped file", id="not-gzip"),
    pytest.param(_truncated_gzip, "Compressed file ended", id="truncated-gzip"),
    pytest.param(_unknown_format, "unknown format", id="unknown-extension"),
])
def test_unreadable_history_is_a_clean_error(tmp_path: Path, make: Any, fragment: str) -> None:
    path = make(tmp_path)

    result = backtest("--tickets", str(path), "--json")

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("Error: ") and fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


# -- ServiceNow CSV export in the UCI format ------------------------------------------------------

UCI_COLUMNS = (
    "number,incident_state,active,reassignment_count,reopen_count,sys_mod_count,made_sla,caller_id,opened_by,"
    "opened_at,sys_created_by,sys_created_at,sys_updated_by,sys_updated_at,contact_type,location,category,"
    "subcategory,u_symptom,cmdb_ci,impact,urgency,priority,assignment_group,assigned_to,knowledge,"
    "u_priority_confirmation,notify,problem_id,rfc,vendor,caused_by,closed_code,resolved_by,resolved_at,closed_at"
).split(",")

UCI_RULES = """
version: 1
rules:
  - id: category-location-surge
    surge: {group_by: [category, location], window: 15m, threshold: 3}
    declare: {mode: propose, parent: earliest}
    late_children: 4h
"""


def uci_row(number: str, mod: int, state: str, opened: str, updated: str, **values: str) -> str:
    row = dict.fromkeys(UCI_COLUMNS, "?")
    row.update(number=number, sys_mod_count=str(mod), incident_state=state, opened_at=opened, sys_updated_at=updated,
               active="true", caller_id="Caller 2403", opened_by="Opened by  8", contact_type="Phone",
               location="Location 143", category="Category 55", subcategory="Subcategory 170",
               impact="2 - Medium", urgency="2 - Medium", priority="3 - Moderate")
    row.update(values)
    return ",".join(row[c] for c in UCI_COLUMNS)


def uci_export() -> str:
    """Five incidents (one row per update); three open within six minutes on Category 55 at Location 143,
    one with an unreadable opening date (file line 10), one updated again at the end of the file."""
    rows = [
        uci_row("INC0000045", 0, "New", "3/5/2016 10:01", "3/5/2016 10:01"),
        uci_row("INC0000045", 1, "Active", "3/5/2016 10:01", "3/5/2016 10:30", assigned_to="Resolver 10"),
        uci_row("INC0000045", 2, "Resolved", "3/5/2016 10:01", "3/5/2016 11:00", resolved_at="3/5/2016 11:00"),
        # rows of one incident out of order: the lowest sys_mod_count is still its first version
        uci_row("INC0000047", 2, "Closed", "3/5/2016 10:04", "4/5/2016 09:00", resolved_at="3/5/2016 12:00",
                closed_at="4/5/2016 09:00"),
        uci_row("INC0000047", 0, "New", "3/5/2016 10:04", "3/5/2016 10:04"),
        uci_row("INC0000047", 1, "Active", "3/5/2016 10:04", "3/5/2016 10:20"),
        uci_row("INC0000050", 0, "New", "3/5/2016 10:07", "3/5/2016 10:07", caller_id="?"),
        uci_row("INC0000051", 0, "New", "29/2/2016 01:16", "29/2/2016 01:16", location="Location 204"),
        uci_row("INC0000052", 0, "New", "31/2/2016 25:99", "29/2/2016 01:16"),
        # a late update of an incident whose other rows came earlier in the file
        uci_row("INC0000045", 3, "Closed", "3/5/2016 10:01", "5/5/2016 08:00", resolved_at="3/5/2016 11:30",
                closed_at="5/5/2016 08:00"),
    ]
    return ",".join(UCI_COLUMNS) + "\n" + "\n".join(rows) + "\n"


def servicenow_mapping() -> Mapping:
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert mapping is not None, errors
    return mapping


def test_servicenow_csv_export_gives_one_ticket_per_number(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    path.write_text(uci_export(), encoding="utf-8")
    skipped = Skipped()

    tickets = {t.id: t for t in read_history(path, lambda _: servicenow_mapping(), None, skipped)}

    assert sorted(tickets) == ["INC0000045", "INC0000047", "INC0000050", "INC0000051"]
    first = tickets["INC0000047"]
    assert (first.key, first.state, first.opened_at) == ("INC0000047", "new", datetime(2016, 5, 3, 10, 4, tzinfo=UTC))
    assert first.resolved_at == datetime(2016, 5, 3, 12, 0, tzinfo=UTC), "resolution comes from the last version"
    assert (first.priority, first.impact, first.urgency) == (3, 2, 2)
    assert (first.category, first.location, first.caller) == ("Category 55", "Location 143", "Caller 2403")
    assert tickets["INC0000045"].assignee is None, "later versions do not overwrite first-version fields"
    assert tickets["INC0000045"].state == "new"
    assert tickets["INC0000045"].resolved_at == datetime(2016, 5, 3, 11, 30, tzinfo=UTC), "from the row at the end"
    assert tickets["INC0000050"].caller is None, "'?' is missing"
    assert tickets["INC0000051"].opened_at == datetime(2016, 2, 29, 1, 16, tzinfo=UTC)
    assert skipped.count == 1 and "line 10" in skipped.examples[0] and "opened_at" in skipped.examples[0]


def test_backtest_reading_keeps_only_the_columns_its_rules_need(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    path.write_text(uci_export(), encoding="utf-8")
    restricted = servicenow_mapping().restricted({"category", "location"})

    tickets = {t.id: t for t in read_history(path, lambda _: restricted, None, Skipped())}

    assert sorted(tickets) == ["INC0000045", "INC0000047", "INC0000050", "INC0000051"]
    assert {t.state for t in tickets.values()} == {"new"}, "the first version, wherever the rows are"
    assert tickets["INC0000047"].location == "Location 143"
    assert set(tickets["INC0000045"].raw) <= {"number", "sys_mod_count", "opened_at", "incident_state", "category",
                                              "location", "resolved_at"}


def test_servicenow_csv_backtest_reports_surge_and_skipped_row(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    path.write_text(uci_export(), encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "uci.yaml").write_text(UCI_RULES, encoding="utf-8")

    result = backtest("--tickets", str(path), "--rules", str(rules), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tickets"] == 4
    assert [(m["parent"], m["children"], m["declared_at"]) for m in data["major_incidents"]] == [
        ("INC0000045", ["INC0000047", "INC0000050"], "2016-05-03T10:07:00+00:00")]
    assert data["skipped_rows"] == 1
    assert data["skipped_examples"][0].startswith(f"{path}: line 10: field 'opened_at'")
    assert "1 rows skipped" in result.stderr
    assert "Traceback" not in result.output


def test_short_csv_row_is_skipped_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    lines = uci_export().splitlines()
    path.write_text("\n".join([*lines[:3], "INC0000099,New,true", *lines[3:]]) + "\n", encoding="utf-8")

    result = backtest("--tickets", str(path), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tickets"] == 4
    assert [e.split(": ")[1] for e in data["skipped_examples"]] == ["line 4", "line 11"]
    assert "INC0000099 has no opened_at" in data["skipped_examples"][0]


def test_backtest_with_rules_that_do_not_load_exits_1(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("version: 1\nrules:\n  - id: x\n    surge: {group_by: [service], window: 15}\n",
                                    encoding="utf-8")
    path = write_jsonl(tmp_path / "history.jsonl", history())

    result = backtest("--tickets", str(path), "--rules", str(rules))

    assert result.exit_code == 1
    assert f"{rules / 'bad.yaml'}:4:" in result.stderr and "the rules do not load" in result.stderr


# -- the real UCI event log ----------------------------------------------------------------------


def test_uci_event_log_backtest_finds_the_known_surges() -> None:
    if not UCI_ZIP.is_file():
        pytest.skip(f"{UCI_ZIP} is not present")

    result = backtest("--tickets", str(UCI_ZIP), "--rules", str(ROOT / "bench" / "rules-uci"), "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tickets"], data["skipped_rows"]) == (24_918, 0)
    parents = [incident["parent"] for incident in data["major_incidents"]]
    assert {"INC0021356", "INC0021579"} <= set(parents)
    assert len(parents) == len(set(parents))
    assert all(incident["rule"] == "category-location-surge" for incident in data["major_incidents"])


def test_several_versions_of_one_ticket_count_once(tmp_path: Path) -> None:
    import json as _json

    lines = []
    for i in range(8):
        for version in range(3):  # an export that kept every update of each ticket
            lines.append({"id": f"v{i}", "opened_at": f"2026-03-02T10:0{i}:00Z", "service": "web-shop",
                          "caller": f"c{i}", "updated_at": f"2026-03-02T11:0{version}:00Z", "state": "new"})
    path = tmp_path / "versions.jsonl"
    path.write_text("\n".join(_json.dumps(line) for line in lines))
    from click.testing import CliRunner as _Runner

    import cli as _cli

    out = _Runner().invoke(_cli.main, ["backtest", "--tickets", str(path), "--json"])
    data = _json.loads(out.stdout)
    assert data["tickets"] == 8
    assert len(data["major_incidents"]) == 1
    assert data["skipped_rows"] == 16


def test_rules_on_fields_the_export_mapping_lacks_are_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner as _Runner

    import cli as _cli

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("version: 1\nrules:\n  - id: by-location\n    surge: {group_by: [location], window: 15m, threshold: 3}\n")
    export = tmp_path / "issues.json"
    export.write_text('{"issues": []}')
    out = _Runner().invoke(_cli.main, ["backtest", "--tickets", str(export), "--rules", str(rules), "--platform", "jira"])
    assert out.exit_code == 1
    assert "does not map" in out.output


def test_blank_lines_do_not_shift_the_reported_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    lines = uci_export().splitlines()
    path.write_text("\n".join([*lines[:2], "", "", *lines[2:3], "INC0000099,New,true", *lines[3:]]) + "\n",
                    encoding="utf-8")

    result = backtest("--tickets", str(path), "--json")

    data = json.loads(result.stdout)
    assert data["tickets"] == 4
    # the short row is on physical line 6 (after two blank lines), the bad date two lines further on
    assert [e.split(": ")[1] for e in data["skipped_examples"]] == ["line 6", "line 13"]
