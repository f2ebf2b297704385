"""``mim report``: the major incidents of a state store with their stages and metrics, and the overview a
major incident manager brings to the monthly review.

:func:`collect` reads the state (the registry, each record's timeline, its people's verdicts, the review tasks'
due dates from the ledger, and the cached tickets) into plain data, the incidents of a :class:`Period` only;
:func:`render_table`, :func:`render_json` and :func:`render_html` print it. The HTML page is self-contained
(inline CSS and SVG, no script, no external asset): the overview (:mod:`connector.tools.overview_page`), then per
major incident a timeline of ticket arrivals and stage changes and the metrics table. Every number in the page
carries its raw value in a ``data-value`` attribute, equal to the JSON's.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Any, Iterable, Mapping

from connector.core.exits import OperationalError
from connector.detection.registry import MIRecord
from connector.job.statedb import redact
from connector.job.store import StateStore
from connector.process.metrics import DURATIONS, compute, human_duration, money, review_counts
from connector.process.processfile import ProcessFile
from connector.tools.charts import CSS as CHART_CSS
from connector.tools.overview import REVIEW_OUTCOMES, Period, build_overview

COLUMNS = ("key", "rule", "stage", "status", "children", "time_to_identify_s", "time_to_contain_s",
           "time_to_resolution_plan_s", "time_to_resolve_s", "impact_s", "updates_sent", "review_tasks",
           "estimated_cost")
HEADERS = {"key": "major incident", "rule": "rule", "stage": "stage", "status": "status", "children": "children",
           "time_to_identify_s": "identify", "time_to_contain_s": "contain", "time_to_resolution_plan_s": "plan",
           "time_to_resolve_s": "resolve", "impact_s": "impact", "updates_sent": "updates",
           "review_tasks": "review", "estimated_cost": "est. cost"}
LABELS = {"time_to_identify_s": "Time to identify (first ticket → declared)",
          "time_to_contain_s": "Time to contain (declared → team and manager)",
          "time_to_resolution_plan_s": "Time to resolution plan (declared → change)",
          "time_to_resolve_s": "Time to resolve (declared → resolved)",
          "impact_s": "Impact duration (first ticket → resolved)",
          "children": "Related tickets", "updates_sent": "Updates sent",
          "review_tasks_total": "Review tasks", "review_tasks_done": "Review tasks done",
          "estimated_cost": "Estimated cost"}


def _arrivals(record: MIRecord, store: StateStore) -> list[dict[str, Any]]:
    ids = [record.id, *record.children]
    known = store.tickets_by_id(ids)
    out = [{"id": t.id, "key": t.label, "opened_at": t.opened_at.isoformat(), "parent": t.id == record.id}
           for t in known.values()]
    return sorted(out, key=lambda a: (a["opened_at"], a["id"]))


def mode_of(record: MIRecord) -> str | None:
    """``propose`` or ``accept``: how the incident was declared (None when the state does not know)."""
    if record.declaration.mode:
        return record.declaration.mode
    return next((d.mode for d in reversed(record.decisions) if d.mode), None)


def verdict_of(record: MIRecord) -> tuple[str | None, datetime | None]:
    """A person's latest verdict on the incident (``accepted``, ``rejected``, ``canceled``; None while none is
    known, or while it is proposed again) and when it was made. A verdict made before the connector recorded
    decisions is read from the incident's flag, its time unknown."""
    major = record.reading.major
    if major == "proposed":
        return None, None
    if record.decisions:
        last = record.decisions[-1]
        return last.verdict, last.at
    if major in ("rejected", "canceled") or (major == "accepted" and mode_of(record) == "propose"):
        return major, None
    return None, None


Dues = Mapping[str, datetime]
"""A review task's due date by the platform id of the task (from the ledger's ``create_task`` actions)."""


def task_dues(store: StateStore) -> tuple[dict[str, datetime], dict[str, list[datetime]]]:
    """Due dates of the review tasks the connector created: by task id, and by major incident (its id or the
    synthetic id it had)."""
    by_task: dict[str, datetime] = {}
    by_incident: dict[str, list[datetime]] = {}
    for row in store.created_records("create_task"):
        due = row["action"].get("due")
        if not due:
            continue
        moment = datetime.fromisoformat(due)
        by_task[str(row["created_id"])] = moment
        by_incident.setdefault(str(row["target"]), []).append(moment)
    return by_task, by_incident


def review_outcomes(record: MIRecord, dues: Dues, planned: list[datetime], now: datetime) -> dict[str, int]:
    """The incident's review tasks by outcome (:data:`~connector.tools.overview.REVIEW_OUTCOMES`): each task read
    back is on time when first read back done by its due date, late when after it, ``open_overdue`` when still
    open past it. A record kept before tasks were read back one by one has only counts: its done tasks are
    ``undated`` and its open ones are matched with the latest due dates planned."""
    counts = dict.fromkeys(REVIEW_OUTCOMES, 0)
    tasks = record.followup.tasks
    if tasks:
        for task_id, task in tasks.items():
            due = dues.get(task_id)
            if due is None:
                counts["undated"] += 1
            elif task.done_at is not None:
                counts["on_time" if task.done_at <= due else "late"] += 1
            else:
                counts["open_overdue" if now > due else "open"] += 1
        return counts
    done, total = review_counts(record)
    counts["undated"] += done or 0
    remaining = total - (done or 0)
    for due in sorted(planned)[max(0, len(planned) - remaining):] if remaining > 0 else []:
        counts["open_overdue" if now > due else "open"] += 1
    counts["undated"] += max(0, remaining - len(planned))
    return counts


def describe(record: MIRecord, process: ProcessFile, now: datetime, arrivals: list[dict[str, Any]],
             dues: Dues | None = None, planned: list[datetime] | None = None) -> dict[str, Any]:
    """One major incident as report data: its metrics, how it was declared and a person's verdict on it, its
    review tasks on time or late, its timeline and ticket arrivals."""
    data = compute(record, process, now).to_dict()
    verdict, decided_at = verdict_of(record)
    data["mode"] = mode_of(record)
    data["verdict"] = verdict
    data["decided_at"] = decided_at.isoformat() if decided_at else None
    data["decisions"] = [d.model_dump(mode="json") for d in record.decisions]
    data.update({f"review_tasks_{k}": v for k, v in review_outcomes(record, dues or {}, planned or [], now).items()})
    data["timeline"] = [event.to_dict() for event in record.timeline]
    data["arrivals"] = arrivals
    return data


def display_state(state: str) -> str:
    """How a report names the state it read: a path as given, a URL without its password."""
    return redact(state)


def open_state(path: str, platform: str | None = None) -> StateStore:
    """The state at ``path`` opened for ``platform``, else for the one platform it holds (a report needs no
    platform settings); a state that holds two platforms' incidents needs ``platform``."""
    store = StateStore(path, platform or "servicenow")  # a damaged state raises OperationalError with its fix
    if platform is not None:
        return store
    found = store.platforms()
    if len(found) > 1:
        store.close()
        raise OperationalError(f"{display_state(path)} holds the major incidents of {' and '.join(found)}",
                               f"set MIM_PLATFORM to the one to report ({' or '.join(found)})")
    if found and found[0] != store.platform:
        store.close()
        store = StateStore(path, found[0])
    return store


def collect(store: StateStore, process: ProcessFile, now: datetime, period: Period | None = None,
            state: str | None = None) -> dict[str, Any]:
    """Everything ``mim report`` shows, as JSON-ready data (``now`` measures incidents still open): the major
    incidents declared in ``period`` (default: all) and the overview across them; ``state`` names the state read."""
    period = period or Period()
    records = sorted((r for r in store.major_incidents() if period.contains(r.declared_at)),
                     key=lambda r: (r.declared_at, r.id))
    by_task, by_incident = task_dues(store)
    incidents = [describe(r, process, now, _arrivals(r, store), by_task,
                          by_incident.get(r.id, []) + by_incident.get(r.synthetic_id or "", []))
                 for r in records]
    return {"generated_at": now.isoformat(), "platform": store.platform,
            **({"state": display_state(state)} if state is not None else {}),
            "period": period.to_dict(),
            "overview": build_overview(incidents, period, process.costs.currency),
            "major_incidents": incidents}


def render_json(data: dict[str, Any]) -> str:
    """The report as one JSON object."""
    return json.dumps(data, indent=2, sort_keys=False)


def cell(name: str, mi: dict[str, Any]) -> str:
    """A table cell's text (durations as ``1h 05m``, cost with its currency)."""
    if name in DURATIONS:
        return human_duration(mi.get(name)) + ("+" if name == "impact_s" and mi.get("impact_ongoing") else "")
    if name == "estimated_cost":
        return money(mi.get("estimated_cost"), mi.get("currency", ""))
    if name == "review_tasks":
        done = mi.get("review_tasks_done")
        return f"{'?' if done is None else done}/{mi.get('review_tasks_total', 0)}"  # '?' until read back
    if name == "key":
        return str(mi.get("key") or mi.get("id"))
    value = mi.get(name)
    return "-" if value is None else str(value)


def render_table(data: dict[str, Any]) -> str:
    """A plain-text table, one major incident per row."""
    rows = [[HEADERS[c] for c in COLUMNS]] + [[cell(c, mi) for c in COLUMNS] for mi in data["major_incidents"]]
    if len(rows) == 1:
        return "no major incidents in this state"
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- HTML ---------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.8rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;font-size:.9rem}svg{background:#fafafa;border:1px solid #eee;max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}svg .arrival{fill:#d9534f}svg .parent{fill:#337ab7}
svg .stage{stroke:#5cb85c;stroke-width:2}svg .change{stroke:#5bc0de;stroke-width:2;stroke-dasharray:4 3}svg .human{stroke:#f0ad4e}svg .axis{stroke:#999}
svg .decision{stroke:#CC79A7;stroke-width:2;stroke-dasharray:2 2}
"""

_WIDTH, _HEIGHT, _MARGIN = 960, 170, 40


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _label(xpos: float, ypos: int, text: str) -> str:
    # labels in the right third read leftwards so they stay inside the picture
    if xpos > _WIDTH * 2 / 3:
        return f'<text x="{xpos - 3:.1f}" y="{ypos}" text-anchor="end">{escape(text)}</text>'
    return f'<text x="{xpos + 3:.1f}" y="{ypos}">{escape(text)}</text>'


def timeline_svg(mi: dict[str, Any], now: datetime) -> str:
    """An inline SVG: ticket arrivals as dots, stage changes as labelled vertical lines."""
    arrivals = [(a, _when(a["opened_at"])) for a in mi.get("arrivals", [])]
    events = [*mi.get("timeline", []), *({"at": d["at"], "event": "decision", "value": d["verdict"], "by": "human"}
                                         for d in mi.get("decisions", []))]
    stages = sorted(((e, _when(e["at"])) for e in events if e.get("event") in ("stage", "change_state", "decision")),
                    key=lambda pair: pair[1] or now)
    moments = [t for _, t in arrivals + stages if t is not None]
    for name in ("first_opened_at", "declared_at", "resolved_at", "closed_at"):
        value = _when(mi.get(name))
        if value is not None:
            moments.append(value)
    if not mi.get("resolved_at") and mi.get("status") != "rejected":
        moments.append(now)  # still open: up to now (a rejected proposal ends with its last event)
    start, end = min(moments), max(moments)
    span = max((end - start).total_seconds(), 60.0)

    def x(moment: datetime) -> float:
        return _MARGIN + (moment - start).total_seconds() / span * (_WIDTH - 2 * _MARGIN)

    title = f"Timeline of {mi.get('key') or mi.get('id')}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
             f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line class="axis" x1="{_MARGIN}" y1="130" x2="{_WIDTH - _MARGIN}" y2="130"/>',
             f'<text x="{_MARGIN}" y="150">{start:%Y-%m-%d %H:%M} UTC</text>',
             f'<text x="{_WIDTH - _MARGIN}" y="150" text-anchor="end">{end:%Y-%m-%d %H:%M} UTC</text>']
    for index, (event, moment) in enumerate(stages):
        if moment is None:
            continue
        value = event.get("value")
        if event.get("event") == "decision":
            group, data, line, label = "decision", "data-decision", "decision", f"{value} by a person"
        elif event.get("event") == "change_state":
            group, data, line, label = "change-state", "data-change-state", "change", f"change {value}"
        else:
            by_hand = event.get("by") == "human"
            group, data, line = "stage-change", "data-stage", "stage human" if by_hand else "stage"
            label = f"{value}" + (" (by hand)" if by_hand else "")
        xpos, top = x(moment), 20 + 14 * (index % 4)
        parts.append(f'<g class="{group}" {data}="{escape(str(value))}" data-at="{escape(event["at"])}">'
                     f'<line class="{line}" x1="{xpos:.1f}" y1="{top}" x2="{xpos:.1f}" y2="130"/>'
                     f'{_label(xpos, top + 10, label)}'
                     f"<title>{escape(label)} at {moment:%Y-%m-%d %H:%M} UTC</title></g>")
    for arrival, moment in arrivals:
        if moment is None:
            continue
        cls = "parent" if arrival.get("parent") else "arrival"
        parts.append(f'<circle class="{cls}" data-ticket="{escape(str(arrival["key"]))}" cx="{x(moment):.1f}" cy="118" r="4">'
                     f"<title>{escape(str(arrival['key']))} opened {moment:%Y-%m-%d %H:%M} UTC</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _metric_row(name: str, label: str, mi: dict[str, Any]) -> str:
    raw = mi.get(name)
    text = cell(name, mi) if name in COLUMNS else ("-" if raw is None else str(raw))
    value = "" if raw is None else (str(raw) if not isinstance(raw, float) else repr(raw))
    return (f'<tr><th>{escape(label)}</th><td class="num" data-metric="{name}" data-value="{escape(value)}">'
            f"{escape(text)}</td></tr>")


def _milestones(mi: dict[str, Any]) -> str:
    rows = []
    for name, label in (("first_opened_at", "First ticket opened"), ("declared_at", "Declared"),
                        ("contained_at", "Contained"), ("resolution_at", "Resolution plan"),
                        ("change_linked_at", "Change linked"), ("resolved_at", "Resolved"), ("closed_at", "Closed")):
        value = mi.get(name)
        text = f"{_when(value):%Y-%m-%d %H:%M} UTC" if value else "-"
        rows.append(f'<tr><th>{label}</th><td data-milestone="{name}" data-value="{escape(value or "")}">{text}</td></tr>')
    return "".join(rows)


def _generated(value: str | None) -> str:
    when = _when(value)
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if when else "-"


def decision_text(mi: Mapping[str, Any]) -> str:
    """How the incident was declared and what a person decided: ``proposed · accepted by a person 2026-03-02 10:20
    UTC``."""
    mode = {"propose": "proposed", "accept": "declared outright"}.get(str(mi.get("mode")), "declared")
    verdict = mi.get("verdict")
    if verdict is None:
        return mode + (" · awaiting a person's decision" if mi.get("mode") == "propose" else "")
    when = _when(mi.get("decided_at"))
    return f"{mode} · {verdict} by a person" + (f" {when:%Y-%m-%d %H:%M} UTC" if when else " (time not recorded)")


def render_html(data: dict[str, Any], now: datetime) -> str:
    """A self-contained HTML page: the overview (key figures and charts across the period), then per major
    incident a timeline (inline SVG) and the metrics table."""
    from connector.tools.overview_page import OVERVIEW_CSS, render_section

    sections = []
    for mi in data["major_incidents"]:
        name = str(mi.get("key") or mi.get("id"))
        metrics_rows = "".join(_metric_row(n, LABELS[n], mi) for n in (
            "time_to_identify_s", "time_to_contain_s", "time_to_resolution_plan_s", "time_to_resolve_s", "impact_s",
            "children", "updates_sent", "review_tasks_total", "review_tasks_done", "estimated_cost"))
        meta = (f"rule {escape(str(mi.get('rule')))} · service {escape(str(mi.get('service') or '-'))} · "
                f"stage {escape(str(mi.get('stage') or '-'))} · status {escape(str(mi.get('status')))} · "
                f"manager {escape(str(mi.get('manager') or '-'))} · team {escape(str(mi.get('team') or '-'))} · "
                f"{escape(decision_text(mi))}")
        sections.append(
            f'<section class="major-incident" data-id="{escape(str(mi["id"]))}">'
            f"<h2>{escape(name)}</h2><p class=\"meta\">{meta}</p>"
            f"{timeline_svg(mi, now)}"
            f'<table class="metrics"><tbody>{metrics_rows}</tbody></table>'
            f'<table class="milestones"><tbody>{_milestones(mi)}</tbody></table></section>')
    body = "".join(sections) or "<p>No major incidents in this period.</p>"
    overview = render_section(data) if "overview" in data else ""
    source = f"state {data['state']} · " if data.get("state") else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Major incidents</title><style>{_CSS}{CHART_CSS}{OVERVIEW_CSS}</style></head><body>"
            f'<h1>Major incidents</h1><p class="meta">{escape(source)}{escape(str(data.get("platform")))} · generated '
            f"{escape(_generated(data.get('generated_at')))}</p>{overview}"
            f'<h2 class="incidents-title">Major incidents one by one</h2>{body}</body></html>\n')


def iter_rows(data: dict[str, Any]) -> Iterable[dict[str, str]]:
    """The table's rows as ``{column: text}`` (for callers that format their own output)."""
    for mi in data["major_incidents"]:
        yield {c: cell(c, mi) for c in COLUMNS}


__all__ = ["collect", "describe", "render_json", "render_table", "render_html", "timeline_svg", "cell", "COLUMNS",
           "verdict_of", "mode_of", "open_state", "review_outcomes", "task_dues", "display_state", "decision_text"]
