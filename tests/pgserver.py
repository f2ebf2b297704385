"""A real PostgreSQL server for the tests: ``initdb`` in a temporary directory, ``postgres`` listening on
127.0.0.1 only (a free port, no Unix socket outside that directory), one per test session, stopped at the end.

Each test gets a schema of its own (``?options=-csearch_path=<schema>`` in the URL), so tests never see each
other's state or locks and no database has to be created per test.

Where the binaries are: ``$MIM_TEST_PG_BIN``, else ``initdb`` on the PATH, else Debian's
``/usr/lib/postgresql/<version>/bin``. As root (CI), the server runs as the ``postgres`` user that Debian's
package creates (initdb refuses root). ``MIM_TEST_POSTGRESQL_URL`` points the tests at a server of your own
instead. When none can be had the PostgreSQL tests skip and say why.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

PR_SET_PDEATHSIG = 1


class Unavailable(Exception):
    """No PostgreSQL server can be had here; the message says why."""


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``."""
    configured = os.environ.get("MIM_TEST_PG_BIN")
    candidates = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise Unavailable("PostgreSQL is not installed (no initdb/postgres; apt-get install postgresql, "
                      "or set MIM_TEST_PG_BIN or MIM_TEST_POSTGRESQL_URL)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(uid: int | None, gid: int | None) -> Callable[[], None]:
    def prepare() -> None:
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        # the server stops when the test process dies, even by kill -9 (set after setuid, which clears it)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
        except (OSError, AttributeError):
            pass
    return prepare


class PgServer:
    """A running server (ours or the one ``MIM_TEST_POSTGRESQL_URL`` names)."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes] | None = None, folder: str | None = None) -> None:
        self.base_url = base_url
        self.process = process
        self.folder = folder
        self._names = itertools.count(1)
        import psycopg

        self.admin = psycopg.connect(base_url, autocommit=True)

    @classmethod
    def start(cls) -> "PgServer":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise Unavailable("psycopg is not installed (pip install '.[test]')") from None
        external = os.environ.get("MIM_TEST_POSTGRESQL_URL")
        if external:
            return cls(external)
        binaries = find_binaries()
        uid = gid = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run the server as "
                                  "(initdb refuses root; apt-get install postgresql creates it)") from None
            uid, gid = user.pw_uid, user.pw_gid
        folder = tempfile.mkdtemp(prefix="mim-pg-")
        if uid is not None:
            os.chown(folder, uid, gid or -1)
        data = Path(folder) / "data"
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        init = subprocess.run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "mim", "-E", "UTF8",
                               "--no-locale", "--no-sync"], cwd=folder, env=env, capture_output=True,
                              preexec_fn=_as_user(uid, gid), timeout=120)
        if init.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        last_error = ""
        for _ in range(3):
            port = _free_port()
            log = open(Path(folder) / "server.log", "ab")
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", folder,
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200", "-c", "shared_buffers=32MB", "-c", "log_min_messages=fatal"],
                cwd=folder, env=env, stdout=log, stderr=log, preexec_fn=_as_user(uid, gid))
            log.close()
            url = f"postgresql://mim@127.0.0.1:{port}/postgres"
            if _wait_ready(url, process):
                return cls(url, process, folder)
            process.kill()
            process.wait()
            last_error = (Path(folder) / "server.log").read_text(errors="replace")[-500:]
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"the PostgreSQL server did not start: {last_error}")

    def stop(self) -> None:
        """Stop our server (fast shutdown) and remove its directory."""
        self.admin.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def new_schema(self, prefix: str = "t") -> str:
        """A URL whose state lives in a new, empty schema."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.admin.execute(f'CREATE SCHEMA "{name}"')
        return self.url(name)

    def url(self, schema: str) -> str:
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}options={quote(f'-csearch_path={schema}')}"

    def reset_schema(self, url: str) -> None:
        """Lose a state: drop everything in its schema."""
        name = schema_of(url)
        self.admin.execute(f'DROP SCHEMA "{name}" CASCADE')
        self.admin.execute(f'CREATE SCHEMA "{name}"')

    def has_tables(self, url: str) -> bool:
        row = self.admin.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                                 (schema_of(url),)).fetchone()
        return bool(row and row[0])

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.admin.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def schema_of(url: str) -> str:
    from urllib.parse import unquote

    return unquote(url.rsplit("search_path%3D", 1)[-1]).split("&")[0]


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    import psycopg

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False
