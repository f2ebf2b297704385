"""mim explain: why a ticket was or was not declared or linked."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

import cli
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.store import StateStore
from connector.process.processfile import ProcessFile
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules


def test_explain_names_the_rule_the_window_count_and_the_ledger(tmp_path: Path, monkeypatch) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    ids = []
    for i in range(6):
        ids.append(platform.add(service="web-shop", caller=f"c{i}", priority=3)["id"])
        clock.advance(minutes=1)
    lonely = platform.add(service="printing", caller="x", priority=4)["id"]
    state = tmp_path / "state.sqlite"
    with StateStore(state, "servicenow") as store:
        run_cycle(platform, store, RULES, ProcessFile(version=1), clock.advance(seconds=30), planners=())
        run_cycle(platform, store, RULES, ProcessFile(version=1), clock.advance(seconds=30), planners=())
    monkeypatch.setenv("MIM_PLATFORM", "servicenow")
    monkeypatch.setenv("MIM_STATE", str(state))
    runner = CliRunner()
    child = runner.invoke(cli.main, ["explain", ids[2]])
    assert child.exit_code == 0, child.output
    assert f"already linked to {ids[0]}" in child.output
    assert "link" in child.output and "applied" in child.output
    other = runner.invoke(cli.main, ["explain", lonely, "--json"])
    data = json.loads(other.output)
    surge = next(r for r in data["rules"] if r["rule"] == "service-surge")
    assert data["outcome"] == "not part of any major incident"
    assert surge["in_window"] == 1 and surge["threshold"] == 5
    missing = runner.invoke(cli.main, ["explain", "INC-NOPE"])
    assert missing.exit_code == 1 and "not in the recent window" in missing.output
