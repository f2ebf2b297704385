"""``mim state copy``: move a state from one store to the other (SQLite file <-> PostgreSQL), every table and
every platform in it, row for row.

Both ends are opened as the connector opens them (so both are at the current schema version, with the same
tables), and both runner locks are held during the copy, so no ``mim run`` writes to either meanwhile. The
target must be empty unless ``replace`` is given; the copy is one transaction on the target and is checked
(row counts per table) before it is reported. The source is left as it was, so going back is a copy the other
way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.job.statedb import Backend, StateError
from connector.job.store import StateStore

SKIPPED = frozenset({"schema_version"})
"""Tables written by opening a store rather than copied."""


@dataclass
class CopyReport:
    """What was copied: rows per table."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _columns(backend: Backend, table: str) -> list[str]:
    if backend.dialect == "sqlite":
        return [row[1] for row in backend.execute(f'PRAGMA table_info("{table}")')]
    return [row[0] for row in backend.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? "
        "ORDER BY ordinal_position", (table,))]


def _count(backend: Backend, table: str) -> int:
    row = backend.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    return int(row[0]) if row else 0


def copy_state(source: str, target: str, replace: bool = False) -> CopyReport:
    """Copy every table of the state at ``source`` into ``target``; raises :class:`StateError` (exit 3) when
    either is in use by a runner, the target already holds a state (without ``replace``) or a table differs."""
    if source == target:
        raise StateError("the source and the target of the copy are the same state", "name two different states")
    with StateStore(source, "") as src, StateStore(target, "") as dst:
        for store, role in ((src, "source"), (dst, "target")):
            if not store.try_lock():
                holder = store.lock_holder()
                raise StateError(f"the {role} {store.description} is in use by a mim process"
                                 f"{f' ({holder})' if holder else ''}",
                                 "stop mim run / mim sync on it while the state is copied, then copy again")
        report = CopyReport(src.description, dst.description)
        tables = [t for t in src.backend.tables() if t not in SKIPPED]
        missing = sorted(set(tables) - set(dst.backend.tables()))
        if missing:
            raise StateError(f"the target has no table {', '.join(missing)} (a different schema?)",
                             "copy with the same version of mim that wrote the source")
        occupied = {t: n for t in tables if (n := _count(dst.backend, t))}
        if occupied and not replace:
            raise StateError(f"the target {dst.description} already holds a state "
                             f"({sum(occupied.values())} rows in {', '.join(sorted(occupied))})",
                             "copy into an empty state, or add --replace to overwrite it")
        with dst.backend.transaction():
            for table in tables:
                if table in occupied:
                    dst.db.execute(f'DELETE FROM "{table}"')
                columns = _columns(src.backend, table)
                if set(columns) != set(_columns(dst.backend, table)):
                    raise StateError(f"table {table} has other columns in the target", "copy with the same version "
                                     "of mim that wrote the source")
                names = ", ".join(f'"{c}"' for c in columns)
                rows = src.db.execute(f'SELECT {names} FROM "{table}" ORDER BY 1').fetchall()
                marks = ", ".join("?" * len(columns))
                dst.db.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
                dst.backend.after_copy(table)
                report.rows[table] = len(rows)
        for table, expected in report.rows.items():
            if _count(dst.backend, table) != expected:
                raise StateError(f"table {table}: the target holds {_count(dst.backend, table)} rows, the source "
                                 f"{expected}", "copy again; if it fails again, report a bug")
        return report


__all__ = ["CopyReport", "copy_state"]
