"""``mim backtest`` unzips its history on a thread while it imports (connector/tools/prefetch.py): the tickets
read from the prefetched bytes are exactly those read from the file, a read is handed out once, and a file the
prefetch cannot read is left to the reader, which reports it as before (tests/test_backtest.py covers the
messages through the CLI)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from connector.tools import prefetch
from connector.tools.history import Skipped, read_history


def lines(n: int) -> str:
    return "".join(json.dumps({"id": f"t{i}", "opened_at": f"2026-03-02T09:{i % 60:02d}:00Z", "service": "web-shop",
                               "caller": f"c{i}"}) + "\n" for i in range(n))


def tickets(path: Path) -> list[dict]:
    return [t.model_dump(mode="json") for t in read_history(path, lambda name: None, None, Skipped())]  # type: ignore


@pytest.fixture(params=["zip", "gz"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "zip":
        path = tmp_path / "history.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as made:
            made.writestr("__MACOSX/._history.jsonl", "metadata")
            made.writestr("history.jsonl", lines(500))
        return path
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(lines(500).encode()))
    return path


def test_tickets_read_from_prefetched_bytes_are_those_read_from_the_file(archive: Path) -> None:
    direct = tickets(archive)

    prefetch.start(archive)
    prefetched = tickets(archive)

    assert prefetched == direct and len(direct) == 500
    assert prefetch.take(archive) is None  # handed out once, then the file is read again


def test_the_prefetch_holds_the_inner_name_that_tells_the_format(archive: Path) -> None:
    prefetch.start(archive)

    read = prefetch.take(archive)

    assert read is not None and read[1] == "history.jsonl" and read[0] == lines(500).encode()


def test_a_damaged_archive_leaves_nothing_for_the_reader_to_take(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(lines(50).encode())[:-30])

    prefetch.start(path)

    assert prefetch.take(path) is None


def test_plain_files_are_not_prefetched(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(lines(3), encoding="utf-8")

    prefetch.start(path)

    assert prefetch.take(path) is None and len(tickets(path)) == 3
