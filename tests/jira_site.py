"""The Jira simulator as an installation of the connector sees it, shared by the end-to-end tests: a
running simulator seeded with a storm, a clock shared by the simulator and the cycle, a state path, and the
shipped mapping, rules and process file. Every Cloud exchange is validated against Atlassian's OpenAPI document
at teardown (``tests/jira_openapi.py``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from connector.core.mapping import Mapping, load_mapping
from connector.core.settings import default_dir
from connector.detection.rules import Rule, load_rules
from connector.job.cycle import CycleReport, run_cycle
from connector.job.store import StateStore
from connector.platforms.jira import JiraPlatform
from connector.platforms.retry import RetryPolicy
from connector.process.processfile import ProcessFile, load_process
from connector.sim.base import SimServer
from connector.sim.jira import JiraSim
from tests import jira_openapi

EMAIL = "mim-bot@example.com"
TOKEN = "e2e-api-token-value"
UTC = timezone.utc
T0 = datetime(2024, 1, 15, 15, 0, tzinfo=UTC)
FLAVOURS = ["cloud", "dc"]


class Clock:
    """The simulator's clock and the cycle's ``now``."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    loaded, errors = load_mapping(default_dir("mappings") / "jira.yaml")
    assert loaded is not None, errors
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return load_rules([default_dir("rules")]).rules


@pytest.fixture(scope="module")
def process() -> ProcessFile:
    loaded, errors = load_process(default_dir("rules") / "process.yaml")
    assert loaded is not None, errors
    return loaded


@pytest.fixture(scope="session")
def contract() -> bool:
    """Whether the OpenAPI document is available (contract checks are skipped without it)."""
    try:
        jira_openapi.load_spec()
        jira_openapi._openapi()
    except (FileNotFoundError, ImportError) as exc:
        warnings.warn(f"Jira contract checks skipped: {exc}", stacklevel=1)
        return False
    return True


@dataclass
class Site:
    """A running simulator, a state path and the pieces of one connector installation."""

    sim: JiraSim
    server: SimServer
    clock: Clock
    state: Path
    mapping: Mapping
    rules: list[Rule]
    process: ProcessFile
    policy: Callable[[], RetryPolicy] = field(default=lambda: RetryPolicy(sleep=lambda s: None))
    storm: list[str] = field(default_factory=list)

    @property
    def flavour(self) -> str:
        return self.sim.flavour

    def platform(self) -> JiraPlatform:
        # flavour "auto": detection through /serverInfo is part of what is tested.
        return JiraPlatform(self.server.url, EMAIL, TOKEN, self.mapping, policy=self.policy())

    def cycle(self, store: StateStore | None = None, platform: JiraPlatform | None = None) -> CycleReport:
        """One cycle a minute later, as ``mim sync --once`` would run it (own store and session unless given)."""
        now = self.clock.advance(1)
        own_store, own_platform = store is None, platform is None
        store = store or StateStore(self.state, "jira")
        platform = platform or self.platform()
        try:
            # identification alone: these tests count the requests of detection and declaration
            return run_cycle(platform, store, self.rules, self.process, now, planners=())
        finally:
            if own_platform:
                platform.close()
            if own_store:
                store.close()

    def log(self) -> list[dict[str, Any]]:
        answer = requests.get(self.server.url + "/__sim/requests", timeout=5)
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()
        return entries

    def clear_log(self) -> None:
        requests.delete(self.server.url + "/__sim/requests", timeout=5)

    def writes(self) -> list[str]:
        """Requests in the log that change something (anything but GET and search)."""
        return [f"{e['method']} {e['path']}" for e in self.log()
                if e["method"] != "GET" and not e["path"].endswith(("/search/jql", "/search"))]

    def flagged(self) -> list[str]:
        keys = []
        for key in self.sim.issue_keys():
            fields = self.sim.issue(key)["fields"]
            if fields.get("customfield_10050") == "MAJOR_INCIDENT" or "major-incident" in fields["labels"]:
                keys.append(key)
        return keys

    def children_of(self, major: str) -> list[str]:
        """Issues that show "is caused by <major>" with the configured link type."""
        out = []
        for key in self.sim.issue_keys():
            for link in self.sim.links(key):
                if link["type"]["name"] == "Problem/Incident" and link.get("inwardIssue", {}).get("key") == major:
                    out.append(key)
        return out

    def open_incident(self, summary: str, caller: str, minutes_ago: float, service: str = "web-shop") -> str:
        opened = self.clock.now - timedelta(minutes=minutes_ago)
        made = self.sim.create_issue({"summary": summary, "issuetype": "Incident", "components": [service],
                                      "reporter": caller, "created": opened.isoformat()})
        return str(made["key"])


@pytest.fixture
def site(tmp_path: Path, mapping: Mapping, rules: list[Rule], process: ProcessFile,
         contract: bool) -> Iterator[Callable[..., Site]]:
    """Factory of simulators seeded with a storm (6 web-shop incidents, distinct callers) and noise; every Cloud
    exchange is validated against the OpenAPI document at teardown."""
    made: list[Site] = []

    def make(flavour: str = "cloud", start: datetime = T0, **sim_kwargs: Any) -> Site:
        clock = Clock(start)
        # Data Center sites have no JSM major incident field: the label path is exercised there.
        sim_kwargs.setdefault("major_incident_field", flavour == "cloud")
        sim = JiraSim(email=EMAIL, token=TOKEN, flavour=flavour, clock=clock, record_exchanges=True, **sim_kwargs)
        server = sim.server().start()
        s = Site(sim, server, clock, tmp_path / f"state-{len(made)}.sqlite", mapping, rules, process)
        for n in range(3):
            s.open_incident(f"Payroll export slow {n}", f"clerk{n}", 40 - n, service="payroll")
        s.open_incident("Printer jam", "clerk9", 25, service="printing")
        for n in range(6):
            s.storm.append(s.open_incident(f"Cannot check out ({n})", f"shopper{n}", 10 - n))
        s.open_incident("VPN drops", "remote1", 3, service="vpn")
        made.append(s)
        return s

    yield make
    findings: list[str] = []
    for s in made:
        s.server.stop()
        if contract and s.flavour == "cloud":
            findings.extend(jira_openapi.validate_exchanges(s.sim.exchanges))
    if findings:
        pytest.fail("the connector's Jira traffic does not match the OpenAPI spec:\n" + "\n".join(findings[:40]))


def doctor(s: Site, tmp_path: Path) -> dict[str, tuple[bool, str]]:
    """``mim doctor`` against the site with the shipped rules, process file and mapping: ``{check: (ok, detail)}``."""
    from connector.core.settings import Settings
    from connector.job.doctor import run_doctor

    settings = Settings.model_validate({
        "platform": "jira", "state": str(tmp_path / "doctor.sqlite"), "rules": str(default_dir("rules")),
        "jira": {"url": s.server.url, "email": EMAIL, "token": TOKEN, "project": "ITSM"}})
    return {c.name: (c.ok, c.detail) for c in run_doctor(settings)}
