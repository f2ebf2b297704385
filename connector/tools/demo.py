"""``mim demo``: the whole job on an embedded simulator with a built-in outage, no setup needed.

The story (simulated time, accelerated): background tickets trickle in; the web shop goes down and 12
callers report it within 10 minutes; the connector declares the major incident, links the callers, assigns
the team and a manager; a late caller joins; an agent moves the incident to resolution and the connector
raises the change; the agent resolves it and the connector resolves the children, creates the review tasks
and writes the metrics; the agent closes it.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Protocol

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
    """What the demo needs from a simulated platform: tickets as a caller opens them, and agent edits."""

    url: str

    def open_ticket(self, service: str, caller: str, title: str, opened_at: datetime) -> str: ...
    def set_stage(self, ticket_id: str, stage: str) -> None: ...
    def resolve(self, ticket_id: str, notes: str) -> None: ...
    def close(self, ticket_id: str) -> None: ...
    def label(self, ticket_id: str) -> str: ...
    def link(self, ticket_id: str) -> str: ...
    def notes(self, ticket_id: str) -> list[str]: ...
    def finish_reviews(self, ticket_id: str) -> int: ...
    def platform(self, mapping: Mapping) -> Platform: ...
    def stop(self) -> None: ...


class ServiceNowSite:
    """The demo on the ServiceNow simulator."""

    def __init__(self, clock: DemoClock, port: int = 0) -> None:
        from connector.sim.servicenow import ServiceNowSim

        self.sim = ServiceNowSim(user="demo", password="demo-password", clock=clock)
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

    def resolve(self, ticket_id: str, notes: str) -> None:
        self.sim.update("incident", ticket_id, {"state": "6", "close_code": "Solved (Permanently)", "close_notes": notes,
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

    def platform(self, mapping: Mapping) -> Platform:
        from connector.platforms.servicenow import ServiceNowPlatform

        return ServiceNowPlatform(self.url, "demo", "demo-password", mapping, policy=RetryPolicy(base=0.05, cap=0.5))

    def stop(self) -> None:
        self.server.stop()


class JiraSite:
    """The demo on the Jira Cloud simulator."""

    def __init__(self, clock: DemoClock, port: int = 0) -> None:
        from connector.sim.jira import JiraSim

        self.sim = JiraSim(email="demo@example.com", token="demo-token", clock=clock)
        self.server = self.sim.server(port).start()
        self.url = self.server.url
        self._keys: dict[str, str] = {}
        # the process file's managers must exist as Jira users (a site knows them from earlier work)
        for reporter, assignee in (("alice.martin", "bob.schneider"), ("carla.rossi", "oncall.duty")):
            self.sim.create_issue({"summary": "Directory sync", "issuetype": "Task", "reporter": reporter,
                                   "assignee": assignee, "created": (clock() - timedelta(days=30)).isoformat()})

    def open_ticket(self, service: str, caller: str, title: str, opened_at: datetime) -> str:
        issue = self.sim.create_issue({"summary": title, "issuetype": "Incident", "priority": "Medium",
                                       "components": [service], "reporter": caller,
                                       "created": opened_at.isoformat()})
        self._keys[issue["id"]] = issue["key"]
        return issue["id"]

    def _key(self, ticket_id: str) -> str:
        return self._keys.get(ticket_id, ticket_id)

    def set_stage(self, ticket_id: str, stage: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"customfield_10060": stage})

    def resolve(self, ticket_id: str, notes: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"status": "Resolved"})

    def close(self, ticket_id: str) -> None:
        self.sim.edit_issue(self._key(ticket_id), {"status": "Closed"})

    def finish_reviews(self, ticket_id: str) -> int:
        key = self._key(ticket_id)
        reviews = set()
        for link in self.sim.links(key):
            for side in ("inwardIssue", "outwardIssue"):
                other = link.get(side) or {}
                if other.get("key") and other["key"] != key:
                    issue = self.sim.issue(other["key"])
                    if issue["fields"]["issuetype"]["name"] in ("Post-incident review", "Task"):
                        reviews.add(other["key"])
        for review in sorted(reviews):
            self.sim.edit_issue(review, {"status": "Closed"})
        return len(reviews)

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


def _describe(report: CycleReport, site: Site) -> list[str]:
    out = []
    for decl in report.declarations:
        mi = decl["parent"]
        out.append(f"declared major incident {site.label(mi)} by rule {decl['rule']} "
                   f"({', '.join(f'{k}={v}' for k, v in decl['group'].items())}), {len(decl['children'])} children linked: "
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
        }.get(kind, lambda: f"{kind} on {target}")()
        out.append(text)
    return out


def run_demo(platform_name: str = "servicenow", echo: Callable[[str], None] = print, keep: bool = False,
             planners: list[ProcessPlanner] | None = None, seed: int = 7) -> DemoResult:
    """Run the demo story; returns what happened. ``keep`` leaves the simulator running until Ctrl-C."""
    clock = DemoClock()
    rng = random.Random(seed)
    site: Site = ServiceNowSite(clock) if platform_name == "servicenow" else JiraSite(clock)
    rules: list[Rule] = load_rules([default_dir("rules")]).rules
    process, _ = load_process(default_dir("rules") / "process.yaml")
    mapping, errors = load_mapping(default_dir("mappings") / f"{platform_name}.yaml")
    if mapping is None or process is None:
        raise RuntimeError("; ".join(str(e) for e in errors))
    timeline = Timeline(clock, echo=echo)
    timeline.say(f"{platform_name} simulator on {site.url}")
    workdir = tempfile.TemporaryDirectory(prefix="mim-demo-")
    store = StateStore(Path(workdir.name) / "state.sqlite", platform_name)
    platform = site.platform(mapping)
    cycles = 0
    mi_id: str | None = None
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
        clock.advance(minutes=5)  # the outage goes on: a caller while the surge lasts (late tickets join it)
        late = site.open_ticket("web-shop", "late-shopper", "Cannot pay in the web shop", clock())
        children.append(late)
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
        return DemoResult(mi_id, children, timeline.lines, cycles, requests)
    finally:
        platform.close()
        store.close()
        workdir.cleanup()
        site.stop()

