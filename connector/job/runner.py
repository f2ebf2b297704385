"""``mim run``: the scheduled job as a long-running loop, one cycle per interval, stopping gracefully on
SIGTERM/SIGINT once the current cycle has finished its writes.

Active/passive: the loop runs cycles only while it holds the state's runner lock. A second ``mim run`` on the
same state waits as standby, trying the lock every few seconds (at most every half interval), and takes over
as soon as the active one's lock is released: on a clean stop, when it is killed (the kernel closes its file or
its database connection) or when its PostgreSQL session is lost. A runner that finds its lock lost stops
writing at once (the store refuses the next write transaction) and goes back to standby. The state of the lock
is logged (``active``, ``standby``, ``lock lost``) and exported as metrics (``mim_active``,
``mim_lock_lost_total``)."""

from __future__ import annotations

import logging
import random
import signal
import threading
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Callable, Sequence

from connector.core.settings import SettingsError
from connector.job.assembly import Job
from connector.job.cycle import ProcessPlanner, run_cycle
from connector.job.metrics import Metrics
from connector.job.statedb import LockLost, StateError
from connector.platforms.errors import AuthenticationError, PermissionDenied, PlatformError

EXIT_OK = 0
EXIT_FATAL = 1
MAX_CRASHES = 5
MAX_STANDBY_POLL = 5.0
"""A standby tries the lock at least this often (seconds), and at least twice per interval."""

log = logging.getLogger("mim")


class StopFlag:
    """Set by a signal handler; waiting on it is interruptible."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str = "stop") -> None:
        self.signal_name = name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(max(0.0, seconds))

    def install(self) -> None:
        """Stop on SIGTERM and SIGINT (main thread only)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def standby_poll_seconds(interval: timedelta) -> float:
    """How often a standby tries the lock: every half interval, at most every 5 s, at least every 0.1 s."""
    return max(0.1, min(MAX_STANDBY_POLL, interval.total_seconds() / 2))


class _Lock:
    """The runner lock as the loop sees it: taken, kept, lost; every change logged and counted."""

    def __init__(self, job: Job, metrics: Metrics | None) -> None:
        self.job = job
        self.metrics = metrics
        self.active = False
        self.standby_holder: str | None = None
        self.was_standby = False

    def hold(self) -> bool:
        """True when this process holds the lock (taking it if free); False while another one does."""
        store = self.job.store
        if self.active:
            if store.lock_alive():
                return True
            self.lost("its database session ended")
        if not store.try_lock():
            holder = store.lock_holder() or "another mim process"
            if holder != self.standby_holder:
                log.info("standby: the state is in use, waiting for its lock",
                         extra={"fields": {"state": store.description, "holder": holder}})
                self.standby_holder = holder
            self.was_standby = True
            if self.metrics is not None:
                self.metrics.became_standby()
            return False
        self.active = True
        self.standby_holder = None
        last = store.last_cycle_at()
        log.info("active: runner lock acquired" + (", taking over from the previous runner" if self.was_standby else ""),
                 extra={"fields": {"state": store.description,
                                   "last_cycle": last.isoformat(timespec="seconds") if last else None}})
        if self.metrics is not None:
            self.metrics.became_active(last.timestamp() if last else None)
        return True

    def lost(self, why: str) -> None:
        """The lock is gone: stop writing, say so, wait as standby."""
        log.error("runner lock lost, stopping writes and waiting as standby",
                  extra={"fields": {"state": self.job.store.description, "reason": why}})
        self.active = False
        self.job.store.release_lock()
        if self.metrics is not None:
            self.metrics.lost_lock()


def run_loop(job: Job, interval: timedelta, stop: StopFlag, planners: Sequence[ProcessPlanner] | None = None,
             max_cycles: int | None = None, clock: Callable[[], datetime] | None = None,
             jitter: float = 0.1, rng: random.Random | None = None, metrics: Metrics | None = None,
             standby_poll: float | None = None) -> int:
    """Run cycles until ``stop`` is set (or ``max_cycles``), as the active runner of the state: while another
    process holds the state's lock, wait as standby (``standby_poll`` seconds between tries). Transient platform
    errors and a lost database connection are logged and retried at the next interval with growing back-off;
    authentication and permission errors are fatal; a state that cannot be used raises its
    :class:`~connector.job.statedb.StateError` (exit 3). Returns the process exit code."""
    now = clock or (lambda: datetime.now(timezone.utc))
    rng = rng or random.Random()
    poll = standby_poll if standby_poll is not None else standby_poll_seconds(interval)
    lock = _Lock(job, metrics)
    cycles = 0
    failures = 0
    while not stop.is_set():
        try:
            job.store.ensure_connected()
            held = lock.hold()
        except StateError as exc:
            if not exc.transient:
                raise
            log.warning("state unreachable, will retry", extra={"fields": {"error": exc.problem}})
            if metrics is not None:
                metrics.became_standby()
            if stop.wait(poll):
                break
            continue
        if not held:
            if stop.wait(poll):
                break
            continue
        started = now()
        policy = job.policy
        try:
            report = run_cycle(job.platform, job.store, job.rules, job.process, started, planners=planners,
                               notifier=job.notifier)
            failures = 0
            log.info("cycle done", extra={"fields": report.summary()})
            for failure in report.failures:
                log.warning("action failed", extra={"fields": {"detail": failure}})
            for skipped in report.skipped_records:
                log.warning("malformed record skipped", extra={"fields": {"detail": skipped}})
            for repair in report.state_repairs:
                log.warning("state repaired", extra={"fields": {"detail": repair}})
            for future in report.future_records:
                log.warning("record dated in the future", extra={"fields": {"detail": future}})
            if metrics is not None:
                metrics.cycle_done(report)
        except LockLost as exc:
            lock.lost(exc.problem)
            continue
        except StateError as exc:
            if not exc.transient:
                log.error("state store unusable", extra={"fields": {"error": exc.problem, "fix": exc.fix}})
                raise
            failures += 1
            log.warning("state unreachable, will retry", extra={"fields": {"error": exc.problem,
                                                                          "consecutive_failures": failures}})
            if metrics is not None:
                metrics.cycle_failed("state_error")
        except (AuthenticationError, PermissionDenied) as exc:
            log.error("fatal platform error", extra={"fields": {"error": str(exc)}})
            return EXIT_FATAL
        except SettingsError as exc:
            log.error("configuration error", extra={"fields": {"error": str(exc)}})
            return EXIT_FATAL
        except PlatformError as exc:
            failures += 1
            log.warning("cycle failed, will retry", extra={"fields": {"error": str(exc), "consecutive_failures": failures}})
            if metrics is not None:
                metrics.cycle_failed("platform_error")
        except Exception as exc:  # a bug must not kill a scheduled job on the first occurrence...
            failures += 1
            log.exception("cycle crashed", extra={"fields": {"error": type(exc).__name__, "consecutive_failures": failures}})
            if metrics is not None:
                metrics.cycle_failed("crashed")
            if failures >= MAX_CRASHES:  # ...but it must not loop forever either
                return EXIT_FATAL
        finally:
            if metrics is not None and policy is not None:
                metrics.count_retries(policy.retries)
        cycles += 1
        if max_cycles is not None and cycles >= max_cycles:
            break
        base = interval.total_seconds() * min(2 ** failures, 10)
        delay = base * (1 + rng.uniform(-jitter, jitter))
        if stop.wait(delay):
            break
    if stop.signal_name:
        log.info("stopped", extra={"fields": {"signal": stop.signal_name, "cycles": cycles}})
    return EXIT_OK
