"""``mim report``: the table, the JSON and the self-contained HTML page agree on every number."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.store import StateStore
from connector.process.metrics import human_duration
from connector.process.planner import plan_process
from connector.process.processfile import load_process
from connector.tools.report import collect, render_html, render_json, render_table
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules
PROCESS, _ = load_process(ROOT / "rules" / "process.yaml")
assert PROCESS is not None
START = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def build_state(path: Path) -> tuple[datetime, list[str]]:
    """Two major incidents through the fake platform: one closed, one still open."""
    clock = Clock(START)
    platform = FakePlatform(clock)
    store = StateStore(path, "servicenow")

    def cycle() -> None:
        clock.advance(seconds=30)
        run_cycle(platform, store, RULES, PROCESS, clock(), planners=[plan_process])

    ids = []
    for service in ("web-shop", "payments"):
        first = None
        for i in range(6):
            record = platform.add(service=service, caller=f"{service}-{i}", priority=3)
            first = first or record["id"]
            clock.advance(minutes=1)
        ids.append(first)
        cycle()
    clock.advance(minutes=20)
    platform.records[ids[0]].update(stage="resolution", updated_at=clock())
    cycle()
    clock.advance(minutes=40)
    cycle()
    platform.records[ids[0]].update(state="resolved", resolved_at=clock(), updated_at=clock())
    cycle()
    clock.advance(hours=2)
    platform.records[ids[0]].update(state="closed", updated_at=clock())
    cycle()
    clock.advance(minutes=30)
    for record in platform.records.values():
        if record.get("_kind") == "task" and record.get("_for") == ids[0]:
            record.update(state="closed", updated_at=clock())
    cycle()
    store.close()
    return clock(), ids


class MetricsPage(HTMLParser):
    """Collects, per major incident section, every ``data-metric``/``data-milestone`` value and text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, tuple[str, str]]] = {}
        self.current: str | None = None
        self.cell: tuple[str, str] | None = None
        self.text = ""
        self.tags: list[str] = []
        self.stages: dict[str, list[str]] = {}
        self.dots: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        data = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "section" and "data-id" in data:  # a major incident's section (the overview has none)
            self.current = data["data-id"]
            self.sections[self.current] = {}
            self.stages[self.current] = []
            self.dots[self.current] = 0
        elif tag == "td" and ("data-metric" in data or "data-milestone" in data):
            self.cell = (data.get("data-metric") or data["data-milestone"], data["data-value"])
            self.text = ""
        elif tag == "g" and "data-stage" in data and self.current:
            self.stages[self.current].append(data["data-stage"])
        elif tag == "circle" and self.current:
            self.dots[self.current] += 1

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None and self.current is not None:
            name, value = self.cell
            self.sections[self.current][name] = (value, self.text)
            self.cell = None


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime, list[str]]:
    path = tmp_path_factory.mktemp("report") / "state.sqlite"
    now, ids = build_state(path)
    return path, now, ids


def report_data(path: Path, now: datetime) -> dict[str, Any]:
    with StateStore(path, "servicenow") as store:
        return collect(store, PROCESS, now)


def test_json_has_the_metrics_of_every_major_incident(state: tuple[Path, datetime, list[str]]) -> None:
    path, now, ids = state
    data = json.loads(render_json(report_data(path, now)))
    by_id = {mi["id"]: mi for mi in data["major_incidents"]}
    closed, open_ = by_id[ids[0]], by_id[ids[1]]
    assert closed["stage"] == "closed" and closed["status"] == "closed"
    assert closed["time_to_identify_s"] == 390.0, "first ticket 10:00, declared by the cycle at 10:06:30"
    assert closed["time_to_contain_s"] == 0.0 and closed["children"] == 5
    assert closed["time_to_resolution_plan_s"] == 27 * 60.0, "stage set by hand, seen by the cycle at 10:33:30"
    assert closed["review_tasks_total"] == 3 and closed["review_tasks_done"] == 3
    assert closed["impact_ongoing"] is False
    assert closed["estimated_cost"] == pytest.approx(closed["impact_s"] / 3600 * 250_000, abs=0.01)
    assert closed["updates_sent"] == 1
    assert [e["value"] for e in closed["timeline"] if e["event"] == "stage"] == [
        "identification", "containment", "resolution", "maintenance", "closed"]
    assert len(closed["arrivals"]) == 6
    assert open_["stage"] == "containment" and open_["resolved_at"] is None and open_["impact_ongoing"] is True
    assert open_["cost_per_hour"] == 400_000


def test_html_numbers_equal_the_json(state: tuple[Path, datetime, list[str]]) -> None:
    path, now, _ = state
    data = report_data(path, now)
    page = MetricsPage()
    page.feed(render_html(data, now))
    assert set(page.sections) == {mi["id"] for mi in data["major_incidents"]}
    for mi in data["major_incidents"]:
        cells = page.sections[mi["id"]]
        for name in ("time_to_identify_s", "time_to_contain_s", "time_to_resolution_plan_s", "time_to_resolve_s",
                     "impact_s", "children", "updates_sent", "review_tasks_total", "estimated_cost"):
            value, text = cells[name]
            expected = mi[name]
            assert (float(value) if value else None) == (None if expected is None else pytest.approx(expected)), name
            if name.endswith("_s"):
                assert text.rstrip("+") == human_duration(expected), name
        for name in ("first_opened_at", "declared_at", "contained_at", "resolved_at", "closed_at"):
            assert cells[name][0] == (mi[name] or ""), name
        assert page.stages[mi["id"]] == [e["value"] for e in mi["timeline"] if e["event"] == "stage"]
        assert page.dots[mi["id"]] == len(mi["arrivals"])


def test_html_is_self_contained(state: tuple[Path, datetime, list[str]]) -> None:
    path, now, _ = state
    html = render_html(report_data(path, now), now)
    page = MetricsPage()
    page.feed(html)
    assert "svg" in page.tags and "style" in page.tags
    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    assert "src=" not in html and "href=" not in html and "url(" not in html


def test_table_lists_every_major_incident(state: tuple[Path, datetime, list[str]]) -> None:
    path, now, ids = state
    table = render_table(report_data(path, now))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["major", "incident", "rule"]
    assert len(lines) == 4
    assert "closed" in lines[2] and "3/3" in lines[2] and "USD" in lines[2]


def test_mim_report_reads_the_configured_state(state: tuple[Path, datetime, list[str]], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, ids = state
    monkeypatch.chdir(tmp_path)
    env = {"MIM_PLATFORM": "servicenow", "MIM_STATE": str(path)}
    runner = CliRunner()
    table = runner.invoke(main, ["report"], env=env)
    assert table.exit_code == 0, table.output
    assert "service-surge" in table.output
    as_json = runner.invoke(main, ["report", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert {mi["id"] for mi in data["major_incidents"]} == set(ids)
    out = tmp_path / "report.html"
    html = runner.invoke(main, ["report", "--html", str(out)], env=env)
    assert html.exit_code == 0 and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_mim_report_without_a_state_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report"], env={"MIM_PLATFORM": "servicenow",
                                                       "MIM_STATE": str(tmp_path / "none.sqlite")})
    assert result.exit_code == 1 and "mim sync --once" in result.output


def test_an_open_incident_is_measured_up_to_now(state: tuple[Path, datetime, list[str]]) -> None:
    path, now, ids = state
    later = report_data(path, now + timedelta(hours=1))
    earlier = report_data(path, now)
    still_open = [mi for mi in later["major_incidents"] if mi["id"] == ids[1]][0]
    before = [mi for mi in earlier["major_incidents"] if mi["id"] == ids[1]][0]
    assert still_open["impact_s"] == pytest.approx(before["impact_s"] + 3600)
