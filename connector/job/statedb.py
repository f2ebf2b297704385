"""Where the state lives: SQLite (a file, the default) or PostgreSQL (``postgresql://`` URL), behind one small
interface so the store (:mod:`connector.job.store`) and its migrations are written once.

SQL is written in SQLite's portable subset with ``?`` placeholders and is translated per backend
(:func:`to_postgres`): placeholders become ``%s``; in DDL ``INTEGER`` becomes ``BIGINT`` (SQLite integers are
64-bit), ``REAL`` ``DOUBLE PRECISION``, ``BLOB`` ``BYTEA`` and ``INTEGER PRIMARY KEY AUTOINCREMENT`` an identity
column, and ``TEXT`` compares bytewise (``COLLATE "C"``) as in SQLite. Results are materialised rows of plain
Python values (str, int, float, None) on both.

Every driver error that is the environment's fault (a corrupt or unreadable file, a lost connection, missing
privileges) becomes a :class:`StateError`: one message naming the problem and the fix, exit code 3 (see
:mod:`connector.core.exits`), never a traceback.

The runner lock: SQLite uses ``flock`` on ``<state>.lock`` (the kernel releases it when the holder dies);
PostgreSQL a session advisory lock on a connection of its own, which the server releases when that session
ends (the process died, or its connection was lost: TCP keepalives on the lock session bound how long a dead
peer keeps it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, Sequence
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from connector.core.exits import OperationalError

if TYPE_CHECKING:
    import psycopg

URL_SCHEMES = ("postgresql://", "postgres://")

LOCK_KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}
"""TCP keepalives of the PostgreSQL lock session (seconds, probes), set on both ends: a peer that vanished
without closing its connection (a lost network, a frozen host) loses the lock after about 11 seconds."""
LOCK_USER_TIMEOUT_MS = 10_000
"""How long unacknowledged data may wait on the lock session before the connection counts as lost."""
CONNECT_TIMEOUT = 10


class StateError(OperationalError):
    """The state store cannot be used. ``transient`` errors (a lost connection to PostgreSQL) may pass by
    themselves; the others need the fix."""

    def __init__(self, problem: str, fix: str, transient: bool = False) -> None:
        super().__init__(problem, fix)
        self.transient = transient


class LockHeld(StateError):
    """Another ``mim sync``/``mim run`` holds the state; the message names it."""


class LockLost(StateError):
    """The runner lock was lost while running (its PostgreSQL session ended): stop writing."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem, fix, transient=True)


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL state rather than a SQLite file."""
    return str(location).startswith(URL_SCHEMES)


def redact(location: str | Path) -> str:
    """``location`` as it may be shown: a URL without its password."""
    text = str(location)
    if not is_url(text):
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}{':***' if ':' in userinfo else ''}@{host}"
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)], safe="=-/,*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_password(location: str | Path) -> str | None:
    """The password inside a state URL (userinfo or ``password=``), so logs can redact it; None if none."""
    if not is_url(location):
        return None
    parts = urlsplit(str(location))
    query = dict(parse_qsl(parts.query))
    return unquote(parts.password) if parts.password else query.get("password") or None


class Rows:
    """The rows a statement returned (already fetched) and how many it changed."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class StateDb(Protocol):
    """What the store and its migration steps use: portable SQL with ``?`` placeholders."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement; its rows, fetched."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        ...


# -- SQL translation ----------------------------------------------------------------------------------------

_DDL = re.compile(r"^\s*(CREATE|ALTER)\s", re.I)
_TYPES = [(re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
          (re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
          (re.compile(r"\bBLOB\b"), "BYTEA"),
          # byte order, as SQLite compares text: the same ORDER BY and range results whatever the database's locale
          (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"')]


@lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """A statement of the store's portable SQL in PostgreSQL's dialect (placeholders; types in DDL)."""
    if _DDL.match(sql):
        for pattern, replacement in _TYPES:
            sql = pattern.sub(replacement, sql)
    return sql.replace("%", "%%").replace("?", "%s")


# -- SQLite -------------------------------------------------------------------------------------------------

def _holder_text() -> str:
    return (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")


class SqliteBackend:
    """A state file (WAL mode) and its ``<file>.lock``."""

    dialect = "sqlite"

    def __init__(self, path: Path, lock: bool = False) -> None:
        self.path = path
        self.location = str(path)
        self._lock_fd: int | None = None
        if path.is_dir():
            raise StateError(f"MIM_STATE points at a directory, not a state file: {path}",
                             f"point MIM_STATE at a file, for example {path / 'mim-state.sqlite'}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the folder of the state file {path}: {exc.strerror or exc}",
                             f"create {path.parent} and make it writable for the user running mim "
                             f"(uid {os.getuid()}), or point MIM_STATE at a writable location") from None
        # the runner lock first: a second runner stops here, before it opens (and waits on) the database. A lock
        # file that cannot be created is left to the opening below, which says why in the words every command uses
        if lock:
            try:
                taken = self.try_lock()
            except StateError:
                taken = True  # (not taken: StateStore.acquire_lock tries again once the database is open)
            if not taken:
                raise lock_held(self.location, self.holder(), self.lock_fix())
        try:
            self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            self.release_lock()
            raise sqlite_error(path, exc) from None
        try:
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=30000"):
                self.execute(pragma)
        except BaseException:
            self.close()
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        try:
            cursor = self.db.execute(sql, tuple(params))
            return Rows(cursor.fetchall(), cursor.rowcount)
        except sqlite3.Error as exc:
            raise _translated_sqlite(self.path, exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _translated_sqlite(self.path, exc) from None

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[None]:
        """A write transaction (``BEGIN IMMEDIATE``: writers queue here, not half way through)."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def ensure_connected(self) -> None:
        """Nothing to do: a file does not disconnect."""

    def close(self) -> None:
        self.release_lock()
        self.db.close()

    # -- the runner lock --

    def try_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        lock_path = str(self.path) + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the lock file {lock_path}: {exc.strerror or exc}",
                             f"make {self.path.parent} writable for the user running mim (uid {os.getuid()})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
        self._lock_fd = fd
        return True

    def holder(self) -> str | None:
        try:
            with open(str(self.path) + ".lock", encoding="utf-8", errors="replace") as handle:
                return handle.read(200).strip() or None
        except OSError:
            return None

    def lock_alive(self) -> bool:
        return self._lock_fd is not None

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def lock_fix(self) -> str:
        return ("wait for the other run to finish, or stop it (the pid above); a lock left by a killed process "
                "is released by the kernel, so there is nothing to delete")

    # -- whole-state operations --

    def tables(self) -> list[str]:
        rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'")
        return sorted(r[0] for r in rows)

    def after_copy(self, table: str) -> None:
        """Nothing to do: AUTOINCREMENT follows the largest id inserted."""

    def has_schema(self) -> bool:
        return bool(self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone())


def _translated_sqlite(path: Path, exc: sqlite3.Error) -> Exception:
    # programming errors (a wrong number of bindings, a constraint) are bugs and keep their traceback
    if isinstance(exc, (sqlite3.OperationalError,)) or type(exc) is sqlite3.DatabaseError:
        return sqlite_error(path, exc)
    return exc


def sqlite_error(path: Path, exc: sqlite3.Error) -> StateError:
    """The problem with a state file and its fix, from what SQLite said and what the file system shows."""
    message = str(exc)
    uid = os.getuid()
    if path.is_dir():
        return StateError(f"MIM_STATE points at a directory, not a state file: {path}",
                          f"point MIM_STATE at a file, for example {path / 'mim-state.sqlite'}")
    if "not a database" in message or "malformed" in message or "file is encrypted" in message:
        size = path.stat().st_size if path.exists() else 0
        return StateError(f"{path} is not a usable mim state ({message}; {size:,} bytes): the file is damaged, "
                          "or MIM_STATE names a file that is not a mim state",
                          f"if MIM_STATE is wrong, point it at the state file; if {path.name} is the damaged state, "
                          f"move it aside (mv {path} {path}.broken) and run again: the next cycle rebuilds the state "
                          "from the markers on the platform, without writing anything twice")
    folder_writable = os.access(path.parent, os.W_OK | os.X_OK)
    file_writable = not path.exists() or os.access(path, os.W_OK)
    if "readonly" in message or "read-only" in message or not folder_writable or not file_writable:
        what = (f"{path} is read-only" if not file_writable else
                f"the folder {path.parent} is read-only" if not folder_writable else f"{path} cannot be written")
        return StateError(f"{what} for this user (uid {uid}): {message}",
                          f"give the user running mim write access to {path} and its folder {path.parent} "
                          f"(SQLite writes {path.name}-wal and {path.name}-shm beside it), or point MIM_STATE at a "
                          "writable location")
    if "locked" in message or "busy" in message:
        return StateError(f"{path} stayed locked by another process for 30 s: {message}",
                          f"look for a stuck process holding the file open (fuser {path}) and stop it")
    if "disk" in message or "full" in message or "I/O" in message:
        return StateError(f"{path} cannot be read or written: {message}",
                          "check the disk (free space, errors in the kernel log) and run again")
    if "unable to open" in message:
        return StateError(f"cannot open the state file {path}: {message}",
                          f"check that {path.parent} exists and is readable and writable for uid {uid}, "
                          "or point MIM_STATE at a writable location")
    return StateError(f"{path}: {message}",
                      f"check the file; if it is damaged, move it aside (mv {path} {path}.broken): the next cycle "
                      "rebuilds the state from the markers on the platform")


# -- PostgreSQL ---------------------------------------------------------------------------------------------

def _key(*parts: str) -> int:
    """A signed 64-bit advisory lock key."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresBackend:
    """A state in a PostgreSQL schema (the first of the URL's ``search_path``, ``public`` by default): a data
    session for the store and, once :meth:`try_lock` is called, a lock session of its own."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StateError("MIM_STATE is a PostgreSQL URL but the PostgreSQL driver (psycopg) is not installed",
                             "pip install 'mim-connector[postgresql]' (or pip install 'psycopg[binary]')") from None
        self._psycopg = psycopg
        self.url = url
        self.location = redact(url)
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._holding = False
        self.db = self._connect("mim")
        database, schema = self.execute("SELECT current_database(), current_schema()").fetchall()[0]
        if schema is None:
            raise StateError(f"{self.location}: no schema of the search_path exists in database {database}",
                             "create the schema (CREATE SCHEMA name) or fix options=-csearch_path=... in MIM_STATE")
        self.schema: str = schema
        self.lock_key = _key("mim-state", database, schema)
        self._migrate_key = _key("mim-migrate", database, schema)

    def _connect(self, name: str, **params: Any) -> "psycopg.Connection[Any]":
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                         application_name=name[:63], **params)
        except self._psycopg.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> StateError:
        psycopg = self._psycopg
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = str(exc)
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return StateError(f"{self.location}: the database user may not do this: {first}",
                              "grant the user USAGE and CREATE on the state's schema (or let it own the schema), "
                              "and rights on the mim tables")
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return StateError(f"{self.location} is a read-only server (a standby replica?): {first}",
                              "point MIM_STATE at the primary server")
        if isinstance(exc, psycopg.OperationalError):
            if "password authentication failed" in text or "no password supplied" in text:
                return StateError(f"{self.location}: the server refused the login: {first}",
                                  "check the user and password of MIM_STATE (or PGPASSWORD, ~/.pgpass)")
            if "does not exist" in text and "database" in text:
                return StateError(f"{self.location}: {first}", "create the database (createdb NAME) or fix MIM_STATE")
            return StateError(f"cannot reach the state database {self.location}: {first}",
                              "check that the PostgreSQL server is running and reachable at the host and port of "
                              "MIM_STATE; mim retries by itself once it is back", transient=True)
        return StateError(f"{self.location}: {first}", "check the state database and the URL in MIM_STATE")

    def _translate(self, exc: Exception) -> Exception:
        psycopg = self._psycopg
        if isinstance(exc, (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege,
                            psycopg.errors.ReadOnlySqlTransaction)):
            return self._error(exc)
        return exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        try:
            cursor = self.db.execute(to_postgres(sql), tuple(params))
            rows = cursor.fetchall() if cursor.description is not None else []
            return Rows(rows, cursor.rowcount)
        except self._psycopg.Error as exc:
            raise self._translate(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if not batch:
            return
        try:
            with self.db.cursor() as cursor:
                cursor.executemany(to_postgres(sql), batch)
        except self._psycopg.Error as exc:
            raise self._translate(exc) from None

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[None]:
        """A transaction; ``exclusive`` also takes a transaction advisory lock (used by migrations, so two
        processes opening a new state do not both create it)."""
        try:
            with self.db.transaction():
                if exclusive:
                    self.db.execute("SELECT pg_advisory_xact_lock(%s)", (self._migrate_key,))
                yield
        except self._psycopg.Error as exc:
            raise self._translate(exc) from None

    def ensure_connected(self) -> None:
        """Reconnect the data session after a lost connection (the server restarted, a network blip, the
        session terminated): a ping first, since a client learns of a lost connection only when it uses it."""
        if not (self.db.closed or self.db.broken):
            try:
                self.db.execute("SELECT 1")
                return
            except self._psycopg.Error:
                pass
        try:
            self.db.close()
        except self._psycopg.Error:
            pass
        self.db = self._connect("mim")

    def close(self) -> None:
        self.release_lock()
        self.db.close()

    # -- the runner lock --

    def try_lock(self) -> bool:
        """Take the advisory lock on a session of its own (non-blocking); True when held. A standby keeps its
        lock session open between tries, so waiting costs one query per try, not a connection."""
        if self._holding:
            if self.lock_alive():
                return True
            self._drop_lock_conn()
        conn = self._lock_conn
        if conn is None or conn.closed or conn.broken:
            conn = self._lock_conn = self._lock_session()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,)).fetchone()
        except self._psycopg.Error as exc:
            self._drop_lock_conn()
            raise self._translate(exc) from None
        self._holding = bool(row and row[0])
        return self._holding

    def _lock_session(self) -> "psycopg.Connection[Any]":
        name = f"mim on {socket.gethostname()} pid {os.getpid()}"
        conn = self._connect(name, keepalives=1, keepalives_idle=LOCK_KEEPALIVE["idle"],
                             keepalives_interval=LOCK_KEEPALIVE["interval"],
                             keepalives_count=LOCK_KEEPALIVE["count"], tcp_user_timeout=LOCK_USER_TIMEOUT_MS)
        try:
            # the server side of the same: a holder that vanished without a word loses the lock
            conn.execute(f"SET tcp_keepalives_idle = {LOCK_KEEPALIVE['idle']}")
            conn.execute(f"SET tcp_keepalives_interval = {LOCK_KEEPALIVE['interval']}")
            conn.execute(f"SET tcp_keepalives_count = {LOCK_KEEPALIVE['count']}")
            conn.execute(f"SET tcp_user_timeout = {LOCK_USER_TIMEOUT_MS}")
        except self._psycopg.Error as exc:
            conn.close()
            raise self._translate(exc) from None
        return conn

    def lock_alive(self) -> bool:
        """Whether this process still holds the lock: its session answers (a session advisory lock lives
        exactly as long as the session, unless released)."""
        conn = self._lock_conn
        if not self._holding or conn is None or conn.closed or conn.broken:
            return False
        try:
            conn.execute("SELECT 1")
            return True
        except self._psycopg.Error:
            return False

    def _drop_lock_conn(self) -> None:
        self._holding = False
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            except self._psycopg.Error:
                pass
            self._lock_conn = None

    def release_lock(self) -> None:
        """Unlock, then end the lock session. The explicit unlock makes the release immediate: a closed session's
        locks are freed only when its server process has exited, a moment later, and a runner starting right
        after would find the lock still held."""
        conn = self._lock_conn
        if self._holding and conn is not None and not conn.closed and not conn.broken:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.lock_key,))
            except self._psycopg.Error:
                pass  # the session is going away anyway; closing it frees the lock
        self._drop_lock_conn()

    def holder(self) -> str | None:
        """Who holds the lock: the holder's session name (host and pid), address and since when."""
        unsigned = self.lock_key & 0xFFFFFFFFFFFFFFFF
        try:
            row = self.execute(
                "SELECT a.application_name, host(a.client_addr), a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = ? AND l.objid::bigint = ? AND l.objsubid = 1",
                (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
        except StateError:
            return None
        if row is None:
            return None
        name, address, since = row
        started = since.astimezone(timezone.utc).isoformat(timespec="seconds") if since else "?"
        return f"{name or 'a session'}{f' from {address}' if address else ''} since {started}"

    def lock_fix(self) -> str:
        return ("wait for the other run to finish, or stop it; the server releases the lock of a killed process "
                "as soon as its connection closes (within seconds after a lost network)")

    # -- whole-state operations --

    def tables(self) -> list[str]:
        rows = self.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_type = 'BASE TABLE'")
        return sorted(r[0] for r in rows)

    def after_copy(self, table: str) -> None:
        """Move identity sequences past the ids copied in, so the next insert does not collide."""
        columns = self.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                               "current_schema() AND table_name = ? AND is_identity = 'YES'", (table,)).fetchall()
        for (column,) in columns:
            self.execute(f'SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX("{column}"), 0) + 1, false) '
                         f'FROM "{table}"', (table, column))

    def has_schema(self) -> bool:
        row = self.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        return bool(row and row[0])


Backend = SqliteBackend | PostgresBackend


def lock_held(description: str, holder: str | None, fix: str) -> LockHeld:
    """The error of a runner that finds the state's runner lock taken."""
    return LockHeld(f"{description} is in use by another mim process{f' ({holder})' if holder else ''}; "
                    "only one mim sync/run may use a state at a time", fix)


def open_backend(location: str | Path, lock: bool = False) -> Backend:
    """The backend for ``location``: a ``postgresql://`` URL or a SQLite file path. With ``lock`` a SQLite
    backend takes the runner lock before it opens the database (raises :class:`LockHeld`); a PostgreSQL one
    takes it once connected (:meth:`connector.job.store.StateStore.acquire_lock`)."""
    if is_url(location):
        return PostgresBackend(str(location))
    return SqliteBackend(Path(location), lock=lock)


def state_exists(location: str | Path) -> bool:
    """Whether a state was ever written at ``location`` (a file that exists; a schema with mim's tables)."""
    if not is_url(location):
        return Path(location).exists()
    backend = PostgresBackend(str(location))
    try:
        return backend.has_schema()
    finally:
        backend.close()


__all__ = ["Backend", "LockHeld", "LockLost", "PostgresBackend", "Rows", "SqliteBackend", "StateDb", "StateError",
           "is_url", "open_backend", "redact", "state_exists", "to_postgres", "url_password"]
