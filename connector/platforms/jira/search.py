"""JQL searches, every page: Cloud ``POST /rest/api/3/search/jql`` with ``nextPageToken``, Data Center
``POST /rest/api/2/search`` with ``startAt`` (which returns no entity properties), and the Data Center delta poll,
which restarts from the last ``updated`` seen. Each loop is a paginator with a loop guard (:mod:`connector.platforms.paging`)."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterator, Sequence

from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.jql import updated_ms
from connector.platforms.paging import OffsetPaginator, Page, Paginator, TokenPaginator, paginate, remember

Issue = dict[str, Any]
CLOUD_SEARCH = "/rest/api/3/search/jql"
DC_SEARCH = "/rest/api/2/search"


class JiraSearch:
    """Searches of one site; ``page_size`` is ``write.page_size`` (Cloud pages hold at most 100 issues)."""

    def __init__(self, client: JiraClient, page_size: int) -> None:
        self._client = client
        self._page_size = page_size

    def cloud(self, jql: str, fields: list[str], properties: list[str],
              reconcile: Sequence[str] = ()) -> Iterator[Issue]:
        """``POST /rest/api/3/search/jql`` following ``nextPageToken`` until it is absent or ``isLast``."""
        paginator = TokenPaginator(where=f"POST {CLOUD_SEARCH}", source="Jira", field="nextPageToken", retryable=True)

        def fetch(token: str | None) -> Page:
            body: dict[str, Any] = {"jql": jql, "maxResults": min(self._page_size, 100), "fields": fields}
            if properties:
                body["properties"] = properties
            if reconcile:
                body["reconcileIssues"] = [int(i) for i in reconcile]
            if token:
                body["nextPageToken"] = token
            page = self._client.call("POST", CLOUD_SEARCH, body=body) or {}
            return Page(page.get("issues") or [], token=page.get("nextPageToken"), last=page.get("isLast") is True)

        for page in paginate(paginator, fetch):
            yield from page.rows

    def data_center(self, jql: str, fields: list[str]) -> Iterator[Issue]:
        """``POST /rest/api/2/search`` with ``startAt`` (small, stable result sets only). Data Center search does
        not return entity properties (JRASERVER-62898), so none are asked for."""
        paginator = OffsetPaginator(issue_id, where=f"POST {DC_SEARCH}", retryable=True)

        def fetch(start: int) -> Page:
            body: dict[str, Any] = {"jql": jql, "startAt": start, "maxResults": self._page_size, "fields": fields}
            return offset_page(self._client.call("POST", DC_SEARCH, body=body), "issues")

        for page in paginate(paginator, fetch):
            yield from page.rows

    def pages(self, jql: str, fields: list[str], properties: list[str],
              reconcile: Sequence[str] = ()) -> Iterator[Issue]:
        """Every issue matching ``jql``, the way the site's flavour searches (``reconcile``: Cloud only)."""
        if self._client.cloud:
            return self.cloud(jql, fields, properties, reconcile)
        return self.data_center(jql, fields)

    def changed_dc(self, start_ms: int, jql_from: Callable[[int], str], fields: list[str]) -> Iterator[Issue]:
        """Data Center delta pages (a :class:`ChangedPaginator`): ``jql_from(ms)`` is the query of the issues
        updated at or after ``ms``; each page restarts it from the last ``updated`` seen."""
        paginator = ChangedPaginator(start_ms, where=f"POST {DC_SEARCH}")

        def fetch(position: tuple[int, int]) -> Page:
            cursor, offset = position
            body: dict[str, Any] = {"jql": jql_from(cursor), "startAt": offset, "maxResults": self._page_size,
                                    "fields": fields}
            return offset_page(self._client.call("POST", DC_SEARCH, body=body), "issues")

        for page in paginate(paginator, fetch):
            yield from page.rows


class ChangedPaginator(Paginator[tuple[int, int]]):
    """Data Center delta pages, by ``(updated cursor in epoch ms, startAt)``. Paging by ``startAt`` alone skips
    an issue whenever an earlier one is updated mid-scan (it moves to the end and the rest shift left), so the
    query restarts from the last ``updated`` seen, and ``startAt`` only steps through issues sharing that one
    millisecond. A step that brings no issue version not seen before means the server ignores ``startAt``."""

    def __init__(self, cursor: int, *, where: str) -> None:
        super().__init__((cursor, 0), where=where, retryable=True)
        self._seen: set[Hashable] = set()

    def next_request(self, page: Page) -> tuple[int, int] | None:
        cursor, offset = self.current
        fresh = remember(self._seen, page.rows, lambda issue: (issue_id(issue), _updated(issue)))
        if not page.rows or (page.total is not None and offset + len(page.rows) >= page.total):
            return None
        if offset > 0 and not fresh:
            raise self.stalled(f"the page at startAt {offset} repeated issues already read (startAt ignored?)")
        last = updated_ms(page.rows[-1])
        if last is not None and last > cursor:
            return last, 0
        return cursor, offset + len(page.rows)


def issue_id(issue: Issue) -> str:
    """An issue's id as text."""
    return str(issue.get("id"))


def _updated(issue: Issue) -> str:
    return str((issue.get("fields") or {}).get("updated"))


def offset_page(answer: Any, items: str) -> Page:
    """A ``startAt`` answer (``{items: [...], "total": n}``) as a page."""
    answer = answer or {}
    total = answer.get("total")
    return Page(answer.get(items) or [], total=total if isinstance(total, int) else None)


__all__ = ["ChangedPaginator", "JiraSearch", "issue_id", "offset_page"]
