"""Communications: the ``declared``, ``update``, ``resolved`` and ``closed`` messages of a major incident.

Two halves with a clear line between them:

* **Planning (pure).** :func:`render_message` fills a process-file template through
  :func:`connector.templating.render` with a fixed set of named values (:data:`connector.process.TEMPLATE_VALUES`);
  :func:`message_actions` turns one message into a platform note per audience (internal work note, public
  comment) and a :class:`~connector.plan.Notify` per stakeholder with a webhook. A Notify names its webhook;
  it never carries the URL, so neither the action ledger nor ``--dry-run`` output can leak it.
* **Delivery (I/O).** :class:`WebhookNotifier` POSTs each Notify's JSON payload to the URL configured for its
  webhook name (``settings.webhooks[name]``, i.e. ``MIM_WEBHOOKS_<NAME>``), with a timeout, the shared retry
  policy and an ``Idempotency-Key`` header equal to the action key. A failure is reported, never raised, so
  a dead webhook never blocks the cycle; the ledger marks it failed and the next cycle sends it again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

import requests

from .logs import RedactingFilter, redact, register_secret
from .plan import Action, AddNote, Notify
from .platforms.base import ApplyResult
from .platforms.errors import (
    ClientError,
    PlatformError,
    TransientError,
    error_for_status,
)
from .platforms.retry import RetryPolicy, parse_retry_after
from .process import TEMPLATE_VALUES, ProcessFile, Stakeholder
from .templating import TemplateError, render

MESSAGE_KINDS = ("declared", "update", "resolved", "closed")

DEFAULT_TEMPLATES: dict[str, str] = {
    "declared": "Major incident {key} declared by rule {rule}: {title}. Service {service}, {children} related "
                "tickets. Manager: {manager}.",
    "update": "Update on {key}: stage {stage}, {children} related tickets, {since_declared} since declaration.",
    "resolved": "Major incident {key} is resolved: {resolution}",
    "closed": "Major incident {key} is closed. Updates sent: {updates_sent}.",
}
"""Used for a message the process file has no template for."""

WEBHOOK_PREFIX = "webhook:"
"""``Notify.url`` holds ``webhook:<name>``: a reference resolved at delivery time, never the URL itself."""

_COLOURS = {"declared": "D9534F", "update": "F0AD4E", "resolved": "5CB85C", "closed": "777777"}


def template_values(values: Mapping[str, object]) -> dict[str, object]:
    """Exactly the names a template may use, each with a printable value (``""`` when unknown)."""
    return {name: ("" if values.get(name) is None else values[name]) for name in TEMPLATE_VALUES}


def render_message(process: ProcessFile, kind: str, values: Mapping[str, object]) -> str:
    """The text of message ``kind`` from the process file's template (or the default one).

    Templates are validated when the process file loads; a template that still fails to render (it
    cannot reach anything but the named values) falls back to the default text rather than losing the
    message.
    """
    template = process.communications.templates.get(kind) or DEFAULT_TEMPLATES[kind]  # type: ignore[call-overload]
    filled = template_values(values)
    try:
        return render(template, filled)
    except TemplateError:
        return render(DEFAULT_TEMPLATES[kind], filled)


def payload(fmt: str, kind: str, text: str, values: Mapping[str, object]) -> dict[str, Any]:
    """The webhook body for ``fmt``: ``generic`` JSON, ``slack`` (incoming webhook) or ``teams`` (MessageCard)."""
    key = str(values.get("key") or "")
    url = str(values.get("url") or "")
    if fmt == "slack":
        return {"text": text}
    if fmt == "teams":
        card: dict[str, Any] = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": f"Major incident {key}: {kind}",
            "themeColor": _COLOURS.get(kind, "777777"),
            "title": f"Major incident {key}: {kind}",
            "text": text,
            "sections": [{"facts": [{"name": name.replace("_", " ").capitalize(), "value": "" if values.get(name) is None else str(values[name])}
                                    for name in ("stage", "service", "children", "manager")]}],
        }
        if url:
            card["potentialAction"] = [{"@type": "OpenUri", "name": f"Open {key}",
                                        "targets": [{"os": "default", "uri": url}]}]
        return card
    return {
        "event": f"major_incident.{kind}",
        "text": text,
        "major_incident": {name: values.get(name) for name in
                           ("key", "title", "rule", "stage", "service", "children", "manager", "team",
                            "declared_at", "url", "change")},
    }


def message_actions(process: ProcessFile, kind: str, key: str, target: str, values: Mapping[str, object],
                    rule: str | None = None) -> list[Action]:
    """One message to every stakeholder: a note per audience (``<key>`` internal, ``<key>:public``) and a
    Notify per webhook stakeholder (``<key>:hook:<stakeholder>``, so no stakeholder name can collide with an
    audience). Nothing when no stakeholder is configured."""
    stakeholders = process.communications.stakeholders
    if not stakeholders:
        return []
    text = render_message(process, kind, values)
    reason = f"{kind} message"
    actions: list[Action] = []
    audiences = {s.audience for s in stakeholders}
    for audience in ("internal", "public"):
        if audience in audiences:
            actions.append(AddNote(key=key if audience == "internal" else f"{key}:public", target=target, rule=rule,
                                   reason=reason, text=text, internal=audience == "internal"))
    for stakeholder in stakeholders:
        if stakeholder.webhook:
            actions.append(notify_action(stakeholder, kind, f"{key}:hook:{stakeholder.name}", target, text, values, rule))
    return actions


def notify_action(stakeholder: Stakeholder, kind: str, key: str, target: str, text: str,
                  values: Mapping[str, object], rule: str | None = None) -> Notify:
    """A webhook message for ``stakeholder`` (whose ``webhook`` names the configured URL)."""
    assert stakeholder.webhook is not None
    return Notify(key=key, target=target, rule=rule, reason=f"{kind} message to {stakeholder.name}",
                  channel=stakeholder.webhook, url=WEBHOOK_PREFIX + stakeholder.webhook,
                  payload=payload(stakeholder.format, kind, text, values))


# -- delivery -----------------------------------------------------------------------------------------------


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
    from .config import ConfigurationError, load_settings

    env = os.environ if env is None else env
    try:
        return WebhookNotifier(load_settings(env=env).webhooks)
    except ConfigurationError:
        hooks = {name[len("MIM_WEBHOOKS_"):].lower(): value for name, value in env.items()
                 if name.startswith("MIM_WEBHOOKS_") and value}
        return WebhookNotifier(hooks)



__all__ = ["MESSAGE_KINDS", "DEFAULT_TEMPLATES", "render_message", "payload", "message_actions", "notify_action",
           "Notifier", "WebhookNotifier", "notifier_from_environment", "template_values", "default_policy"]
