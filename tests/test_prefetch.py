"""``mim backtest`` unzips a CSV or JSON export on a thread while it imports (connector/tools/prefetch.py): the
tickets read from the prefetched bytes are exactly those read from the file, a read is handed out once, JSONL
(which the reader streams) and oversized or damaged members are left to the reader, which reports problems as
before (tests/test_backtest.py covers the messages through the CLI)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from connector.tools import prefetch
from connector.tools.history import Skipped, read_history
from tests.test_backtest import servicenow_mapping, uci_export


def tickets(path: Path) -> list[dict]:
    skipped = Skipped()
    read = [t.model_dump(mode="json") for t in read_history(path, lambda _: servicenow_mapping(), None, skipped)]
    return read + [{"skipped": skipped.examples}]


@pytest.fixture(params=["zip", "gz"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "zip":
        path = tmp_path / "incident_event_log.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as made:
            made.writestr("__MACOSX/._incident_event_log.csv", "metadata")
            made.writestr("incident_event_log.csv", uci_export())
        return path
    path = tmp_path / "incident_event_log.csv.gz"
    path.write_bytes(gzip.compress(uci_export().encode()))
    return path


def test_tickets_read_from_prefetched_bytes_are_those_read_from_the_file(archive: Path) -> None:
    direct = tickets(archive)

    prefetch.start(archive)
    prefetched = tickets(archive)

    assert prefetched == direct and len(direct) == 5 and direct[-1]["skipped"]
    assert prefetch.take(archive) is None  # handed out once, then the file is read again


def test_the_prefetch_holds_the_inner_name_that_tells_the_format(archive: Path) -> None:
    prefetch.start(archive)

    read = prefetch.take(archive)

    assert read is not None and read[1] == "incident_event_log.csv" and read[0] == uci_export().encode()


def test_jsonl_is_streamed_by_the_reader_not_read_ahead(tmp_path: Path) -> None:
    # a 1 MB .jsonl.gz of blank lines is a gigabyte read whole: the reader streams it in constant memory
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps({"id": "a", "opened_at": "2026-03-02T09:00:00Z"}) + "\n").encode()))

    prefetch.start(path)

    assert prefetch.take(path) is None


def test_a_member_larger_than_the_bound_is_left_to_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefetch, "_LARGEST", 100)
    path = tmp_path / "incident_event_log.csv.gz"
    path.write_bytes(gzip.compress(uci_export().encode()))

    prefetch.start(path)

    assert prefetch.take(path) is None and len(tickets(path)) == 5


def test_a_damaged_archive_leaves_nothing_for_the_reader_to_take(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv.gz"
    path.write_bytes(gzip.compress(uci_export().encode())[:-30])

    prefetch.start(path)

    assert prefetch.take(path) is None


def test_plain_files_are_not_prefetched(tmp_path: Path) -> None:
    path = tmp_path / "incident_event_log.csv"
    path.write_text(uci_export(), encoding="utf-8")

    prefetch.start(path)

    assert prefetch.take(path) is None and len(tickets(path)) == 5
