"""Requests per sync cycle against the ServiceNow simulator: a quiet cycle, a storm of 200 tickets with the
Batch API, the same storm with one PATCH per record (the baseline), and the ratio; and the cycle that rebuilds
the state from the markers after the state file is lost (markers in our own column, or in work notes on an
instance without it).

Each figure is one ``mim sync --once`` run (through the CLI, as an operator runs it) against a fresh
simulator on 127.0.0.1, counted from the simulator's request log (``/__sim/requests``).

    python bench/bench_requests_servicenow.py            # print the table
    python bench/bench_requests_servicenow.py --append   # also append it to bench/RESULTS.md
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
from connector.sim.servicenow import INCIDENT_FIELDS  # noqa: E402
from tests.shipped import servicenow_sim  # noqa: E402

USER, PASSWORD = "mim.bench", "bench-pw"
SERVICE = "5e" * 16
PROCESS = {"version": 1, "team": {"group": "major-incident-team", "raise_priority": 1},
           "managers": {"rota": [{"id": "alice.martin", "name": "Alice Martin"}]},
           "communications": {"templates": {"declared": "Major incident {key} declared by rule {rule}: {title}."}}}


class Bench:
    """A simulator plus a private config/state directory, and a way to run one cycle and count requests."""

    def __init__(self, home: Path, batch: bool = True, marker_column: bool = True) -> None:
        self.home = home
        (home / "rules").mkdir()
        shutil.copy(ROOT / "rules" / "default.yaml", home / "rules" / "default.yaml")
        (home / "rules" / "process.yaml").write_text(yaml.safe_dump(PROCESS), encoding="utf-8")
        shutil.copytree(ROOT / "mappings", home / "mappings")
        mapping = home / "mappings" / "servicenow.yaml"
        data = yaml.safe_load(mapping.read_text(encoding="utf-8"))
        data["write"]["batch"] = batch
        mapping.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        (home / "mim.toml").write_text("", encoding="utf-8")
        fields = [f for f in INCIDENT_FIELDS if marker_column or f != "u_mim_marker"]
        self.sim = servicenow_sim(user=USER, password=PASSWORD, incident_fields=fields)
        self.sim.insert("sys_user_group", {"name": "major-incident-team"})
        self.sim.insert("sys_user", {"user_name": "alice.martin"})
        self.server = self.sim.server()
        self.server.start()
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.env = {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": self.server.url,
                    "MIM_SERVICENOW_USERNAME": USER, "MIM_SERVICENOW_PASSWORD": PASSWORD,
                    "MIM_STATE": str(home / "state.sqlite"), "MIM_RULES": str(home / "rules"),
                    "MIM_MAPPINGS": str(home / "mappings"), "MIM_CONFIG": str(home / "mim.toml")}

    def incidents(self, count: int, minutes: float, service: str = SERVICE, first_caller: int = 1) -> None:
        for i in range(count):
            opened = self.now - timedelta(minutes=minutes - minutes * i / max(count, 1))
            self.sim.insert("incident", {"short_description": "Checkout fails", "business_service": service,
                                         "caller_id": f"{first_caller + i:032x}", "opened_at": opened,
                                         "sys_created_on": opened, "sys_updated_on": opened})

    def cycle(self) -> tuple[int, Counter[str]]:
        """One ``mim sync --once``; the requests it sent (from the simulator's log) by method."""
        self.server.clear_requests()
        result = CliRunner().invoke(cli.main, ["sync", "--once", "--json"], env=self.env, catch_exceptions=False)
        report: dict[str, Any] = json.loads(result.stdout)
        if report["failures"]:
            raise SystemExit(f"cycle failed: {report['failures'][:3]}")
        log = self.server.requests()
        return len(log), Counter(entry["method"] for entry in log)

    def close(self) -> None:
        self.server.stop()


def storm(batch: bool) -> tuple[int, Counter[str]]:
    """Requests of the cycle that declares a storm of 200 tickets, on a connector that was already running."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), batch=batch)
        try:
            bench.incidents(1, 60, service="0f" * 16, first_caller=900)
            bench.cycle()
            bench.incidents(200, 10)
            return bench.cycle()
        finally:
            bench.close()


def quiet() -> int:
    """Requests of a cycle in which nothing changed (after a declared storm has settled)."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.incidents(6, 12)
            bench.cycle()
            bench.cycle()
            return bench.cycle()[0]
        finally:
            bench.close()


def rebuild(marker_column: bool) -> int:
    """Requests of the first cycle after the state file of a running connector is lost, one major incident
    with 5 children on the instance (it must be found again from its marker, not declared twice)."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), marker_column=marker_column)
        try:
            bench.incidents(6, 12)
            bench.cycle()
            bench.cycle()
            for suffix in ("", "-wal", "-shm"):
                (Path(tmp) / f"state.sqlite{suffix}").unlink(missing_ok=True)
            return bench.cycle()[0]
        finally:
            bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    quiet_requests = quiet()
    with_batch, batch_methods = storm(batch=True)
    without_batch, single_methods = storm(batch=False)
    ratio = without_batch / with_batch
    rows = [("quiet cycle (nothing changed)", str(quiet_requests)),
            ("storm of 200, Batch API", f"{with_batch} ({methods(batch_methods)})"),
            ("storm of 200, one PATCH per record (baseline)", f"{without_batch} ({methods(single_methods)})"),
            ("baseline / Batch API", f"{ratio:.1f}x"),
            ("rebuild after a lost state, marker column", str(rebuild(marker_column=True))),
            ("rebuild after a lost state, no marker column", str(rebuild(marker_column=False)))]
    report(rows, "ServiceNow requests per cycle",
           f"`python bench/bench_requests_servicenow.py` ({datetime.now(timezone.utc):%Y-%m-%d}, simulator on "
           "127.0.0.1, one `mim sync --once` per figure, counted from `/__sim/requests`; the storm cycle "
           "runs on a connector that already has state and cached discovery).",
           args.append)


if __name__ == "__main__":
    main()
