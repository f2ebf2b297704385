"""The one retry policy: a literal table from what went wrong to what to do, and the loop built from it.

:data:`RETRY_TABLE` says, for an HTTP status, a transport exception or one of a few named answers, which typed
error (:mod:`connector.platforms.errors`) is raised and what the caller does about it:

* ``retry``: the platform refused or dropped the request without carrying it out; send it again after
  ``Retry-After`` when the platform gave one, else after a backoff with jitter, capped;
* ``re-read``: the request may have been carried out and its answer was lost; sent again like ``retry``, but a
  write that is not idempotent (a create, a note, a transition) first reads back whether it already landed;
* ``retry once``: 401, since LDAP-backed users see transient ones; a second 401 in the same call is final;
* ``fatal``: never retried; the typed error goes to the caller (every other 4xx, and anything unexpected).

Every error an adapter raises for a row carries the row's action (``error.action``); :class:`RetryPolicy`
retries on it and the adapters read back on ``re-read``. Writes are retried too: every write the connector
makes is idempotent or reads back first, so a retry after a lost answer does no harm.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Callable, Mapping, TypeVar, Union

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from connector.platforms.errors import (
    AuthenticationError,
    ClientError,
    Conflict,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    PlatformError,
    RateLimited,
    ResponseAction,
    TransientError,
    UnexpectedResponse,
)

T = TypeVar("T")

RETRY = ResponseAction.RETRY
REREAD = ResponseAction.REREAD
RETRY_ONCE = ResponseAction.RETRY_ONCE
FATAL = ResponseAction.FATAL

RETRY_AFTER_503 = "503 with Retry-After"
"""503 with a ``Retry-After`` header: a refusal (rate limit or maintenance), like 429."""
EMPTY_202 = "202 without a body"
"""ServiceNow queues the requests of one session and drops them with an empty 202 when the queue overflows."""
UNREADABLE_2XX = "2xx that is not the documented JSON"
"""An HTML maintenance page, a body that is not JSON, or JSON without the documented content."""
OTHER_4XX = "other 4xx"
OTHER_STATUS = "other status"
"""1xx, 3xx (redirects are never followed: they could carry credentials elsewhere) and unlisted 5xx."""

Condition = Union[int, str, type[Exception]]
"""A row's key: an HTTP status, a transport exception type (the first matching base class wins), or a named
answer above."""


@dataclass(frozen=True)
class Resolution:
    """One row of the table: what to do, the error raised, and its message when the platform gives none."""

    action: ResponseAction
    error: type[PlatformError]
    message: str


RETRY_TABLE: dict[Condition, Resolution] = {
    429: Resolution(RETRY, RateLimited, "rate limited"),
    RETRY_AFTER_503: Resolution(RETRY, RateLimited, "rate limited"),
    500: Resolution(REREAD, TransientError, "server error"),
    502: Resolution(REREAD, TransientError, "server error"),
    503: Resolution(REREAD, TransientError, "server error"),
    504: Resolution(REREAD, TransientError, "server error"),
    requests.ConnectTimeout: Resolution(REREAD, TransientError, "connection timed out"),
    requests.Timeout: Resolution(REREAD, TransientError, "no answer in time"),
    requests.ConnectionError: Resolution(REREAD, TransientError, "connection failed"),
    requests.RequestException: Resolution(REREAD, TransientError, "request failed"),
    UNREADABLE_2XX: Resolution(REREAD, UnexpectedResponse, "answer is not the documented JSON"),
    401: Resolution(RETRY_ONCE, AuthenticationError, "authentication failed"),
    403: Resolution(FATAL, PermissionDenied, "not allowed for this user"),
    404: Resolution(FATAL, NotFound, "not found"),
    409: Resolution(FATAL, Conflict, "conflict"),
    412: Resolution(FATAL, Conflict, "conflict"),
    413: Resolution(FATAL, LimitExceeded, "a size or per-record limit is reached"),
    OTHER_4XX: Resolution(FATAL, ClientError, "request rejected"),
    OTHER_STATUS: Resolution(FATAL, PlatformError, "unexpected status"),
}
"""The retry policy of every adapter (the Jira adapter and the webhooks use it as it is)."""

SERVICENOW_TABLE: dict[Condition, Resolution] = {
    **{condition: row for condition, row in RETRY_TABLE.items() if condition is not requests.RequestException},
    # Requests that share a session are queued by the instance, and dropped when more than ten wait.
    EMPTY_202: Resolution(RETRY, TransientError, "request queued and dropped (HTTP 202 without a body)"),
    # ServiceNow answers 503 without Retry-After when the node's API semaphores are full: the request never ran.
    503: Resolution(RETRY, TransientError, "server error"),
    # No connection was made, so nothing was sent.
    requests.ConnectTimeout: Resolution(RETRY, TransientError, "connection timed out"),
    # The HTML page of a hibernating or upgrading instance: the request never reached the Table API.
    UNREADABLE_2XX: Resolution(RETRY, UnexpectedResponse, "answer is not the documented JSON"),
    # The answer arrived, then broke off (a body shorter than its Content-Length, a bad chunk, an encoding that
    # does not decode): the request was carried out and its answer is lost.
    requests.exceptions.ChunkedEncodingError: Resolution(REREAD, TransientError, "answer cut short"),
    requests.exceptions.ContentDecodingError: Resolution(REREAD, TransientError, "answer could not be decoded"),
    # Anything else requests raises (an invalid URL or header, too many redirects) is about the request
    # itself: sending it again changes nothing.
    requests.RequestException: Resolution(FATAL, ClientError, "request could not be sent"),
}
"""ServiceNow's rows: the same table, with the rows where the instance tells more about what happened, and every
``requests`` exception decided: timeouts and connection errors as in the shared table, a body cut short as a
lost answer (re-read), any other one fatal."""


def resolve_status(status: int, retry_after: float | None = None,
                   table: Mapping[Condition, Resolution] = RETRY_TABLE) -> Resolution:
    """The row for a non-2xx ``status`` (``retry_after``: the parsed ``Retry-After`` header, if any)."""
    if status == 503 and retry_after is not None:
        return table[RETRY_AFTER_503]
    if status in table:
        return table[status]
    return table[OTHER_4XX] if 400 <= status < 500 else table[OTHER_STATUS]


def resolve_exception(exc: BaseException, table: Mapping[Condition, Resolution] = RETRY_TABLE) -> Resolution:
    """The row for a transport exception: the most specific exception type the table names (KeyError when
    it names none)."""
    for kind in type(exc).__mro__:
        if kind in table:
            return table[kind]
    raise KeyError(type(exc).__name__)


def error_from(row: Resolution, message: str = "", *, status: int | None = None, method: str | None = None,
               path: str | None = None, retry_after: float | None = None,
               error: type[PlatformError] | None = None) -> PlatformError:
    """The error a row raises, carrying the row's action. ``message`` is the platform's own error text (never
    a body) or the adapter's description of a failure; ``error`` replaces the row's error class with a
    subclass that tells more (ServiceNow's ``MaybeApplied`` for a write whose answer was lost)."""
    kind = error or row.error
    where: dict[str, object] = {"status": status, "method": method, "path": path}
    if issubclass(kind, (RateLimited, TransientError)):
        where["retry_after"] = retry_after
    made = kind(message or row.message, **where)  # type: ignore[arg-type]
    made.action = row.action
    return made


def error_for_status(status: int, message: str = "", *, retry_after: float | None = None, method: str | None = None,
                     path: str | None = None, table: Mapping[Condition, Resolution] = RETRY_TABLE,
                     error: type[PlatformError] | None = None) -> PlatformError:
    """The typed error of a non-2xx status, from ``table`` (see :func:`error_from`)."""
    return error_from(resolve_status(status, retry_after, table), message, status=status, method=method, path=path,
                      retry_after=retry_after, error=error)


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
        """Whether the table's action for ``exc`` says try again (``auth_failures`` counts 401s in this call)."""
        action = getattr(exc, "action", FATAL) if isinstance(exc, PlatformError) else FATAL
        if action is RETRY_ONCE:
            return auth_failures <= 1
        return action in (RETRY, REREAD)

    def wait_seconds(self, state: RetryCallState) -> float:
        """``Retry-After`` when the platform said so, else full-jitter exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        if hinted is not None:
            return min(float(hinted), self.max_retry_after)
        return self.backoff(state.attempt_number)

    def backoff(self, attempt: int) -> float:
        """The jittered exponential wait after the ``attempt``-th try (1-based), capped."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return self.rng.uniform(ceiling / 2, ceiling)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the policy; the last error is re-raised as it is."""
        auth_failures = 0

        def predicate(exc: BaseException) -> bool:
            nonlocal auth_failures
            if getattr(exc, "action", None) is RETRY_ONCE:
                auth_failures += 1
            return self.should_retry(exc, auth_failures)

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


__all__ = ["RETRY_TABLE", "SERVICENOW_TABLE", "Resolution", "ResponseAction", "RetryPolicy", "error_for_status", "error_from",
           "parse_retry_after", "resolve_exception", "resolve_status"]
