"""Typed platform errors. Messages carry the platform's own error message, never a response body
(bodies hold personal data) and never a credential."""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error talking to a platform."""

    retryable = False

    def __init__(self, message: str, status: int | None = None, method: str | None = None, path: str | None = None) -> None:
        self.status = status
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method and path else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{where}{code}{message}")


class AuthenticationError(PlatformError):
    """401: wrong or missing credentials."""


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

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class TransientError(PlatformError):
    """5xx, a dropped connection, a timeout, a 202 without body, an HTML maintenance page."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class UnexpectedResponse(PlatformError):
    """A 2xx answer that is not what the API documents (not JSON, missing ``result``)."""

    retryable = True


def error_for_status(status: int, message: str = "", *, retry_after: float | None = None, method: str | None = None,
                     path: str | None = None, transient: type[TransientError] = TransientError) -> PlatformError:
    """The typed error for a non-2xx status: the one place where statuses become the rows of the retry
    table (connector/platforms/retry.py). ``message`` is the platform's own error text, never a body;
    ``transient`` lets an adapter mark a lost write answer (ServiceNow's ``MaybeApplied``)."""
    where: dict[str, object] = {"status": status, "method": method, "path": path}
    if status == 401:
        return AuthenticationError(message or "authentication failed", **where)  # type: ignore[arg-type]
    if status == 403:
        return PermissionDenied(message or "not allowed for this user", **where)  # type: ignore[arg-type]
    if status == 404:
        return NotFound(message or "not found", **where)  # type: ignore[arg-type]
    if status in (409, 412):
        return Conflict(message or "conflict", **where)  # type: ignore[arg-type]
    if status == 413:
        return LimitExceeded(message or "a size or per-record limit is reached", **where)  # type: ignore[arg-type]
    if status == 429 or (status == 503 and retry_after is not None):
        return RateLimited(message or "rate limited", retry_after=retry_after, **where)
    if status in (500, 502, 503, 504):
        return transient(message or "server error", retry_after=retry_after, **where)
    if 400 <= status < 500:
        return ClientError(message or "request rejected", **where)  # type: ignore[arg-type]
    return PlatformError(message or "unexpected status", **where)  # type: ignore[arg-type]
