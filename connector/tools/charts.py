"""Charts of ``mim report``'s overview as inline SVG: columns (stacked or not) per month, small multiples of
lines, horizontal bars. No script and no external asset, so the page prints and opens anywhere.

Every chart is a ``<figure class="chart">`` whose ``<svg role="img">`` has a ``<title>`` and a ``<desc>`` that
says every number in words (what a screen reader reads), and a visible caption. Every number drawn carries
its raw value (``data-value``) and where the ``--json`` output holds it (``data-json``, a dotted path such as
``overview.months.2.major_incidents``), so a test can hold the page to the JSON. Colours are the Okabe-Ito
palette (safe for colour-blind readers), and every series is also named by a legend and by the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Callable, Sequence

WIDTH = 960
PALETTE = {"blue": "#0072B2", "orange": "#E69F00", "vermillion": "#D55E00", "green": "#009E73",
           "sky": "#56B4E9", "grey": "#999999", "purple": "#CC79A7", "yellow": "#F0E442"}
LIGHT = frozenset({"orange", "sky", "grey", "yellow", "green", "vermillion", "purple"})
"""Colours on which dark text has the better contrast (at least 4.5:1, WCAG AA); white text goes on blue only."""

CSS = """
figure.chart{margin:1.2rem 0 1.8rem;break-inside:avoid;page-break-inside:avoid}
figure.chart figcaption{font-weight:600;margin:0 0 .3rem}
figure.chart svg{width:100%;height:auto;background:#fff;border:1px solid #e5e5e5}
figure.chart .note{color:#555;font-size:.85rem;margin:.2rem 0 0}
svg .grid{stroke:#e3e3e3}svg .axis{stroke:#777}svg .tick{fill:#555;font-size:12px}
svg .cat{fill:#333;font-size:12px}svg .legend{fill:#222;font-size:12px}
svg .value{font-size:12px;fill:#111;font-variant-numeric:tabular-nums}
svg .value.on-dark{fill:#fff}svg .panel-title{font-size:13px;font-weight:600;fill:#222}
svg .warn{fill:#b03a00;font-weight:700}svg .line{fill:none;stroke-width:2.5}
""" + "".join(f"svg .s-{name}{{fill:{colour}}}svg .l-{name}{{stroke:{colour}}}" for name, colour in PALETTE.items())


@dataclass(frozen=True)
class Value:
    """A number on a chart: its raw value, where the report's JSON holds it, and how it reads."""

    value: float | None
    path: str
    text: str

    def attrs(self) -> str:
        """The ``data-json``/``data-value`` attributes that tie the mark to the JSON."""
        raw = "" if self.value is None else repr(float(self.value))
        return f'data-json="{escape(self.path)}" data-value="{raw}"'


@dataclass(frozen=True)
class Series:
    """One named series: a colour (a :data:`PALETTE` name) and one value per category."""

    name: str
    colour: str
    values: Sequence[Value]


@dataclass
class _Svg:
    ident: str
    title: str
    desc: str
    height: int
    parts: list[str] = field(default_factory=list)

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {self.height}" role="img" '
                f'aria-labelledby="{self.ident}-title {self.ident}-desc" data-chart="{self.ident}">'
                f'<title id="{self.ident}-title">{escape(self.title)}</title>'
                f'<desc id="{self.ident}-desc">{escape(self.desc)}</desc>{"".join(self.parts)}</svg>')


def figure(ident: str, title: str, svg: str, note: str = "", note_html: str = "") -> str:
    """A chart in its figure, with its visible caption (and a note under it: text, or HTML already escaped)."""
    extra = f'<p class="note">{escape(note) if note else note_html}</p>' if note or note_html else ""
    return (f'<figure class="chart" id="{ident}" aria-labelledby="{ident}-caption">'
            f'<figcaption id="{ident}-caption">{escape(title)}</figcaption>{svg}{extra}</figure>')


def empty(ident: str, title: str, why: str) -> str:
    """The place of a chart that has nothing to draw in the period, saying so."""
    return (f'<figure class="chart empty" id="{ident}" data-empty="true"><figcaption>{escape(title)}</figcaption>'
            f'<p class="note">{escape(why)}</p></figure>')


def nice_step(span: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``ticks`` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


DURATION_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 432000, 604800,
                  1209600, 2592000)


def duration_step(span: float, ticks: int = 4) -> float:
    """A round step of time (a minute .. 30 days) that cuts ``span`` seconds into about ``ticks`` parts."""
    for step in DURATION_STEPS:
        if span / step <= ticks:
            return float(step)
    return nice_step(span, ticks)


def compact(amount: float) -> str:
    """``950``, ``12.5k``, ``2.29M``, ``1.1B``: three significant digits at most."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= size:
            value = amount / size
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
            text = f"{value:.{digits}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + unit
    return f"{amount:.0f}"


def _category_label(text: str, x: float, y: float) -> str:
    return f'<text class="cat" x="{x:.1f}" y="{y}" text-anchor="middle">{escape(text)}</text>'


def _legend(series: Sequence[Series], y: int = 16) -> str:
    parts, x = [], 70.0
    for s in series:
        parts.append(f'<rect class="s-{s.colour}" x="{x:.0f}" y="{y - 10}" width="12" height="12"/>'
                     f'<text class="legend" x="{x + 17:.0f}" y="{y}">{escape(s.name)}</text>')
        x += 30 + 7.2 * len(s.name)
    return "".join(parts)


def _y_axis(top: float, bottom: float, left: float, right: float, maximum: float, step: float,
            fmt: Callable[[float], str]) -> tuple[list[str], float]:
    """Grid lines and tick labels; returns them and the scale's top value."""
    top_value = max(step, math.ceil(maximum / step) * step)
    parts, tick = [], 0.0
    while tick <= top_value + step / 1000:
        y = bottom - (bottom - top) * tick / top_value
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
        tick += step
    parts.append(f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>')
    return parts, top_value


def columns(ident: str, title: str, categories: Sequence[str], series: Sequence[Series],
            axis: Callable[[float], str], totals: Sequence[Value] | None = None, desc_unit: str = "",
            step: Callable[[float], float] = nice_step, integer: bool = False) -> str:
    """Columns per category, the series stacked; each segment labelled with its value where it fits, the total
    (``totals``, else the one series' value) above the column."""
    height, left, right, top, bottom = 300, 70, WIDTH - 20, 34, 250
    sums = [sum(s.values[i].value or 0 for s in series) for i in range(len(categories))]
    maximum = max(sums) if sums else 0
    svg = _Svg(ident, title, _describe(categories, series, totals, desc_unit), height)
    stride = step(maximum) if not integer else max(1.0, math.ceil(nice_step(maximum)))
    grid, top_value = _y_axis(top, bottom, left, right, maximum, stride, axis)
    svg.parts += grid
    band = (right - left) / max(1, len(categories))
    width = min(60.0, band * 0.62)
    label_every = max(1, math.ceil(46 / band))
    for i, category in enumerate(categories):
        x = left + band * i + (band - width) / 2
        y = float(bottom)
        for s in series:
            mark = s.values[i]
            amount = mark.value or 0
            h = (bottom - top) * amount / top_value if top_value else 0
            y -= h
            svg.parts.append(f'<rect class="s-{s.colour}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                             f'{mark.attrs()}><title>{escape(category)}: {escape(s.name)} {escape(mark.text)}</title></rect>')
            if len(series) > 1 and amount and h >= 16 and width >= 22:
                tone = "" if s.colour in LIGHT else " on-dark"
                svg.parts.append(f'<text class="value{tone}" x="{x + width / 2:.1f}" y="{y + h / 2 + 4:.1f}" '
                                 f'text-anchor="middle" {mark.attrs()}>{escape(mark.text)}</text>')
        total = totals[i] if totals is not None else (series[0].values[i] if len(series) == 1 else None)
        if total is not None and width >= 22:
            svg.parts.append(f'<text class="value" x="{x + width / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" '
                             f'{total.attrs()}>{escape(total.text)}</text>')
        if i % label_every == 0:
            svg.parts.append(_category_label(month_label(category), x + width / 2, bottom + 18))
            if i == 0 or category[:4] != categories[i - label_every][:4]:
                svg.parts.append(_category_label(category[:4], x + width / 2, bottom + 33))
    if len(series) > 1:
        svg.parts.append(_legend(series))
    return svg.render()


def month_label(month: str) -> str:
    """``2026-03`` -> ``Mar``; anything else as it is."""
    names = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    if len(month) == 7 and month[4] == "-" and month[5:].isdigit() and 1 <= int(month[5:]) <= 12:
        return names[int(month[5:]) - 1]
    return month


def panels(ident: str, title: str, categories: Sequence[str], lines: Sequence[Series],
           axis: Callable[[float], str]) -> str:
    """Small multiples: one line panel per series, stacked, each on its own scale (times to identify and to
    resolve differ by orders of magnitude); a month without a value is a gap, every point labelled where the
    months leave room."""
    panel, left, right = 150, 80, WIDTH - 20
    height = panel * len(lines) + 10
    svg = _Svg(ident, title, _describe(categories, lines, None, ""), height)
    band = (right - left) / max(1, len(categories))
    every = max(1, math.ceil(46 / band))
    for n, s in enumerate(lines):
        top, bottom = n * panel + 34, n * panel + 112
        values = [v.value for v in s.values if v.value is not None]
        maximum = max(values) if values else 0
        svg.parts.append(f'<rect class="s-{s.colour}" x="{left}" y="{top - 20}" width="14" height="4"/>'
                         f'<text class="panel-title" x="{left + 20}" y="{top - 14}">{escape(s.name)}</text>')
        grid, top_value = _y_axis(top, bottom, left, right, maximum, duration_step(maximum, 2), axis)
        svg.parts += grid
        run: list[str] = []
        for i, mark in enumerate([*s.values, None]):
            if mark is None or mark.value is None:
                if len(run) > 1:
                    svg.parts.append(f'<polyline class="line l-{s.colour}" points="{" ".join(run)}"/>')
                run = []
                continue
            x = left + band * (i + 0.5)
            y = bottom - (bottom - top) * mark.value / top_value
            run.append(f"{x:.1f},{y:.1f}")
            svg.parts.append(f'<circle class="s-{s.colour}" cx="{x:.1f}" cy="{y:.1f}" r="4" {mark.attrs()}>'
                             f'<title>{escape(s.name)}, {escape(categories[i])}: {escape(mark.text)}</title></circle>')
            if band >= 56:
                svg.parts.append(f'<text class="value" x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle" '
                                 f'{mark.attrs()}>{escape(mark.text)}</text>')
        for i, category in enumerate(categories):
            if i % every == 0:
                x = left + band * (i + 0.5)
                year = i == 0 or category[:4] != categories[i - every][:4]
                text = month_label(category) + (f" {category[:4]}" if year else "")
                svg.parts.append(_category_label(text, x, bottom + 16))
        if not values:
            svg.parts.append(f'<text class="tick" x="{(left + right) / 2:.0f}" y="{(top + bottom) / 2:.0f}" '
                             f'text-anchor="middle">no value in this period</text>')
    return svg.render()


def short_duration(seconds: float) -> str:
    """An axis tick of time: ``0``, ``45s``, ``15m``, ``1h 30m``, ``6h``, ``2d``."""
    total = int(round(seconds))
    if total == 0:
        return "0"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return " ".join(p for p in parts if p)


def _category_of(categories: Sequence[str], s: Series, mark: Value) -> str:
    for i, v in enumerate(s.values):
        if v is mark:
            return categories[i]
    return ""


def bars(ident: str, title: str, labels: Sequence[str], series: Sequence[Series], axis: Callable[[float], str],
         notes: Sequence[str] | None = None, warn: Sequence[bool] | None = None,
         totals: Sequence[Value] | None = None, desc_unit: str = "", integer: bool = False) -> str:
    """Horizontal bars, one row per label, the series stacked; the row's value (``totals``, else the one
    series' value) after the bar, then its note (``notes``); rows flagged in ``warn`` are drawn in bold
    vermillion text so they stand out without relying on colour alone."""
    row, left, right, top = 28, 230, WIDTH - 240, 34 if len(series) > 1 else 14
    height = top + row * len(labels) + 34
    sums = [sum(s.values[i].value or 0 for s in series) for i in range(len(labels))]
    maximum = max(sums) if sums else 0
    svg = _Svg(ident, title, _describe(labels, series, totals, desc_unit, notes), height)
    step = nice_step(maximum, 4) if not integer else max(1.0, math.ceil(nice_step(maximum, 4)))
    top_value = max(step, math.ceil(maximum / step) * step)
    bottom = top + row * len(labels)
    tick = 0.0
    while tick <= top_value + step / 1000:
        x = left + (right - left) * tick / top_value
        svg.parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>'
                         f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(axis(tick))}</text>')
        tick += step
    for i, label in enumerate(labels):
        y = top + row * i + 5
        flagged = bool(warn and warn[i])
        shown = label if len(label) <= 30 else label[:29] + "…"
        svg.parts.append(f'<text class="cat{" warn" if flagged else ""}" x="{left - 8}" y="{y + 13}" text-anchor="end">'
                         f'{escape(shown)}<title>{escape(label)}</title></text>')
        x = float(left)
        for s in series:
            mark = s.values[i]
            w = (right - left) * (mark.value or 0) / top_value
            svg.parts.append(f'<rect class="s-{s.colour}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" '
                             f'{mark.attrs()}><title>{escape(label)}: {escape(s.name)} {escape(mark.text)}</title></rect>')
            if len(series) > 1 and mark.value and w >= 24:
                tone = "" if s.colour in LIGHT else " on-dark"
                svg.parts.append(f'<text class="value{tone}" x="{x + w / 2:.1f}" y="{y + 13}" text-anchor="middle" '
                                 f'{mark.attrs()}>{escape(mark.text)}</text>')
            x += w
        total = totals[i] if totals is not None else (series[0].values[i] if len(series) == 1 else None)
        after = x + 6
        if total is not None:
            svg.parts.append(f'<text class="value" x="{after:.1f}" y="{y + 13}" {total.attrs()}>{escape(total.text)}</text>')
            after += 8 + 7 * len(total.text)
        if notes and notes[i]:
            svg.parts.append(f'<text class="value{" warn" if flagged else ""}" x="{max(after, right + 10):.1f}" '
                             f'y="{y + 13}">{escape(notes[i])}</text>')
    svg.parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>')
    if len(series) > 1:
        svg.parts.append(_legend(series))
    return svg.render()


def _describe(categories: Sequence[str], series: Sequence[Series], totals: Sequence[Value] | None, unit: str,
              notes: Sequence[str] | None = None) -> str:
    """Every number of the chart in words, category by category (what a screen reader reads)."""
    parts = []
    for i, category in enumerate(categories):
        values = ", ".join(f"{s.name} {s.values[i].text}" for s in series if s.values[i].value is not None)
        total = f" (total {totals[i].text}{unit})" if totals is not None and len(series) > 1 else ""
        note = f"; {notes[i]}" if notes and notes[i] else ""
        parts.append(f"{category}: {values or 'none'}{total}{note}")
    return "; ".join(parts) + "."


__all__ = ["Value", "Series", "figure", "empty", "columns", "panels", "bars", "nice_step", "duration_step",
           "compact", "month_label", "short_duration", "CSS", "PALETTE"]
