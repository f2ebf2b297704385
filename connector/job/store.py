"""The state store: the watermark, the discovery cache, a window of recent tickets, the action ledger, the major
incident registry and small counters (rota position, comms cadence), in SQLite (a file, the default) or
PostgreSQL (``MIM_STATE=postgresql://...``), with the same schema, migrations and guarantees on both.

The platform is the source of truth; this is a cache and a ledger. Deleting it is safe: the next cycle
rebuilds what it needs from the markers the connector left on the platform.

A single runner is enforced by a lock the holder's death releases without any staleness heuristics: ``flock``
on ``<state>.lock`` for SQLite, a session advisory lock for PostgreSQL (:mod:`connector.job.statedb`).

Adding to the schema (both backends at once):

1. append a numbered entry to :data:`MIGRATIONS` (the next integer) and raise :data:`SCHEMA_VERSION` to it;
   a step is an SQL statement in the portable subset (types ``TEXT INTEGER REAL``, ``?`` placeholders,
   ``INSERT ... ON CONFLICT (...) DO UPDATE SET x = excluded.x``, no ``json_extract`` or other functions of one
   engine) or a function of a :class:`~connector.job.statedb.StateDb` that rewrites rows;
2. add a small method here that reads or writes it through ``self.db.execute`` with the same SQL;
3. the store tests run on both backends (``tests/test_store.py``), and ``mim state copy`` copies every table.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator

from connector.core.actions import Action
from connector.core.ticket import Ticket
from connector.detection.registry import MIRecord
from connector.job.migrations import upgrade_records_to_v2
from connector.job.statedb import LockHeld, LockLost, StateDb, StateError, is_url, lock_held, open_backend, redact
from connector.platforms.base import ApplyResult, Watermark

SCHEMA_VERSION = 3
MAX_ATTEMPTS = 10

Step = str | Callable[[StateDb], None]
"""A migration step: an SQL statement, or a function that rewrites rows (same transaction)."""

MIGRATIONS: dict[int, list[Step]] = {
    1: [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE watermark (platform TEXT PRIMARY KEY, updated_at TEXT NOT NULL, id TEXT NOT NULL)",
        "CREATE TABLE discovery (platform TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at TEXT NOT NULL)",
        "CREATE TABLE tickets (platform TEXT NOT NULL, id TEXT NOT NULL, opened_at TEXT NOT NULL, "
        "updated_at TEXT, data TEXT NOT NULL, PRIMARY KEY (platform, id))",
        "CREATE INDEX tickets_opened ON tickets (platform, opened_at)",
        "CREATE TABLE ledger (key TEXT PRIMARY KEY, platform TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, "
        "status TEXT NOT NULL, created_id TEXT, created_key TEXT, detail TEXT, attempts INTEGER NOT NULL DEFAULT 0, "
        "action TEXT NOT NULL, planned_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE INDEX ledger_status ON ledger (platform, status)",
        "CREATE TABLE major_incidents (platform TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, "
        "PRIMARY KEY (platform, id))",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE cycles (id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, started_at TEXT NOT NULL, "
        "summary TEXT NOT NULL)",
    ],
    # the registry record's ``facts`` dict becomes typed parts (connector/detection/process_state.py)
    2: [upgrade_records_to_v2],
    # per-group detection baselines (connector/detection/baseline.py): one row per rule, one per group
    3: [
        "CREATE TABLE baseline_rules (platform TEXT NOT NULL, rule TEXT NOT NULL, data TEXT NOT NULL, "
        "PRIMARY KEY (platform, rule))",
        "CREATE TABLE baseline_groups (platform TEXT NOT NULL, rule TEXT NOT NULL, grp TEXT NOT NULL, "
        "data TEXT NOT NULL, PRIMARY KEY (platform, rule, grp))",
    ],
}
"""Schema version -> the steps that bring the previous version to it, run in one transaction per opening."""


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class StateStore:
    """The state of one platform in SQLite (``location`` a file path) or PostgreSQL (a ``postgresql://``
    URL). Use as a context manager or call :meth:`close`. Opening brings the schema up to date; every problem
    with the store is a :class:`~connector.job.statedb.StateError` (one message and its fix)."""

    def __init__(self, location: str | Path, platform: str, lock: bool = False) -> None:
        self.location = str(location)
        self.platform = platform
        self.backend = open_backend(location, lock=lock)
        self.db = self.backend
        self._locked = False
        try:
            if lock:  # before the migration: a second runner touches nothing
                self.acquire_lock()
            self._migrate()
        except BaseException:
            self.backend.close()
            raise

    @property
    def path(self) -> Path:
        """The state file (SQLite) or the URL as a path-like label (PostgreSQL)."""
        return Path(self.location)

    @property
    def description(self) -> str:
        """Where the state is, safe to show (a URL without its password)."""
        return redact(self.location)

    @property
    def is_postgresql(self) -> bool:
        """Whether the state lives in PostgreSQL."""
        return is_url(self.location)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.backend.transaction(exclusive=True):
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise StateError(f"{self.description} was written by a newer mim (state schema {current}); this "
                                 f"version knows schema {SCHEMA_VERSION} and older",
                                 f"run the newer mim again, or upgrade this one; to go back to this version, "
                                 "restore the copy of the state kept before the upgrade (or delete the state: "
                                 "the next cycle rebuilds it from the markers on the platform)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for step in MIGRATIONS[version]:
                    if isinstance(step, str):
                        self.db.execute(step)
                    else:
                        step(self.db)
            if row is None:
                self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:  # written even when unchanged: a state that cannot be written fails here, not mid-cycle
                self.db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version of the state (always :data:`SCHEMA_VERSION` once opened)."""
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def transaction(self) -> ContextManager[None]:
        """A write transaction. While this store holds the runner lock, it is checked first: a runner whose
        PostgreSQL lock session ended raises :class:`LockLost` here instead of writing."""
        if self._locked and not self.backend.lock_alive():
            self._locked = False
            raise LockLost(f"the runner lock on {self.description} was lost (its database session ended)",
                           "nothing to do: mim stops writing and waits as standby; check the network to the database")
        return self.backend.transaction()

    def try_lock(self) -> bool:
        """Become the single runner for this state if no one else is (non-blocking)."""
        self._locked = self.backend.try_lock()
        return self._locked

    def acquire_lock(self) -> None:
        """Become the single runner for this state, or raise :class:`LockHeld` naming the holder."""
        if not self.try_lock():
            raise lock_held(self.description, self.backend.holder(), self.backend.lock_fix())

    def lock_holder(self) -> str | None:
        """Who holds the runner lock (pid, host, since when), when it is known."""
        return self.backend.holder()

    def lock_alive(self) -> bool:
        """Whether this store still holds the runner lock."""
        return self._locked and self.backend.lock_alive()

    def release_lock(self) -> None:
        """Give up the runner lock."""
        self._locked = False
        self.backend.release_lock()

    def ensure_connected(self) -> None:
        """Reconnect after a lost database connection (PostgreSQL); nothing for a file."""
        self.backend.ensure_connected()

    def close(self) -> None:
        """Release the lock and close the database."""
        self._locked = False
        self.backend.close()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- watermark and discovery --------------------------------------------------------------------

    def watermark(self) -> Watermark | None:
        """The last ``(updated_at, id)`` committed."""
        row = self.db.execute("SELECT updated_at, id FROM watermark WHERE platform = ?", (self.platform,)).fetchone()
        return Watermark(datetime.fromisoformat(row[0]), row[1]) if row else None

    def set_watermark(self, mark: Watermark) -> None:
        """Commit a new watermark (only after the cycle's actions are applied or recorded)."""
        self.db.execute("INSERT INTO watermark VALUES (?, ?, ?) ON CONFLICT(platform) DO UPDATE SET "
                        "updated_at = excluded.updated_at, id = excluded.id",
                        (self.platform, _iso(mark.updated_at), mark.id))

    def discovery(self, now: datetime) -> dict[str, Any] | None:
        """Cached discovery, or None when absent or expired."""
        row = self.db.execute("SELECT data, expires_at FROM discovery WHERE platform = ?", (self.platform,)).fetchone()
        if row is None or datetime.fromisoformat(row[1]) <= now:
            return None
        return json.loads(row[0])

    def set_discovery(self, data: dict[str, Any], expires_at: datetime) -> None:
        """Cache discovery until ``expires_at``."""
        self.db.execute("INSERT INTO discovery VALUES (?, ?, ?) ON CONFLICT(platform) DO UPDATE SET "
                        "data = excluded.data, expires_at = excluded.expires_at",
                        (self.platform, json.dumps(data, sort_keys=True), _iso(expires_at)))

    # -- ticket window ------------------------------------------------------------------------------

    def upsert_tickets(self, tickets: Iterable[Ticket]) -> None:
        """Remember tickets (canonical fields only, no raw record) for later windows."""
        rows = []
        for t in tickets:
            data = t.canonical_dict()
            rows.append((self.platform, t.id, _iso(t.opened_at), _iso(t.updated_at) if t.updated_at else None,
                         json.dumps(data, sort_keys=True)))
        self.db.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?, ?) ON CONFLICT(platform, id) DO UPDATE SET "
                            "opened_at = excluded.opened_at, updated_at = excluded.updated_at, data = excluded.data",
                            rows)

    def recent_tickets(self, since: datetime) -> list[Ticket]:
        """Tickets opened at or after ``since``."""
        rows = self.db.execute("SELECT data FROM tickets WHERE platform = ? AND opened_at >= ? ORDER BY opened_at, id",
                               (self.platform, _iso(since))).fetchall()
        return [Ticket(**json.loads(r[0])) for r in rows]

    def tickets_by_id(self, ids: Iterable[str]) -> dict[str, Ticket]:
        """Cached tickets by id."""
        out: dict[str, Ticket] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for (data,) in self.db.execute(f"SELECT data FROM tickets WHERE platform = ? AND id IN ({marks})",
                                           (self.platform, *chunk)):
                t = Ticket(**json.loads(data))
                out[t.id] = t
        return out

    def find_ticket(self, id_or_key: str) -> Ticket | None:
        """A cached ticket by platform id or human key."""
        # the key is found in the stored JSON text (portable), then checked exactly
        needle = '"key": ' + json.dumps(id_or_key)
        pattern = "%" + needle.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        rows = self.db.execute("SELECT id, data FROM tickets WHERE platform = ? AND (id = ? OR data LIKE ? ESCAPE '!') "
                               "ORDER BY id", (self.platform, id_or_key, pattern)).fetchall()
        tickets = [Ticket(**json.loads(data)) for _, data in rows]
        return next((t for t in tickets if t.id == id_or_key), None) or next(
            (t for t in tickets if t.key == id_or_key), None)

    def prune_tickets(self, before: datetime, keep: Iterable[str] = ()) -> int:
        """Forget tickets opened before ``before`` (except ``keep``); returns how many."""
        keep_set = set(keep)
        rows = self.db.execute("SELECT id FROM tickets WHERE platform = ? AND opened_at < ?",
                               (self.platform, _iso(before))).fetchall()
        doomed = [r[0] for r in rows if r[0] not in keep_set]
        for chunk in _chunks(doomed, 500):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM tickets WHERE platform = ? AND id IN ({marks})", (self.platform, *chunk))
        return len(doomed)

    # -- ledger -------------------------------------------------------------------------------------

    def ledger(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows for ``keys`` (status planned / applied / skipped / failed)."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(keys), 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                    f"SELECT key, status, created_id, created_key, detail, attempts FROM ledger WHERE key IN ({marks})", chunk):
                out[row[0]] = {"status": row[1], "created_id": row[2], "created_key": row[3], "detail": row[4], "attempts": row[5]}
        return out

    def record_planned(self, actions: Iterable[Action], now: datetime) -> None:
        """Write actions to the ledger as planned, before anything is sent."""
        rows = [(a.key, self.platform, a.kind, a.target, "planned", None, None, "", 0, json.dumps(a.to_dict(), default=str),
                 _iso(now), _iso(now)) for a in actions]
        self.db.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING", rows)

    def record_results(self, results: Iterable[ApplyResult], now: datetime) -> None:
        """Record what the platform did with each action; after ``MAX_ATTEMPTS`` failures an action is
        given up (status ``abandoned``) so one broken write cannot fail every cycle forever."""
        for r in results:
            # a failure that retrying cannot fix (a 4xx, a per-issue limit) is not re-driven every cycle
            status = "rejected" if r.status == "failed" and not r.retryable else r.status
            self.db.execute("UPDATE ledger SET status = ?, created_id = COALESCE(?, created_id), "
                            "created_key = COALESCE(?, created_key), detail = ?, attempts = attempts + 1, updated_at = ? "
                            "WHERE key = ?", (status, r.created_id, r.created_key, r.detail[:500], _iso(now), r.key))

    def abandon_exhausted(self, now: datetime) -> int:
        """Give up actions that failed ``MAX_ATTEMPTS`` times; returns how many."""
        cur = self.db.execute("UPDATE ledger SET status = 'abandoned', updated_at = ? WHERE platform = ? AND "
                              "status = 'failed' AND attempts >= ?", (_iso(now), self.platform, MAX_ATTEMPTS))
        return cur.rowcount

    def created_ids(self) -> dict[str, str]:
        """Synthetic target -> platform id, for records the connector created."""
        rows = self.db.execute("SELECT target, created_id FROM ledger WHERE platform = ? AND kind = 'create_parent' "
                               "AND created_id IS NOT NULL", (self.platform,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def pending_rows(self) -> list[dict[str, Any]]:
        """Ledger rows still to be done (planned, or failed and retryable), oldest first."""
        rows = self.db.execute("SELECT key, kind, target, status, action FROM ledger WHERE platform = ? AND "
                               "status IN ('planned', 'failed') ORDER BY planned_at, key", (self.platform,)).fetchall()
        return [{"key": r[0], "kind": r[1], "target": r[2], "status": r[3], "action": json.loads(r[4])} for r in rows]

    def ledger_rows(self, target: str | None = None) -> list[dict[str, Any]]:
        """Every ledger row (optionally for one target), oldest first."""
        query = "SELECT key, kind, target, status, detail, planned_at, updated_at, action FROM ledger WHERE platform = ?"
        args: tuple[Any, ...] = (self.platform,)
        if target is not None:
            query += " AND target = ?"
            args += (target,)
        rows = self.db.execute(query + " ORDER BY planned_at, key", args).fetchall()
        return [{"key": r[0], "kind": r[1], "target": r[2], "status": r[3], "detail": r[4], "planned_at": r[5],
                 "updated_at": r[6], "action": json.loads(r[7])} for r in rows]

    def created_records(self, kind: str) -> list[dict[str, Any]]:
        """The records the connector created with actions of ``kind`` (``create_task``, ``create_change``): for
        each, the action's key and target (the major incident), the platform's id and key, and the action as
        planned (a review task's ``due``), oldest first."""
        rows = self.db.execute("SELECT key, target, created_id, created_key, action FROM ledger WHERE platform = ? "
                               "AND kind = ? AND created_id IS NOT NULL ORDER BY planned_at, key",
                               (self.platform, kind)).fetchall()
        return [{"key": r[0], "target": r[1], "created_id": r[2], "created_key": r[3], "action": json.loads(r[4])}
                for r in rows]

    def platforms(self) -> list[str]:
        """The platforms this state holds anything of (a report reads the state without being told)."""
        rows = self.db.execute("SELECT platform FROM major_incidents UNION SELECT platform FROM watermark "
                               "UNION SELECT platform FROM ledger ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    # -- major incidents ----------------------------------------------------------------------------

    def major_incidents(self) -> list[MIRecord]:
        """Every major incident the connector tracks."""
        rows = self.db.execute("SELECT data FROM major_incidents WHERE platform = ?", (self.platform,)).fetchall()
        return [MIRecord.from_json(r[0]) for r in rows]

    def save_major_incident(self, record: MIRecord) -> None:
        """Insert or replace one record."""
        self.db.execute("INSERT INTO major_incidents VALUES (?, ?, ?) ON CONFLICT(platform, id) DO UPDATE SET data = excluded.data",
                        (self.platform, record.id, record.to_json()))

    def delete_major_incident(self, mi_id: str) -> None:
        """Forget one record (a synthetic id replaced by the real one)."""
        self.db.execute("DELETE FROM major_incidents WHERE platform = ? AND id = ?", (self.platform, mi_id))

    # -- detection baselines ------------------------------------------------------------------------

    def baseline_rules(self) -> dict[str, Any]:
        """Each rule's baseline state (learning span, hour-of-week shape), by rule id (None for a row that is
        not JSON: a damaged state is learned again, never a crash)."""
        rows = self.db.execute("SELECT rule, data FROM baseline_rules WHERE platform = ?", (self.platform,)).fetchall()
        return {r[0]: _json_or_none(r[1]) for r in rows}

    def baseline_groups(self, rule: str) -> list[tuple[str, Any]]:
        """Every group's baseline of ``rule``: ``(group as JSON text, state)`` (state None for a row that is
        not JSON)."""
        rows = self.db.execute("SELECT grp, data FROM baseline_groups WHERE platform = ? AND rule = ?",
                               (self.platform, rule)).fetchall()
        return [(r[0], _json_or_none(r[1])) for r in rows]

    def save_baseline(self, rule: str, meta: dict[str, Any], groups: dict[str, Any]) -> None:
        """Store ``rule``'s baseline state and the groups that changed (a group whose state is None is
        forgotten)."""
        self.db.execute("INSERT INTO baseline_rules VALUES (?, ?, ?) ON CONFLICT(platform, rule) DO UPDATE SET "
                        "data = excluded.data", (self.platform, rule, json.dumps(meta)))
        gone = [(self.platform, rule, grp) for grp, state in groups.items() if state is None]
        kept = [(self.platform, rule, grp, json.dumps(state)) for grp, state in groups.items() if state is not None]
        self.db.executemany("DELETE FROM baseline_groups WHERE platform = ? AND rule = ? AND grp = ?", gone)
        self.db.executemany("INSERT INTO baseline_groups VALUES (?, ?, ?, ?) ON CONFLICT(platform, rule, grp) DO UPDATE "
                            "SET data = excluded.data", kept)

    def clear_baseline(self, rule: str) -> None:
        """Forget everything ``rule``'s baseline learned."""
        self.db.execute("DELETE FROM baseline_groups WHERE platform = ? AND rule = ?", (self.platform, rule))
        self.db.execute("DELETE FROM baseline_rules WHERE platform = ? AND rule = ?", (self.platform, rule))

    # -- counters and cycles ------------------------------------------------------------------------

    def counter(self, name: str, default: Any = None) -> Any:
        """A small persisted value (rota position, last update times...)."""
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (f"{self.platform}:{name}",)).fetchone()
        return json.loads(row[0]) if row else default

    def set_counter(self, name: str, value: Any) -> None:
        """Persist a small value."""
        self.db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        (f"{self.platform}:{name}", json.dumps(value, default=str)))

    def record_cycle(self, started_at: datetime, summary: dict[str, Any]) -> None:
        """Keep a cycle's summary (for reports and ``mim explain``); the last 1,000 are kept."""
        self.db.execute("INSERT INTO cycles (platform, started_at, summary) VALUES (?, ?, ?)",
                        (self.platform, _iso(started_at), json.dumps(summary, default=str)))
        self.db.execute("DELETE FROM cycles WHERE id <= (SELECT MAX(id) FROM cycles) - 1000")

    def is_fresh(self) -> bool:
        """True when nothing was ever synced into this state (a new or deleted state file)."""
        return self.watermark() is None and not self.major_incidents()

    def last_cycle_at(self) -> datetime | None:
        """When the last completed cycle of this platform started (by any runner), or None."""
        row = self.db.execute("SELECT started_at FROM cycles WHERE platform = ? ORDER BY id DESC LIMIT 1",
                              (self.platform,)).fetchone()
        return _dt(row[0]) if row else None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


__all__ = ["StateStore", "MIRecord", "LockHeld", "LockLost", "StateError", "SCHEMA_VERSION", "MAX_ATTEMPTS", "MIGRATIONS"]
