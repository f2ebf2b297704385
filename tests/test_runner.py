"""The run loop: cycles per interval, graceful stop, error handling, logs without secrets, and the runner lock
(standby, takeover, lock lost) — on both stores (conftest.py)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.core.settings import Settings
from connector.detection.rules import load_rules
from connector.job.assembly import Job
from connector.job.logs import register_secret, setup_logging
from connector.job.metrics import Metrics
from connector.job.runner import EXIT_FATAL, EXIT_OK, StopFlag, run_loop
from connector.job.store import LockHeld, LockLost, StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms.errors import AuthenticationError, TransientError
from connector.process.processfile import ProcessFile
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent


def make_job(state: object, platform: FakePlatform) -> Job:
    store = StateStore(str(state), "servicenow")
    return Job(Settings(), load_rules([ROOT / "rules"]).rules, ProcessFile(version=1), platform.mapping, platform, store,
               WebhookNotifier({}))


def test_loop_runs_one_cycle_per_interval_until_max_cycles(state) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(state, platform)
    waits: list[float] = []
    stop = StopFlag()
    stop.wait = lambda s: waits.append(s) or False  # type: ignore[method-assign]
    code = run_loop(job, timedelta(seconds=60), stop, max_cycles=3, clock=clock)
    job.close()
    assert code == EXIT_OK
    assert len(waits) == 2
    assert all(54 <= w <= 66 for w in waits)


def test_stop_signal_ends_the_loop_after_the_current_cycle(state) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(state, platform)
    stop = StopFlag()
    original = platform.fetch_changed

    def fetch_and_stop(*args, **kwargs):
        stop.set("SIGTERM")
        return original(*args, **kwargs)

    platform.fetch_changed = fetch_and_stop  # type: ignore[method-assign]
    assert run_loop(job, timedelta(seconds=60), stop, clock=clock) == EXIT_OK
    cycles = job.store.db.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    assert cycles == 1  # the cycle in progress when the signal came was completed and recorded
    job.close()


def test_transient_errors_back_off_and_authentication_errors_are_fatal(state) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(state, platform)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("instance busy", status=503)
        raise AuthenticationError("User Not Authenticated", status=401)

    platform.fetch_changed = flaky  # type: ignore[method-assign]
    waits: list[float] = []
    stop = StopFlag()
    stop.wait = lambda s: waits.append(s) or False  # type: ignore[method-assign]
    assert run_loop(job, timedelta(seconds=10), stop, clock=clock, jitter=0) == EXIT_FATAL
    assert waits == [20.0, 40.0]
    job.close()


def test_cycle_summary_is_logged_as_json_without_secrets(state, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json")
    register_secret("hunter2-super-secret")
    logging.getLogger("mim").warning("connecting with hunter2-super-secret")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(state, platform)
    stop = StopFlag()
    run_loop(job, timedelta(seconds=1), stop, max_cycles=1, clock=clock)
    job.close()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line["message"] == "cycle done" and "requests" in line for line in lines)
    assert all("hunter2-super-secret" not in json.dumps(line) for line in lines)


def test_second_runner_on_the_same_state_is_refused(state) -> None:
    first = StateStore(str(state), "servicenow")
    first.acquire_lock()
    second = StateStore(str(state), "servicenow")
    with pytest.raises(LockHeld, match=r"in use by another mim process \(.*pid \d+"):
        second.acquire_lock()
    first.close()
    second.acquire_lock()
    second.close()


def test_repeated_crashes_stop_the_loop_with_exit_1(state) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(state, platform)

    def broken(*args, **kwargs):
        raise KeyError("bug")

    platform.fetch_changed = broken  # type: ignore[method-assign]
    stop = StopFlag()
    stop.wait = lambda s: False  # type: ignore[method-assign]
    assert run_loop(job, timedelta(seconds=1), stop, clock=clock) == EXIT_FATAL
    job.close()


# -- the runner lock: standby, takeover, lock lost ------------------------------------------------------------

class CountingStop(StopFlag):
    """A stop flag whose waits run ``on_wait`` (with the count so far) and return at once; stops after ``limit``."""

    def __init__(self, limit: int, on_wait=lambda n: None) -> None:
        super().__init__()
        self.waits = 0
        self.limit = limit
        self.on_wait = on_wait

    def wait(self, seconds: float) -> bool:
        self.waits += 1
        self.on_wait(self.waits)
        if self.waits >= self.limit:
            self.set("test")
        return self.is_set()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _storm(platform: FakePlatform, clock: Clock) -> list[str]:
    ids = []
    for i in range(6):
        ids.append(platform.add(service="web-shop", caller=f"c{i}", priority=3)["id"])
        clock.advance(minutes=1)
    return ids


def test_a_standby_writes_nothing_and_takes_over_when_the_active_one_lets_go(state, caplog) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    _storm(platform, clock)
    active = StateStore(str(state), "servicenow")
    active.acquire_lock()
    job = make_job(state, platform)
    metrics = Metrics("servicenow", "test", 60)
    roles: list[str] = []

    def on_wait(n: int) -> None:
        roles.append(metrics.role)
        if n == 3:  # the active one stops (or dies): its lock is released
            active.close()

    caplog.set_level(logging.INFO, logger="mim")
    stop = CountingStop(limit=4, on_wait=on_wait)
    assert run_loop(job, timedelta(seconds=60), stop, clock=clock, metrics=metrics) == EXIT_OK
    job.close()
    assert roles == ["standby", "standby", "standby", "active"]
    assert any(r.getMessage().startswith("standby") for r in caplog.records)
    assert any("taking over" in r.getMessage() for r in caplog.records)
    assert value(metrics, "mim_active") == 1 and value(metrics, "mim_lock_acquired_total") == 1
    declared = [r for r in platform.records.values() if r["major"] != "none"]
    assert len(declared) == 1, "the storm was declared by the runner that took over, once"


def test_a_standby_sends_nothing_while_the_other_runner_holds_the_state(state) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    _storm(platform, clock)
    with StateStore(str(state), "servicenow") as active:
        active.acquire_lock()
        job = make_job(state, platform)
        assert run_loop(job, timedelta(seconds=60), CountingStop(limit=5), clock=clock) == EXIT_OK
        job.close()
    assert platform.writes == [] and platform.requests_sent == 0


def _terminate_lock_session(postgres, store: StateStore) -> None:
    key = store.backend.lock_key & 0xFFFFFFFFFFFFFFFF
    rows = postgres.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND "
                            "classid::bigint = %s AND objid::bigint = %s AND objsubid = 1", (key >> 32, key & 0xFFFFFFFF))
    assert rows == [(True,)]


def test_a_runner_whose_lock_session_is_lost_stops_writing_and_the_standby_takes_over(postgres, caplog) -> None:
    url = postgres.new_schema("lost")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    first = make_job(url, platform)
    second = make_job(url, platform)
    metrics = Metrics("servicenow", "postgresql", 60)
    roles: list[str] = []

    def on_wait(n: int) -> None:
        roles.append(metrics.role)
        if n == 1:
            _terminate_lock_session(postgres, first.store)  # the server ended its session: a lost connection
            assert second.store.try_lock(), "the server released the lock with the session"
            _storm(platform, clock)  # work that the runner which lost its lock must leave alone

    caplog.set_level(logging.INFO, logger="mim")
    assert run_loop(first, timedelta(seconds=60), CountingStop(limit=3, on_wait=on_wait), clock=clock,
                    metrics=metrics) == EXIT_OK
    assert roles == ["active", "standby", "standby"]
    assert value(metrics, "mim_lock_lost_total") == 1 and value(metrics, "mim_cycles_total", result="lock_lost") == 1
    assert any(r.getMessage().startswith("runner lock lost") for r in caplog.records)
    assert platform.writes == [], "the runner that lost its lock wrote nothing"
    assert run_loop(second, timedelta(seconds=60), CountingStop(limit=1), clock=clock) == EXIT_OK
    assert sum(1 for r in platform.records.values() if r["major"] != "none") == 1
    first.close()
    second.close()


def test_a_cycle_that_starts_after_the_lock_was_lost_is_refused_before_anything_is_recorded_or_sent(postgres) -> None:
    from connector.job.cycle import run_cycle

    url = postgres.new_schema("refused")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(url, platform)
    job.store.acquire_lock()
    _terminate_lock_session(postgres, job.store)
    _storm(platform, clock)
    with pytest.raises(LockLost):
        run_cycle(job.platform, job.store, job.rules, job.process, clock(), planners=())
    assert platform.writes == [] and job.store.ledger_rows() == []
    job.close()


def test_a_lost_data_connection_is_retried_and_reconnected(postgres) -> None:
    url = postgres.new_schema("reconnect")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(url, platform)
    metrics = Metrics("servicenow", "postgresql", 60)
    assert run_loop(job, timedelta(seconds=60), CountingStop(limit=1), clock=clock, metrics=metrics) == EXIT_OK
    pid = job.store.backend.db.info.backend_pid
    postgres.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _storm(platform, clock)
    assert run_loop(job, timedelta(seconds=60), CountingStop(limit=1), clock=clock, metrics=metrics) == EXIT_OK
    assert value(metrics, "mim_cycles_total", result="ok") == 2, "the next cycle reconnected and ran"
    assert sum(1 for r in platform.records.values() if r["major"] != "none") == 1
    job.close()
