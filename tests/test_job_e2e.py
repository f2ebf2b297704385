"""The job as an operator runs it: real `mim sync --once` processes against the ServiceNow simulator,
killed at random moments, sharing a state, losing the state — on both stores (a SQLite file and a PostgreSQL
schema on a real server, see conftest.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from connector.process.processfile import load_process
from connector.sim.servicenow import ServiceNowSim

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def sim() -> Iterator[tuple[ServiceNowSim, str]]:
    sn = ServiceNowSim(user="sync", password="sync-secret-pw")
    process, _ = load_process(ROOT / "rules" / "process.yaml")
    assert process is not None
    sn.add_people(process.people(), process.groups())  # the shipped process file's people and groups
    server = sn.server().start()
    yield sn, server.url
    server.stop()


def _env(url: str, state: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=url, MIM_SERVICENOW_USERNAME="sync",
               MIM_SERVICENOW_PASSWORD="sync-secret-pw", MIM_STATE=str(state), PYTHONPATH=str(ROOT))
    return env


def _sync(url: str, state: object, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sync", "--once"], env=_env(url, state),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _storm(sn: ServiceNowSim, size: int) -> list[str]:
    now = datetime.now(timezone.utc)
    ids = []
    for i in range(size):
        opened = now - timedelta(minutes=12) + timedelta(seconds=15 * i)
        ids.append(sn.insert("incident", {"short_description": "Checkout fails", "business_service": "web-shop",
                                          "caller_id": f"caller{i}", "opened_at": opened.strftime("%Y-%m-%d %H:%M:%S")})["sys_id"])
    return ids


def _majors(sn: ServiceNowSim) -> list[dict[str, str]]:
    return [r for r in sn.records("incident") if r.get("major_incident_state")]


def _assert_converged(sn: ServiceNowSim, ids: list[str]) -> None:
    majors = _majors(sn)
    assert len(majors) == 1, [m["number"] for m in majors]
    parent = majors[0]["sys_id"]
    assert parent == ids[0]
    assert all(sn.get("incident", i)["parent_incident"] == parent for i in ids[1:])
    notes = [row["value"] for row in sn.journal(parent)]
    declared = [n for n in notes if "by rule service-surge" in n and "proposed" in n]
    assert len(declared) == 1, notes
    assert len(notes) == len(set(notes)), "a note was written twice"
    tasks = sn.records("incident_task")
    assert len(tasks) == len({t["short_description"] for t in tasks})


def test_kill_9_at_random_moments_then_rerun_converges(sim, state) -> None:
    sn, url = sim
    ids = _storm(sn, 40)
    rng = random.Random(20261127)
    killed = 0
    for _ in range(20):
        proc = _sync(url, state)
        time.sleep(rng.uniform(0.05, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
    assert killed >= 3, "the kills should land mid-cycle (about half of them do)"
    for _ in range(2):
        done = _sync(url, state)
        out, err = done.communicate(timeout=60)
        assert done.returncode == 0, err
    _assert_converged(sn, ids)


def test_deleting_the_state_after_declaration_causes_no_new_writes(sim, state) -> None:
    sn, url = sim
    ids = _storm(sn, 8)
    first = _sync(url, state)
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    _assert_converged(sn, ids)
    state.lose()
    before = _snapshot(sn)
    again = _sync(url, state)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    # reads (including reads batched through the Batch API) are fine; no record or journal may change
    assert _snapshot(sn) == before
    _assert_converged(sn, ids)


def _snapshot(sn: ServiceNowSim) -> dict[str, object]:
    tables = ("incident", "incident_task", "change_request", "sys_journal_field")
    return {t: sorted((r["sys_id"], r.get("sys_mod_count")) for r in sn.records(t)) for t in tables}


def test_two_concurrent_syncs_on_one_state_do_not_both_write(sim, state) -> None:
    sn, url = sim
    ids = _storm(sn, 12)
    procs = [_sync(url, state) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [err for (out, err), p in zip(results, procs) if p.returncode != 0]
    assert codes in ([0, 0], [0, 3])  # 3: the environment (the state's lock) stops the second one
    for err in refused:
        assert "in use by another mim process" in err and "Fix: wait for the other run" in err
        assert "Traceback" not in err
    _assert_converged(sn, ids)


def test_secret_never_reaches_output_or_dry_run(sim, tmp_path: Path) -> None:
    sn, url = sim
    _storm(sn, 6)
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once", "--dry-run", "--json"],
                          env=_env(url, tmp_path / "s.sqlite"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sync-secret-pw" not in proc.stdout + proc.stderr
    assert '"kind": "declare"' in proc.stdout
    assert _majors(sn) == []


def test_dry_run_creates_no_state_and_takes_no_lock(sim, state) -> None:
    sn, url = sim
    _storm(sn, 6)
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once", "--dry-run"],
                          env=_env(url, state), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "would write" in proc.stdout
    assert not state.exists() and not Path(str(state) + ".lock").exists()


def test_a_malformed_record_is_reported_and_skipped_and_the_storm_still_declared(sim, tmp_path: Path) -> None:
    sn, url = sim
    ids = _storm(sn, 6)
    bad = sn.insert("incident", {"short_description": "broken", "business_service": "web-shop", "caller_id": "x",
                                 "state": "42"})
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", "--once"], env=_env(url, tmp_path / "s.sqlite"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped malformed record {bad['number']}" in proc.stderr
    assert "unknown value '42'" in proc.stderr
    _assert_converged(sn, ids)
