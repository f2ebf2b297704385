"""The overview of ``mim report`` as the page and the terminal show it: key figures, then the charts
(:mod:`connector.tools.charts`) of the figures :func:`connector.tools.overview.build_overview` computed, and the
rule precision table; :func:`render_text` is the same in a terminal. Every number comes from the report's JSON
and says where (``data-json``)."""

from __future__ import annotations

from html import escape
from typing import Any, Callable, Mapping, Sequence

from connector.process.metrics import human_duration, money
from connector.tools.charts import Series, Value, bars, columns, compact, empty, figure, panels, short_duration
from connector.tools.overview import median_name

PER_INCIDENT_LIMIT = 25
"""Up to this many major incidents, children are drawn per incident; beyond, as a histogram."""


def _count(value: Any) -> str:
    return "-" if value is None else str(int(value))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _val(data: Mapping[str, Any], path: str, key: str, fmt: Callable[[Any], str]) -> Value:
    raw = data.get(key)
    return Value(None if raw is None else float(raw), f"{path}.{key}", fmt(raw))


def _period_text(overview: Mapping[str, Any], period: Mapping[str, Any]) -> str:
    months = [m["month"] for m in overview["months"]]
    if not months:
        return "no major incidents in this period"
    span = months[0] if len(months) == 1 else f"{months[0]} to {months[-1]}"
    bounds = []
    if period.get("since"):
        bounds.append(f"declared from {period['since'][:16].replace('T', ' ')} UTC")
    if period.get("until"):
        bounds.append(f"before {period['until'][:16].replace('T', ' ')} UTC")
    return f"{span} ({len(months)} month{'s' if len(months) != 1 else ''}" + (
        f"; {', '.join(bounds)})" if bounds else ")")


def _figures(totals: Mapping[str, Any]) -> str:
    currency = str(totals.get("currency") or "")
    items = [("Declarations", "declarations", _count), ("Major incidents", "major_incidents", _count),
             ("Rejected or canceled by a person", "rejected", _count),
             ("Proposals still open", "proposals_open", _count),
             ("Median time to identify", "time_to_identify_median_s", human_duration),
             ("Median time to resolve", "time_to_resolve_median_s", human_duration),
             ("Estimated downtime cost", "estimated_cost", lambda v: money(v, currency)),
             ("Review tasks done late", "review_tasks_late", _count),
             ("Review tasks open past due", "review_tasks_open_overdue", _count)]
    cells = []
    for label, key, fmt in items:
        value = _val(totals, "overview.totals", key, fmt)
        cells.append(f'<div><dt>{escape(label)}</dt><dd {value.attrs()}>{escape(value.text)}</dd></div>')
    return f'<dl class="figures">{"".join(cells)}</dl>'


def _per_month(overview: Mapping[str, Any]) -> str:
    months = overview["months"]
    title = "Major incidents per month"
    if not any(m["declarations"] for m in months):
        return empty("chart-incidents", title, "No declarations in this period.")
    cats = [m["month"] for m in months]
    path = "overview.months"
    series = [Series("major incidents", "blue", [_val(m, f"{path}.{i}", "major_incidents", _count) for i, m in enumerate(months)]),
              Series("rejected or canceled by a person", "vermillion",
                     [_val(m, f"{path}.{i}", "rejected", _count) for i, m in enumerate(months)])]
    totals = [_val(m, f"{path}.{i}", "declarations", _count) for i, m in enumerate(months)]
    svg = columns("chart-incidents", title, cats, series, lambda v: f"{v:.0f}", totals=totals, integer=True)
    return figure("chart-incidents", title, svg, "Each column is a month's declarations (number on top): the major "
                  "incidents, and the declarations a person rejected or canceled.")


def _medians(overview: Mapping[str, Any]) -> str:
    months = overview["months"]
    title = "Median time to identify, contain and resolve per month"
    names = (("time_to_identify_s", "Time to identify", "orange"), ("time_to_contain_s", "Time to contain", "green"),
             ("time_to_resolve_s", "Time to resolve", "blue"))
    if not any(m.get(median_name(n)) is not None for m in months for n, _, _ in names):
        return empty("chart-medians", title, "No major incident in this period has these times yet.")
    lines = [Series(label, colour, [_val(m, f"overview.months.{i}", median_name(name), human_duration)
                                    for i, m in enumerate(months)]) for name, label, colour in names]
    svg = panels("chart-medians", title, [m["month"] for m in months], lines, short_duration)
    return figure("chart-medians", title, svg, "Identify: first ticket to declaration. Contain: declaration to team "
                  "and manager assigned. Resolve: declaration to resolved. Each panel has its own scale; a month "
                  "without a value is a gap.")


def _cost_per_month(overview: Mapping[str, Any], currency: str) -> str:
    months = overview["months"]
    title = f"Estimated downtime cost per month ({currency})"
    if not any(m["estimated_cost"] for m in months):
        return empty("chart-cost-month", title, "No estimated cost in this period.")
    values = [_val(m, f"overview.months.{i}", "estimated_cost", compact) for i, m in enumerate(months)]
    svg = columns("chart-cost-month", title, [m["month"] for m in months], [Series("estimated cost", "blue", values)],
                  compact, desc_unit=f" {currency}")
    ongoing = [m["month"] for m in months if m.get("estimated_cost_ongoing")]
    note = "Impact hours (first ticket to resolved) times the cost per hour of the service (process file `costs`)."
    if ongoing:
        note += f" Still growing: {', '.join(ongoing)} (incidents not yet resolved, counted up to the report's time)."
    return figure("chart-cost-month", title, svg, note)


def _cost_by_service(overview: Mapping[str, Any], currency: str) -> str:
    services = overview["cost_by_service"]
    other = overview["cost_other_services"]
    title = f"Estimated downtime cost by service{', top 10' if other['services'] else ''} ({currency})"
    if not any(s["estimated_cost"] for s in services):
        return empty("chart-cost-service", title, "No estimated cost in this period.")
    values = [_val(s, f"overview.cost_by_service.{i}", "estimated_cost", compact) for i, s in enumerate(services)]
    notes = [f"{s['major_incidents']} major incident{'s' if s['major_incidents'] != 1 else ''}" for s in services]
    svg = bars("chart-cost-service", title, [s["service"] for s in services], [Series("estimated cost", "blue", values)],
               compact, notes=notes, desc_unit=f" {currency}")
    if not other["services"]:
        return figure("chart-cost-service", title, svg)
    value = Value(float(other["estimated_cost"]), "overview.cost_other_services.estimated_cost",
                  money(other["estimated_cost"], currency))
    return figure("chart-cost-service", title, svg, note_html=f"{other['services']} other services: "
                  f"<span {value.attrs()}>{escape(value.text)}</span> in all.")


def _children(overview: Mapping[str, Any]) -> str:
    incidents = overview["children"]
    title = "Children per major incident"
    if not incidents:
        return empty("chart-children", title, "No major incidents in this period.")
    if len(incidents) <= PER_INCIDENT_LIMIT:
        values = [_val(c, f"overview.children.{i}", "children", _count) for i, c in enumerate(incidents)]
        labels = [f"{c['key']} ({str(c.get('declared_at') or '')[:10]})" for c in incidents]
        svg = bars("chart-children", title, labels, [Series("children", "sky", values)], lambda v: f"{v:.0f}",
                   integer=True)
        return figure("chart-children", title, svg, "Tickets linked to each major incident, in the order declared.")
    bins = overview["children_histogram"]
    values = [_val(b, f"overview.children_histogram.{i}", "major_incidents", _count) for i, b in enumerate(bins)]
    svg = columns("chart-children", title, [f"{b['children']} children" for b in bins],
                  [Series("major incidents", "sky", values)], lambda v: f"{v:.0f}", integer=True)
    return figure("chart-children", title, svg, f"How many of the {len(incidents)} major incidents had so many "
                  "linked tickets.")


def _precision(overview: Mapping[str, Any]) -> str:
    rules = overview["rules"]
    title = "Rule precision from human decisions"
    proposing = [(i, r) for i, r in enumerate(rules) if r["proposals"] or r["canceled"]]
    if not proposing:
        return empty("chart-precision", title, "No rule made a proposal in this period.") + _rule_table(rules)
    path = "overview.rules"
    series = [Series(name, colour, [_val(r, f"{path}.{i}", key, _count) for i, r in proposing])
              for key, name, colour in (("accepted", "accepted", "green"), ("rejected", "rejected by a person", "vermillion"),
                                        ("open", "still open", "grey"))]
    totals = [_val(r, f"{path}.{i}", "proposals", _count) for i, r in proposing]
    notes = []
    for _, r in proposing:
        note = f"precision {_share(r['precision'])}" if r["proposals"] else f"{r['canceled']} canceled (accept rule)"
        notes.append(note + (", mostly rejected" if r["mostly_rejected"] else ""))
    svg = bars("chart-precision", title, [r["rule"] for _, r in proposing], series, lambda v: f"{v:.0f}",
               notes=notes, warn=[r["mostly_rejected"] for _, r in proposing], totals=totals, integer=True)
    flagged = overview.get("mostly_rejected") or []
    alert = (f'<p class="alert" role="note"><strong>Mostly rejected:</strong> {escape(", ".join(flagged))}: people '
             "rejected most of these rules' proposals; review their thresholds (mim backtest --score).</p>"
             if flagged else "")
    return alert + figure("chart-precision", title, svg, "Per rule, its proposals (number after the bar): accepted "
                          "or rejected by a person on the platform, or still open. Precision = accepted / (accepted + "
                          "rejected).") + _rule_table(rules)


def _rule_table(rules: Sequence[Mapping[str, Any]]) -> str:
    columns_ = (("declarations", "declarations", _count), ("declarations_per_month", "per month", lambda v: "-" if v is None else f"{v:g}"),
                ("proposals", "proposals", _count), ("accepted", "accepted", _count), ("rejected", "rejected", _count),
                ("open", "still open", _count), ("precision", "precision", _share),
                ("canceled", "canceled (accept rules)", _count),
                ("time_to_decide_median_s", "median time to decide", human_duration))
    head = "".join(f'<th scope="col">{escape(label)}</th>' for _, label, _ in columns_)
    rows = []
    for i, rule in enumerate(rules):
        cells = []
        for key, _, fmt in columns_:
            value = _val(rule, f"overview.rules.{i}", key, fmt)
            cells.append(f'<td class="num" {value.attrs()}>{escape(value.text)}</td>')
        flag = ' <span class="flag">mostly rejected</span>' if rule["mostly_rejected"] else ""
        css = ' class="warn"' if rule["mostly_rejected"] else ""
        rows.append(f'<tr{css}><th scope="row">{escape(str(rule["rule"]))}{flag}</th>{"".join(cells)}</tr>')
    if not rows:
        return ""
    return (f'<table class="rules"><caption>Declarations and human decisions per rule</caption>'
            f'<thead><tr><th scope="col">rule</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _reviews(overview: Mapping[str, Any]) -> str:
    months = overview["months"]
    title = "Review tasks done on time vs late"
    kinds = (("on_time", "done on time", "green"), ("late", "done late", "vermillion"),
             ("open_overdue", "open past due", "orange"), ("open", "open, not yet due", "sky"),
             ("undated", "no due date or done time", "grey"))
    if not any(m[f"review_tasks_{k}"] for m in months for k, _, _ in kinds):
        return empty("chart-reviews", title, "No review tasks in this period.")
    shown = [k for k in kinds if k[0] in ("on_time", "late") or any(m[f"review_tasks_{k[0]}"] for m in months)]
    series = [Series(name, colour, [_val(m, f"overview.months.{i}", f"review_tasks_{key}", _count)
                                    for i, m in enumerate(months)]) for key, name, colour in shown]
    svg = columns("chart-reviews", title, [m["month"] for m in months], series, lambda v: f"{v:.0f}", integer=True)
    return figure("chart-reviews", title, svg, "The review tasks of the major incidents declared in each month: done "
                  "by their due date or after it (as first read back done), or still open.")


OVERVIEW_CSS = """
section.overview h2{margin-top:1rem}
dl.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.6rem;margin:1rem 0}
dl.figures div{border:1px solid #ddd;border-radius:4px;padding:.5rem .7rem;break-inside:avoid}
dl.figures dt{font-size:.8rem;color:#555}dl.figures dd{margin:.2rem 0 0;font-size:1.25rem;font-weight:600}
table.rules td,table.rules th{font-size:.9rem}table.rules th[scope=row]{white-space:nowrap}table.rules caption{text-align:left;font-weight:600;padding:.3rem 0}
tr.warn th,tr.warn td{background:#fdece6}.flag{color:#b03a00;font-weight:700;font-size:.8rem;margin-left:.4rem}
p.alert{border-left:4px solid #D55E00;background:#fdece6;padding:.5rem .8rem}
@media print{body{margin:0;max-width:none}section.major-incident{break-before:page}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def render_section(data: Mapping[str, Any]) -> str:
    """The overview section of the page."""
    overview = data["overview"]
    currency = str(overview["totals"].get("currency") or "")
    parts = [f'<section class="overview" aria-labelledby="overview-title"><h2 id="overview-title">Overview</h2>',
             f'<p class="meta">Major incidents declared in {escape(_period_text(overview, data.get("period") or {}))}.'
             " Months in UTC; an incident counts in the month it was declared.</p>",
             _figures(overview["totals"])]
    if overview["months"]:
        parts += [_per_month(overview), _medians(overview), _cost_per_month(overview, currency),
                  _cost_by_service(overview, currency), _children(overview), _precision(overview), _reviews(overview)]
    parts.append("</section>")
    return "".join(parts)


def render_text(data: Mapping[str, Any]) -> str:
    """The overview for a terminal: per month, then per rule."""
    overview = data["overview"]
    totals = overview["totals"]
    currency = str(totals.get("currency") or "")
    lines = [f"period: {_period_text(overview, data.get('period') or {})}"]
    if not overview["months"]:
        return lines[0]
    month_rows = [["month", "declared", "major", "rejected", "identify", "contain", "resolve", "est. cost",
                   "reviews on time", "late or overdue"]]
    for m in overview["months"]:
        month_rows.append([m["month"], str(m["declarations"]), str(m["major_incidents"]), str(m["rejected"]),
                           human_duration(m["time_to_identify_median_s"]), human_duration(m["time_to_contain_median_s"]),
                           human_duration(m["time_to_resolve_median_s"]),
                           money(m["estimated_cost"], currency) + ("+" if m["estimated_cost_ongoing"] else ""),
                           str(m["review_tasks_on_time"]), str(m["review_tasks_late"] + m["review_tasks_open_overdue"])])
    rule_rows = [["rule", "declared", "proposals", "accepted", "rejected", "open", "precision", ""]]
    for r in overview["rules"]:
        rule_rows.append([r["rule"], str(r["declarations"]), str(r["proposals"]), str(r["accepted"]), str(r["rejected"]),
                          str(r["open"]), _share(r["precision"]), "MOSTLY REJECTED" if r["mostly_rejected"] else ""])
    return "\n".join([*lines, "", *_grid(month_rows), "", *_grid(rule_rows)])


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return out


__all__ = ["render_section", "render_text", "OVERVIEW_CSS", "PER_INCIDENT_LIMIT"]
