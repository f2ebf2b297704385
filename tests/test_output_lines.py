"""What the connector prints stays what it says: one line per planned action whatever a ticket holds, backtest
columns that fit their values, the demo's count of children it linked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from connector.core.text import one_line
from tests.shipped import servicenow_sim


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def test_a_line_break_in_a_ticket_value_does_not_split_a_dry_run_line(tmp_path: Path) -> None:
    sim = servicenow_sim(user="out", password="out-password-123")
    server = sim.server().start()
    try:
        now = datetime.now(timezone.utc)
        for i in range(6):
            opened = (now - timedelta(minutes=10 - i)).strftime("%Y-%m-%d %H:%M:%S")
            sim.insert("incident", {"short_description": "Checkout fails\nFIX: run rm -rf /", "caller_id": f"c{i}",
                                    "business_service": "web\nshop\x1b[2J", "opened_at": opened})
        env = {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": server.url, "MIM_SERVICENOW_USERNAME": "out",
               "MIM_SERVICENOW_PASSWORD": "out-password-123", "MIM_STATE": str(tmp_path / "state.sqlite")}

        result = CliRunner().invoke(cli.main, ["sync", "--once", "--dry-run"], env=env)
    finally:
        server.stop()

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("6 tickets read, 1 major incidents declared")
    assert all(line.startswith(("  declared ", "  - ")) for line in lines[1:]), lines
    assert "  declared " in lines[1] and "service=web\\nshop\\x1b[2J" in lines[1]
    assert "\x1b" not in result.stdout


def test_one_line_escapes_breaks_and_control_characters() -> None:
    assert one_line("a\nb\r\tc\x1b[0m\u2028d\x85") == "a\\nb\\r\\tc\\x1b[0m\\u2028d\\x85"
    assert one_line("Café – 東京") == "Café – 東京"


def test_the_backtest_table_never_cuts_a_column(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "version: 1\nrules:\n  - id: category-location-surge\n"
        "    surge: {group_by: [category, location], window: 15m, threshold: 3}\n", encoding="utf-8")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    tickets = [{"id": f"INC-WITH-A-LONG-NUMBER-{i:04d}", "opened_at": (start + timedelta(minutes=i)).isoformat(),
                "category": "network-infrastructure", "location": "Frankfurt am Main\ndata centre 2"}
               for i in range(4)]
    history = tmp_path / "tickets.jsonl"
    history.write_text("".join(json.dumps(t) + "\n" for t in tickets), encoding="utf-8")

    result = CliRunner().invoke(cli.main, ["backtest", "--tickets", str(history), "--rules", str(tmp_path / "rules")])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header, rule, row = lines[2], lines[3], lines[4]
    assert row.split()[2:5] == ["category-location-surge", "INC-WITH-A-LONG-NUMBER-0000",
                                "category=network-infrastructure,"]
    assert "location=Frankfurt am Main\\ndata centre 2" in row
    assert len(rule) == len(header) and len(row) == len(header)
    assert header.index("children") + len("children") == row.index(" 3 ") + 2, "numbers right-aligned under their header"


def test_the_demo_counts_the_children_it_linked(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["demo"], env={"MIM_STATE": str(tmp_path / "demo.sqlite")})

    assert result.exit_code == 0, result.output
    declared = next(line for line in result.stdout.splitlines() if "declared major incident" in line)
    late = sum(1 for line in result.stdout.splitlines() if "linked INC" in line)
    linked = int(declared.split(" children linked")[0].rsplit(" ", 1)[1]) + late
    assert linked == 12
    assert "major incident declared with 12 children; see the timeline above" in result.stdout.splitlines()[-2:]
