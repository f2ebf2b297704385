"""Sizing: what one cycle costs (CPU seconds, peak RSS, requests) for a quiet and a storm cycle, on both state
stores, and what N tenants need.

Whole processes, as an operator runs them, against the ServiceNow simulator (in this process, so its CPU is not
counted) and a PostgreSQL server started here (tests/pgserver.py):

* ``mim sync --once`` (the CronJob / cron variant): a storm cycle (a new storm of ``--storm`` tickets: declaration,
  links, notes, the process) then a quiet cycle (nothing new), each a fresh process;
* ``mim run`` (the Deployment): the marginal cost of one quiet cycle inside the loop, from a run of 1 and a run of
  ``--cycles`` quiet cycles (the difference divided), and its peak RSS;
* the cycle alone, in this process, as `mim run` runs it: a storm cycle (a new storm declared, linked, noted and
  taken through the process) and a quiet one, CPU of the cycle's thread only (``time.thread_time``: the
  simulator answers from its own threads), and a standby's lock try (200 tries on a lock held elsewhere);
* the baseline: ``mim --version`` (the interpreter and the imports), measured in the same run.

Runs alternate between the stores, ``--repeat`` times (median reported). CPU is user+system of the child
(``wait4``), RSS its ``ru_maxrss``. Prints a table and the sizing for N tenants.

    python bench/bench_service.py [--repeat 5] [--storm 40] [--cycles 21]
"""

from __future__ import annotations

import argparse
import json
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
from tests.shipped import servicenow_sim  # noqa: E402

LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime,
                  "rss": usage.ru_maxrss / 1024}))
"""
"""Runs one child and reports its rusage. A child's peak RSS counts the memory of the process it was forked
from (the kernel records the old image's high-water mark at exec), so children are forked from this small
launcher, not from the benchmark (which holds the simulator and, later, a whole job)."""


def child(argv: list[str], env: dict[str, str], timeout: float = 120) -> dict[str, float]:
    """Run ``mim argv`` and return its CPU seconds, peak RSS (MiB) and wall time."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, str(ROOT / "cli.py"), *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - started
    try:
        usage = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"mim {' '.join(argv)}: {done.stdout[-500:]} {done.stderr[-2000:]}") from None
    if usage["code"] != 0:
        raise RuntimeError(f"mim {' '.join(argv)} exited {usage['code']}: {done.stderr[-2000:]}")
    return {"cpu": usage["cpu"], "rss": usage["rss"], "wall": wall}


def storm(sim: ServiceNowSim, size: int, service: str) -> None:
    now = datetime.now(timezone.utc)
    for i in range(size):
        opened = now - timedelta(minutes=12) + timedelta(seconds=600 * i / size)
        sim.insert("incident", {"short_description": f"{service} fails", "business_service": service,
                                "caller_id": f"{service}-caller{i}", "opened_at": opened.strftime("%Y-%m-%d %H:%M:%S")})


def environment(url: str, state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="bench",
               MIM_SERVICENOW_PASSWORD="bench-secret-pw", MIM_STATE=state, PYTHONPATH=str(ROOT),
               MIM_RULES=str(ROOT / "rules"), MIM_MAPPINGS=str(ROOT / "mappings"))
    return env


def in_process(sim: ServiceNowSim, server: Any, state: str, size: int) -> dict[str, dict[str, float]]:
    """The cycle alone, as `mim run` runs it between sleeps: CPU of this thread only (the simulator answers from
    threads of its own), wall time and requests, for a storm cycle and a quiet one; and a standby's lock try."""
    from connector.core.settings import load_settings
    from connector.job.assembly import open_job
    from connector.job.cycle import run_cycle

    settings = load_settings(env=environment(server.url, state))
    job = open_job(settings, lock=True)
    out: dict[str, dict[str, float]] = {}
    try:
        run_cycle(job.platform, job.store, job.rules, job.process, datetime.now(timezone.utc))  # warm: imports
        for name, make in (("storm cycle in mim run", lambda: storm(sim, size, "payments")),
                           ("quiet cycle (in-process)", lambda: None)):
            make()
            server.clear_requests()
            cpu, wall = time.thread_time(), time.monotonic()
            report = run_cycle(job.platform, job.store, job.rules, job.process, datetime.now(timezone.utc))
            out[name] = {"cpu": time.thread_time() - cpu, "wall": time.monotonic() - wall, "rss": float("nan"),
                         "requests": len(server.requests())}
            if name.startswith("storm") and len(report.declarations) != 1:
                raise RuntimeError(f"the storm was not declared: {report.summary()}")
        with StateStore(state, "servicenow") as standby:
            tries = 200
            cpu, wall = time.thread_time(), time.monotonic()
            for _ in range(tries):
                if standby.try_lock():
                    raise RuntimeError("the standby took a lock that is held")
            out["standby (per lock try)"] = {"cpu": (time.thread_time() - cpu) / tries,
                                             "wall": (time.monotonic() - wall) / tries, "rss": float("nan"),
                                             "requests": 0}
    finally:
        job.close()
    return out


def one_round(kind: str, pg: PgServer, workdir: Path, n: int, size: int, cycles: int) -> dict[str, dict[str, float]]:
    sim = servicenow_sim(user="bench", password="bench-secret-pw")
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
        out.update(in_process(sim, server, state, size))
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
            if what in ("storm cycle in mim run", "quiet cycle (in-process)", "standby (per lock try)"):
                m["rss"] = medians.get(("quiet cycle in mim run", kind), {}).get("rss", float("nan"))
            medians[(what, kind)] = m
            print(f"{what:28} {kind:11} {m['cpu']:8.4f} {m['rss']:13.1f} {m['wall']:8.4f} {m['requests']:9.1f}")
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
