"""A test-only fault hook: kill the process (SIGKILL, as ``kill -9`` would) at one write point of the sync
cycle, for one kind of action, so that a test can check that a rerun converges to the uninterrupted end state.

Armed by the environment variable :data:`CRASH_ENV` = ``<point>:<kind>`` (``after_send:link``); unset (always,
outside tests) the hook does nothing. The points, in the order a cycle reaches them:

* ``after_ledger`` - the planned actions are committed to the ledger, nothing is sent yet;
* ``after_send`` - the first action of the kind has reached the platform (or the webhook), the ledger still
  says planned (the actions of its group after it are not sent: the group is split there);
* ``before_results`` - the whole group holding the kind was applied, its results are not recorded;
* ``before_watermark`` - every result is recorded, the registry and the watermark are not committed.

The hook fires in the first cycle that reaches the point with an action of the kind, and kills the process
then; the rerun (the next process) runs without it.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from connector.core.actions import KINDS, Action, Notify
from connector.platforms.base import ApplyResult, Platform

if TYPE_CHECKING:
    from connector.job.webhooks import Notifier

CRASH_ENV = "MIM_TEST_CRASH_AT"
"""``<point>:<kind>``: where the test-only fault hook kills the process."""
POINTS = ("after_ledger", "after_send", "before_results", "before_watermark")
ACTION_KINDS = tuple(KINDS.values())
Resolver = Callable[[str], str | None]


class CrashHook:
    """Kills the process at its armed point (see the module); a no-op when not armed."""

    def __init__(self, point: str | None = None, kind: str | None = None,
                 kill: Callable[[], None] | None = None) -> None:
        if point is not None and point not in POINTS:
            raise ValueError(f"{CRASH_ENV}: unknown point {point!r} (points: {', '.join(POINTS)})")
        if kind is not None and kind not in ACTION_KINDS:
            raise ValueError(f"{CRASH_ENV}: unknown action kind {kind!r} (kinds: {', '.join(ACTION_KINDS)})")
        self.point = point
        self.kind = kind
        self._kill = kill or _sigkill

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "CrashHook":
        """The hook :data:`CRASH_ENV` arms, or a disarmed one."""
        spec = (os.environ if env is None else env).get(CRASH_ENV, "").strip()
        if not spec:
            return cls()
        point, _, kind = spec.partition(":")
        return cls(point, kind or None)

    def _armed(self, point: str, actions: Sequence[Action]) -> bool:
        return self.point == point and any(a.kind == self.kind for a in actions)

    def at(self, point: str, actions: Sequence[Action]) -> None:
        """Kill the process if armed for ``point`` and ``actions`` hold the kind."""
        if self._armed(point, actions):
            self._kill()

    def apply(self, platform: Platform, actions: Sequence[Action], resolve: Resolver,
              uncertain: frozenset[str]) -> list[ApplyResult]:
        """``platform.apply``; armed for ``after_send``, the actions up to the first of the kind are applied, then
        the process dies."""
        if not self._armed("after_send", actions):
            return platform.apply(actions, resolve, uncertain)
        cut = next(i for i, a in enumerate(actions) if a.kind == self.kind) + 1
        platform.apply(actions[:cut], resolve, uncertain)
        self._kill()
        return []  # not reached

    def deliver(self, notifier: "Notifier", notifies: Sequence[Notify]) -> list[ApplyResult]:
        """``notifier.deliver``, with ``after_send`` as in :meth:`apply`."""
        if not self._armed("after_send", notifies):
            return notifier.deliver(notifies)
        cut = next(i for i, a in enumerate(notifies) if a.kind == self.kind) + 1
        notifier.deliver(notifies[:cut])
        self._kill()
        return []  # not reached


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["CRASH_ENV", "POINTS", "ACTION_KINDS", "CrashHook"]
