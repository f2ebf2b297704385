"""``mim report``'s overview on six months of major incidents run through the sync cycle (tests/report_story.py):
counts, medians, costs, rule precision from the verdicts people gave on the platform, and review tasks on time
or late, each against what the story itself knows; the page's numbers against the JSON; the period; and the
report reading the state alone."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from connector.detection.process_state import ReviewCounts
from connector.detection.registry import MIRecord
from connector.job.store import StateStore
from connector.tools.charts import LIGHT, PALETTE, compact, nice_step, short_duration
from connector.tools.overview import Period, PeriodError, make_period, parse_bound
from connector.tools.overview_page import render_text
from connector.tools.report import collect, display_state, render_html, review_outcomes
from tests.report_numbers import mismatches, numbers_of
from tests.report_story import PROCESS, Incident, Story, run_story

MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return run_story(tmp_path_factory.mktemp("story") / "state.sqlite")


def report(story: Story, period: Period | None = None) -> dict[str, Any]:
    with StateStore(story.path, "servicenow") as store:
        return collect(store, PROCESS, story.now, period)


def majors(incidents: list[Incident]) -> list[Incident]:
    return [i for i in incidents if i.verdict not in ("rejected", "canceled")]


def test_declarations_and_major_incidents_per_month_are_those_of_the_story(story: Story) -> None:
    months = report(story)["overview"]["months"]
    assert [m["month"] for m in months] == MONTHS, "April had none and is still a month of the trend"
    declared = Counter(i.month for i in story.incidents)
    kept = Counter(i.month for i in majors(story.incidents))
    assert [(m["declarations"], m["major_incidents"], m["rejected"]) for m in months] == [
        (declared[m], kept[m], declared[m] - kept[m]) for m in MONTHS]
    assert [m["declarations"] for m in months] == [2, 2, 2, 0, 3, 2]


def test_median_times_per_month_are_those_of_the_story(story: Story) -> None:
    months = {m["month"]: m for m in report(story)["overview"]["months"]}
    for month in MONTHS:
        mine = [i for i in majors(story.incidents) if i.month == month]
        identify = [i.identify_s for i in mine]
        resolve = [i.resolve_s for i in mine if i.resolve_s is not None]
        assert months[month]["time_to_identify_median_s"] == (median(identify) if identify else None), month
        assert months[month]["time_to_resolve_median_s"] == (median(resolve) if resolve else None), month
        assert months[month]["time_to_contain_median_s"] == (0.0 if mine else None), "team and manager at once"
    assert months["2026-02"]["time_to_identify_median_s"] == 480.0, "8 callers a minute apart, declared at the 8th"


def test_costs_per_month_and_by_service_are_impact_hours_times_the_cost_per_hour(story: Story) -> None:
    overview = report(story)["overview"]
    for row in overview["months"]:
        expected = sum(i.cost or 0 for i in majors(story.incidents) if i.month == row["month"])
        assert row["estimated_cost"] == pytest.approx(expected, abs=0.02), row["month"]
    assert overview["months"][5]["estimated_cost_ongoing"] is True, "the hr-portal proposal is still open"
    by_service: dict[str, float] = {}
    for incident in majors(story.incidents):
        by_service[incident.service] = by_service.get(incident.service, 0.0) + (incident.cost or 0)
    ranked = sorted(by_service.items(), key=lambda item: -item[1])
    assert [(s["service"], pytest.approx(s["estimated_cost"], abs=0.02)) for s in overview["cost_by_service"]] == ranked
    assert overview["cost_by_service"][1] == {"service": "web-shop", "estimated_cost": pytest.approx(
        ((2 * 3600 + 6 * 60) + (3600 + 7 * 60)) / 3600 * 250_000, abs=0.02), "major_incidents": 2}, \
        "first ticket to resolved: 2h 06m in January, 1h 07m in June, at 250,000 USD an hour"
    assert overview["totals"]["estimated_cost"] == pytest.approx(sum(by_service.values()), abs=0.05)


def test_rule_precision_is_measured_from_the_verdicts_people_gave(story: Story) -> None:
    rules = {r["rule"]: r for r in report(story)["overview"]["rules"]}
    for rule in ("service-surge", "ci-surge"):
        mine = [i for i in story.incidents if i.rule == rule]
        verdicts = Counter(i.verdict for i in mine)
        row = rules[rule]
        assert (row["proposals"], row["accepted"], row["rejected"], row["open"]) == (
            len(mine), verdicts["accepted"], verdicts["rejected"], verdicts[None]), rule
        assert row["precision"] == pytest.approx(verdicts["accepted"] / (verdicts["accepted"] + verdicts["rejected"]),
                                                 abs=1e-4)
    assert rules["ci-surge"]["mostly_rejected"] is True and rules["service-surge"]["mostly_rejected"] is False
    assert (rules["p1-critical"]["proposals"], rules["p1-critical"]["canceled"]) == (0, 1), "declared outright, one canceled"
    assert rules["service-surge"]["time_to_decide_median_s"] == 600.0
    assert report(story)["overview"]["mostly_rejected"] == ["ci-surge"]


def test_every_decision_is_recorded_with_its_time_and_rule(story: Story) -> None:
    by_id = {mi["id"]: mi for mi in report(story)["major_incidents"]}
    for incident in story.incidents:
        mi = by_id[incident.id]
        assert mi["verdict"] == incident.verdict, incident.service
        if incident.verdict is None:
            assert mi["decisions"] == [] and mi["decided_at"] is None
            continue
        assert incident.declared_at is not None
        decided = incident.declared_at + incident.decide_after
        assert [(d["verdict"], d["rule"], d["at"]) for d in mi["decisions"]] == [
            (incident.verdict, incident.rule, decided.isoformat())]
        assert datetime.fromisoformat(mi["decisions"][0]["seen_at"]) - decided == timedelta(minutes=1), "next cycle"


def _review_outcomes(incident: Incident) -> Counter[str]:
    out: Counter[str] = Counter()
    for after in incident.tasks_done_after:
        if after is None:
            out["open_overdue"] += 1  # due within three weeks of June 2nd; the report is made on June 30th
        else:
            out["on_time" if after <= timedelta(days=2) else "late"] += 1
    return out


def test_review_tasks_are_on_time_late_or_overdue_as_the_story_closed_them(story: Story) -> None:
    months = {m["month"]: m for m in report(story)["overview"]["months"]}
    for month in MONTHS:
        expected: Counter[str] = Counter()
        for incident in story.incidents:
            if incident.month == month:
                expected += _review_outcomes(incident)
        got = {k: months[month][f"review_tasks_{k}"] for k in ("on_time", "late", "open_overdue", "open", "undated")}
        assert got == {k: expected[k] for k in got}, month
    assert months["2026-02"]["review_tasks_late"] == 3, "closed a month after the payments outage"


@pytest.mark.parametrize(("done", "total", "planned_days", "expected"), [
    (1, 3, [3, 5, 10], {"undated": 1, "open_overdue": 1, "open": 1}),
    (3, 3, [3, 5, 10], {"undated": 3}),
    (0, 3, [], {"undated": 3}),
    (1, 4, [3, 5], {"undated": 2, "open_overdue": 2}),
], ids=["one-done", "all-done", "no-due-dates", "more-tasks-than-due-dates"])
def test_review_tasks_of_a_record_kept_before_they_were_read_one_by_one(
        done: int, total: int, planned_days: list[int], expected: dict[str, int]) -> None:
    resolved = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    record = MIRecord(id="m", rule="service-surge", group=["vpn"], started_at=resolved, declared_at=resolved)
    record.followup.review_tasks = ReviewCounts(done=done, total=total)
    planned = [resolved + timedelta(days=d) for d in planned_days]
    counts = review_outcomes(record, {}, planned, resolved + timedelta(days=7))
    assert {k: v for k, v in counts.items() if v} == expected, "done: time unknown; open: the latest due dates"


def test_since_and_until_choose_the_period(story: Story) -> None:
    data = report(story, make_period("2026-02", "2026-03"))
    assert [m["month"] for m in data["overview"]["months"]] == ["2026-02", "2026-03"]
    assert {mi["id"] for mi in data["major_incidents"]} == {i.id for i in story.incidents if i.month in ("2026-02", "2026-03")}
    assert data["period"] == {"since": "2026-02-01T00:00:00+00:00", "until": "2026-04-01T00:00:00+00:00"}
    assert data["overview"]["totals"]["declarations_per_month"] == 2.0
    quiet = report(story, make_period("2026-04-01", "2026-04-30"))
    assert quiet["major_incidents"] == [] and [m["month"] for m in quiet["overview"]["months"]] == ["2026-04"]


@pytest.mark.parametrize(("text", "end", "expected"), [
    ("2026-03", False, datetime(2026, 3, 1, tzinfo=timezone.utc)),
    ("2026-03", True, datetime(2026, 4, 1, tzinfo=timezone.utc)),
    ("2026-12", True, datetime(2027, 1, 1, tzinfo=timezone.utc)),
    ("2026-03-31", True, datetime(2026, 4, 1, tzinfo=timezone.utc)),
    ("2026-03-31", False, datetime(2026, 3, 31, tzinfo=timezone.utc)),
    ("2026-03-31T18:00:00+02:00", True, datetime(2026, 3, 31, 16, tzinfo=timezone.utc)),
    ("2026-03-31T18:00", False, datetime(2026, 3, 31, 18, tzinfo=timezone.utc)),
], ids=["month", "month-end", "december-end", "day-end", "day", "time-with-offset", "naive-time-is-utc"])
def test_period_bounds(text: str, end: bool, expected: datetime) -> None:
    assert parse_bound(text, end) == expected


def test_a_period_that_is_not_one_is_refused() -> None:
    with pytest.raises(PeriodError, match="not a month"):
        make_period("March", None)
    with pytest.raises(PeriodError, match="not after"):
        make_period("2026-04", "2026-03")


def test_the_page_shows_the_numbers_of_the_json(story: Story) -> None:
    data = report(story)
    problems, checked = mismatches(render_html(data, story.now), json.loads(json.dumps(data)))
    assert problems == []
    paths = {path for _, path, _, _ in numbers_of(render_html(data, story.now))}
    for needed in ("overview.totals.declarations", "overview.months.4.declarations",
                   "overview.months.0.time_to_resolve_median_s", "overview.months.5.estimated_cost",
                   "overview.cost_by_service.0.estimated_cost", "overview.children.0.children",
                   "overview.rules.1.accepted", "overview.rules.1.rejected", "overview.rules.1.precision",
                   "overview.months.1.review_tasks_late"):
        assert needed in paths, needed
    assert checked > 150


def test_a_number_that_differs_from_the_json_is_caught(story: Story) -> None:
    data = report(story)
    html = render_html(data, story.now)
    wrong = json.loads(json.dumps(data))
    wrong["overview"]["rules"][1]["rejected"] += 1
    problems, _ = mismatches(html, wrong)
    assert any("overview.rules.1.rejected" in p for p in problems)


def test_the_rule_whose_proposals_are_mostly_rejected_stands_out(story: Story) -> None:
    html = render_html(report(story), story.now)
    assert '<p class="alert" role="note"><strong>Mostly rejected:</strong> ci-surge' in html
    assert '<tr class="warn"><th scope="row">ci-surge <span class="flag">mostly rejected</span>' in html
    assert '<tr class="warn"><th scope="row">service-surge' not in html


def test_every_chart_has_a_title_a_description_and_data(story: Story) -> None:
    html = render_html(report(story), story.now)
    charts = html.count('<figure class="chart" id="chart-')
    assert charts == 7 and 'data-empty="true"' not in html
    assert html.count("role=\"img\" aria-labelledby=\"chart-") == 7
    assert html.index('class="overview"') < html.index('class="major-incident"'), "the overview comes first"


def test_the_terminal_overview_lists_months_and_rules(story: Story) -> None:
    text = render_text(report(story))
    lines = text.splitlines()
    assert lines[0] == "period: 2026-01 to 2026-06 (6 months)"
    assert any(line.startswith("2026-04  0 ") for line in lines)
    assert any(line.startswith("ci-surge") and line.endswith("33%        MOSTLY REJECTED") for line in lines)


def test_mim_report_reads_the_state_alone(story: Story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"MIM_STATE": str(story.path), "MIM_PLATFORM": None, "MIM_CONFIG": None}
    runner = CliRunner()
    table = runner.invoke(main, ["report", "--since", "2026-05"], env=env)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0] == f"state {story.path} (servicenow), 5 major incidents"
    out = tmp_path / "r.html"
    both = runner.invoke(main, ["report", "--json", "--html", str(out)], env=env)
    assert both.exit_code == 0, both.output
    data = json.loads(both.output)
    assert data["state"] == str(story.path) and data["platform"] == "servicenow"
    problems, _ = mismatches(out.read_text(encoding="utf-8"), data)
    assert problems == [], "one run: the page and the JSON of the same moment"
    bad = runner.invoke(main, ["report", "--since", "last week"], env=env)
    assert bad.exit_code == 2 and "not a month" in bad.output


def test_mim_report_finds_the_platform_of_the_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "jira.sqlite"
    moment = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    with StateStore(state, "jira") as store:
        store.save_major_incident(MIRecord(id="10001", rule="service-surge", group=["web-shop"], started_at=moment,
                                           declared_at=moment, key="ITSM-1"))
    env = {"MIM_STATE": str(state), "MIM_PLATFORM": None, "MIM_CONFIG": None}
    result = CliRunner().invoke(main, ["report", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["platform"] == "jira"
    with StateStore(state, "servicenow") as store:
        store.save_major_incident(MIRecord(id="x", rule="p1-critical", group=["vpn"], started_at=moment,
                                           declared_at=moment))
    both = CliRunner().invoke(main, ["report"], env=env)
    assert both.exit_code == 3 and "set MIM_PLATFORM" in both.output
    chosen = CliRunner().invoke(main, ["report", "--json"], env={**env, "MIM_PLATFORM": "servicenow"})
    assert json.loads(chosen.output)["major_incidents"][0]["id"] == "x"


def test_a_file_that_is_not_a_state_is_one_error_with_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a database\n" * 100, encoding="utf-8")
    result = CliRunner().invoke(main, ["report"], env={"MIM_STATE": "notes.txt", "MIM_PLATFORM": None})
    assert result.exit_code == 3 and "notes.txt is not a usable mim state" in result.output and "Fix: " in result.output
    assert "Traceback" not in result.output and (tmp_path / "notes.txt").read_text().startswith("not a database")


def test_a_state_url_is_shown_without_its_password() -> None:
    assert display_state("postgresql://mim:s3cret@db.example:5432/mim") == "postgresql://mim:***@db.example:5432/mim"
    assert "s3cret" not in display_state("postgresql://db.example/mim?password=s3cret")
    assert display_state("/var/lib/mim/state.sqlite") == "/var/lib/mim/state.sqlite"


@pytest.mark.parametrize(("amount", "text"), [(0, "0"), (950, "950"), (1000, "1k"), (12_500, "12.5k"),
                                              (100_000, "100k"), (2_293_333, "2.29M"), (1.1e9, "1.1B")])
def test_compact_amounts(amount: float, text: str) -> None:
    assert compact(amount) == text


def test_axis_steps_and_durations() -> None:
    assert [nice_step(s) for s in (3, 10, 389_167, 0)] == [1.0, 2.0, 100_000.0, 1.0]
    assert [short_duration(s) for s in (0, 45, 900, 5400, 21600, 172800)] == ["0", "45s", "15m", "1h 30m", "6h", "2d"]


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("name", sorted(PALETTE))
def test_a_number_written_on_a_bar_has_aa_contrast(name: str) -> None:
    text = "#111111" if name in LIGHT else "#ffffff"  # svg .value / .value.on-dark
    light, dark = sorted((_luminance(PALETTE[name]), _luminance(text)), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= 4.5, f"{text} on {name} {PALETTE[name]}"
