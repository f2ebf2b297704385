"""Fixtures shared by the suites: the state store on both backends (a SQLite file, a PostgreSQL schema on a
real server started once per session, see :mod:`tests.pgserver`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.pgserver import PgServer, Unavailable

_server: PgServer | None = None
_unavailable: str | None = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One real PostgreSQL server for the whole session; the test skips (with the reason) without one."""
    global _server, _unavailable
    if _server is None and _unavailable is None:
        try:
            _server = PgServer.start()
        except Unavailable as exc:
            _unavailable = str(exc)
    if _server is None:
        pytest.skip(f"no PostgreSQL server: {_unavailable}")
    yield _server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None


class StateLocation:
    """Where a test's state lives: ``str(location)`` is what ``MIM_STATE`` gets."""

    def __init__(self, kind: str, location: str, server: PgServer | None = None) -> None:
        self.kind = kind
        self.location = location
        self.server = server

    def __str__(self) -> str:
        return self.location

    def __fspath__(self) -> str:
        return self.location

    def lose(self) -> None:
        """The state is lost (the file deleted, the schema emptied)."""
        if self.server is not None:
            self.server.reset_schema(self.location)
            return
        for suffix in ("", "-wal", "-shm"):
            Path(self.location + suffix).unlink(missing_ok=True)

    def exists(self) -> bool:
        """Whether anything was written there."""
        if self.server is not None:
            return self.server.has_tables(self.location)
        return Path(self.location).exists()


STORES = ["sqlite", "postgresql"]


@pytest.fixture(params=STORES)
def new_state(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StateLocation]:
    """A factory of empty states on the parametrized backend (each call: a new file or schema)."""
    made: list[int] = []
    server = request.getfixturevalue("postgres") if request.param == "postgresql" else None

    def make() -> StateLocation:
        made.append(1)
        if server is not None:
            return StateLocation("postgresql", server.new_schema(), server)
        return StateLocation("sqlite", str(tmp_path / f"state-{len(made)}.sqlite"))

    return make


@pytest.fixture()
def state(new_state: Callable[[], StateLocation]) -> StateLocation:
    """An empty state on each backend in turn."""
    return new_state()


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shipped rules and mappings, whatever MIM_* variables or mim.toml the developer's shell has: every
    MIM_* variable unset, and the working folder an empty one."""
    for name in [n for n in os.environ if n.startswith("MIM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
