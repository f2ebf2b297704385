"""Typed platform errors. Messages carry the platform's own error message, never a response body
(bodies hold personal data) and never a credential. Which error a status or a failure becomes, and what is
done about it, is the table in :mod:`connector.platforms.retry`."""

from __future__ import annotations

from enum import Enum


class ResponseAction(str, Enum):
    """What the retry policy does about an error (a column of :data:`connector.platforms.retry.RETRY_TABLE`)."""

    RETRY = "retry"
    """Not carried out: send again, after ``Retry-After`` if given, else after a backoff."""
    REREAD = "re-read"
    """May have been carried out: send again, but a write that is not idempotent reads back first."""
    RETRY_ONCE = "retry once"
    """Send again once in the same call (401)."""
    FATAL = "fatal"
    """Never retried."""


class PlatformError(Exception):
    """Base of every error talking to a platform.

    ``action`` is what the retry policy does within the call (the row of the retry table that raised it);
    ``retryable`` says whether an action that failed with it is worth re-driving in a later cycle."""

    retryable = False
    action = ResponseAction.FATAL

    def __init__(self, message: str, status: int | None = None, method: str | None = None, path: str | None = None) -> None:
        self.status = status
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method and path else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{where}{code}{message}")


class AuthenticationError(PlatformError):
    """401: wrong or missing credentials."""

    action = ResponseAction.RETRY_ONCE


class PermissionDenied(PlatformError):
    """403: the integration user may not do this."""


class NotFound(PlatformError):
    """404: no such record (or an ACL hides it)."""


class Conflict(PlatformError):
    """409/412: the record changed under us."""


class LimitExceeded(PlatformError):
    """413: a per-issue limit (links, comments) is reached; not retryable."""


class ClientError(PlatformError):
    """Another 4xx: the request is wrong and retrying will not help."""


class RateLimited(PlatformError):
    """429 (or 503 with Retry-After): wait ``retry_after`` seconds."""

    retryable = True
    action = ResponseAction.RETRY

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class TransientError(PlatformError):
    """5xx, a dropped connection, a timeout, a 202 without body."""

    retryable = True
    action = ResponseAction.REREAD

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class UnexpectedResponse(PlatformError):
    """A 2xx answer that is not what the API documents (an HTML page, not JSON, missing ``result``)."""

    retryable = True
    action = ResponseAction.REREAD
