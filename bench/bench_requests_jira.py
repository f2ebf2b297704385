"""Requests per sync cycle against the Jira Cloud simulator: a quiet cycle with discovery cached and
uncached, and the cycle that declares a storm of 200 issues (on a running connector, and on a fresh state
where every write is read first).

Each figure is one ``mim sync --once`` run (through the CLI, as an operator runs it) against a simulator on
127.0.0.1, counted from the simulator's request log (``/__sim/requests``).

    python bench/bench_requests_jira.py            # print the table
    python bench/bench_requests_jira.py --append   # also append it to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from _requests_table import methods, report  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
from connector.job.store import StateStore  # noqa: E402
from connector.sim.jira import seeded  # noqa: E402

EMAIL, TOKEN = "mim.bench@example.com", "bench-token"
PROCESS = {"version": 1, "team": {"group": "major-incident-team", "raise_priority": 1},
           "managers": {"rota": [{"id": "alice.martin", "name": "Alice Martin"}]},
           "communications": {"stakeholders": [{"name": "service-desk", "people": ["carla.rossi"]}],
                              "templates": {"declared": "Major incident {key} declared by rule {rule}: {title}."}}}


class Bench:
    """A Jira simulator plus a private config/state directory; runs one cycle and counts its requests."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "rules").mkdir()
        shutil.copy(ROOT / "rules" / "default.yaml", home / "rules" / "default.yaml")
        (home / "rules" / "process.yaml").write_text(yaml.safe_dump(PROCESS), encoding="utf-8")
        (home / "mim.toml").write_text("", encoding="utf-8")
        # A JSM Premium site that knows the people and teams of the process file (as `mim simulate jira` does).
        self.sim = seeded(EMAIL, TOKEN, "cloud", ["alice.martin", "carla.rossi"], ["major-incident-team"])
        self.server = self.sim.server()
        self.server.start()
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.state = home / "state.sqlite"
        self.env = {"MIM_PLATFORM": "jira", "MIM_JIRA_URL": self.server.url, "MIM_JIRA_EMAIL": EMAIL,
                    "MIM_JIRA_TOKEN": TOKEN, "MIM_JIRA_PROJECT": "ITSM", "MIM_STATE": str(self.state),
                    "MIM_RULES": str(home / "rules"), "MIM_MAPPINGS": str(ROOT / "mappings"),
                    "MIM_CONFIG": str(home / "mim.toml")}
        self._callers = 0

    def incidents(self, count: int, minutes: float, service: str = "web-shop", ago: float = 0) -> None:
        """``count`` incidents on ``service`` opened over ``minutes``, the last ``ago`` minutes before now."""
        for i in range(count):
            self._callers += 1
            opened = self.now - timedelta(minutes=ago + minutes - minutes * i / max(count, 1))
            self.sim.create_issue({"summary": "Checkout fails", "components": [service], "affected_services": [service],
                                   "reporter": f"caller{self._callers:04d}", "created": opened.isoformat()})

    def cycle(self) -> tuple[int, Counter[str]]:
        """One ``mim sync --once``; the requests it sent (from the simulator's log) by method."""
        self.server.clear_requests()
        result = CliRunner().invoke(cli.main, ["sync", "--once", "--json"], env=self.env, catch_exceptions=False)
        report: dict[str, Any] = json.loads(result.stdout)
        if report["failures"]:
            raise SystemExit(f"cycle failed: {report['failures'][:3]}")
        log = self.server.requests()
        return len(log), Counter(entry["method"] for entry in log)

    def expire_discovery(self) -> None:
        """Let the cached discovery expire, as it does every ``discovery_ttl``."""
        with StateStore(self.state, "jira") as store:
            cached = store.discovery(datetime.now(timezone.utc))
            assert cached is not None
            store.set_discovery(cached, datetime.now(timezone.utc) - timedelta(seconds=1))

    def close(self) -> None:
        self.server.stop()


def quiet() -> tuple[int, int]:
    """Requests of a cycle in which nothing changed, with discovery cached and after it expired."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.incidents(6, 12)
            bench.cycle()
            bench.cycle()
            cached = bench.cycle()[0]
            bench.expire_discovery()
            uncached = bench.cycle()[0]
            return cached, uncached
        finally:
            bench.close()


def storm(fresh_state: bool, experienced: bool = False) -> tuple[int, Counter[str]]:
    """Requests of the cycle that declares a storm of 200 issues: on a running connector (state and cached
    discovery; ``experienced``: it ran a major incident before, so the site's people and team are known), or on a
    fresh state (discovery, the marker rebuild, every write read first)."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            if not fresh_state:
                # an earlier major incident (payroll, half an hour ago), or one quiet ticket an hour ago
                bench.incidents(6 if experienced else 1, 8 if experienced else 60, service="payroll",
                                ago=30 if experienced else 0)
                bench.cycle()
            bench.incidents(200, 10)
            return bench.cycle()
        finally:
            bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    cached, uncached = quiet()
    experienced, experienced_methods = storm(fresh_state=False, experienced=True)
    running, running_methods = storm(fresh_state=False)
    fresh, fresh_methods = storm(fresh_state=True)
    rows = [("quiet cycle, discovery cached", str(cached)),
            ("quiet cycle, discovery expired", str(uncached)),
            ("storm of 200, running connector that ran a major incident before",
             f"{experienced} ({methods(experienced_methods)})"),
            ("storm of 200, running connector, its first major incident (people and team looked up)",
             f"{running} ({methods(running_methods)})"),
            ("storm of 200, fresh state (reads before writes)", f"{fresh} ({methods(fresh_methods)})")]
    report(rows, "Jira requests per cycle",
           f"`python bench/bench_requests_jira.py` ({datetime.now(timezone.utc):%Y-%m-%d}, Jira Cloud simulator "
           "(JSM Premium, knowing the process file's people and team) on 127.0.0.1, one `mim sync --once` per "
           "figure, counted from `/__sim/requests`. Jira has no batch API: each child costs its link POST (the "
           "link is its marker); the edits of one issue in a cycle are one PUT; the team and the manager are one "
           "responder/add, the stakeholders one stakeholder/add; on a fresh state the children are read 50 to a "
           "search; the search pages hold 100 issues.",
           args.append)


if __name__ == "__main__":
    main()
