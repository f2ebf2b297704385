"""The crash matrix: a major incident's whole life on a simulated platform (simulated time), told once without a
fault and once per write point x action kind with the process killed there (the test-only hook of
``connector/job/faults.py``), then rerun; every telling must end in the same platform state.

The story is the same on every platform; a :class:`Site` tells it on one simulator: the ServiceNow simulator
(the ten kinds of action ServiceNow plans) or the Jira Cloud simulator with the Jira Service Management
features on (Premium: major incidents, responders, stakeholders, affected services, post-incident reviews), where
the shipped ``mappings/jira.yaml`` also plans ``add_stakeholders``, ``set_services`` and ``create_review``.

Each sync cycle runs in a forked child process (the simulator, its clock and the webhook receiver stay in
this one), so the hook's SIGKILL ends the cycle as ``kill -9`` would: mid-transaction, sessions open. The
rerun is the same cycle, at the same simulated time, in a new child with the hook disarmed. Shared by
``tests/test_crash_matrix.py`` and ``bench/bench_hostile.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import SecretStr

from connector.core.mapping import Mapping, load_mapping
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.faults import CRASH_ENV, POINTS, CrashHook
from connector.job.store import StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms.base import Platform
from connector.platforms.jira import JiraPlatform
from connector.platforms.retry import RetryPolicy
from connector.platforms.servicenow import ServiceNowPlatform
from connector.process.processfile import load_process
from connector.sim.jira import adf_to_text
from tests.shipped import jira_sim, servicenow_sim

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, business hours in Berlin
USER, PASSWORD = "crash", "crash-password-123"
EMAIL = "crash@example.com"
PLATFORMS = ("servicenow", "jira")
RULES = """
version: 1
rules:
  - id: service-surge
    order: 10
    when: {state: {in: [new, in_progress, on_hold]}}
    surge: {group_by: [service], window: 15m, threshold: 5, distinct: caller}
    declare: {mode: propose, parent: earliest}
    late_children: 4h
  - id: ci-surge
    order: 20
    when: {state: {in: [new, in_progress, on_hold]}, ci: {exists: true}}
    surge: {group_by: [ci], window: 15m, threshold: 4, distinct: caller}
    declare: {mode: accept, parent: new, set: {priority: 1}}
    late_children: 4h
"""
WEBHOOK = {"name": "ops-chat", "webhook": "ops", "format": "generic"}
SERVICES = ("email", "vpn", "printing", "erp", "web-shop", "hr-portal", "crm", "bi", "wiki")
"""The services the story's tickets name."""
_SYNTHETIC = re.compile(r"new-[0-9a-f]{16}")
_TAG = re.compile(r"\[mim-[0-9a-f]+\]")
_SYS_ID = re.compile(r"[0-9a-f]{32}")


class Clock:
    """Simulated time shared by the simulator and the cycles."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Receiver:
    """A webhook endpoint that records each delivery's idempotency key and body."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
                receiver.deliveries.append((self.headers.get("Idempotency-Key", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _policy() -> RetryPolicy:
    return RetryPolicy(base=0.01, cap=0.05, sleep=lambda s: None)


def _mapping(name: str) -> Mapping:
    mapping, errors = load_mapping(ROOT / "mappings" / f"{name}.yaml")
    assert mapping is not None, errors
    return mapping


# -- the platforms the story is told on ------------------------------------------------------------------------


class Site(Protocol):
    """A simulated platform as the story needs it: tickets as callers open them, an agent's edits, the adapter
    the cycles use, and the end state to compare."""

    name: str
    mapping: Mapping

    def platform(self) -> Platform:
        """The adapter one cycle uses (a new one per cycle, as a new ``mim sync`` process has)."""

    def open_ticket(self, title: str, caller: str, service: str, ci: str = "") -> str:
        """A caller's ticket, opened now; its id."""

    def set_stage(self, ticket: str, stage: str) -> None:
        """An agent moves the major incident to ``stage``."""

    def resolve(self, ticket: str) -> None:
        """An agent resolves the major incident."""

    def close(self, ticket: str) -> None:
        """An agent closes the major incident and its owners finish every review task."""

    def end_state(self, webhook_keys: list[str]) -> dict[str, list[str]]:
        """What the platform and the webhook hold, each part sorted, without what a rerun may assign
        differently (the site says which and why)."""

    def stop(self) -> None:
        """Stop the simulator's server."""


class ServiceNowSite:
    """The story on the ServiceNow simulator (Washington-era tables and Major Incident Management)."""

    name = "servicenow"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sim = servicenow_sim(user=USER, password=PASSWORD, clock=clock, cascade_resolve=False)
        self.sim.insert("sys_user_group", {"name": "major-incident-team"})
        for user in ("alice.martin", "bob.schneider", "carla.rossi"):
            self.sim.insert("sys_user", {"user_name": user, "name": user})
        self.server = self.sim.server().start()
        self.mapping = _mapping("servicenow")

    def platform(self) -> Platform:
        return ServiceNowPlatform(self.server.url, USER, PASSWORD, self.mapping, policy=_policy(),
                                  clock=self.clock)  # proposed_on in simulated time, the same in every telling

    def open_ticket(self, title: str, caller: str, service: str, ci: str = "") -> str:
        stamp = self.clock().strftime("%Y-%m-%d %H:%M:%S")
        record = self.sim.insert("incident", {"short_description": title, "caller_id": caller, "business_service": service,
                                              "cmdb_ci": ci, "impact": "2", "urgency": "2", "opened_at": stamp,
                                              "sys_created_on": stamp, "sys_created_by": caller})
        return str(record["sys_id"])

    def set_stage(self, ticket: str, stage: str) -> None:
        self.sim.update("incident", ticket, {"u_mim_stage": stage, "sys_updated_by": "agent.jane"})

    def resolve(self, ticket: str) -> None:
        self.sim.update("incident", ticket, {"state": "6", "close_code": "Solved (Permanently)",
                                             "close_notes": "Rolled back release 4.2.", "sys_updated_by": "agent.jane"})

    def close(self, ticket: str) -> None:
        self.sim.update("incident", ticket, {"state": "7", "sys_updated_by": "agent.jane"})
        for task in self.sim.records("incident_task"):
            self.sim.update("incident_task", task["sys_id"], {"state": "3", "sys_updated_by": "alice.martin"})

    def end_state(self, webhook_keys: list[str]) -> dict[str, list[str]]:
        """The simulator draws every sys_id, journal entries' too, from one seeded sequence: a cycle killed
        between two writes that the uninterrupted one sends together adds a journal entry, so the records
        opened after it get other sys_ids, and a parent the connector creates for them another synthetic id
        (``new-`` + a hash of its first ticket's id), which its markers and message keys carry. Those are
        compared as ``new-#`` and ``mim-#``; every record, note, task, change and message is still counted."""
        incidents = {r["sys_id"]: r for r in self.sim.records("incident")}
        others = {r["sys_id"]: f"{table}: {r['short_description']}" for table in ("change_request", "incident_task")
                  for r in self.sim.records(table)}

        def name(sys_id: str) -> str:
            record = incidents.get(sys_id)
            return f"{record['short_description']}|{record['caller_id']}" if record else others.get(sys_id, sys_id)

        # every column but the record's own ids and times, references shown by what they point at
        rows = sorted(json.dumps({k: name(v) if _SYS_ID.fullmatch(str(v)) else v for k, v in r.items()
                                  if not k.startswith("sys_") and k not in ("number", "opened_at", "resolved_at",
                                                                            "closed_at", "opened_by")}, sort_keys=True)
                      for r in incidents.values())
        # one journal entry may carry several notes (one write); each note ends with its marker tag
        notes = sorted(f"{name(j['element_id'])}: {note.strip()}" for j in self.sim.records("sys_journal_field")
                       for note in re.findall(r".*?\[mim-[0-9a-f]+\]", j["value"], re.S))
        tasks = sorted(f"{name(t.get('incident', ''))}: {t['short_description']} [{t['state']}]"
                       for t in self.sim.records("incident_task"))
        changes = sorted(f"{c['short_description']} [{c['state']}]" for c in self.sim.records("change_request"))
        state = {"incidents": rows, "notes": notes, "tasks": tasks, "changes": changes, "webhook_keys": webhook_keys}
        return {part: sorted(_SYNTHETIC.sub("new-#", _TAG.sub("[mim-#]", line)) for line in lines)
                for part, lines in state.items()}

    def stop(self) -> None:
        self.server.stop()


class JiraSite:
    """The story on the Jira Cloud simulator with Jira Service Management Premium: the major incident flag,
    responders, stakeholders, Affected services and the post-incident review type, read and written through the
    shipped ``mappings/jira.yaml``.

    A caller names the configuration item in Affected services (the mapping reads the first affected service as
    the ticket's ``ci``). The services themselves are in the site's service registry, which ``write.services``
    names (what an administrator configures for services no issue lists yet): the major incidents' Affected
    services are written from the children's services."""

    name = "jira"
    _SKIP = frozenset({"self", "id", "avatarUrls", "iconUrl", "avatarId", "comment"})
    """Renderings' links and counters (link and comment ids follow the order of the writes, which a rerun may
    change; the comments are compared on their own), never an issue's content."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sim = jira_sim(email=EMAIL, token=PASSWORD, flavour="cloud", clock=clock, plan="premium",
                            major_incident_field=True)
        registry = {service: self.sim.add_service(service) for service in SERVICES}
        self.server = self.sim.server().start()
        mapping = _mapping("jira")
        write = mapping.write.model_copy(update={"services": registry})
        self.mapping = Mapping(mapping.spec.model_copy(update={"write": write}), mapping.path)

    def platform(self) -> Platform:
        # The adapter's own stamps (a lost create's wait) are in the site's time, from its Date header: the
        # simulator's clock, so simulated time here too.
        return JiraPlatform(self.server.url, EMAIL, PASSWORD, self.mapping, flavour="cloud", policy=_policy())

    def open_ticket(self, title: str, caller: str, service: str, ci: str = "") -> str:
        issue = self.sim.create_issue({"summary": title, "issuetype": "Incident", "priority": "Medium",
                                       "components": [service], "affected_services": [ci] if ci else [],
                                       "reporter": caller, "created": self.clock().isoformat()})
        return str(issue["id"])

    def set_stage(self, ticket: str, stage: str) -> None:
        self.sim.edit_issue(ticket, {"stage": stage})

    def resolve(self, ticket: str) -> None:
        self.sim.edit_issue(ticket, {"status": "Resolved"})

    def close(self, ticket: str) -> None:
        self.sim.edit_issue(ticket, {"status": "Closed"})
        for key in self.sim.issue_keys():
            if self.sim.issue(key)["fields"]["issuetype"]["name"] == "Task":
                self.sim.edit_issue(key, {"status": "Closed"})

    def end_state(self, webhook_keys: list[str]) -> dict[str, list[str]]:
        """Every field of every issue (links by the other issue's key; Jira's lists are sets, so sorted), its
        entity properties, comments, responders and stakeholders. Issue ids and keys are compared as they are:
        the simulator numbers issues alone, in the order they are created."""
        keys = self.sim.issue_keys()
        users = {u["accountId"]: u["name"] for u in self.sim.users()}
        rows, notes, people = [], [], []
        for key in keys:
            issue = self.sim.issue(key, version=2)  # plain-text bodies
            rows.append(json.dumps({"key": key, "fields": self._plain(issue["fields"]),
                                    "properties": issue.get("properties", {})}, sort_keys=True))
            for comment in self.sim.comments(key):
                body = comment["body"] if isinstance(comment["body"], str) else adf_to_text(comment["body"])
                where = "public" if comment["jsdPublic"] else "internal"
                notes.append(f"{key} ({where}): {body.strip()} {json.dumps(comment['properties'], sort_keys=True)}")
            people += [f"{key}: stakeholder {users.get(ari.rsplit('/', 1)[-1], ari)}"
                       for ari in self.sim.stakeholders(key)]
            people += [f"{key}: participant {users.get(account, account)}" for account in self.sim.participants(key)]
        return {"issues": sorted(rows), "comments": sorted(notes), "people": sorted(people),
                "webhook_keys": sorted(webhook_keys)}

    def _plain(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "key" in value and "fields" in value:
                return value["key"]  # the other end of a link
            return {k: self._plain(v) for k, v in value.items() if k not in self._SKIP}
        if isinstance(value, list):
            return sorted((self._plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value

    def stop(self) -> None:
        self.server.stop()


SITES: dict[str, Callable[[Clock], Site]] = {"servicenow": ServiceNowSite, "jira": JiraSite}


# -- the story -------------------------------------------------------------------------------------------------


@dataclass
class Telling:
    """One telling of the story: what the cycles planned, whether the hook fired, the end state."""

    cycles: list[Counter[str]] = field(default_factory=list)
    """The kinds of action each cycle planned (after the rerun, for the crashed one)."""
    crashed: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    deliveries: int = 0


class Story:
    """The site, the state folder and the configuration of one telling."""

    def __init__(self, folder: Path, platform: str = "servicenow", unsent: Callable[[Site], None] | None = None) -> None:
        self.clock = Clock()
        self.unsent = unsent
        self.site = SITES[platform](self.clock)
        self.receiver = Receiver()
        self.state = folder / "state.sqlite"
        (folder / "rules.yaml").write_text(RULES, encoding="utf-8")
        ruleset = load_rules([folder / "rules.yaml"])
        assert not ruleset.errors, ruleset.errors
        self.rules = ruleset.rules
        process, errors = load_process(ROOT / "rules" / "process.yaml")
        assert process is not None and not errors, errors
        comms = process.communications.model_copy(update={"stakeholders": [*process.communications.stakeholders,
                                                                           type(process.communications.stakeholders[0])(**WEBHOOK)]})
        self.process = process.model_copy(update={"communications": comms})
        self.telling = Telling()

    def close(self) -> None:
        self.site.stop()
        self.receiver.stop()

    # -- one cycle in a child process --------------------------------------------------------------------------

    def _cycle_here(self) -> Counter[str]:
        platform = self.site.platform()
        notifier = WebhookNotifier({"ops": SecretStr(self.receiver.url)}, policy=RetryPolicy(attempts=1))
        try:
            with StateStore(self.state, self.site.name) as store:
                report = run_cycle(platform, store, self.rules, self.process, self.clock(), notifier=notifier)
        finally:
            platform.close()
        return Counter(item["kind"] for item in report.planned)

    def cycle(self, crash: str | None) -> None:
        """One sync cycle. Armed (``crash``), it runs in a child process with the hook set, and when the hook
        kills it, the rerun follows here; unarmed, it runs here (the hook is never set in this process)."""
        if crash is not None:
            self.telling.crashed += self._forked(crash)
            if self.unsent is not None:
                self.unsent(self.site)
        self.telling.cycles.append(self._cycle_here())

    def _forked(self, crash: str) -> int:
        """The cycle in a child process armed with ``crash``: 1 when the hook killed it, 0 when it finished."""
        pid = os.fork()
        if pid == 0:  # the child: one cycle, and out without any cleanup
            code = 0
            try:
                os.environ[CRASH_ENV] = crash
                self._cycle_here()
            except BaseException:  # noqa: BLE001 - reported to the parent by the exit code
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return 1
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the armed cycle failed: status {status}"
        return 0

    def tell(self, crash: str | None = None, at: int = -1) -> Telling:
        """The whole story; with ``crash`` (``point:kind``) cycle number ``at`` (from 0) runs in a child process
        armed with it, is killed there and rerun."""
        site = self.site

        def step() -> None:
            self.cycle(crash if len(self.telling.cycles) == at else None)

        for i in range(4):
            site.open_ticket(f"Routine request {i}", f"user{i}", ["email", "vpn", "printing", "erp"][i])
        parent = ""
        for i in range(6):  # the web shop goes down: a surge on the service, declared on its earliest ticket
            ticket = site.open_ticket(f"Checkout fails ({i})", f"shopper{i}", "web-shop")
            parent = parent or ticket
            self.clock.advance(seconds=30)
            # meanwhile a database fails under several services: a surge on the CI, under a parent it creates
            if i < 5:
                site.open_ticket(f"Reports time out ({i})", f"analyst{i}", ["erp", "hr-portal", "crm", "bi", "wiki"][i], "db-7")
            self.clock.advance(seconds=20)
        step()
        self.clock.advance(minutes=20)
        site.open_ticket("Cannot pay", "late-shopper", "web-shop")  # a late caller joins
        site.set_stage(parent, "resolution")
        step()
        self.clock.advance(minutes=40)
        site.resolve(parent)
        step()
        self.clock.advance(hours=2)
        site.close(parent)
        step()
        self.clock.advance(minutes=30)
        step()
        self.telling.state = site.end_state(sorted({key for key, _ in self.receiver.deliveries}))
        self.telling.deliveries = len(self.receiver.deliveries)
        return self.telling


def tell(crash: str | None = None, at: int = -1, platform: str = "servicenow",
         unsent: Callable[[Site], None] | None = None) -> Telling:
    """One telling on ``platform`` in a fresh simulator and state folder (see :meth:`Story.tell`). ``unsent``
    takes back, after the kill, a request of the killed action that a kill between its requests would not have
    let out (the hook kills between actions; an adapter may send one action as several requests)."""
    with tempfile.TemporaryDirectory(prefix="mim-crash-") as folder:
        story = Story(Path(folder), platform, unsent)
        try:
            return story.tell(crash, at)
        finally:
            story.close()


def first_cycle(baseline: Telling, kind: str) -> int:
    """The first cycle of the uninterrupted telling that planned an action of ``kind``."""
    return next(i for i, kinds in enumerate(baseline.cycles) if kinds[kind])


def matrix(kinds: list[str] | None = None, platform: str = "servicenow") -> tuple[Telling, dict[str, Telling]]:
    """The uninterrupted telling on ``platform``, and one telling per ``point:kind`` (for every kind it planned,
    or ``kinds``), killed in the first cycle that planned the kind."""
    baseline = tell(platform=platform)
    found = kinds or sorted(set().union(*baseline.cycles))
    return baseline, {f"{point}:{kind}": tell(f"{point}:{kind}", first_cycle(baseline, kind), platform)
                      for point in POINTS for kind in found}


__all__ = ["PLATFORMS", "POINTS", "CrashHook", "Site", "Story", "Telling", "first_cycle", "matrix", "tell"]
