"""The retry table, walked row by row: each status or exception becomes its typed error carrying its action, and
the retry policy does what the action says (retry, re-read, retry once, fatal), honouring ``Retry-After`` and
backing off with jitter under a cap. The adapters' own walks (a write through each row) are in
test_servicenow_adapter.py and test_jira_adapter.py."""

from __future__ import annotations

import random
from typing import Callable

import pytest
import requests

from connector.platforms.errors import PlatformError, RateLimited, ResponseAction, TransientError
from connector.platforms.retry import (
    OTHER_4XX,
    OTHER_STATUS,
    RETRY_AFTER_503,
    RETRY_TABLE,
    SERVICENOW_TABLE,
    Condition,
    Resolution,
    RetryPolicy,
    error_for_status,
    error_from,
    resolve_exception,
    resolve_status,
)

TABLES = {"default": RETRY_TABLE, "servicenow": SERVICENOW_TABLE}
ROWS = [pytest.param(name, condition, row, id=f"{name}-{getattr(condition, '__name__', condition)}")
        for name, table in TABLES.items() for condition, row in table.items()]
STATUS_ROWS = [pytest.param(name, condition, row, id=f"{name}-{condition}")
               for name, table in TABLES.items() for condition, row in table.items() if isinstance(condition, int)]


def failing(times: int, error: Callable[[], PlatformError]) -> tuple[Callable[[], str], list[int]]:
    """A call that raises ``error()`` ``times`` times, then answers "ok"; and the count of calls made."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise error()
        return "ok"

    return call, calls


@pytest.mark.parametrize(("table", "status", "row"), STATUS_ROWS)
def test_a_status_row_raises_its_error_with_its_action(table: str, status: int, row: Resolution) -> None:
    error = error_for_status(status, table=TABLES[table])
    assert type(error) is row.error and error.action is row.action
    assert str(error) == f"HTTP {status}: {row.message}"


@pytest.mark.parametrize(("status", "retry_after", "condition"), [
    (503, 3.0, RETRY_AFTER_503), (503, None, 503), (429, None, 429), (418, None, OTHER_4XX), (400, None, OTHER_4XX),
    (301, None, OTHER_STATUS), (501, None, OTHER_STATUS), (505, None, OTHER_STATUS),
], ids=["503-retry-after", "503", "429", "418", "400", "301", "501", "505"])
def test_every_status_has_a_row(status: int, retry_after: float | None, condition: Condition) -> None:
    assert resolve_status(status, retry_after) is RETRY_TABLE[condition]


@pytest.mark.parametrize(("exc", "condition"), [
    (requests.exceptions.ConnectTimeout("no route"), requests.ConnectTimeout),
    (requests.exceptions.ReadTimeout("slow"), requests.Timeout),
    (requests.exceptions.SSLError("handshake"), requests.ConnectionError),
    (requests.exceptions.ConnectionError("reset"), requests.ConnectionError),
    (requests.exceptions.ChunkedEncodingError("cut short"), requests.RequestException),
], ids=["connect-timeout", "read-timeout", "ssl", "connection", "other"])
def test_an_exception_takes_the_row_of_its_most_specific_type(exc: Exception, condition: Condition) -> None:
    assert resolve_exception(exc) is RETRY_TABLE[condition]


@pytest.mark.parametrize(("exc", "action"), [
    (requests.exceptions.ChunkedEncodingError("cut short"), ResponseAction.REREAD),
    (requests.exceptions.ContentDecodingError("bad gzip"), ResponseAction.REREAD),
    (requests.exceptions.InvalidURL("bad url"), ResponseAction.FATAL),
    (requests.exceptions.InvalidHeader("bad header"), ResponseAction.FATAL),
    (requests.exceptions.ReadTimeout("slow"), ResponseAction.REREAD),
    (requests.exceptions.ConnectTimeout("no route"), ResponseAction.RETRY),
], ids=["body-cut-short", "undecodable-body", "invalid-url", "invalid-header", "read-timeout", "connect-timeout"])
def test_servicenow_decides_every_requests_exception(exc: Exception, action: ResponseAction) -> None:
    # a body cut short was answered (the request ran): its answer is lost, a write reads back before resending
    assert resolve_exception(exc, SERVICENOW_TABLE).action is action


@pytest.mark.parametrize(("table", "condition", "row"), ROWS)
def test_the_policy_does_what_each_row_says(table: str, condition: Condition, row: Resolution) -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(sleep=sleeps.append)
    call, calls = failing(1, lambda: error_from(row))
    if row.action is ResponseAction.FATAL:
        with pytest.raises(row.error):
            policy.call(call)
        assert (calls[0], sleeps) == (1, [])
    else:
        assert policy.call(call) == "ok"
        assert (calls[0], len(sleeps), policy.retries) == (2, 1, 1)
    if row.action is ResponseAction.RETRY_ONCE:
        again, calls = failing(2, lambda: error_from(row))
        with pytest.raises(row.error):
            policy.call(again)
        assert calls[0] == 2


@pytest.mark.parametrize(("table", "condition", "row"),
                         [p for p in ROWS if p.values[2].action in (ResponseAction.RETRY, ResponseAction.REREAD)])
def test_retried_rows_stop_after_the_attempts(table: str, condition: Condition, row: Resolution) -> None:
    policy = RetryPolicy(attempts=4, sleep=lambda seconds: None)
    call, calls = failing(10, lambda: error_from(row))
    with pytest.raises(row.error):
        policy.call(call)
    assert calls[0] == 4


@pytest.mark.parametrize("status", [429, 503], ids=["429", "503"])
def test_retry_after_is_honoured_up_to_the_longest_wait(status: int) -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(sleep=sleeps.append, max_retry_after=60.0)
    call, _ = failing(2, lambda: error_for_status(status, retry_after=7.0 if not sleeps else 600.0))
    assert policy.call(call) == "ok"
    assert sleeps == [7.0, 60.0]
    assert isinstance(error_for_status(status, retry_after=1.0), RateLimited)


def test_backoff_has_jitter_grows_and_is_capped() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=8, base=0.5, cap=4.0, sleep=sleeps.append, rng=random.Random(7))
    call, _ = failing(7, lambda: error_for_status(502))
    assert policy.call(call) == "ok"
    ceilings = [min(4.0, 0.5 * 2 ** n) for n in range(7)]
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True)), sleeps
    assert sleeps[-1] > sleeps[0] and max(sleeps) <= 4.0


def test_a_server_error_with_retry_after_waits_that_long() -> None:
    sleeps: list[float] = []
    call, _ = failing(1, lambda: error_for_status(500, retry_after=2.0))
    assert RetryPolicy(sleep=sleeps.append).call(call) == "ok"
    assert sleeps == [2.0]
    assert isinstance(error_for_status(500, retry_after=2.0), TransientError)
