"""Paginators: every paging loop of the adapters, each with a loop guard (after singer-sdk's ``pagination.py``).

A paginator holds the request for the next page (``current``: a cursor token, an offset, query parameters).
:func:`paginate` fetches it, hands the page out and calls :meth:`Paginator.advance`, which moves to the next
request or finishes. A next request that would not make progress (a token returned before, a keyset that does
not move forward, a ``Link`` already followed, an offset the server ignores) raises :class:`PagingStalled`
instead of looping for ever.

Paginators see a page as a :class:`Page`: the adapter turns each answer into one, so the paging rules here know
nothing of Jira's or ServiceNow's answer formats.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, Iterator, Sequence, TypeVar

from connector.platforms.errors import PlatformError

R = TypeVar("R")
Row = dict[str, Any]


class PagingStalled(PlatformError):
    """A page loop that made no progress (the same token, keyset or ``Link`` again, an ignored offset): stopped
    instead of looping. ``retryable`` says whether an action that failed on it is worth re-driving later."""

    def __init__(self, message: str, *, retryable: bool = False, method: str | None = None,
                 path: str | None = None) -> None:
        self.retryable = retryable
        super().__init__(message, method=method, path=path)


@dataclass(frozen=True)
class Page:
    """One page as a paginator sees it: its rows and what the answer says about the next page."""

    rows: Sequence[Row]
    token: str | None = None
    """A cursor for the next page (Jira Cloud ``nextPageToken``)."""
    last: bool = False
    """The answer says this is the last page (Jira Cloud ``isLast``)."""
    link: str | None = None
    """The URL of the next page (``Link: <...>; rel="next"``)."""
    total: int | None = None
    """How many rows the query has (``X-Total-Count``, Jira's ``total``), when the answer says."""


class Paginator(ABC, Generic[R]):
    """Walks the pages of one query. ``where`` (``"GET /api/now/table/incident"``) names the request in the
    error when the loop stalls; ``retryable`` is passed on to that error."""

    def __init__(self, first: R, *, where: str, retryable: bool = False) -> None:
        self.current: R = first
        self.finished = False
        self.pages = 0
        self._where = where
        self._retryable = retryable

    def advance(self, page: Page) -> None:
        """Move on from ``page`` (the answer to ``current``) to the next request, or finish."""
        self.pages += 1
        following = self.next_request(page)
        if following is None:
            self.finished = True
        else:
            self.current = following

    @abstractmethod
    def next_request(self, page: Page) -> R | None:
        """The request after ``page``, None at the end; raises :class:`PagingStalled` (see :meth:`stalled`)
        when that request would not make progress."""

    def stalled(self, reason: str) -> PagingStalled:
        """The error for a loop that stopped making progress."""
        method, _, path = self._where.partition(" ")
        return PagingStalled(reason, retryable=self._retryable, method=method or None, path=path or None)


def paginate(paginator: Paginator[R], fetch: Callable[[R], Page]) -> Iterator[Page]:
    """Every page of ``paginator``'s query: ``fetch`` answers one request; each page is handed out before the
    paginator moves on, so rows already read are not lost when a later page stalls."""
    while not paginator.finished:
        page = fetch(paginator.current)
        yield page
        paginator.advance(page)


class TokenPaginator(Paginator["str | None"]):
    """Cursor tokens (Jira Cloud's ``nextPageToken``): the first request has none; the end is an answer without
    a token or one that says it is the last; a token returned before is a loop."""

    def __init__(self, *, where: str, source: str = "the platform", field: str = "page token",
                 retryable: bool = False) -> None:
        super().__init__(None, where=where, retryable=retryable)
        self._seen: set[str] = set()
        self._source = source
        self._field = field

    def next_request(self, page: Page) -> str | None:
        if not page.token or page.last:
            return None
        if page.token in self._seen:
            raise self.stalled(f"{self._source} returned a {self._field} it had returned before (paging loop)")
        self._seen.add(page.token)
        return page.token


class OffsetPaginator(Paginator[int]):
    """Offsets (Jira's ``startAt``): the next offset is past the rows read; the end is an empty page or
    ``total`` reached. A page after the first that brings no row not seen before means the server ignores the
    offset: a loop. ``key`` says which rows are the same."""

    def __init__(self, key: Callable[[Row], Hashable], *, where: str, retryable: bool = False) -> None:
        super().__init__(0, where=where, retryable=retryable)
        self._key = key
        self._seen: set[Hashable] = set()

    def next_request(self, page: Page) -> int | None:
        fresh = remember(self._seen, page.rows, self._key)
        following = self.current + len(page.rows)
        if not page.rows or (page.total is not None and following >= page.total):
            return None
        if self.current > 0 and not fresh:
            raise self.stalled(f"the page at offset {self.current} repeated rows already read (offset ignored?)")
        return following


class KeysetPaginator(Paginator[R]):
    """Keyset pages (ServiceNow): each page asks for the rows after the newest row read so far, in ``key``
    order. An empty or short page is not the end while the answer links a next page (ACLs filter rows after
    paging); the link is then followed. A page whose newest row is not past the last page's, or a link followed
    before, is a loop.

    ``after(row)`` is the request for the rows after ``row``, ``follow(link)`` the request a link names.
    ``limit`` is the page size. A table that keeps changing moves its end: the walk stops after 1.5 times the
    pages the first ``total`` counted (plus two), and the next poll resumes there."""

    def __init__(self, first: R, after: Callable[[Row], R], follow: Callable[[str], R],
                 key: Callable[[Row], tuple[str, ...]], limit: int, *, where: str, retryable: bool = False) -> None:
        super().__init__(first, where=where, retryable=retryable)
        self._after = after
        self._follow = follow
        self._key = key
        self._limit = limit
        self._last: tuple[str, ...] | None = None
        self._links: set[str] = set()
        self._cap: int | None = None

    def next_request(self, page: Page) -> R | None:
        if self._cap is None and page.total is not None:
            self._cap = math.ceil(page.total * 1.5 / self._limit) + 2
        if page.rows:
            newest = max(self._key(row) for row in page.rows)
            if self._last is not None and newest <= self._last:
                raise self.stalled(f"the page after {'/'.join(self._last)} did not move forward")
            self._last = newest
            if len(page.rows) < self._limit and page.link is None:
                return None
            following = self._after(max(page.rows, key=self._key))
        else:
            if page.link is None:
                return None
            if page.link in self._links:
                raise self.stalled("the Link header pointed at a page already read")
            self._links.add(page.link)
            following = self._follow(page.link)
        if self._cap is not None and self.pages >= self._cap:
            return None
        return following


def remember(seen: set[Hashable], rows: Sequence[Row], key: Callable[[Row], Hashable]) -> int:
    """Add the keys of ``rows`` to ``seen``; how many were not there yet."""
    before = len(seen)
    seen.update(key(row) for row in rows)
    return len(seen) - before


__all__ = ["KeysetPaginator", "OffsetPaginator", "Page", "Paginator", "PagingStalled", "TokenPaginator", "paginate",
           "remember"]
