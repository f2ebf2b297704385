"""Reading a history file's bytes in the background while the command is still importing its libraries.

``mim backtest`` spends its first quarter second importing pydantic and building the mapping and rule models;
unzipping and un-gzipping a large export take about as long, and zlib releases the interpreter lock while it
works. :func:`start` begins that read on a thread before the imports, for the CSV and JSON exports that the
reader reads whole anyway; :func:`take` hands the bytes to the history reader
(:func:`connector.tools.history.open_text`). The read is best effort: any problem (a missing file, a damaged
archive) leaves nothing behind, and the reader then opens the file itself and reports the problem as it always
does. Only the standard library is imported here, so starting costs nothing.
"""

from __future__ import annotations

import gzip
import threading
import zipfile
from pathlib import Path

_LARGEST = 1 << 30
"""Bigger members (uncompressed) are left to the reader."""


class _Read:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: tuple[bytes, str] | None = None
        self.thread = threading.Thread(target=self._run, name="mim-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            suffix = self.path.suffix.lower()
            if suffix == ".zip":
                with zipfile.ZipFile(self.path) as archive:
                    name = data_member(archive.namelist())
                    if name is not None and _read_whole(name) and archive.getinfo(name).file_size <= _LARGEST:
                        self.data = (archive.read(name), name)
            elif suffix == ".gz" and _read_whole(self.path.stem):
                with gzip.open(self.path) as raw:
                    data = raw.read(_LARGEST + 1)
                if len(data) <= _LARGEST:
                    self.data = (data, self.path.stem)
        except Exception:  # best effort: the reader opens the file itself and says what is wrong
            self.data = None


_pending: dict[Path, _Read] = {}


def _read_whole(inner: str) -> bool:
    """Whether the reader reads this member whole anyway (CSV and JSON exports; JSONL is streamed line by line,
    and reading it ahead would hold what the reader never holds: a compressed file of blank lines, for one)."""
    return inner.rsplit(".", 1)[-1].lower() in ("csv", "json")


def data_member(names: list[str]) -> str | None:
    """The member of a zip archive that holds the history: its first ``.csv``, ``.json``, ``.jsonl`` or
    ``.ndjson`` file (macOS metadata and folders left out), or None."""
    data = [n for n in names if not n.startswith("__MACOSX/") and not n.endswith("/")
            and n.rsplit(".", 1)[-1].lower() in ("csv", "json", "jsonl", "ndjson")]
    return data[0] if data else None


def start(path: Path) -> None:
    """Begin reading the member of a ``.zip`` or the content of a ``.gz`` at ``path`` on a background thread
    (plain files are read by the reader directly: there is nothing to decompress)."""
    if path.suffix.lower() not in (".zip", ".gz"):
        return
    read = _Read(path)
    _pending[path] = read
    read.thread.start()


def take(path: Path) -> tuple[bytes, str] | None:
    """The bytes and the inner file name read for ``path`` by :func:`start` (waiting for the read to end), or
    None when nothing was started for it or the read failed. A read is handed out once."""
    read = _pending.pop(path, None)
    if read is None:
        return None
    read.thread.join()
    return read.data
