"""Paginators on their own: where each kind of page loop ends, and that a loop which stops making progress raises
:class:`PagingStalled` instead of running for ever. The same paginators through the adapters over HTTP are in
test_servicenow_adapter.py and test_jira_adapter.py."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import pytest

from connector.platforms.paging import (
    KeysetPaginator,
    OffsetPaginator,
    Page,
    Paginator,
    PagingStalled,
    TokenPaginator,
    paginate,
)

R = TypeVar("R")


def walk(paginator: Paginator[R], answers: dict[Any, Page], limit: int = 20) -> list[Any]:
    """The requests ``paginator`` makes against ``answers`` (request -> page); fails rather than loop."""
    asked: list[Any] = []

    def fetch(request: R) -> Page:
        asked.append(request)
        assert len(asked) <= limit, "the paginator did not stop"
        return answers[request if not isinstance(request, dict) else request["q"]]

    for _ in paginate(paginator, fetch):
        pass
    return asked


def rows(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def test_tokens_are_followed_until_none_is_given() -> None:
    pages = {None: Page(rows("1"), token="a"), "a": Page(rows("2"), token="b"), "b": Page(rows("3"))}
    assert walk(TokenPaginator(where="POST /search"), pages) == [None, "a", "b"]


def test_a_last_page_ends_the_walk_even_with_a_token() -> None:
    assert walk(TokenPaginator(where="POST /search"), {None: Page(rows("1"), token="a", last=True)}) == [None]


def test_a_token_returned_twice_is_a_loop() -> None:
    pages = {None: Page(rows("1"), token="a"), "a": Page(rows("2"), token="a")}
    with pytest.raises(PagingStalled, match="returned a nextPageToken it had returned before") as caught:
        walk(TokenPaginator(where="POST /rest/api/3/search/jql", source="Jira", field="nextPageToken"), pages)
    assert str(caught.value).startswith("POST /rest/api/3/search/jql: ")


def test_offsets_step_past_the_rows_read_until_the_total() -> None:
    pages = {0: Page(rows("1", "2"), total=5), 2: Page(rows("3", "4"), total=5), 4: Page(rows("5"), total=5)}
    assert walk(OffsetPaginator(lambda r: r["id"], where="GET /comments"), pages) == [0, 2, 4]


def test_an_empty_page_ends_an_offset_walk_without_a_total() -> None:
    pages = {0: Page(rows("1", "2")), 2: Page([])}
    assert walk(OffsetPaginator(lambda r: r["id"], where="GET /comments"), pages) == [0, 2]


def test_an_ignored_offset_is_a_loop() -> None:
    pages = {0: Page(rows("1", "2")), 2: Page(rows("1", "2"))}
    with pytest.raises(PagingStalled, match="offset 2 repeated rows already read"):
        walk(OffsetPaginator(lambda r: r["id"], where="GET /comments"), pages)


def test_a_page_with_some_rows_read_before_is_progress() -> None:
    # rows shift while paging: a row seen before may come again beside new ones
    pages = {0: Page(rows("1", "2")), 2: Page(rows("2", "3")), 4: Page([])}
    assert walk(OffsetPaginator(lambda r: r["id"], where="GET /comments"), pages) == [0, 2, 4]


def keyset(limit: int = 2, **kwargs: Any) -> KeysetPaginator[dict[str, str]]:
    return KeysetPaginator({"q": "first"}, lambda row: {"q": f"after {row['id']}"}, lambda link: {"q": link},
                           lambda row: (row["id"],), limit, where="GET /api/now/table/incident", **kwargs)


def test_keyset_pages_ask_for_the_rows_after_the_newest() -> None:
    pages = {"first": Page(rows("b", "a")), "after b": Page(rows("c", "d")), "after d": Page(rows("e"))}
    assert [r["q"] for r in walk(keyset(), pages)] == ["first", "after b", "after d"]


def test_an_empty_page_with_a_link_is_not_the_end() -> None:
    pages = {"first": Page([], link="next-1"), "next-1": Page(rows("a"))}
    assert [r["q"] for r in walk(keyset(), pages)] == ["first", "next-1"]


def test_a_keyset_that_does_not_move_forward_is_a_loop() -> None:
    pages = {"first": Page(rows("a", "b")), "after b": Page(rows("a", "b"))}
    with pytest.raises(PagingStalled, match="the page after b did not move forward"):
        walk(keyset(), pages)


def test_a_link_followed_before_is_a_loop() -> None:
    pages = {"first": Page([], link="next-1"), "next-1": Page([], link="next-1")}
    with pytest.raises(PagingStalled, match="already read") as caught:
        walk(keyset(), pages)
    assert not caught.value.retryable


def test_a_moving_table_is_left_for_the_next_poll_after_one_and_a_half_times_its_pages() -> None:
    ids = [f"{n:03d}" for n in range(40)]
    pages = {"first": Page(rows(*ids[:2]), total=4)}
    pages.update({f"after {ids[n + 1]}": Page(rows(*ids[n + 2:n + 4]), total=4) for n in range(0, 36, 2)})
    assert len(walk(keyset(), pages)) == 5  # ceil(4 * 1.5 / 2) + 2


def test_rows_of_a_stalled_page_are_handed_out_before_the_error() -> None:
    seen: list[str] = []
    pages = {None: Page(rows("1"), token="a"), "a": Page(rows("2"), token="a")}
    fetch: Callable[[str | None], Page] = pages.__getitem__
    with pytest.raises(PagingStalled):
        for page in paginate(TokenPaginator(where="POST /search", retryable=True), fetch):
            seen += [r["id"] for r in page.rows]
    assert seen == ["1", "2"]


def test_the_stall_error_says_whether_a_later_cycle_may_try_again() -> None:
    pages = {None: Page(rows("1"), token="a"), "a": Page(rows("2"), token="a")}
    with pytest.raises(PagingStalled) as caught:
        walk(TokenPaginator(where="POST /search", retryable=True), pages)
    assert caught.value.retryable and caught.value.method == "POST" and caught.value.path == "/search"
