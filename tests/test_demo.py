"""mim demo: the main job end to end on an embedded simulator, fast, naming what it did."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from connector.detection.registry import MIRecord
from connector.job.store import StateStore
from connector.tools.demo import DEMO_COUNTER, START, run_demo


def decisions(state: Path, platform: str) -> list[tuple[str, str, str]]:
    """``(rule, mode, verdict)`` of every person's decision the demo's cycles recorded."""
    with StateStore(state, platform) as store:
        return sorted((d.rule, str(d.mode), d.verdict) for r in store.major_incidents() for d in r.decisions)


def test_demo_on_servicenow_declares_links_and_walks_every_stage(tmp_path: Path) -> None:
    lines: list[str] = []
    started = time.monotonic()
    result = run_demo("servicenow", echo=lines.append, state=tmp_path / "demo.sqlite")
    assert time.monotonic() - started < 30
    assert result.major_incident is not None
    text = "\n".join(lines)
    assert "declared major incident INC" in text
    assert "/api/now/table/incident/" in text
    for stage in ("identification", "containment", "maintenance", "closed"):
        assert f"is now {stage}" in text, stage
    assert "created change CHG" in text
    assert text.count("created review task TASK") == 3
    assert decisions(tmp_path / "demo.sqlite", "servicenow") == [
        ("service-surge", "propose", "accepted"), ("service-surge", "propose", "rejected")], "read back by the cycle"


def test_mim_demo_command_exits_zero_and_names_the_major_incident() -> None:
    out = CliRunner().invoke(cli.main, ["demo"], env={"MIM_STATE": None})
    assert out.exit_code == 0, out.output
    assert "declared major incident" in out.output
    assert "children" in out.output
    last = out.output.splitlines()[-1]
    assert last.startswith("state kept in ") and last.endswith(" mim report --html mim-demo-report.html")
    kept = Path(last.removeprefix("state kept in ").split(";")[0])
    try:
        assert kept.is_file() and kept.parent.name.startswith("mim-demo-"), "a temporary directory of its own"
    finally:
        shutil.rmtree(kept.parent)


def test_mim_state_keeps_the_demo_state_for_mim_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"MIM_STATE": "s.db", "MIM_PLATFORM": None, "MIM_CONFIG": None}
    runner = CliRunner()
    for _ in range(2):  # a second demo replaces the first one's state
        out = runner.invoke(cli.main, ["demo"], env=env)
        assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1] == "state kept in s.db; its report: MIM_STATE=s.db mim report --html mim-demo-report.html"
    assert "agent jane accepts the proposal" in out.output and "agent jane rejects the proposal" in out.output
    report = runner.invoke(cli.main, ["report", "--html", "r.html"], env=env)
    assert report.exit_code == 0, report.output
    assert report.output.strip() == "2 major incidents from state s.db (servicenow) written to r.html"
    assert "Rule precision from human decisions" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_the_demo_never_writes_into_a_state_it_did_not_write(tmp_path: Path) -> None:
    state = tmp_path / "real.sqlite"
    with StateStore(state, "servicenow") as store:
        store.save_major_incident(MIRecord(id="x", rule="p1-critical", group=["vpn"], started_at=START,
                                           declared_at=START))
    before = state.read_bytes()
    out = CliRunner().invoke(cli.main, ["demo"], env={"MIM_STATE": str(state)})
    assert out.exit_code == 3, out.output
    assert "did not write" in out.output and "MIM_STATE=mim-demo.sqlite" in out.output
    assert state.read_bytes() == before
    with StateStore(state, "servicenow") as store:
        assert store.counter(DEMO_COUNTER) is None and [r.id for r in store.major_incidents()] == ["x"]


def test_demo_on_jira_declares_links_and_creates_the_change_and_reviews(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo("jira", echo=lines.append, state=tmp_path / "demo.sqlite")
    text = "\n".join(lines)
    assert result.major_incident is not None
    assert "declared major incident ITSM-" in text
    assert "created change ITSM-" in text
    assert text.count("created review task ITSM-") == 3
    assert decisions(tmp_path / "demo.sqlite", "jira") == [
        ("service-surge", "propose", "accepted"), ("service-surge", "propose", "rejected")], \
        "the proposed label removed, then the major incident flag removed"
    # JSM at parity: the team and the manager as responders, the stakeholders, the out-of-hours caller routed
    # to the out-of-hours team with a raised priority, and the post-incident review holding the tasks
    assert "responders major-incident-team (team), Alice Martin (user)" in text
    assert "stakeholders Carla Rossi" in text and "affected services web-shop" in text
    [evening] = [line.rsplit(" ", 1)[1] for line in lines if "after business hours" in line]
    assert re.search(rf"linked {evening} to ITSM-\d+ ", text)  # the late caller joins while the surge lasts
    assert f"set assignment_group=service-desk-ooh, priority=1 on {evening}" in text
    assert "responders service-desk-ooh (team)" in text
    assert "created post-incident review ITSM-" in text
    assert not any("action failed" in line for line in lines)
