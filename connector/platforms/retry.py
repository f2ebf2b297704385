"""The one retry policy, declared once as a table and shared by every adapter.

| condition                                   | action                                        |
|---------------------------------------------|-----------------------------------------------|
| 429, 503 with ``Retry-After``               | wait ``Retry-After`` (seconds or HTTP date)   |
| 502, 503, 504, 500                          | exponential backoff with jitter, capped       |
| connection error, timeout                   | exponential backoff with jitter, capped       |
| 202 without body (ServiceNow queue overflow)| exponential backoff                           |
| 200 with an HTML page (maintenance)         | exponential backoff                           |
| 401                                         | retry once (LDAP-backed users see transient 401s) |
| other 4xx (400, 403, 404, 409, 413...)      | never retried: a typed error                  |

Writes are retried too: every write the connector makes is idempotent (a PATCH sets values, a create is
keyed by a marker the adapter looks up first), so a retry after a lost answer does no harm.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Callable, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from connector.platforms.errors import (
    AuthenticationError,
    PlatformError,
    RateLimited,
    TransientError,
    UnexpectedResponse,
)

T = TypeVar("T")

def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now())


@dataclass
class RetryPolicy:
    """How hard to try: attempts, backoff base and cap, the longest ``Retry-After`` honoured, and an
    overall deadline per call. ``sleep`` is injectable so tests do not wait."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    deadline: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    retries: int = 0

    def should_retry(self, exc: BaseException, auth_failures: int = 1) -> bool:
        """True for the rows of the table that say retry (``auth_failures`` counts 401s in this call)."""
        if isinstance(exc, AuthenticationError):
            return auth_failures <= 1
        return isinstance(exc, (RateLimited, TransientError, UnexpectedResponse))

    def wait_seconds(self, state: RetryCallState) -> float:
        """``Retry-After`` when the platform said so, else full-jitter exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        if hinted is not None:
            return min(float(hinted), self.max_retry_after)
        ceiling = min(self.cap, self.base * (2 ** (state.attempt_number - 1)))
        return self.rng.uniform(ceiling / 2, ceiling)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the policy; the last error is re-raised as it is."""
        auth_failures = 0

        def predicate(exc: BaseException) -> bool:
            nonlocal auth_failures
            if isinstance(exc, AuthenticationError):
                auth_failures += 1
            return isinstance(exc, PlatformError) and self.should_retry(exc, auth_failures)

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline),
            wait=self.wait_seconds,
            retry=retry_if_exception(predicate),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)
