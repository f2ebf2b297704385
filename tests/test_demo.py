"""mim demo: the main job end to end on an embedded simulator, fast, naming what it did."""

from __future__ import annotations

import time

from click.testing import CliRunner

import cli
from connector.tools.demo import run_demo


def test_demo_on_servicenow_declares_links_and_walks_every_stage() -> None:
    lines: list[str] = []
    started = time.monotonic()
    result = run_demo("servicenow", echo=lines.append)
    assert time.monotonic() - started < 30
    assert result.major_incident is not None
    text = "\n".join(lines)
    assert "declared major incident INC" in text
    assert "/api/now/table/incident/" in text
    for stage in ("identification", "containment", "maintenance", "closed"):
        assert f"is now {stage}" in text, stage
    assert "created change CHG" in text
    assert text.count("created review task TASK") == 3


def test_mim_demo_command_exits_zero_and_names_the_major_incident() -> None:
    out = CliRunner().invoke(cli.main, ["demo"])
    assert out.exit_code == 0, out.output
    assert "declared major incident" in out.output
    assert "children" in out.output


def test_demo_on_jira_declares_links_and_creates_the_change_and_reviews() -> None:
    lines: list[str] = []
    result = run_demo("jira", echo=lines.append)
    text = "\n".join(lines)
    assert result.major_incident is not None
    assert "declared major incident ITSM-" in text
    assert "created change ITSM-" in text
    assert text.count("created review task ITSM-") == 3
    # JSM at parity: the team and the manager as responders, the stakeholders, the out-of-hours caller routed
    # to the out-of-hours team with a raised priority, and the post-incident review holding the tasks
    assert "responders major-incident-team (team), Alice Martin (user)" in text
    assert "stakeholders Carla Rossi" in text and "affected services web-shop" in text
    assert "after business hours" in text and "set assignment_group=service-desk-ooh, priority=1" in text
    assert "responders service-desk-ooh (team)" in text
    assert "created post-incident review ITSM-" in text
    assert not any("action failed" in line for line in lines)
