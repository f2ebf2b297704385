"""``mim demo``: the whole job on an embedded simulator with a built-in outage, no setup needed.

The story (simulated time, accelerated): background tickets trickle in; the web shop goes down and 12
callers report it within 10 minutes; the connector proposes the major incident, links the callers, assigns
the team and a manager, and an agent accepts the proposal; a late caller joins; the agent moves the incident
to resolution and the connector raises the change; the agent resolves it and the connector resolves the
children, creates the review tasks and writes the metrics; the agent closes it. Later a jammed printer makes
five colleagues call within minutes: the connector proposes a major incident and the agent rejects it.

The state is kept (``state``: ``MIM_STATE`` for ``mim demo``, else a new temporary directory), so ``mim report``
can show the demo's overview: the demo ends by naming that command.
"""

from __future__ import annotations

import random
import shlex
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Protocol
from zoneinfo import ZoneInfo

from connector.core.exits import OperationalError
from connector.core.mapping import Mapping, load_mapping
from connector.core.settings import default_dir
from connector.detection.rules import Rule, load_rules
from connector.job.cycle import CycleReport, ProcessPlanner, run_cycle
from connector.job.store import StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms.base import Platform
from connector.platforms.retry import RetryPolicy
from connector.process.processfile import ProcessFile, load_process

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in Berlin: business hours
JIRA_START = datetime(2026, 3, 2, 16, 42, tzinfo=timezone.utc)
"""The Jira story starts at 17:42 in Berlin, so that the late caller comes after 18:00, while the surge lasts: it
joins the open incident and is routed out of hours."""
SERVICES = ["email", "vpn", "printing", "hr-portal", "erp", "telephony"]


class DemoClock:
    """Simulated time shared by the simulator and the connector."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class Site(Protocol):
    """What the demo needs from a simulated platform: tickets as a caller opens them, and agent edits.
    ``evening_caller``: the story's late caller comes after business hours (routed to the out-of-hours team)."""

    url: str
    evening_caller: bool

    def open_ticket(self, service: str, caller: str, title: str, opened_at: datetime) -> str: ...
    def set_stage(self, ticket_id: str, stage: str) -> None: ...
    def decide(self, ticket_id: str, verdict: str) -> None: ...
    def resolve(self, ticket_id: str, notes: str) -> None: ...
    def close(self, ticket_id: str) -> None: ...
    def label(self, ticket_id: str) -> str: ...
    def link(self, ticket_id: str) -> str: ...
    def notes(self, ticket_id: str) -> list[str]: ...
    def finish_reviews(self, ticket_id: str) -> int: ...
    def shows(self, ticket_id: str) -> str: ...
    def platform(self, mapping: Mapping) -> Platform: ...
    def stop(self) -> None: ...


class ServiceNowSite:
    """The demo on the ServiceNow simulator."""

    evening_caller = False

    def __init__(self, clock: DemoClock, port: int = 0) -> None:
        from connector.sim.servicenow import ServiceNowSim

        self.sim = ServiceNowSim(user="demo", password="demo-password", clock=clock)
        # the people and groups of the process file exist on the instance (a directory sync made them)
        process, _ = load_process(default_dir("rules") / "process.yaml")
        if process is not None:
            self.sim.add_people(process.people(), process.groups())
        self.server = self.sim.server(port).start()
        self.url = self.server.url

    def open_ticket(self, service: str, caller: str, title: str, opened_at: datetime) -> str:
        record = self.sim.insert("incident", {
            "short_description": title, "business_service": service, "caller_id": caller,
            "impact": "2", "urgency": "2", "opened_at": opened_at.strftime("%Y-%m-%d %H:%M:%S"),
            "sys_created_by": caller})
        return record["sys_id"]

    def set_stage(self, ticket_id: str, stage: str) -> None:
        self.sim.update("incident", ticket_id, {"u_mim_stage": stage, "sys_updated_by": "agent.jane",
                                                "work_notes": f"Moving to {stage}: rollback of release 4.2 planned."})

    def decide(self, ticket_id: str, verdict: str) -> None:
        self.sim.update("incident", ticket_id, {"major_incident_state": verdict, "sys_updated_by": "agent.jane"})

    def resolve(self, ticket_id: str, notes: str) -> None:
        self.sim.update("incident", ticket_id, {"state": "6", "close_code": "Solution provided", "close_notes": notes,
                                                "sys_updated_by": "agent.jane"})

    def close(self, ticket_id: str) -> None:
        self.sim.update("incident", ticket_id, {"state": "7", "sys_updated_by": "agent.jane"})

    def finish_reviews(self, ticket_id: str) -> int:
        tasks = [t for t in self.sim.records("incident_task") if t.get("incident") == ticket_id]
        for task in tasks:
            self.sim.update("incident_task", task["sys_id"], {"state": "3", "sys_updated_by": "alice.martin"})
        return len(tasks)

    def label(self, ticket_id: str) -> str:
        record = self.sim.get("incident", ticket_id)
        if record is None:
            for table in ("change_request", "incident_task"):
                record = self.sim.get(table, ticket_id)
                if record is not None:
                    break
        return record["number"] if record else ticket_id

    def link(self, ticket_id: str) -> str:
        for table in ("incident", "change_request", "incident_task"):
            if self.sim.get(table, ticket_id) is not None:
                return f"{self.url}/api/now/table/{table}/{ticket_id}"
        return self.url

    def notes(self, ticket_id: str) -> list[str]:
        return [row["value"] for row in self.sim.journal(ticket_id)]

    def shows(self, ticket_id: str) -> str:
        return ""

    def platform(self, mapping: Mapping) -> Platform:
        from connector.platforms.servicenow import ServiceNowPlatform

        return ServiceNowPlatform(self.url, "demo", "demo-password", mapping, policy=RetryPolicy(base=0.05, cap=0.5),
                                  clock=self.sim.clock)

    def stop(self) -> None:
        self.server.stop()


class JiraSite:
    """The demo on the Jira Cloud (JSM Premium) simulator."""

    evening_caller = True

    def __init__(self, clock: DemoClock, process: ProcessFile | None = None, port: int = 0) -> None:
        from connector.sim.jira import JiraSim, seeded

        # a site that knows the process file's people, and its groups as Atlassian teams (JSM responders)
        if process is None:
            process, _ = load_process(default_dir("rules") / "process.yaml")
        people, groups = (process.people(), process.groups()) if process is not None else ([], [])
        self.sim: JiraSim = seeded("demo@example.com", "demo-token", "cloud", people, groups)
        self.sim.site.clock = clock
        self.server = self.sim.server(port).start()
        self.url = self.server.url
        self._keys: dict[str, str] = {}

    def open_ticket(self, service: str, caller: str, title: str, opened_at: datetime) -> str:
        issue = self.sim.create_issue({"summary": title, "issuetype": "Incident", "priority": "Medium",
                                       "components": [service], "affected_services": [service], "reporter": caller,
                                       "created": opened_at.isoformat()})
        self._keys[issue["id"]] = issue["key"]
        return issue["id"]

    def _key(self, ticket_id: str) -> str:
        return self._keys.get(ticket_id, ticket_id)

    def set_stage(self, ticket_id: str, stage: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"customfield_10060": stage})

    def decide(self, ticket_id: str, verdict: str) -> None:
        # accepting takes the connector's "proposed" label away; rejecting takes the major incident flag away
        key = self._key(ticket_id)
        if verdict == "accepted":
            labels = [str(label) for label in self.sim.issue(key)["fields"].get("labels") or []]
            self.sim.edit_issue(key, {"labels": [label for label in labels if label != "mim-proposed"]})
        else:
            self.sim.edit_issue(key, {"major_incident": False})

    def resolve(self, ticket_id: str, notes: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"status": "Resolved"})

    def close(self, ticket_id: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"status": "Closed"})

    def finish_reviews(self, ticket_id: str) -> int:
        """Close the review tasks (linked to the post-incident review, itself linked to the major incident)."""
        tasks: set[str] = set()
        holders = [self._key(ticket_id)]
        while holders:
            key = holders.pop()
            for link in self.sim.links(key):
                other = (link.get("outwardIssue") or {}).get("key")
                if not other:
                    continue
                kind = self.sim.issue(other)["fields"]["issuetype"]["name"]
                if kind.endswith("Post-incident review"):
                    holders.append(other)
                elif kind == "Task":
                    tasks.add(other)
        for task in sorted(tasks):
            self.sim.edit_issue(task, {"status": "Closed"})
        return len(tasks)

    def shows(self, ticket_id: str) -> str:
        """The JSM side of an incident the connector wrote to: responders, stakeholders, affected services."""
        key = self._key(ticket_id)
        parts = []
        responders = self.sim.responders(key)
        if responders:
            parts.append("responders " + ", ".join(f"{r['name']} ({r['type']})" for r in responders))
        users = {u["accountId"]: u["displayName"] for u in self.sim.users()}
        stakeholders = [users.get(ari.rsplit("/", 1)[-1], ari) for ari in self.sim.stakeholders(key)]
        if stakeholders:
            parts.append("stakeholders " + ", ".join(stakeholders))
        services = self.sim.issue(key)["fields"].get("customfield_10090") or []
        if services:
            parts.append("affected services " + ", ".join(str(s["name"]) for s in services))
        return "; ".join(parts)

    def label(self, ticket_id: str) -> str:
        if ticket_id in self._keys:
            return self._keys[ticket_id]
        try:
            return str(self.sim.issue(ticket_id)["key"])
        except Exception:  # an id the simulator does not know: show it as it is
            return ticket_id

    def link(self, ticket_id: str) -> str:
        return f"{self.url}/browse/{self.label(ticket_id)}"

    def notes(self, ticket_id: str) -> list[str]:
        from connector.sim.jira import adf_to_text

        out = []
        for comment in self.sim.comments(self._key(ticket_id)):
            body = comment.get("body")
            out.append(body if isinstance(body, str) else adf_to_text(body))
        return out

    def platform(self, mapping: Mapping) -> Platform:
        from connector.platforms.jira import JiraPlatform

        return JiraPlatform(self.url, "demo@example.com", "demo-token", mapping, project="ITSM", flavour="cloud",
                            policy=RetryPolicy(base=0.05, cap=0.5))

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Timeline:
    """What happened, in simulated time, for printing."""

    clock: DemoClock
    lines: list[str] = field(default_factory=list)
    echo: Callable[[str], None] = print

    def say(self, text: str) -> None:
        line = f"[{self.clock.now:%H:%M} UTC] {text}"
        self.lines.append(line)
        self.echo(line)


@dataclass
class DemoResult:
    """The outcome of a demo run, for tests and the closing summary."""

    major_incident: str | None
    children: list[str]
    lines: list[str]
    cycles: int
    requests: int
    state: Path | None = None
    """Where the demo's state was kept (``mim report`` reads it)."""
    false_alarm: str | None = None
    """The proposal the agent rejected."""


def _describe(report: CycleReport, site: Site) -> list[str]:
    out = []
    for decl in report.declarations:
        mi = decl["parent"]
        # every child linked in this cycle, late ones included (their own lines are not printed then)
        linked = sum(1 for item in report.planned if item["kind"] == "link" and item.get("parent") == mi
                     and (outcome := report.outcomes.get(item["key"])) is not None and outcome.status == "applied")
        out.append(f"declared major incident {site.label(mi)} by rule {decl['rule']} "
                   f"({', '.join(f'{k}={v}' for k, v in decl['group'].items())}), {linked} children linked: "
                   f"{site.link(mi)}")
    counts: dict[str, int] = {}
    for item in report.planned:
        result = report.outcomes.get(item["key"])
        if result is None or result.status != "applied":
            continue
        kind = item["kind"]
        if kind in ("declare", "create_parent"):
            continue
        if kind == "link" and report.declarations:
            counts["link"] = counts.get("link", 0) + 1
            continue
        target = site.label(item["target"])
        text = {
            "link": lambda: f"linked {target} to {site.label(item.get('parent', ''))} ({item.get('reason', '')})",
            "set_stage": lambda: f"stage of {target} is now {item.get('stage')}",
            "set_fields": lambda: f"set {', '.join(f'{k}={v}' for k, v in item.get('fields', {}).items())} on {target}",
            "note": lambda: f"work note on {target}: {str(item.get('text', '')).splitlines()[0][:80]}",
            "create_change": lambda: f"created change {site.label(result.created_id or '')} for {target}: "
                                     f"{site.link(result.created_id or '')}",
            "create_task": lambda: f"created review task {site.label(result.created_id or '')} on {target}: "
                                   f"{item.get('title')} (due {str(item.get('due', ''))[:10]})",
            "resolve_child": lambda: f"resolved child {target}",
            "notify": lambda: f"notified {item.get('channel')}",
            "add_stakeholders": lambda: f"stakeholders of {target}: {', '.join(item.get('people', []))} "
                                        f"({result.detail})",
            "set_services": lambda: f"affected services of {target}: {', '.join(item.get('services', []))}",
            "create_review": lambda: f"created post-incident review {site.label(result.created_id or '')} for "
                                     f"{target}, holding its review tasks: {site.link(result.created_id or '')}",
        }.get(kind, lambda: f"{kind} on {target}")()
        if kind == "set_fields" and site.shows(item["target"]):
            text += f" [{site.label(item['target'])} shows {site.shows(item['target'])}]"
        out.append(text)
    return out


DEMO_COUNTER = "demo"
"""The state counter that marks a state the demo wrote (another demo may replace it; nothing else may)."""


def demo_state(path: Path | None) -> Path:
    """Where the demo keeps its state: ``path`` (an earlier demo's state there is replaced), else a new temporary
    directory. A state the demo did not write is never touched: the demo refuses it."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="mim-demo-")) / "state.sqlite"
    if "://" in str(path):
        raise OperationalError(f"the demo keeps its state in a SQLite file, not at {path}",
                               "set MIM_STATE to a file path, e.g. MIM_STATE=mim-demo.sqlite mim demo")
    if path.is_dir():
        raise OperationalError(f"{path} is a directory", "set MIM_STATE to a file path, e.g. MIM_STATE=mim-demo.sqlite")
    if path.exists() and path.stat().st_size > 0:
        if not written_by_demo(path):
            raise OperationalError(f"{path} holds something mim demo did not write (a connector's state?); the demo "
                                   "never writes into it", "give the demo a path of its own, e.g. "
                                   "MIM_STATE=mim-demo.sqlite mim demo")
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def written_by_demo(path: Path) -> bool:
    """Whether the state at ``path`` was written by the demo (read only: a real state is not even migrated)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT name FROM counters WHERE name LIKE ?", (f"%:{DEMO_COUNTER}",)).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return bool(rows)


def report_command(state: Path) -> str:
    """The command that renders the report of the demo's state."""
    return f"MIM_STATE={shlex.quote(str(state))} mim report --html mim-demo-report.html"


def run_demo(platform_name: str = "servicenow", echo: Callable[[str], None] = print, keep: bool = False,
             planners: list[ProcessPlanner] | None = None, seed: int = 7, state: Path | None = None) -> DemoResult:
    """Run the demo story; returns what happened. ``keep`` leaves the simulator running until Ctrl-C. The state is
    kept at ``state`` (see :func:`demo_state`; default a new temporary directory) for ``mim report``."""
    state_path = demo_state(state)
    clock = DemoClock(START if platform_name == "servicenow" else JIRA_START)
    rng = random.Random(seed)
    rules: list[Rule] = load_rules([default_dir("rules")]).rules
    process, _ = load_process(default_dir("rules") / "process.yaml")
    mapping, errors = load_mapping(default_dir("mappings") / f"{platform_name}.yaml")
    if mapping is None or process is None:
        raise RuntimeError("; ".join(str(e) for e in errors))
    site: Site = ServiceNowSite(clock) if platform_name == "servicenow" else JiraSite(clock, process)
    timeline = Timeline(clock, echo=echo)
    timeline.say(f"{platform_name} simulator on {site.url}")
    store = StateStore(state_path, platform_name)
    store.set_counter(DEMO_COUNTER, START.isoformat())
    platform = site.platform(mapping)
    cycles = 0
    mi_id: str | None = None
    false_alarm: str | None = None
    children: list[str] = []

    def cycle(minutes: float = 2) -> CycleReport:
        nonlocal cycles, mi_id
        clock.advance(minutes=minutes)
        report = run_cycle(platform, store, rules, process or ProcessFile(version=1), clock(), planners=planners,
                           notifier=WebhookNotifier({}))
        cycles += 1
        for line in _describe(report, site):
            timeline.say(line)
        for decl in report.declarations:
            mi_id = mi_id or decl["parent"]
        for failure in report.failures:
            timeline.say(f"action failed: {failure}")
        return report

    try:
        for i in range(15):
            site.open_ticket(rng.choice(SERVICES), f"user{rng.randint(1, 300)}", "Something is not working",
                             clock() - timedelta(minutes=60 - 4 * i))
        timeline.say("15 routine tickets in the last hour; first sync")
        cycle(1)
        timeline.say("the web shop goes down: callers start reporting")
        for i in range(12):
            children.append(site.open_ticket("web-shop", f"shopper{i}", "Web shop checkout fails with error 503", clock()))
            clock.advance(seconds=50)
            if i % 3 == 2:
                cycle(0.1)
        cycle()
        cycle()
        if mi_id is not None:
            site.decide(mi_id, "accepted")
            timeline.say(f"agent jane accepts the proposal: {site.label(mi_id)} is a major incident")
        clock.advance(minutes=5)  # the outage goes on: a caller while the surge lasts (late tickets join it)
        late = site.open_ticket("web-shop", "late-shopper", "Cannot pay in the web shop", clock())
        children.append(late)
        if site.evening_caller:
            local = clock().astimezone(ZoneInfo(process.business_hours.time_zone))
            timeline.say(f"after business hours ({local:%H:%M} in {process.business_hours.time_zone}) a late caller "
                         f"opens {site.label(late)}")
        else:
            timeline.say(f"a late caller opens {site.label(late)}")
        cycle()
        if mi_id is not None:
            clock.advance(minutes=15)
            site.set_stage(mi_id, "resolution")
            timeline.say(f"agent jane sets {site.label(mi_id)} to resolution (rollback of release 4.2)")
            cycle()
            clock.advance(minutes=40)
            site.resolve(mi_id, "Rolled back release 4.2; checkout works again.")
            timeline.say(f"agent jane resolves {site.label(mi_id)}")
            cycle()
            clock.advance(hours=2)
            site.close(mi_id)
            timeline.say(f"agent jane closes {site.label(mi_id)}")
            cycle()
            clock.advance(minutes=30)
            done = site.finish_reviews(mi_id)
            timeline.say(f"the review owners close the {done} review tasks of {site.label(mi_id)}")
            cycle()
            false_alarm = _false_alarm(site, clock, timeline, cycle)
        requests = platform.requests_sent
        timeline.say(f"done: {cycles} cycles, {requests} requests to the simulator")
        if keep:
            echo(f"simulator still running on {site.url} (Ctrl-C to stop); try: curl -u demo:demo-password "
                 f"'{site.url}/api/now/table/incident?sysparm_limit=5'" if platform_name == "servicenow" else
                 f"simulator still running on {site.url} (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        # the earliest caller's ticket became the major incident itself: it is not one of its children
        return DemoResult(mi_id, [c for c in children if c != mi_id], timeline.lines, cycles, requests, state_path,
                          false_alarm)
    finally:
        platform.close()
        store.close()
        site.stop()


def _false_alarm(site: Site, clock: DemoClock, timeline: Timeline, cycle: Callable[[], CycleReport]) -> str | None:
    """Five colleagues call about one jammed printer: the connector proposes a major incident, the agent rejects
    the proposal, and the next cycle records the rejection (the report's rule precision)."""
    clock.advance(minutes=30)
    timeline.say("a printer on floor 3 jams: five colleagues report it within minutes")
    for i in range(5):
        site.open_ticket("printing", f"colleague{i}", "Printer on floor 3 does not print", clock())
        clock.advance(seconds=40)
    report = cycle()
    if not report.declarations:
        return None
    proposal = str(report.declarations[0]["parent"])
    clock.advance(minutes=6)
    site.decide(proposal, "rejected")
    timeline.say(f"agent jane rejects the proposal {site.label(proposal)}: a jammed printer is not a major incident")
    cycle()
    return proposal

