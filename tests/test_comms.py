"""Communications: message rendering, payload formats, webhook delivery (timeouts, retries, Idempotency-Key)
against a local HTTP server, and a failing webhook that never blocks the cycle nor leaks its URL."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import ValidationError

from connector.core.actions import Notify
from connector.detection.rules import load_rules
from connector.job.cycle import run_cycle
from connector.job.store import StateStore
from connector.job.webhooks import WebhookNotifier, notifier_from_environment
from connector.platforms.retry import RetryPolicy
from connector.process.messages import DEFAULT_TEMPLATES, message_actions, payload, render_message
from connector.process.planner import plan_process
from connector.process.processfile import TEMPLATE_VALUES, ProcessFile, load_process
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
SHIPPED, _ = load_process(ROOT / "rules" / "process.yaml")
assert SHIPPED is not None
SECRET_PATH = "/services/T000/B000/s3cr3t-webhook-token"
VALUES: dict[str, object] = {"key": "INC0001", "title": "Checkout fails", "rule": "service-surge",
                             "stage": "containment", "service": "web-shop", "children": 7, "manager": "alice.martin",
                             "team": "major-incident-team", "since_declared": "45m", "url": "https://sn.example/INC0001"}


def process(**communications: Any) -> ProcessFile:
    data = SHIPPED.model_dump(mode="json")
    data["communications"] = {**data["communications"], **communications}
    return ProcessFile.model_validate(data)


# -- rendering -------------------------------------------------------------------------------------------------


def test_messages_render_the_named_values_of_the_process_templates() -> None:
    text = render_message(SHIPPED, "update", VALUES)
    assert text == "Update on INC0001: stage containment, 7 related tickets, 45m since declaration."


def test_a_missing_template_uses_the_default_and_unknown_values_render_empty() -> None:
    bare = process(templates={})
    assert render_message(bare, "closed", {"key": "INC9"}) == "Major incident INC9 is closed. Updates sent: ."
    assert set(DEFAULT_TEMPLATES) == {"declared", "update", "resolved", "closed"}


@pytest.mark.parametrize("template", ["{key.__class__}", "{key[0]}", "{key!r}", "{0}", "{password}", "{key:>99}"],
                         ids=["attribute", "index", "conversion", "positional", "unknown-name", "format-spec"])
def test_a_template_can_reach_only_the_named_values(template: str) -> None:
    with pytest.raises(ValidationError):
        process(templates={"declared": template})


def test_values_outside_the_fixed_set_are_never_offered_to_templates() -> None:
    text = render_message(process(templates={"update": "{key}"}), "update", {**VALUES, "secret": "x"})
    assert text == "INC0001"
    assert "secret" not in TEMPLATE_VALUES


# -- payloads and actions ---------------------------------------------------------------------------------------


def test_generic_payload_carries_the_event_text_and_the_incident() -> None:
    body = payload("generic", "declared", "hello", VALUES)
    assert body["event"] == "major_incident.declared" and body["text"] == "hello"
    assert body["major_incident"]["key"] == "INC0001" and body["major_incident"]["children"] == 7


def test_slack_payload_is_an_incoming_webhook_text() -> None:
    assert payload("slack", "update", "hello", VALUES) == {"text": "hello"}


def test_teams_payload_is_a_message_card_with_facts_and_a_link() -> None:
    card = payload("teams", "resolved", "hello", VALUES)
    assert card["@type"] == "MessageCard" and card["@context"] == "https://schema.org/extensions"
    assert card["text"] == "hello" and card["summary"] == "Major incident INC0001: resolved"
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts == {"Stage": "containment", "Service": "web-shop", "Children": "7", "Manager": "alice.martin"}
    assert card["potentialAction"][0]["targets"][0]["uri"] == "https://sn.example/INC0001"


def test_message_actions_give_one_note_per_audience_and_a_notify_per_webhook() -> None:
    proc = process(stakeholders=[{"name": "desk", "audience": "internal"}, {"name": "desk2", "audience": "internal"},
                                 {"name": "status-page", "audience": "public"},
                                 {"name": "teams-room", "webhook": "teams", "format": "teams"}])
    actions = message_actions(proc, "declared", "comms:mi:declared", "mi", VALUES)
    assert [(a.key, type(a).__name__) for a in actions] == [
        ("comms:mi:declared", "AddNote"), ("comms:mi:declared:public", "AddNote"),
        ("comms:mi:declared:hook:teams-room", "Notify")]
    notify = actions[2]
    assert isinstance(notify, Notify) and notify.url == "webhook:teams", "the URL itself never enters the ledger"
    assert notify.payload["@type"] == "MessageCard"


def test_no_stakeholders_no_messages() -> None:
    assert message_actions(process(stakeholders=[]), "declared", "k", "mi", VALUES) == []


# -- delivery against a local server ------------------------------------------------------------------------------


class Hook:
    """A local webhook receiver: answers with the queued statuses (then 200), records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                hook.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(self.rfile.read(length) or b"null")})
                if hook.delay:
                    time.sleep(hook.delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                for name, value in hook.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.stop()


def quick_policy(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.02, max_retry_after=0.05, deadline=5, sleep=lambda s: None)


def notify(key: str = "comms:mi:declared:ops", channel: str = "ops", body: dict[str, Any] | None = None) -> Notify:
    return Notify(key=key, target="mi", channel=channel, url=f"webhook:{channel}", payload=body or {"text": "hello"})


def test_delivery_posts_the_payload_with_the_action_key_as_idempotency_key(hook: Hook) -> None:
    results = WebhookNotifier({"ops": hook.url}, policy=quick_policy()).deliver([notify(body={"text": "déclaré"})])
    assert [(r.key, r.status) for r in results] == [("comms:mi:declared:ops", "applied")]
    sent = hook.requests[0]
    assert sent["path"] == SECRET_PATH and sent["body"] == {"text": "déclaré"}
    assert sent["headers"]["Idempotency-Key"] == "comms:mi:declared:ops"
    assert sent["headers"]["Content-Type"] == "application/json"


def test_server_errors_and_rate_limits_are_retried_with_the_same_idempotency_key(hook: Hook) -> None:
    hook.statuses = [503, 429, 502]
    hook.headers = {"Retry-After": "0"}
    results = WebhookNotifier({"ops": hook.url}, policy=quick_policy(attempts=4)).deliver([notify()])
    assert results[0].status == "applied"
    assert len(hook.requests) == 4
    assert {r["headers"]["Idempotency-Key"] for r in hook.requests} == {"comms:mi:declared:ops"}


def test_a_rejected_payload_is_not_retried(hook: Hook) -> None:
    hook.statuses = [400]
    results = WebhookNotifier({"ops": hook.url}, policy=quick_policy()).deliver([notify()])
    assert results[0].status == "failed" and "HTTP 400" in results[0].detail
    assert len(hook.requests) == 1


def test_a_slow_webhook_times_out_and_fails_without_blocking_long(hook: Hook) -> None:
    hook.delay = 1.0
    started = time.monotonic()
    results = WebhookNotifier({"ops": hook.url}, policy=quick_policy(attempts=2), timeout=(0.5, 0.2)).deliver([notify()])
    assert results[0].status == "failed" and "timed out" in results[0].detail
    assert time.monotonic() - started < 3


def test_a_failing_webhook_is_not_retried_again_in_the_same_round_but_others_are_sent(hook: Hook) -> None:
    other = Hook()
    try:
        hook.statuses = [500] * 10
        notifier = WebhookNotifier({"ops": hook.url, "chat": other.url}, policy=quick_policy())
        results = notifier.deliver([notify("a", "ops"), notify("b", "ops"), notify("c", "chat")])
        assert [r.status for r in results] == ["failed", "failed", "applied"]
        assert "failed earlier" in results[1].detail
        assert len(hook.requests) == 3, "three attempts for the first message, none for the second"
        assert len(other.requests) == 1
    finally:
        other.stop()


def test_a_webhook_without_a_url_fails_naming_the_environment_variable() -> None:
    results = WebhookNotifier({}).deliver([notify(channel="ops-chat")])
    assert results[0].status == "failed" and "MIM_WEBHOOKS_OPS_CHAT" in results[0].detail


def test_the_url_never_appears_in_results_errors_or_logs(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.statuses = [500] * 10
    dead = f"http://127.0.0.1:1{SECRET_PATH}"  # nothing listens on port 1
    with caplog.at_level(logging.DEBUG):
        results = WebhookNotifier({"ops": hook.url, "dead": dead}, policy=quick_policy()).deliver(
            [notify("a", "ops"), notify("b", "dead")])
    assert [r.status for r in results] == ["failed", "failed"]
    assert "connection failed" in results[1].detail
    text = " ".join(r.detail for r in results) + caplog.text + repr(results)
    assert "s3cr3t-webhook-token" not in text and "127.0.0.1:1/" not in text
    assert any("urllib3" in r.name for r in caplog.records), "urllib3 did log the requests, redacted"


def test_webhook_urls_come_from_the_environment() -> None:
    notifier = notifier_from_environment({"MIM_WEBHOOKS_OPS": "https://hooks.example/ops"})
    assert notifier._urls == {"ops": "https://hooks.example/ops"}


# -- through the sync cycle ----------------------------------------------------------------------------------------


def test_a_failing_webhook_never_blocks_the_cycle_and_is_sent_next_cycle(tmp_path: Path, hook: Hook) -> None:
    rules = load_rules([ROOT / "rules"]).rules
    proc = process(stakeholders=[{"name": "desk", "audience": "internal"},
                                 {"name": "ops-chat", "webhook": "ops", "format": "slack"}])
    clock = Clock(datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    for i in range(6):
        platform.add(service="web-shop", caller=f"c{i}", priority=3)
        clock.advance(minutes=1)
    notifier = WebhookNotifier({"ops": hook.url}, policy=quick_policy())
    with StateStore(tmp_path / "state.sqlite", "servicenow") as store:
        hook.statuses = [500] * 3
        first = run_cycle(platform, store, rules, proc, clock.advance(seconds=30), planners=[plan_process],
                          notifier=notifier)
        mi = first.declarations[0]["parent"]
        assert first.outcomes[f"comms:{mi}:declared:hook:ops-chat"].status == "failed"
        assert first.outcomes[f"assign:{mi}"].status == "applied", "platform writes went through"
        assert platform.records[mi]["stage"] == "containment"
        assert any("declared by rule" in n for n in platform.notes[mi])
        assert store.watermark() is not None, "the cycle completed"
        second = run_cycle(platform, store, rules, proc, clock.advance(seconds=60), planners=[plan_process],
                           notifier=notifier)
        assert second.outcomes[f"comms:{mi}:declared:hook:ops-chat"].status == "applied"
        assert len(hook.requests) == 4 and hook.requests[-1]["body"]["text"].startswith("Major incident")
        third = run_cycle(platform, store, rules, proc, clock.advance(seconds=60), planners=[plan_process],
                          notifier=notifier)
        assert third.planned == [] and len(hook.requests) == 4
        row = next(r for r in store.ledger_rows() if r["kind"] == "notify")
        assert row["status"] == "applied" and hook.url not in json.dumps(row)
