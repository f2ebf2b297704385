"""Jira's error answers: the messages the simulator repeats verbatim and the ``{"errorMessages", "errors"}`` body,
raised from anywhere inside a handler as :class:`HttpError`."""

from __future__ import annotations

from typing import Iterable

from connector.sim.base import SimResponse

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
TOKEN_INVALID = "The provided next page token is invalid or expired."
PREMIUM_ONLY = ("This feature is only available on Jira Service Management Premium and Enterprise plans.")
"""What a Standard site answers (403) to an Incidents API method marked "License required: Premium or Enterprise"
(major incident status, stakeholders, post-incident reviews). The status is the platform's; the wording is
unverified."""


def error(status: int, messages: Iterable[str] = (), errors: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> SimResponse:
    """A Jira error response: general ``messages`` and per-field ``errors``."""
    return SimResponse(status, {"errorMessages": list(messages), "errors": dict(errors or {})}, dict(headers or {}))


class HttpError(Exception):
    """Raised inside handlers to answer with an error response."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response.status)
        self.response = response


def fail(status: int, *messages: str, errors: dict[str, str] | None = None) -> HttpError:
    """The :class:`HttpError` to raise for a Jira error answer."""
    return HttpError(error(status, messages, errors))


def null_for_uri(base_url: str, path: str) -> SimResponse:
    """Jira's 404 for a path it does not serve."""
    return SimResponse(404, {"message": f"null for uri: {base_url}{path}", "status-code": 404})
