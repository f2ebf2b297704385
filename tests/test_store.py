"""The state store behaves the same on SQLite and PostgreSQL (a real server, conftest.py): every method, the
migrations, the lock, the portable SQL, and moving a state from one store to the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from connector.core.actions import AddNote, LinkChild
from connector.core.ticket import Ticket
from connector.detection.registry import MIRecord
from connector.job.statedb import StateError, redact, state_exists, to_postgres, url_password
from connector.job.store import MIGRATIONS, SCHEMA_VERSION, LockHeld, StateStore
from connector.job.transfer import copy_state
from connector.platforms.base import ApplyResult, Watermark

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def ticket(i: int, key: str | None = None, **fields) -> Ticket:
    return Ticket(id=f"id{i}", key=key or f"INC{i:05d}", opened_at=NOW - timedelta(minutes=i),
                  updated_at=NOW - timedelta(minutes=i), service="web-shop", **fields)


def fill(store: StateStore) -> None:
    """A little of everything a cycle writes."""
    store.set_watermark(Watermark(NOW, "id1"))
    store.set_discovery({"stage_field": True}, NOW + timedelta(hours=1))
    store.upsert_tickets([ticket(i) for i in range(1, 6)] + [ticket(9, key="ITSM-9_%!x")])
    store.record_planned([LinkChild(key="link:id2:id1", target="id2", parent="id1", rule="service-surge"),
                          AddNote(key="note:id1:declared", target="id1", text="declared", rule="service-surge")], NOW)
    store.record_results([ApplyResult("link:id2:id1", "applied")], NOW)
    store.save_major_incident(MIRecord(id="id1", rule="service-surge", group=["web-shop"], started_at=NOW,
                                       declared_at=NOW, children=["id2"]))
    store.set_counter("rota", {"next": 2})
    store.record_cycle(NOW, {"tickets_read": 6})
    store.save_baseline("ci-surge", {"span_h": 336.5, "shape": [1.0] * 168},
                        {'["db1"]': {"slots": {"10": 2.5e-9}}, '["db2"]': {"slots": {}}, '["gone"]': None})


def test_every_method_reads_back_what_was_written(state) -> None:
    with StateStore(state, "servicenow") as store:
        assert store.is_fresh() and store.schema_version() == SCHEMA_VERSION
        fill(store)
        assert store.watermark() == Watermark(NOW, "id1")
        assert store.discovery(NOW) == {"stage_field": True} and store.discovery(NOW + timedelta(hours=2)) is None
        assert [t.id for t in store.recent_tickets(NOW - timedelta(minutes=3))] == ["id3", "id2", "id1"]
        assert set(store.tickets_by_id(["id1", "id4", "nope"])) == {"id1", "id4"}
        assert store.find_ticket("INC00003").id == "id3" and store.find_ticket("id4").key == "INC00004"
        assert store.find_ticket("ITSM-9_%!x").id == "id9", "LIKE's special characters are escaped"
        assert store.find_ticket("INC0000%") is None and store.find_ticket("inc00003") is None
        ledger = store.ledger(["link:id2:id1", "note:id1:declared"])
        assert ledger["link:id2:id1"]["status"] == "applied" and ledger["link:id2:id1"]["attempts"] == 1
        assert [r["key"] for r in store.pending_rows()] == ["note:id1:declared"]
        assert [r["kind"] for r in store.ledger_rows("id1")] == ["note"]
        assert [r.id for r in store.major_incidents()] == ["id1"]
        assert store.counter("rota") == {"next": 2} and store.counter("missing", 7) == 7
        assert store.last_cycle_at() == NOW
        assert store.baseline_rules() == {"ci-surge": {"span_h": 336.5, "shape": [1.0] * 168}}
        assert sorted(store.baseline_groups("ci-surge")) == [('["db1"]', {"slots": {"10": 2.5e-9}}),
                                                            ('["db2"]', {"slots": {}})]
        store.save_baseline("ci-surge", {"span_h": 337.5}, {'["db1"]': None, '["db2"]': {"slots": {"11": 1.0}}})
        assert store.baseline_groups("ci-surge") == [('["db2"]', {"slots": {"11": 1.0}})]
        store.clear_baseline("ci-surge")
        assert store.baseline_rules() == {} and store.baseline_groups("ci-surge") == []
        assert store.prune_tickets(NOW - timedelta(minutes=4), keep=["id5"]) == 1  # id9 (9 minutes old)
        assert not store.is_fresh()
    with StateStore(state, "jira") as other:
        assert other.is_fresh() and other.watermark() is None, "platforms do not see each other's state"
        assert other.baseline_rules() == {} and other.baseline_groups("ci-surge") == []


def test_a_failed_write_is_retried_until_abandoned_on_both_stores(state) -> None:
    with StateStore(state, "servicenow") as store:
        store.record_planned([AddNote(key="note:a", target="a", text="x")], NOW)
        for _ in range(10):
            store.record_results([ApplyResult("note:a", "failed", detail="HTTP 503")], NOW)
        assert store.abandon_exhausted(NOW) == 1
        assert store.ledger(["note:a"])["note:a"]["status"] == "abandoned"
        with pytest.raises(ZeroDivisionError):
            with store.transaction():
                store.set_counter("x", 1)
                raise ZeroDivisionError
        assert store.counter("x") is None, "a failed transaction leaves nothing behind"


def test_the_cycle_log_keeps_the_last_thousand(state) -> None:
    with StateStore(state, "servicenow") as store:
        for i in range(1005):
            store.record_cycle(NOW + timedelta(seconds=i), {"n": i})
        rows = store.db.execute("SELECT COUNT(*), MIN(id) FROM cycles").fetchone()
        assert rows[0] == 1000 and store.last_cycle_at() == NOW + timedelta(seconds=1004)


def test_the_sql_is_translated_for_postgresql() -> None:
    assert to_postgres("SELECT a FROM t WHERE b = ? AND c LIKE '%x'") == "SELECT a FROM t WHERE b = %s AND c LIKE '%%x'"
    assert to_postgres("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, r REAL, b BLOB, s TEXT)") == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, r DOUBLE PRECISION, "
        'b BYTEA, s TEXT COLLATE "C")')
    assert to_postgres("SELECT INTEGER_VALUE FROM t") == "SELECT INTEGER_VALUE FROM t", "only DDL types change"


def test_a_new_migration_and_method_work_on_both_stores(state, monkeypatch: pytest.MonkeyPatch) -> None:
    """How another issue adds a table: one more numbered entry in MIGRATIONS, portable SQL, a small method."""
    with StateStore(state, "servicenow"):
        pass
    steps = [
        "CREATE TABLE baselines (platform TEXT NOT NULL, grp TEXT NOT NULL, hour INTEGER NOT NULL, "
        "rate REAL NOT NULL, seen INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (platform, grp, hour))",
        lambda db: db.execute("INSERT INTO baselines VALUES (?, ?, ?, ?, ?)", ("servicenow", "web-shop", 0, 0.1, 1)),
    ]
    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION + 1, steps)
    monkeypatch.setattr("connector.job.store.SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with StateStore(state, "servicenow") as store:
        assert store.schema_version() == SCHEMA_VERSION + 1
        store.db.execute("INSERT INTO baselines VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, grp, hour) DO UPDATE "
                         "SET rate = excluded.rate, seen = baselines.seen + 1", ("servicenow", "web-shop", 0, 2.5e-9, 0))
        store.db.execute("INSERT INTO baselines VALUES (?, ?, ?, ?, ?)", ("servicenow", "big", 1, 1.0, 2 ** 40))
        rows = store.db.execute("SELECT grp, rate, seen FROM baselines ORDER BY grp").fetchall()
    assert rows == [("big", 1.0, 2 ** 40), ("web-shop", 2.5e-9, 2)], "64-bit integers and double precision on both"


def test_the_schema_version_is_the_last_migration() -> None:
    assert SCHEMA_VERSION == max(MIGRATIONS) and sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def test_a_state_of_a_newer_mim_is_refused_with_the_fix(state) -> None:
    with StateStore(state, "servicenow") as store:
        store.db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError) as refused:
        StateStore(state, "servicenow")
    assert f"state schema {SCHEMA_VERSION + 1}" in refused.value.problem
    assert f"knows schema {SCHEMA_VERSION}" in refused.value.problem and "newer mim" in refused.value.fix


def test_runners_opening_a_new_state_at_once_create_it_once(state) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it(n: int) -> None:
        try:
            barrier.wait(10)
            with StateStore(state, "servicenow") as store:
                store.set_counter(f"opener-{n}", 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with StateStore(state, "servicenow") as store:
        assert store.db.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
        assert len(store.db.execute("SELECT name FROM counters").fetchall()) == 4


def test_the_lock_of_a_killed_holder_is_released_at_once(state) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom connector.job.store import StateStore\n"
        f"s = StateStore({str(state)!r}, 'servicenow'); s.acquire_lock(); print('held', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with StateStore(state, "servicenow") as store:
            with pytest.raises(LockHeld, match=f"pid {holder.pid}") as held:
                store.acquire_lock()
            assert "wait for the other run" in held.value.fix
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            deadline = time.monotonic() + 5
            while not store.try_lock():
                assert time.monotonic() < deadline, "the lock of a killed holder stays taken"
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()


def test_a_password_in_the_url_is_never_shown() -> None:
    assert redact("postgresql://mim:s3cret@db.example:5432/mim?sslmode=require") == (
        "postgresql://mim:***@db.example:5432/mim?sslmode=require")
    assert redact("postgresql://db/mim?user=x&password=s3cret") == "postgresql://db/mim?user=x&password=***"
    assert redact("/var/lib/mim/state.sqlite") == "/var/lib/mim/state.sqlite"
    assert url_password("postgresql://mim:s3cret@db/mim") == "s3cret" and url_password("/x.sqlite") is None
    assert url_password("postgresql://db/mim?password=p%40ss") == "p@ss"


def test_a_postgresql_error_never_shows_the_password(postgres) -> None:
    port = postgres.base_url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://nobody:hunter2-pw@127.0.0.1:{port}/no_such_database"
    with pytest.raises(StateError) as refused:
        StateStore(url, "servicenow")
    assert "hunter2-pw" not in str(refused.value) and "no_such_database" in str(refused.value)


def test_an_unreachable_postgresql_is_a_transient_state_error() -> None:
    with pytest.raises(StateError) as refused:
        StateStore("postgresql://mim@127.0.0.1:9/mim?connect_timeout=2", "servicenow")
    assert refused.value.transient and "cannot reach the state database" in refused.value.problem


# -- moving a state between stores ------------------------------------------------------------------------

def _dump(location: str) -> dict[str, list]:
    with StateStore(location, "servicenow") as store:
        out = {}
        for table in store.backend.tables():
            rows = store.db.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted(json.dumps(list(r), default=str) for r in rows)
        return out


def test_a_state_moves_from_sqlite_to_postgresql_and_back_unchanged(postgres, tmp_path: Path) -> None:
    source = str(tmp_path / "state.sqlite")
    with StateStore(source, "servicenow") as store:
        fill(store)
    with StateStore(source, "jira") as store:
        store.set_watermark(Watermark(NOW, "10001"))
    target = postgres.new_schema("copy")
    result = CliRunner().invoke(cli.main, ["state", "copy", source, target])
    assert result.exit_code == 0, result.output
    assert "ledger: 2 rows" in result.output and "copied 1" in result.output
    assert "baseline_groups: 2 rows" in result.output, "the learned baselines move with the state"
    assert _dump(target) == _dump(source)
    with StateStore(target, "servicenow") as store:
        store.record_cycle(NOW, {"after": "copy"})  # the id sequence continues past the copied ids
        assert store.find_ticket("INC00003").id == "id3"
    back = str(tmp_path / "back.sqlite")
    copy_state(target, back)
    assert _dump(back) == _dump(target)


def test_a_copy_refuses_a_target_that_holds_a_state_or_a_source_in_use(postgres, tmp_path: Path) -> None:
    source = str(tmp_path / "state.sqlite")
    with StateStore(source, "servicenow") as store:
        fill(store)
    target = postgres.new_schema("busy")
    copy_state(source, target)
    refused = CliRunner().invoke(cli.main, ["state", "copy", source, target])
    assert refused.exit_code == 3 and "already holds a state" in refused.output and "--replace" in refused.output
    assert copy_state(source, target, replace=True).rows["ledger"] == 2
    with StateStore(source, "servicenow") as running:
        running.acquire_lock()
        in_use = CliRunner().invoke(cli.main, ["state", "copy", source, str(tmp_path / "other.sqlite")])
    assert in_use.exit_code == 3 and "in use by a mim process" in in_use.output and "Traceback" not in in_use.output


def test_state_exists_on_both_stores(state) -> None:
    assert not state_exists(str(state))
    with StateStore(state, "servicenow"):
        pass
    assert state_exists(str(state))


def test_text_sorts_bytewise_as_in_sqlite_whatever_the_database_locale(postgres) -> None:
    name = f"icu_{os.getpid()}"
    try:
        postgres.execute(f"CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C' TEMPLATE template0")
    except Exception as exc:  # a server built without ICU
        pytest.skip(f"no ICU collation on this server: {exc}")
    try:
        url = postgres.base_url.rsplit("/", 1)[0] + f"/{name}"
        keys = ["note:a-b", "note:aa", "note:B", "note:a_c", "note:b", "note:a"]
        with StateStore(url, "servicenow") as store:
            store.record_planned([AddNote(key=k, target="t", text="x") for k in keys], NOW)
            assert [r["key"] for r in store.ledger_rows()] == sorted(keys), "bytewise, as SQLite orders them"
            locale_order = [r[0] for r in store.db.execute("SELECT k FROM (VALUES ('note:B'), ('note:a')) AS v (k) "
                                                           "ORDER BY k COLLATE \"default\"").fetchall()]
            assert locale_order == ["note:a", "note:B"], "the database's own collation would order them otherwise"
    finally:
        postgres.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_second_runner_is_refused_by_the_lock_before_it_waits_on_a_busy_database(tmp_path: Path) -> None:
    # it used to open and migrate the database first: behind the first runner's write it waited for SQLite's
    # 30 s and then said "stayed locked by another process" instead of naming the runner that holds the state
    import fcntl
    import sqlite3

    state = tmp_path / "state.sqlite"
    with StateStore(state, "servicenow"):
        pass
    holder = os.open(str(state) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer = sqlite3.connect(state, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the first runner in the middle of a write
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld, match="in use by another mim process"):
            StateStore(state, "servicenow", lock=True)
        assert time.monotonic() - started < 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        os.close(holder)
