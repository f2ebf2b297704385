"""Sizing: what one cycle costs (CPU seconds, peak RSS, requests) for a quiet and a storm cycle, on both state
stores, and what N tenants need.

Whole processes, as an operator runs them, against the ServiceNow simulator (in this process, so its CPU is not
counted) and a PostgreSQL server started here (tests/pgserver.py):

* ``mim sync --once`` (the CronJob / cron variant): a storm cycle (a new storm of ``--storm`` tickets: declaration,
  links, notes, the process) then a quiet cycle (nothing new), each a fresh process;
* ``mim run`` (the Deployment): the marginal cost of one quiet cycle inside the loop, from a run of 1 and a run of
  ``--cycles`` quiet cycles (the difference divided), and its peak RSS; the marginal cost of a storm cycle (a run
  of one cycle that declares a new storm, less a run of one quiet cycle);
* a standby ``mim run`` waiting for a lock held elsewhere: CPU per lock try;
* the baseline: ``mim --version`` (the interpreter and the imports), measured in the same run.

Runs alternate between the stores, ``--repeat`` times (median reported). CPU is user+system of the child
(``wait4``), RSS its ``ru_maxrss``. Prints a table and the sizing for N tenants.

    python bench/bench_service.py [--repeat 5] [--storm 40] [--cycles 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.job.store import StateStore  # noqa: E402
from connector.sim.servicenow import ServiceNowSim  # noqa: E402
from tests.pgserver import PgServer  # noqa: E402


def child(argv: list[str], env: dict[str, str], timeout: float = 120) -> dict[str, float]:
    """Run ``mim argv`` and return its CPU seconds, peak RSS (MiB), wall time and exit code."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, -9):
        raise RuntimeError(f"mim {' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024, "wall": time.monotonic() - started}


def storm(sim: ServiceNowSim, size: int, service: str) -> None:
    now = datetime.now(timezone.utc)
    for i in range(size):
        opened = now - timedelta(minutes=12) + timedelta(seconds=600 * i / size)
        sim.insert("incident", {"short_description": f"{service} fails", "business_service": service,
                                "caller_id": f"{service}-caller{i}", "opened_at": opened.strftime("%Y-%m-%d %H:%M:%S")})


def environment(url: str, state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="bench",
               MIM_SERVICENOW_PASSWORD="bench-secret-pw", MIM_STATE=state, PYTHONPATH=str(ROOT))
    return env


def one_round(kind: str, pg: PgServer, workdir: Path, n: int, size: int, cycles: int) -> dict[str, dict[str, float]]:
    sim = ServiceNowSim(user="bench", password="bench-secret-pw")
    server = sim.server().start()
    try:
        state = pg.new_schema("bench") if kind == "postgresql" else str(workdir / f"state-{n}.sqlite")
        env = environment(server.url, state)
        out: dict[str, dict[str, float]] = {}
        child(["sync", "--once"], env)  # a first cycle: discovery cached, the state made
        storm(sim, size, "web-shop")
        server.clear_requests()
        out["storm sync"] = {**child(["sync", "--once"], env), "requests": len(server.requests())}
        majors = [r for r in sim.records("incident") if r.get("major_incident_state")]
        linked = [r for r in sim.records("incident") if r.get("parent_incident")]
        if len(majors) != 1 or len(linked) != size - 1:
            raise RuntimeError(f"the storm was not declared: {len(majors)} major incidents, {len(linked)} linked")
        server.clear_requests()
        out["quiet sync"] = {**child(["sync", "--once"], env), "requests": len(server.requests())}
        server.clear_requests()
        one = child(["run", "--interval", "0.05s", "--max-cycles", "1"], env)
        many = child(["run", "--interval", "0.05s", "--max-cycles", str(cycles)], env)
        requests = len(server.requests())
        out["quiet cycle in mim run"] = {"cpu": (many["cpu"] - one["cpu"]) / (cycles - 1), "rss": many["rss"],
                                         "wall": (many["wall"] - one["wall"]) / (cycles - 1),
                                         "requests": requests / (cycles + 1)}
        storm(sim, size, "payments")
        server.clear_requests()
        stormy = child(["run", "--interval", "0.05s", "--max-cycles", "1"], env)
        out["storm cycle in mim run"] = {"cpu": stormy["cpu"] - one["cpu"], "rss": stormy["rss"],
                                         "wall": stormy["wall"] - one["wall"], "requests": len(server.requests())}
        standby = {}
        with StateStore(state, "servicenow") as holder:
            holder.acquire_lock()
            for seconds in (2, 12):  # the difference is the cost of waiting: one lock try per half interval
                proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "run", "--interval", "1s"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(seconds)
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                standby[seconds] = (usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
        tries = (12 - 2) / 0.5
        out["standby (per lock try)"] = {"cpu": (standby[12][0] - standby[2][0]) / tries, "rss": standby[12][1],
                                         "wall": 0.0, "requests": 0}
        baseline_one = child(["--version"], env)
        out["baseline: mim --version"] = {**baseline_one, "requests": 0}
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--storm", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=21)
    args = parser.parse_args()
    import tempfile

    pg = PgServer.start()
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"sqlite": [], "postgresql": []}
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as folder:
            for n in range(args.repeat):
                for kind in (("sqlite", "postgresql") if n % 2 == 0 else ("postgresql", "sqlite")):
                    rounds[kind].append(one_round(kind, pg, Path(folder), n, args.storm, args.cycles))
                    print(f"  round {n + 1}/{args.repeat} {kind} done", file=sys.stderr)
    finally:
        pg.stop()
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"median of {args.repeat} alternating rounds; storm of {args.storm} tickets")
    print(f"{'what':28} {'store':11} {'CPU s':>8} {'peak RSS MiB':>13} {'wall s':>8} {'requests':>9}")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for kind, results in rounds.items():
        for what in results[0]:
            m = {key: statistics.median(r[what][key] for r in results) for key in ("cpu", "rss", "wall", "requests")}
            medians[(what, kind)] = m
            print(f"{what:28} {kind:11} {m['cpu']:8.3f} {m['rss']:13.1f} {m['wall']:8.3f} {m['requests']:9.1f}")
    print()
    print("N tenants, interval 60 s (quiet cycles; a storm cycle is rare and costs the 'storm sync' row once):")
    for kind in ("sqlite", "postgresql"):
        cycle = medians[("quiet cycle in mim run", kind)]
        standby = medians[("standby (per lock try)", kind)]
        cron = medians[("quiet sync", kind)]
        for tenants in (1, 10, 100):
            run_cores = tenants * (cycle["cpu"] / 60 + standby["cpu"] / 5)
            cron_cores = tenants * cron["cpu"] / 60
            memory = tenants * 2 * cycle["rss"]
            print(f"  {kind:11} {tenants:4} tenants: mim run pair {run_cores:.3f} cores, {memory:,.0f} MiB "
                  f"(2 x {cycle['rss']:.0f} MiB), {tenants * cycle['requests']:.0f} requests/min"
                  + (f", {4 * tenants} PostgreSQL connections" if kind == "postgresql" else "")
                  + f"; CronJob {cron_cores:.3f} cores, {cron['rss']:.0f} MiB per run")


if __name__ == "__main__":
    main()
