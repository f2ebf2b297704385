"""``mim run``: the scheduled job as a long-running loop, one cycle per interval, stopping gracefully on
SIGTERM/SIGINT once the current cycle has finished its writes."""

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
from connector.platforms.errors import AuthenticationError, PermissionDenied, PlatformError

EXIT_OK = 0
EXIT_FATAL = 1
MAX_CRASHES = 5

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


def run_loop(job: Job, interval: timedelta, stop: StopFlag, planners: Sequence[ProcessPlanner] | None = None,
             max_cycles: int | None = None, clock: Callable[[], datetime] | None = None,
             jitter: float = 0.1, rng: random.Random | None = None) -> int:
    """Run cycles until ``stop`` is set (or ``max_cycles``). Transient platform errors are logged and
    retried at the next interval with growing back-off; authentication and permission errors are fatal.
    Returns the process exit code."""
    now = clock or (lambda: datetime.now(timezone.utc))
    rng = rng or random.Random()
    cycles = 0
    failures = 0
    while not stop.is_set():
        started = now()
        try:
            report = run_cycle(job.platform, job.store, job.rules, job.process, started, planners=planners,
                               notifier=job.notifier)
            failures = 0
            log.info("cycle done", extra={"fields": report.summary()})
            for failure in report.failures:
                log.warning("action failed", extra={"fields": {"detail": failure}})
            for skipped in report.skipped_records:
                log.warning("malformed record skipped", extra={"fields": {"detail": skipped}})
            for future in report.future_records:
                log.warning("record dated in the future", extra={"fields": {"detail": future}})
        except (AuthenticationError, PermissionDenied) as exc:
            log.error("fatal platform error", extra={"fields": {"error": str(exc)}})
            return EXIT_FATAL
        except SettingsError as exc:
            log.error("configuration error", extra={"fields": {"error": str(exc)}})
            return EXIT_FATAL
        except PlatformError as exc:
            failures += 1
            log.warning("cycle failed, will retry", extra={"fields": {"error": str(exc), "consecutive_failures": failures}})
        except Exception as exc:  # a bug must not kill a scheduled job on the first occurrence...
            failures += 1
            log.exception("cycle crashed", extra={"fields": {"error": type(exc).__name__, "consecutive_failures": failures}})
            if failures >= MAX_CRASHES:  # ...but it must not loop forever either
                return EXIT_FATAL
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
