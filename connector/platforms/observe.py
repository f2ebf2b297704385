"""A generic hook on the HTTP layer, for metrics: every request an adapter's ``requests`` session sends (every
attempt, retries and token requests included) is reported to an observer with its method, its status (or
``error`` when no answer came: refused, reset, timed out) and how long it took. No URL, header or body is
passed on, so nothing personal or secret can reach a metric."""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, runtime_checkable

import requests

HttpObserver = Callable[[str, str, str, float], None]
"""``observer(platform, method, status, seconds)``; ``status`` is the HTTP status code or ``error``."""


@runtime_checkable
class HttpObservable(Protocol):
    """An adapter whose HTTP requests can be observed."""

    def observe_http(self, observer: HttpObserver) -> None:
        """Report every request this adapter sends from now on to ``observer``."""
        ...


def observe_session(session: requests.Session, platform: str, observer: HttpObserver) -> None:
    """Wrap ``session.send`` (which every request, redirect and retry passes through; per-request hooks, as
    pysnow passes them, would replace a session hook) so ``observer`` hears of each one."""
    send = session.send

    def observed(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        try:
            response = send(request, **kwargs)
        except requests.RequestException:
            observer(platform, request.method or "?", "error", time.monotonic() - started)
            raise
        observer(platform, request.method or "?", str(response.status_code), time.monotonic() - started)
        return response

    setattr(session, "send", observed)


__all__ = ["HttpObservable", "HttpObserver", "observe_session"]
