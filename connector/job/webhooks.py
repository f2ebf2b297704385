"""Webhook delivery (I/O): :class:`WebhookNotifier` POSTs each Notify's JSON payload to the URL configured for
its webhook name (``settings.webhooks[name]``, i.e. ``MIM_WEBHOOKS_<NAME>``), with a timeout, the shared retry
policy and an ``Idempotency-Key`` header equal to the action key. A failure is reported, never raised, so a
dead webhook never blocks the cycle; the ledger marks it failed and the next cycle sends it again. The
messages themselves are planned by :mod:`connector.process.messages`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

import requests

from connector.core.actions import Notify
from connector.job.logs import RedactingFilter, redact, register_secret
from connector.platforms.base import ApplyResult
from connector.platforms.errors import ClientError, PlatformError, TransientError
from connector.platforms.retry import RetryPolicy, error_for_status, parse_retry_after


class Notifier(Protocol):
    """Delivers Notify actions; one result per action, never raises for a delivery failure."""

    def deliver(self, actions: Sequence[Notify]) -> list[ApplyResult]:
        """Send every action and report each one."""
        ...


# urllib3 logs each request's path at DEBUG; a webhook's path is its secret
_URLLIB3_FILTER = RedactingFilter()


def _guard_logs(url: str) -> None:
    register_secret(url)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(path) > 1:
        register_secret(path)
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
        logger = logging.getLogger(name)
        if _URLLIB3_FILTER not in logger.filters:
            logger.addFilter(_URLLIB3_FILTER)


def default_policy() -> RetryPolicy:
    """Webhooks get a short policy: a cycle should not wait minutes for a chat message."""
    return RetryPolicy(attempts=3, base=0.5, cap=4.0, max_retry_after=10.0, deadline=20.0)


@dataclass
class WebhookNotifier:
    """POSTs Notify payloads to the URLs configured per webhook name.

    ``webhooks`` maps a name (case-insensitive) to its URL. A webhook that fails (after retries) is not tried
    again in the same delivery round: its other messages are reported failed at once and go out next cycle.
    """

    webhooks: Mapping[str, Any]
    policy: RetryPolicy = field(default_factory=default_policy)
    timeout: tuple[float, float] = (3.05, 10.0)
    session: requests.Session | None = None
    sent: int = 0

    def __post_init__(self) -> None:
        self._urls: dict[str, str] = {}
        for name, value in self.webhooks.items():
            url = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            if url:
                self._urls[name.lower()] = url
                _guard_logs(url)

    def deliver(self, actions: Sequence[Notify]) -> list[ApplyResult]:
        """Send each action; a failure of one webhook never stops the others."""
        results: list[ApplyResult] = []
        broken: set[str] = set()
        session = self.session or requests.Session()
        try:
            for action in actions:
                results.append(self._deliver_one(session, action, broken))
        finally:
            if self.session is None:
                session.close()
        return results

    def _deliver_one(self, session: requests.Session, action: Notify, broken: set[str]) -> ApplyResult:
        name = action.channel.lower()
        url = self._urls.get(name)
        if url is None:
            env = "MIM_WEBHOOKS_" + "".join(c if c.isalnum() else "_" for c in action.channel).upper()
            return ApplyResult(action.key, "failed", detail=f"webhook {action.channel!r} has no URL configured (set {env})")
        if name in broken:
            return ApplyResult(action.key, "failed", detail=f"webhook {action.channel!r} failed earlier in this cycle")
        try:
            status = self.policy.call(lambda: self._post(session, url, action))
        except PlatformError as exc:
            broken.add(name)
            return ApplyResult(action.key, "failed", detail=redact(str(exc)))
        self.sent += 1
        return ApplyResult(action.key, "applied", detail=f"webhook {action.channel!r}: HTTP {status}")

    def _post(self, session: requests.Session, url: str, action: Notify) -> int:
        where = f"webhook {action.channel!r}"
        try:
            response = session.post(url, json=action.payload, timeout=self.timeout, allow_redirects=False,
                                    headers={"Idempotency-Key": action.key, "User-Agent": "mim-connector"})
        except requests.Timeout:
            raise TransientError(f"{where}: timed out") from None
        except requests.ConnectionError:
            raise TransientError(f"{where}: connection failed") from None
        except requests.RequestException as exc:
            # the exception text holds the URL; only its type is safe to report
            raise ClientError(f"{where}: request failed ({type(exc).__name__})") from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return status
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_for_status(status, f"{where}: HTTP {status}", retry_after=retry_after)


def notifier_from_environment(env: Mapping[str, str] | None = None) -> WebhookNotifier:
    """A notifier for the webhooks of the configuration (``mim.toml``/``MIM_CONFIG`` ``[webhooks]`` and
    ``MIM_WEBHOOKS_<NAME>``). Used by the sync cycle when its caller did not pass one."""
    from connector.core.settings import SettingsError, load_settings

    env = os.environ if env is None else env
    try:
        return WebhookNotifier(load_settings(env=env).webhooks)
    except SettingsError:
        hooks = {name[len("MIM_WEBHOOKS_"):].lower(): value for name, value in env.items()
                 if name.startswith("MIM_WEBHOOKS_") and value}
        return WebhookNotifier(hooks)


__all__ = ["Notifier", "WebhookNotifier", "notifier_from_environment", "default_policy"]
