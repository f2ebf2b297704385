"""The Batch API: many REST requests in one, each answered as if sent alone (base64 bodies), nesting refused.

Faults of the server apply to each item as to a request sent alone (a rate-limited item answers 429 with its
``Retry-After`` among the item's headers; with ``after`` the item is carried out and its answer replaced);
faults of the connection (``drop``, ``cut``) apply to the batch request itself.
"""

from __future__ import annotations

import base64
import binascii
import time
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from connector.sim.base import FaultRule, Handler, SimRequest, SimResponse, SimServer, compile_path
from connector.sim.servicenow.errors import error
from connector.sim.servicenow.params import json_object
from connector.sim.servicenow.schema import to_text

BATCH_PATH = "/api/now[/v1]/batch[/]"
_BATCH = compile_path(BATCH_PATH)


ItemFaults = Callable[[SimRequest], "tuple[FaultRule, SimServer] | None"]
"""The fault rule (and the server holding it) that fires for one item, if any."""


class BatchApi:
    """Answers batch requests through ``dispatch`` (the instance's router, credentials already checked);
    ``enabled`` and ``max_items`` are the instance's Batch API settings, ``faults`` the fault rules of the
    server for each item."""

    def __init__(self, dispatch: Handler, enabled: bool, max_items: int, faults: ItemFaults | None = None) -> None:
        self.dispatch = dispatch
        self.enabled = enabled
        self.max_items = max_items
        self.faults = faults

    def batch(self, request: SimRequest) -> SimResponse:
        """``POST /api/now/v1/batch``: each item answered in order, those beyond ``max_items`` unserviced."""
        body = json_object(request)
        if isinstance(body, SimResponse):
            return body
        items = body.get("rest_requests")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return error(400, "Invalid batch request", "rest_requests must be a list of objects")
        serviced, unserviced = [], []
        for index, item in enumerate(items):
            if index >= self.max_items:
                unserviced.append(str(item.get("id", "")))
            else:
                serviced.append(self._item(request, item))
        return SimResponse(200, {"batch_request_id": to_text(body.get("batch_request_id")),
                                 "serviced_requests": serviced, "unserviced_requests": unserviced})

    def _item(self, outer: SimRequest, item: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        parts = urlsplit(str(item.get("url", "")))
        headers = {str(h.get("name")): str(h.get("value", "")) for h in item.get("headers") or []
                   if isinstance(h, dict) and h.get("name")}
        if outer.header("Host") and not any(k.lower() == "host" for k in headers):
            headers["Host"] = outer.header("Host") or ""
        try:
            body = base64.b64decode(str(item.get("body") or ""), validate=True)
        except (binascii.Error, ValueError):
            response = error(400, "Invalid request body", "The body must be base64 encoded.")
        else:
            if _BATCH.fullmatch(parts.path):
                response = error(400, "Invalid batch request", "Batch requests cannot be nested.")
            else:
                sub = SimRequest(method=str(item.get("method", "GET")).upper(), path=parts.path,
                                 query=parse_qs(parts.query, keep_blank_values=True), headers=headers, body=body)
                response = self._answer(sub)
        payload = response.encode()
        response_headers = dict(response.headers)
        if payload and not any(k.lower() == "content-type" for k in response_headers):
            response_headers["Content-Type"] = "application/json;charset=UTF-8"
        exclude = to_text(item.get("exclude_response_headers")).lower() == "true"
        return {
            "id": to_text(item.get("id")),
            "status_code": response.status,
            "status_text": HTTPStatus(response.status).phrase,
            "body": base64.b64encode(payload).decode("ascii"),
            "headers": [] if exclude else [{"name": k, "value": v} for k, v in response_headers.items()],
            "execution_time": int((time.perf_counter() - started) * 1000),
            "error_message": "",
            "redirect_url": "",
        }

    def _answer(self, sub: SimRequest) -> SimResponse:
        """One item's answer, through the server's fault rules."""
        found = self.faults(sub) if self.faults is not None else None
        if found is None:
            return self.dispatch(sub)
        rule, server = found
        if rule.kind == "slow":
            time.sleep(rule.delay)
            return self.dispatch(sub)
        carried_out = self.dispatch(sub) if rule.after else None
        return server.fault_answer(rule, sub) or carried_out or self.dispatch(sub)
