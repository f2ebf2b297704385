"""Benchmark: ``mim report`` on a large state, as whole processes a manager waits for.

    python bench/bench_report.py [--incidents 1000] [--repeat 5]

Builds a state of ``--incidents`` major incidents over three years (10 children each, 3 review tasks with due
dates in the ledger, a person's verdict on every proposal, timelines), then times, alternating, median of
``--repeat``: ``mim report --json`` on an empty state (the floor: interpreter, imports, process file),
``mim report --json`` and ``mim report --html`` on the large state; and prints the page's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(path: Path, count: int) -> None:
    """A state of ``count`` major incidents, written through the store's own methods."""
    from connector.core.actions import ActionKey, CreateTask
    from connector.core.ticket import Ticket
    from connector.detection.process_state import (
        Declared,
        FollowUp,
        HumanDecision,
        PlatformReading,
        ReviewCounts,
        ReviewTaskReading,
        TimelineEvent,
    )
    from connector.detection.registry import MIRecord
    from connector.job.store import StateStore
    from connector.platforms.base import ApplyResult

    start = datetime(2024, 1, 1, 9, tzinfo=timezone.utc)
    services = [f"service-{n}" for n in range(25)]
    with StateStore(path, "servicenow") as store, store.transaction():
        for n in range(count):
            first = start + timedelta(hours=26 * n)
            declared = first + timedelta(minutes=5 + n % 7)
            resolved = declared + timedelta(hours=1 + n % 5)
            mi = f"mi{n:05d}"
            rule = ("service-surge", "ci-surge", "p1-critical")[n % 3]
            mode = "accept" if rule == "p1-critical" else "propose"
            verdict = None if mode == "accept" else ("rejected" if n % 4 == 0 else "accepted")
            children = [f"{mi}-c{i}" for i in range(10)]
            store.upsert_tickets([Ticket(id=t, key=t.upper(), opened_at=first + timedelta(minutes=i), service=services[n % 25])
                                  for i, t in enumerate([mi, *children])])
            tasks = {}
            actions = []
            for k in range(3):
                due = resolved + timedelta(days=3 + 2 * k)
                actions.append(CreateTask(key=ActionKey.task(mi, k + 1), target=mi, rule=rule, reason="bench",
                                          title=f"review {k}", due=due))
                tasks[f"{mi}-t{k}"] = ReviewTaskReading(key=f"TASK{n}{k}", state="closed",
                                                        done_at=resolved + timedelta(days=1 + 3 * k))
            store.record_planned(actions, resolved)
            store.record_results([ApplyResult(a.key, "applied", created_id=f"{mi}-t{k}") for k, a in enumerate(actions)],
                                 resolved)
            record = MIRecord(
                id=mi, rule=rule, group=[services[n % 25]], started_at=first, declared_at=declared, key=mi.upper(),
                status="rejected" if verdict == "rejected" else "closed", stage="closed", children=children,
                declaration=Declared(first_opened_at=first, declared_at=declared, mode=mode, service=services[n % 25]),
                reading=PlatformReading(major=verdict or "accepted", state="closed", resolved_at=resolved),
                followup=FollowUp(followed_at=resolved, review_tasks=ReviewCounts(done=3, total=3), tasks=tasks),
                timeline=[TimelineEvent(at=declared, event="stage", value="identification"),
                          TimelineEvent(at=resolved, event="stage", value="maintenance")],
                decisions=[] if verdict is None else [HumanDecision(verdict=verdict, at=declared + timedelta(minutes=9),
                                                                     seen_at=declared + timedelta(minutes=10),
                                                                     rule=rule, mode=mode, was="proposed")])
            record.progress.maintenance.resolved_at = resolved
            store.save_major_incident(record)


def timed(args: list[str], state: Path, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env["MIM_STATE"] = str(state)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mim-bench-report-") as work:
        folder = Path(work)
        empty, large = folder / "empty.sqlite", folder / "large.sqlite"
        from connector.job.store import StateStore

        StateStore(empty, "servicenow").close()
        started = time.perf_counter()
        build(large, options.incidents)
        print(f"state of {options.incidents} major incidents built in {time.perf_counter() - started:.1f} s "
              f"({large.stat().st_size / 1e6:.1f} MB)")
        runs: dict[str, list[float]] = {"empty --json": [], "large --json": [], "large --html": []}
        for _ in range(options.repeat):
            runs["empty --json"].append(timed(["report", "--json"], empty, folder))
            runs["large --json"].append(timed(["report", "--json"], large, folder))
            runs["large --html"].append(timed(["report", "--html", "page.html"], large, folder))
        page = folder / "page.html"
        floor = statistics.median(runs["empty --json"])
        for name, values in runs.items():
            median = statistics.median(values)
            print(f"mim report {name:14} median {median:.2f} s  ({median / floor:.1f}x the empty state; "
                  f"runs {', '.join(f'{v:.2f}' for v in values)})")
        print(f"page: {page.stat().st_size / 1e6:.1f} MB for {options.incidents} major incidents")


if __name__ == "__main__":
    main()
