"""The report as a person sees it: ``mim report --json --html`` rendered by headless Chromium (Debian's
``chromium``, driven over the DevTools pipe: tests/browser.py), with no console error, no request for anything
outside the page, every chart drawn with data, a title and a description, every number as displayed equal to
the JSON of the same run, and the page printable. Skips, saying why, where Chromium cannot be had."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from cli import main
from connector.tools.demo import run_demo
from tests.browser import Browser, BrowserError, Page
from tests.report_numbers import TEXT_TAGS, at_path, check_number
from tests.report_story import Story, run_story

CHARTS = ["chart-incidents", "chart-medians", "chart-cost-month", "chart-cost-service", "chart-children",
          "chart-precision", "chart-reviews"]

CHART_FACTS = """JSON.stringify([...document.querySelectorAll('figure.chart')].map(f => {
  const svg = f.querySelector('svg');
  const ids = svg ? (svg.getAttribute('aria-labelledby') || '').split(' ') : [];
  return {id: f.id, empty: f.dataset.empty === 'true', caption: (f.querySelector('figcaption') || {}).textContent,
          role: svg && svg.getAttribute('role'),
          named: ids.map(i => (document.getElementById(i) || {}).textContent || ''),
          title: svg && (svg.querySelector(':scope > title') || {}).textContent,
          marks: svg ? [...svg.querySelectorAll('[data-value]')].filter(m => parseFloat(m.dataset.value) > 0).length : 0,
          height: svg ? svg.getBoundingClientRect().height : 0};
}))"""

NUMBERS = """JSON.stringify([...document.querySelectorAll('[data-json]')].map(e => {
  const own = [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
  const box = e.getBoundingClientRect();
  return [e.tagName.toLowerCase(), e.dataset.json, e.dataset.value, own, box.width > 0 && box.height > 0];
}))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        started = Browser.start()
    except BrowserError as exc:
        pytest.skip(f"headless Chromium cannot be had here: {exc}")
    with started:
        yield started


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    return run_story(tmp_path_factory.mktemp("story") / "state.sqlite")


def render(state: Path, out: Path, *args: str) -> dict[str, Any]:
    """``mim report --json --html out`` on ``state`` with no platform settings: the JSON, the page written."""
    env = {"MIM_STATE": str(state), "MIM_PLATFORM": None, "MIM_CONFIG": None}
    result = CliRunner().invoke(main, ["report", "--json", "--html", str(out), *args], env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def open_page(browser: Browser, path: Path) -> Page:
    page = browser.open(path.resolve().as_uri(), width=1200, height=900)
    assert page.errors == [], "no console error"
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0, "nothing loaded from outside"
    return page


def charts_of(page: Page) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = json.loads(page.evaluate(CHART_FACTS))
    return facts


def assert_charts_drawn(page: Page) -> None:
    charts = charts_of(page)
    assert [c["id"] for c in charts] == CHARTS
    for chart in charts:
        assert not chart["empty"], chart["id"]
        assert chart["role"] == "img" and chart["caption"] and chart["title"] == chart["caption"], chart["id"]
        assert len(chart["named"]) == 2 and all(len(text) > 10 for text in chart["named"]), "title and description"
        assert chart["marks"] > 0, f"{chart['id']} draws no data"
        assert chart["height"] > 80, f"{chart['id']} is not drawn"


def test_the_overview_renders_with_every_chart_drawn_and_titled(browser: Browser, story: Story, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    render(story.path, out)
    page = open_page(browser, out)
    assert_charts_drawn(page)
    assert page.evaluate("document.querySelector('section.overview').compareDocumentPosition("
                         "document.querySelector('section.major-incident')) & Node.DOCUMENT_POSITION_FOLLOWING") != 0


def test_the_numbers_as_displayed_equal_the_json(browser: Browser, story: Story, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    data = render(story.path, out)
    page = open_page(browser, out)
    numbers = json.loads(page.evaluate(NUMBERS))
    problems = []
    for tag, path, raw, text, shown in numbers:
        if tag in TEXT_TAGS and not shown:
            problems.append(f"{path} is not visible")
        problems.append(check_number(path, raw, text if tag in TEXT_TAGS else None, at_path(data, path)))
    assert [p for p in problems if p] == []
    read = {path for tag, path, _, _, _ in numbers if tag in TEXT_TAGS}
    for key in ("overview.totals.major_incidents", "overview.months.1.time_to_identify_median_s",
                "overview.months.5.estimated_cost", "overview.cost_by_service.0.estimated_cost",
                "overview.rules.1.accepted", "overview.rules.1.rejected", "overview.rules.1.precision",
                "overview.months.1.review_tasks_late"):
        assert key in read, f"{key} is not shown as text"


def test_the_mostly_rejected_rule_stands_out_on_the_page(browser: Browser, story: Story, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    render(story.path, out)
    page = open_page(browser, out)
    flagged = page.evaluate("[...document.querySelectorAll('table.rules tr.warn th')].map(t => t.textContent)")
    assert flagged == ["ci-surge mostly rejected"]
    weight = page.evaluate("getComputedStyle(document.querySelector('#chart-precision text.cat.warn')).fontWeight")
    assert int(weight) >= 700, "bold, not colour alone"


def test_the_period_chooses_what_the_page_shows(browser: Browser, story: Story, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    data = render(story.path, out, "--since", "2026-05", "--until", "2026-05")
    page = open_page(browser, out)
    assert page.evaluate("document.querySelectorAll('section.major-incident').length") == len(data["major_incidents"]) == 3
    assert page.evaluate("document.querySelector('#chart-incidents desc').textContent").startswith(
        "2026-05: major incidents 1, rejected or canceled by a person 2")


def test_the_page_prints(browser: Browser, story: Story, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    render(story.path, out)
    page = open_page(browser, out)
    page.send("Emulation.setEmulatedMedia", media="print")
    assert all(chart["height"] > 80 for chart in charts_of(page)), "every chart still drawn in print"
    pdf = base64.b64decode(page.send("Page.printToPDF", printBackground=True)["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000


def test_the_demo_report_renders_with_every_chart_drawn(browser: Browser, tmp_path: Path) -> None:
    state = tmp_path / "demo.sqlite"
    result = run_demo("servicenow", echo=lambda line: None, state=state)
    assert result.state == state
    out = tmp_path / "demo.html"
    data = render(state, out)
    assert [(r["rule"], r["accepted"], r["rejected"]) for r in data["overview"]["rules"]] == [("service-surge", 1, 1)]
    assert_charts_drawn(open_page(browser, out))
