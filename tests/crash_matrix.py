"""The crash matrix: a major incident's whole life on the ServiceNow simulator (simulated time), told once
without a fault and once per write point x action kind with the process killed there (the test-only hook
of ``connector/job/faults.py``), then rerun; every telling must end in the same platform state.

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
from typing import Any

from pydantic import SecretStr

from connector.core.mapping import load_mapping
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.faults import CRASH_ENV, POINTS, CrashHook
from connector.job.store import StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms.retry import RetryPolicy
from connector.platforms.servicenow import ServiceNowPlatform
from connector.process.processfile import load_process
from tests.shipped import servicenow_sim

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, business hours in Berlin
USER, PASSWORD = "crash", "crash-password-123"
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


@dataclass
class Telling:
    """One telling of the story: what the cycles planned, whether the hook fired, the end state."""

    cycles: list[Counter[str]] = field(default_factory=list)
    """The kinds of action each cycle planned (after the rerun, for the crashed one)."""
    crashed: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    deliveries: int = 0


class Story:
    """The simulator, the state folder and the configuration of one telling."""

    def __init__(self, folder: Path) -> None:
        self.clock = Clock()
        self.sim = servicenow_sim(user=USER, password=PASSWORD, clock=self.clock, cascade_resolve=False)
        self.sim.insert("sys_user_group", {"name": "major-incident-team"})
        for user in ("alice.martin", "bob.schneider", "carla.rossi"):
            self.sim.insert("sys_user", {"user_name": user, "name": user})
        self.server = self.sim.server().start()
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
        mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
        assert mapping is not None, errors
        self.mapping = mapping
        self.telling = Telling()

    def close(self) -> None:
        self.server.stop()
        self.receiver.stop()

    # -- one cycle in a child process --------------------------------------------------------------------------

    def _cycle_here(self) -> Counter[str]:
        platform = ServiceNowPlatform(self.server.url, USER, PASSWORD, self.mapping,
                                      policy=RetryPolicy(base=0.01, cap=0.05, sleep=lambda s: None),
                                      clock=self.clock)  # proposed_on in simulated time, the same in every telling
        notifier = WebhookNotifier({"ops": SecretStr(self.receiver.url)}, policy=RetryPolicy(attempts=1))
        try:
            with StateStore(self.state, "servicenow") as store:
                report = run_cycle(platform, store, self.rules, self.process, self.clock(), notifier=notifier)
        finally:
            platform.close()
        return Counter(item["kind"] for item in report.planned)

    def cycle(self, crash: str | None) -> None:
        """One sync cycle. Armed (``crash``), it runs in a child process with the hook set, and when the hook
        kills it, the rerun follows here; unarmed, it runs here (the hook is never set in this process)."""
        if crash is not None:
            self.telling.crashed += self._forked(crash)
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

    # -- the story ---------------------------------------------------------------------------------------------

    def open_ticket(self, title: str, caller: str, service: str, ci: str = "") -> str:
        stamp = self.clock().strftime("%Y-%m-%d %H:%M:%S")
        record = self.sim.insert("incident", {"short_description": title, "caller_id": caller, "business_service": service,
                                              "cmdb_ci": ci, "impact": "2", "urgency": "2", "opened_at": stamp,
                                              "sys_created_on": stamp, "sys_created_by": caller})
        return str(record["sys_id"])

    def tell(self, crash: str | None = None, at: int = -1) -> Telling:
        """The whole story; with ``crash`` (``point:kind``) cycle number ``at`` (from 0) runs in a child process
        armed with it, is killed there and rerun."""
        def step() -> None:
            self.cycle(crash if len(self.telling.cycles) == at else None)

        for i in range(4):
            self.open_ticket(f"Routine request {i}", f"user{i}", ["email", "vpn", "printing", "erp"][i])
        parent = ""
        for i in range(6):  # the web shop goes down: a surge on the service, declared on its earliest ticket
            sys_id = self.open_ticket(f"Checkout fails ({i})", f"shopper{i}", "web-shop")
            parent = parent or sys_id
            self.clock.advance(seconds=30)
            # meanwhile a database fails under several services: a surge on the CI, under a parent it creates
            if i < 5:
                self.open_ticket(f"Reports time out ({i})", f"analyst{i}", ["erp", "hr-portal", "crm", "bi", "wiki"][i], "db-7")
            self.clock.advance(seconds=20)
        step()
        self.clock.advance(minutes=20)
        self.open_ticket("Cannot pay", "late-shopper", "web-shop")  # a late caller joins
        self.sim.update("incident", parent, {"u_mim_stage": "resolution", "sys_updated_by": "agent.jane"})
        step()
        self.clock.advance(minutes=40)
        self.sim.update("incident", parent, {"state": "6", "close_code": "Solved (Permanently)",
                                             "close_notes": "Rolled back release 4.2.", "sys_updated_by": "agent.jane"})
        step()
        self.clock.advance(hours=2)
        self.sim.update("incident", parent, {"state": "7", "sys_updated_by": "agent.jane"})
        for task in self.sim.records("incident_task"):
            self.sim.update("incident_task", task["sys_id"], {"state": "3", "sys_updated_by": "alice.martin"})
        step()
        self.clock.advance(minutes=30)
        step()
        self.telling.state = self.end_state()
        self.telling.deliveries = len(self.receiver.deliveries)
        return self.telling

    def end_state(self) -> dict[str, Any]:
        """What the platform and the webhook hold, without the ids and numbers a rerun may assign differently.

        The simulator draws every sys_id, journal entries' too, from one seeded sequence: a cycle killed
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
        hooks = sorted({key for key, _ in self.receiver.deliveries})
        state = {"incidents": rows, "notes": notes, "tasks": tasks, "changes": changes, "webhook_keys": hooks}
        return {part: sorted(_SYNTHETIC.sub("new-#", _TAG.sub("[mim-#]", line)) for line in lines)
                for part, lines in state.items()}


def tell(crash: str | None = None, at: int = -1) -> Telling:
    """One telling in a fresh simulator and state folder (see :meth:`Story.tell`)."""
    with tempfile.TemporaryDirectory(prefix="mim-crash-") as folder:
        story = Story(Path(folder))
        try:
            return story.tell(crash, at)
        finally:
            story.close()


def first_cycle(baseline: Telling, kind: str) -> int:
    """The first cycle of the uninterrupted telling that planned an action of ``kind``."""
    return next(i for i, kinds in enumerate(baseline.cycles) if kinds[kind])


def matrix(kinds: list[str] | None = None) -> tuple[Telling, dict[str, Telling]]:
    """The uninterrupted telling, and one telling per ``point:kind`` (for every kind it planned, or ``kinds``),
    killed in the first cycle that planned the kind."""
    baseline = tell()
    found = kinds or sorted(set().union(*baseline.cycles))
    return baseline, {f"{point}:{kind}": tell(f"{point}:{kind}", first_cycle(baseline, kind))
                      for point in POINTS for kind in found}


__all__ = ["POINTS", "CrashHook", "Story", "Telling", "matrix", "tell"]
