"""Hostile input and faults (issue 12): the figures of one run, printed as one table.

    python bench/bench_hostile.py                      # everything: fuzz, crash matrix, platform data, soak
    python bench/bench_hostile.py fuzz --files 5000    # one part
    python bench/bench_hostile.py soak --cycles 200    # a shorter soak

* **fuzz** - ``--files`` mutants of the rule, process, mapping and rule-test files (``tests/config_fuzz.py``,
  seeded), each fed to its loader and, when it loads, to the engine, the planner or the mapping, in a child
  process whose address space is capped at 2 GiB (so a bomb fails instead of eating the machine) with a
  10 s alarm per file. Counts: located errors, files that loaded and ran on, uncaught exceptions, files over
  2 s; the slowest file; the child's peak RSS.
* **crash** - the crash matrix (``tests/crash_matrix.py``): for each write point x action kind, the process
  killed there (SIGKILL) and rerun; converged = the same platform end state as the uninterrupted telling. On the
  ServiceNow simulator (ten kinds), then on the Jira Cloud simulator with JSM Premium (all thirteen).
* **platform** - one hostile record (opened first) next to a real storm of six, one ``mim sync --once`` each
  (through the CLI): survived = exit 0, no traceback, the storm's tickets all in one major incident (proposed or
  accepted) and no other one declared on the service, and only valid sys_ids written as a parent. A malformed record is also reported
  (skipped, or dated in the future); one that is merely odd (a 100 kB title) may lead the storm; one that
  carries the connector's own marker is taken for the major incident it claims to be, by design.
* **soak** - ``mim run`` (a real process, ``--max-cycles``) against the ServiceNow simulator answering 30% of
  requests with a fault (429 and 503 with ``Retry-After: 0``, 500, 502, a dropped connection, a slow answer),
  while storms of 5-9 callers arrive at random and an agent walks each declared major incident to closed.
  RSS of the ``mim run`` process sampled every 2 s; at the end (after one more ``mim sync --once`` with the
  faults off) the platform is checked for duplicate writes (a storm declared twice, a note written twice on a
  record, a review task or a change created twice) and for lost ones (a storm without its major incident, a
  storm ticket not linked to it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USER, PASSWORD = "soak", "soak-password-123"


# -- fuzz -------------------------------------------------------------------------------------------------------


def fuzz_child(files: int, seed: int, out: str) -> None:
    """Runs in its own process: the corpus, capped in memory and time per file."""
    from tests.config_fuzz import SEEDS, corpus, run_one, write_mutant

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    class Timeout(Exception):
        pass

    def alarm(*_: Any) -> None:
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    for kind, paths in SEEDS.items():  # warm up the imports
        run_one(kind, paths[0])
    stages: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    slow: list[tuple[int, str, float]] = []
    slowest = (0.0, -1, "")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mim-fuzz-") as folder:
        for index, (kind, text) in enumerate(corpus(files, seed)):
            path = write_mutant(Path(folder), index, kind, text)
            signal.alarm(10)
            try:
                outcome = run_one(kind, path)
            except Timeout:
                crashes["timeout (10 s)"] += 1
                slow.append((index, kind, 10.0))
                continue
            finally:
                signal.alarm(0)
                path.unlink()
            stages["located errors" if outcome.stage == "load" else "loaded and ran on" if not outcome.crash else "crash"] += 1
            if outcome.crash:
                crashes[f"{kind}: {outcome.exception}"] += 1
            if outcome.seconds > 2:
                slow.append((index, kind, round(outcome.seconds, 2)))
            slowest = max(slowest, (outcome.seconds, index, kind))
    result = {"files": files, "seed": seed, "stages": dict(stages), "crashes": dict(crashes), "slow": slow,
              "slowest_s": round(slowest[0], 3), "slowest": f"#{slowest[1]} ({slowest[2]})",
              "seconds": round(time.monotonic() - started, 1),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def fuzz(files: int, seed: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "fuzz-child", "--files", str(files), "--seed", str(seed),
                        "--out", out.name], check=True)
        result: dict[str, Any] = json.loads(Path(out.name).read_text(encoding="utf-8"))
    return result


# -- crash matrix -----------------------------------------------------------------------------------------------


def crash(platform: str = "servicenow") -> dict[str, Any]:
    from tests.crash_matrix import POINTS, matrix

    started = time.monotonic()
    baseline, cells = matrix(platform=platform)
    kinds = sorted(set().union(*baseline.cycles))
    converged = {name: cell.crashed == 1 and cell.state == baseline.state for name, cell in cells.items()}
    return {"points": list(POINTS), "kinds": kinds, "cells": len(cells), "converged": sum(converged.values()),
            "failed": sorted(name for name, ok in converged.items() if not ok),
            "records": {part: len(lines) for part, lines in baseline.state.items()},
            "seconds": round(time.monotonic() - started, 1)}


# -- platform data ----------------------------------------------------------------------------------------------


def _cli_env(url: str, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME=USER,
               MIM_SERVICENOW_PASSWORD=PASSWORD, MIM_STATE=str(state), PYTHONPATH=str(ROOT))
    return env


PLATFORM_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("updated in 2099", {"sys_updated_on": "2099-01-01 00:00:00"}),
    ("opened in 2099", {"opened_at": "2099-01-01 00:00:00", "sys_updated_on": "2099-01-01 00:00:00"}),
    ("sys_id 12345", {"sys_id": "12345"}),
    ("sys_id with a query in it", {"sys_id": "a" * 31 + "^ORsys_idISNOTEMPTY"}),
    ("parent_incident 12345", {"parent_incident": "12345"}),
    ("rfc ../x", {"rfc": "../../x"}),
    ("unknown state 99", {"state": "99"}),
    ("priority 'urgent'", {"priority": "urgent"}),
    ("opened_at 'yesterday'", {"opened_at": "yesterday"}),
    ("no opened_at", {"opened_at": ""}),
    ("line breaks and escapes in title and service", {"short_description": "x\ny\x1b[2J", "business_service": "a\nb"}),
    ("100 kB title", {"short_description": "x" * 100_000}),
    ("marker of a rule that does not exist", {"correlation_id": "mim:no-such-rule", "major_incident_state": "accepted"}),
    ("marker with an unknown synthetic id", {"correlation_id": "mim:service-surge:new-0000000000000000",
                                             "major_incident_state": "proposed"}),
    ("major_incident_state 'weird'", {"major_incident_state": "weird"}),
    ("stage 'launch'", {"u_mim_stage": "launch"}),
]


def platform() -> dict[str, Any]:
    from tests.shipped import servicenow_sim

    results = []
    for name, fields in PLATFORM_FAULTS:
        sim = servicenow_sim(user=USER, password=PASSWORD, seed=7)
        server = sim.server().start()
        try:
            with tempfile.TemporaryDirectory(prefix="mim-data-") as folder:
                now = datetime.now(timezone.utc).replace(microsecond=0)
                stamp = (now - timedelta(minutes=11)).strftime("%Y-%m-%d %H:%M:%S")
                bad = sim.insert("incident", {"short_description": "Checkout fails", "business_service": "web-shop",
                                              "caller_id": "bad-caller", "opened_at": stamp, "sys_created_on": stamp,
                                              "sys_updated_on": stamp, **fields})
                storm = [sim.insert("incident", {"short_description": "Checkout fails", "business_service": "web-shop",
                                                 "caller_id": f"caller{i}",
                                                 "opened_at": (now - timedelta(minutes=10 - i)).strftime("%Y-%m-%d %H:%M:%S")})
                         for i in range(6)]
                run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once", "--json"],
                                     env=_cli_env(server.url, Path(folder) / "state.sqlite"), capture_output=True,
                                     text=True, timeout=120)
                report = json.loads(run.stdout) if run.returncode == 0 and run.stdout.strip() else {}
                # the storm's major incident: the one record its tickets are linked to, proposed or accepted
                rows = {r["sys_id"]: r for r in sim.records("incident")}
                parents = {rows[t["sys_id"]].get("parent_incident") for t in storm} - {"", None}
                mi = parents.pop() if len(parents) == 1 else None
                if mi is None and rows[storm[0]["sys_id"]].get("major_incident_state") in ("proposed", "accepted"):
                    mi = storm[0]["sys_id"]
                storm_ok = (mi in rows and rows[mi].get("major_incident_state") in ("proposed", "accepted")
                            and all(t["sys_id"] == mi or rows[t["sys_id"]].get("parent_incident") == mi for t in storm))
                # and no other major incident on the storm's service, but one the hostile record came with
                others = [i for i, r in rows.items() if i not in (mi, bad["sys_id"]) and r.get("business_service") == "web-shop"
                          and r.get("major_incident_state")]
                storm_ok = storm_ok and not others
                written_ids = {r.get("parent_incident") for r in sim.records("incident")} - {"", None, fields.get("parent_incident")}
                ids_ok = bool(mi and re.fullmatch("[0-9a-f]{32}", mi)) and all(
                    re.fullmatch("[0-9a-f]{32}", i) for i in written_ids)
                reported = bool(report.get("skipped_records") or report.get("future_records"))
                results.append({"fault": name, "exit": run.returncode, "traceback": "Traceback" in run.stderr,
                                "one_major_incident_for_the_storm": storm_ok, "only_valid_ids_written": ids_ok,
                                "on_the_bad_record": mi == bad["sys_id"], "reported": reported,
                                "survived": run.returncode == 0 and "Traceback" not in run.stderr and storm_ok and ids_ok})
        finally:
            server.stop()
    return {"cases": results, "survived": sum(r["survived"] for r in results), "total": len(results)}


# -- soak -------------------------------------------------------------------------------------------------------


FAULTS = [("429", 0.08), ("503", 0.08), ("500", 0.05), ("502", 0.04), ("drop", 0.03), ("slow", 0.04)]
"""Kind and rate, tried in order; together about 27% of requests get one, and slow (no error) takes the total
over 30% (1 - product of (1 - rate))."""


def _rss_kib(pid: int) -> tuple[int, int]:
    """Current and peak RSS of ``pid`` in KiB (VmRSS, VmHWM)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


class Agent(threading.Thread):
    """Opens storms at random and walks each declared major incident to closed, as agents would."""

    def __init__(self, sim: Any, seed: int, every: float) -> None:
        super().__init__(daemon=True)
        self.sim = sim
        self.rng = random.Random(seed)
        self.every = every
        self.stop = threading.Event()
        self.storms: list[tuple[str, list[str]]] = []
        self.steps: Counter[str] = Counter()

    def run(self) -> None:
        n = 0
        next_storm = self.rng.expovariate(1 / self.every)
        waited = 0.0
        while not self.stop.wait(1.0):
            waited += 1.0
            self.walk()
            if waited < next_storm:
                continue
            waited, next_storm = 0.0, self.rng.expovariate(1 / self.every)
            n += 1
            service = f"svc-{n:04d}"
            tickets = []
            for i in range(self.rng.randint(5, 9)):
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                tickets.append(self.sim.insert("incident", {"short_description": f"{service} is down ({i})",
                                                            "business_service": service, "caller_id": f"{service}-c{i}",
                                                            "opened_at": stamp})["sys_id"])
            for _ in range(self.rng.randint(0, 3)):  # background noise
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                self.sim.insert("incident", {"short_description": "Printer jam", "business_service": f"office-{n}",
                                             "caller_id": f"noise-{n}-{self.rng.random():.6f}", "opened_at": stamp})
            self.storms.append((service, tickets))

    def walk(self) -> None:
        """Move each declared major incident one step on: resolution, resolved, closed with its tasks done."""
        for record in self.sim.records("incident"):
            if not record.get("major_incident_state") or record.get("state") == "7":
                continue
            stage, state = record.get("u_mim_stage"), record.get("state")
            if stage == "containment":
                self.sim.update("incident", record["sys_id"], {"u_mim_stage": "resolution", "sys_updated_by": "agent"})
                self.steps["resolution"] += 1
            elif stage == "resolution" and record.get("rfc") and state != "6":
                self.sim.update("incident", record["sys_id"], {"state": "6", "close_code": "Solved (Permanently)",
                                                               "close_notes": "fixed", "sys_updated_by": "agent"})
                self.steps["resolved"] += 1
            elif stage == "maintenance" and state == "6":
                for task in self.sim.records("incident_task"):
                    if task.get("incident") == record["sys_id"] and task.get("state") != "3":
                        self.sim.update("incident_task", task["sys_id"], {"state": "3", "sys_updated_by": "agent"})
                self.sim.update("incident", record["sys_id"], {"state": "7", "sys_updated_by": "agent"})
                self.steps["closed"] += 1


def duplicates(sim: Any, storms: list[tuple[str, list[str]]]) -> dict[str, int]:
    """Writes the platform holds twice."""
    incidents = sim.records("incident")
    majors = Counter(r["business_service"] for r in incidents if r.get("major_incident_state"))
    tags = Counter((j["element_id"], tag) for j in sim.records("sys_journal_field")
                   for tag in re.findall(r"\[mim-[0-9a-f]+\]", j["value"]))
    tasks = Counter((t.get("incident"), t["short_description"]) for t in sim.records("incident_task"))
    changes = Counter(c.get("correlation_id") or c["short_description"] for c in sim.records("change_request"))
    return {"storms declared twice": sum(1 for n in majors.values() if n > 1),
            "notes written twice": sum(n - 1 for n in tags.values() if n > 1),
            "review tasks created twice": sum(n - 1 for n in tasks.values() if n > 1),
            "changes created twice": sum(n - 1 for n in changes.values() if n > 1)}


def lost(sim: Any, storms: list[tuple[str, list[str]]]) -> dict[str, int]:
    """Writes the platform should hold and does not."""
    incidents = {r["sys_id"]: r for r in sim.records("incident")}
    missing = unlinked = 0
    for service, tickets in storms:
        majors = [r["sys_id"] for r in incidents.values() if r.get("business_service") == service
                  and str(r.get("correlation_id")).startswith("mim:")]
        if not majors:
            missing += 1
            continue
        unlinked += sum(1 for t in tickets if t not in majors and incidents[t].get("parent_incident") not in majors)
    return {"storms without a major incident": missing, "storm tickets not linked": unlinked}


def soak(cycles: int, storm_every: float, seed: int) -> dict[str, Any]:
    from tests.shipped import servicenow_sim

    sim = servicenow_sim(user=USER, password=PASSWORD, seed=seed)  # knows the shipped people and groups
    server = sim.server().start()
    for kind, rate in FAULTS:
        server.add_fault(kind, rate=rate, retry_after=0, delay=0.3)
    agent = Agent(sim, seed, storm_every)
    samples: list[tuple[float, int, int, int]] = []
    """(seconds, cycles done, RSS KiB, peak RSS KiB)"""
    counted = Counter[str]()
    with tempfile.TemporaryDirectory(prefix="mim-soak-") as folder:
        env = _cli_env(server.url, Path(folder) / "state.sqlite")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "run", "--interval", "0.2s", "--max-cycles",
                                 str(cycles), "--log-format", "json"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        agent.start()

        def read_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                try:
                    entry = json.loads(line)
                except ValueError:
                    counted["non-JSON log lines"] += 1
                    continue
                message = str(entry.get("message") or entry.get("msg") or "")
                counted[message] += 1
                if message == "cycle done":
                    counted["writes"] += int((entry.get("results") or entry.get("fields", {}).get("results") or {}).get("applied", 0))

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        while proc.poll() is None:
            try:
                rss, hwm = _rss_kib(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            samples.append((time.monotonic() - started, counted["cycle done"], rss, hwm))
            time.sleep(2)
        code = proc.wait()
        reader.join(timeout=10)
        agent.stop.set()
        agent.join(timeout=30)
        faults = sum(rule.fired for rule in server.faults)
        # one last cycle with the faults off, so the end state is what the connector settles to
        server.clear_faults()
        final = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once"], env=env, capture_output=True,
                               text=True, timeout=300)
        elapsed = time.monotonic() - started
    log = server.requests()
    server.stop()
    def rss_at(cycle: int) -> float:
        """RSS (MiB) at the first sample taken once ``cycle`` cycles were done."""
        found = next((s for s in samples if s[1] >= cycle), samples[-1] if samples else (0, 0, 0, 0))
        return round(found[2] / 1024, 1)

    return {"cycles": cycles, "exit": code, "final_sync_exit": final.returncode, "seconds": round(elapsed),
            "cycles_logged": counted["cycle done"], "cycles_failed": counted["cycle failed, will retry"],
            "cycles_crashed": counted["cycle crashed"], "storms": len(agent.storms), "agent_steps": dict(agent.steps),
            "requests": len(log), "faulted_requests": faults,
            "rss_mib_at_cycle": {n: rss_at(n) for n in (100, cycles // 4, cycles // 2, 3 * cycles // 4)},
            "rss_end_mib": round((samples[-1][2] if samples else 0) / 1024, 1),
            "rss_peak_mib": round(max((s[3] for s in samples), default=0) / 1024, 1),
            "rss_samples": len(samples),
            "duplicates": duplicates(sim, agent.storms), "lost": lost(sim, agent.storms)}


# -- the table --------------------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows = []
    if "fuzz" in results:
        f = results["fuzz"]
        rows += [("fuzzed configuration files (rules, process, mappings, rule tests; seed "
                  f"{f['seed']})", f"{f['files']:,} in {f['seconds']} s"),
                 ("  located errors / loaded and ran through engine, planner or mapping",
                  f"{f['stages'].get('located errors', 0):,} / {f['stages'].get('loaded and ran on', 0):,}"),
                 ("  uncaught exceptions", str(sum(f["crashes"].values()))),
                 ("  files over 2 s (slowest)", f"{len(f['slow'])} ({f['slowest_s']} s, {f['slowest']})"),
                 ("  peak memory of the fuzzing process", f"{f['peak_rss_mib']} MiB")]
    for part, where in (("crash", ""), ("crash_jira", " on Jira Service Management")):
        if part in results:
            c = results[part]
            rows += [(f"crash points x action kinds ({len(c['points'])} x {len(c['kinds'])}){where}, killed and rerun",
                      f"{c['converged']} of {c['cells']} converged ({c['seconds']} s)")]
    if "platform" in results:
        p = results["platform"]
        rows += [("platform-data faults survived (exit 0, one major incident for the storm, valid ids only)",
                  f"{p['survived']} of {p['total']} ({sum(c['reported'] for c in p['cases'])} reported as malformed "
                  "or dated in the future)")]
    if "soak" in results:
        s = results["soak"]
        rows += [("soak: `mim run` cycles, 30% faults, storms at random",
                  f"{s['cycles_logged']:,} cycles in {s['seconds']:,} s ({s['storms']} storms, "
                  f"{s['faulted_requests']:,} of {s['requests']:,} requests faulted)"),
                 ("  RSS of `mim run` at cycle " + " / ".join(f"{int(n):,}" for n in s["rss_mib_at_cycle"]) + " / the end; peak",
                  " / ".join(str(v) for v in s["rss_mib_at_cycle"].values()) + f" / {s['rss_end_mib']}; {s['rss_peak_mib']} MiB"),
                 ("  duplicate writes found", str(sum(s["duplicates"].values()))),
                 ("  writes lost (storms without their major incident, storm tickets not linked)",
                  str(sum(s["lost"].values())))]
    width = max(len(r[0]) for r in rows)
    return "\n".join([f"| {'measurement':<{width}} | figure |", f"|{'-' * (width + 2)}|---|"]
                     + [f"| {a:<{width}} | {b} |" for a, b in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", "fuzz", "crash", "platform", "soak", "fuzz-child"])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--storm-every", type=float, default=20.0, help="mean seconds between storms in the soak")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.part == "fuzz-child":
        fuzz_child(args.files, args.seed, args.out)
        return
    parts = ["fuzz", "crash", "platform", "soak"] if args.part == "all" else [args.part]
    results: dict[str, Any] = {}
    for part in parts:
        print(f"running {part}...", file=sys.stderr, flush=True)
        if part == "fuzz":
            results[part] = fuzz(args.files, args.seed)
        elif part == "crash":
            results[part] = crash()
            results["crash_jira"] = crash("jira")
            print(json.dumps(results["crash_jira"]), file=sys.stderr, flush=True)
        elif part == "platform":
            results[part] = platform()
        else:
            results[part] = soak(args.cycles, args.storm_every, args.seed)
        print(json.dumps(results[part]), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(table(results))


if __name__ == "__main__":
    main()
