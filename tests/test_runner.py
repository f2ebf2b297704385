"""The run loop: cycles per interval, graceful stop, error handling, logs without secrets."""

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
from connector.job.runner import EXIT_FATAL, EXIT_OK, StopFlag, run_loop
from connector.job.store import LockHeld, StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms.errors import AuthenticationError, TransientError
from connector.process.processfile import ProcessFile
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent


def make_job(tmp_path: Path, platform: FakePlatform) -> Job:
    store = StateStore(tmp_path / "state.sqlite", "servicenow")
    return Job(Settings(), load_rules([ROOT / "rules"]).rules, ProcessFile(version=1), platform.mapping, platform, store,
               WebhookNotifier({}))


def test_loop_runs_one_cycle_per_interval_until_max_cycles(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(tmp_path, platform)
    waits: list[float] = []
    stop = StopFlag()
    stop.wait = lambda s: waits.append(s) or False  # type: ignore[method-assign]
    code = run_loop(job, timedelta(seconds=60), stop, max_cycles=3, clock=clock)
    job.close()
    assert code == EXIT_OK
    assert len(waits) == 2
    assert all(54 <= w <= 66 for w in waits)


def test_stop_signal_ends_the_loop_after_the_current_cycle(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(tmp_path, platform)
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


def test_transient_errors_back_off_and_authentication_errors_are_fatal(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(tmp_path, platform)
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


def test_cycle_summary_is_logged_as_json_without_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json")
    register_secret("hunter2-super-secret")
    logging.getLogger("mim").warning("connecting with hunter2-super-secret")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(tmp_path, platform)
    stop = StopFlag()
    run_loop(job, timedelta(seconds=1), stop, max_cycles=1, clock=clock)
    job.close()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line["message"] == "cycle done" and "requests" in line for line in lines)
    assert all("hunter2-super-secret" not in json.dumps(line) for line in lines)


def test_second_runner_on_the_same_state_is_refused(tmp_path: Path) -> None:
    first = StateStore(tmp_path / "s.sqlite", "servicenow")
    first.acquire_lock()
    second = StateStore(tmp_path / "s.sqlite", "servicenow")
    with pytest.raises(LockHeld, match=r"in use by another mim process \(pid \d+"):
        second.acquire_lock()
    first.close()
    second.acquire_lock()
    second.close()


def test_repeated_crashes_stop_the_loop_with_exit_1(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    job = make_job(tmp_path, platform)

    def broken(*args, **kwargs):
        raise KeyError("bug")

    platform.fetch_changed = broken  # type: ignore[method-assign]
    stop = StopFlag()
    stop.wait = lambda s: False  # type: ignore[method-assign]
    assert run_loop(job, timedelta(seconds=1), stop, clock=clock) == EXIT_FATAL
    job.close()
