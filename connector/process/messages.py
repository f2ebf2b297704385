"""Messages of a major incident (pure): the ``declared``, ``update``, ``resolved`` and ``closed`` texts and
the actions that carry them.

:func:`render_message` fills a process-file template through :func:`connector.core.templating.render` with a
fixed set of named values (:data:`connector.process.processfile.TEMPLATE_VALUES`); :func:`message_actions`
turns one message into a platform note per audience (internal work note, public comment) and a
:class:`~connector.core.actions.Notify` per stakeholder with a webhook. A Notify names its webhook; it never
carries the URL, so neither the action ledger nor ``--dry-run`` output can leak it. Delivery is
:mod:`connector.job.webhooks`.
"""

from __future__ import annotations

from typing import Any, Mapping

from connector.core.actions import Action, ActionKey, AddNote, Notify
from connector.core.templating import TemplateError, render
from connector.process.processfile import TEMPLATE_VALUES, ProcessFile, Stakeholder

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


def message_actions(process: ProcessFile, kind: str, key: ActionKey | str, target: str, values: Mapping[str, object],
                    rule: str | None = None) -> list[Action]:
    """One message to every stakeholder: a note per audience (``<key>`` internal, ``<key>:public``) and a
    Notify per webhook stakeholder (``<key>:hook:<stakeholder>``, so no stakeholder name can collide with an
    audience). Nothing when no stakeholder is configured."""
    stakeholders = process.communications.stakeholders
    if not stakeholders:
        return []
    base = ActionKey.parse(key)
    text = render_message(process, kind, values)
    reason = f"{kind} message"
    actions: list[Action] = []
    audiences = {s.audience for s in stakeholders}
    for audience in ("internal", "public"):
        if audience in audiences:
            actions.append(AddNote(key=base if audience == "internal" else base.public(), target=target, rule=rule,
                                   reason=reason, text=text, internal=audience == "internal"))
    for stakeholder in stakeholders:
        if stakeholder.webhook:
            actions.append(notify_action(stakeholder, kind, base.hook(stakeholder.name), target, text, values, rule))
    return actions


def notify_action(stakeholder: Stakeholder, kind: str, key: str, target: str, text: str,
                  values: Mapping[str, object], rule: str | None = None) -> Notify:
    """A webhook message for ``stakeholder`` (whose ``webhook`` names the configured URL)."""
    if stakeholder.webhook is None:
        raise ValueError(f"stakeholder {stakeholder.name!r} has no webhook")
    return Notify(key=key, target=target, rule=rule, reason=f"{kind} message to {stakeholder.name}",
                  channel=stakeholder.webhook, url=WEBHOOK_PREFIX + stakeholder.webhook,
                  payload=payload(stakeholder.format, kind, text, values))


__all__ = ["MESSAGE_KINDS", "DEFAULT_TEMPLATES", "WEBHOOK_PREFIX", "render_message", "payload", "message_actions",
           "notify_action", "template_values"]
