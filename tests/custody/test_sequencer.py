"""The PostgreSQL sequencer: writers reserve and commit, one process integrates.

Real PostgreSQL databases (a fresh copy of the migrated template per test). Each test
checks what an auditor would: gap-free indexes, every acknowledged entry at its index,
the root from all leaves equal to the signed checkpoint, and why any gap was filled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from service.core import merkle
from service.core.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    cosign,
    open_checkpoint,
    sign_checkpoint,
)
from service.core.entry import decode_entry, encode_entry, entry_fields, rfc3339
from service.custody import CustodyLog, sequencer
from service.custody import log as log_module
from service.custody.rotation import rotate_key
from service.custody.sequencer import INDEX_UNUSED, RESERVATION_CLASS, RESERVE, Sequencer
from service.db import Database, open_database
from service.db.models import CustodyEntry, CustodySubject, LogHead, SignedCheckpoint
from service.errors import Unavailable
from service.runtime import open_runtime
from service.settings import Settings
from tests.databases import PostgresTemplate

ORIGIN = "locker.example/sequencer-test"


@pytest.fixture
def database(postgres_template: PostgresTemplate) -> Iterator[Database]:
    with postgres_template.fresh() as url:
        database = open_database(url)
        yield database
        database.dispose()


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def make_log(signer: NoteSigner) -> Iterator[Callable[[], CustodyLog]]:
    logs: list[CustodyLog] = []

    def factory() -> CustodyLog:
        logs.append(CustodyLog(signer=signer, origin=ORIGIN))
        return logs[-1]

    yield factory
    for log in logs:
        log.close()


def _append(log: CustodyLog, database: Database, n: int) -> int:
    with database.session() as session:
        entry = log.append(
            session,
            organisation_id="org-1",
            actor="user:alice",
            action="evidence.ingested",
            subjects=[f"evidence:{n}"],
        )
    return entry.index


def _audit(database: Database, verifier: NoteVerifier) -> list[CustodyEntry]:
    """Every entry in index order; asserts the tree and the newest checkpoint agree."""
    with database.session() as session:
        entries = list(session.exec(select(CustodyEntry).order_by(col(CustodyEntry.index))))
        size = session.exec(select(LogHead.size)).one()
        latest = session.exec(
            select(SignedCheckpoint).order_by(col(SignedCheckpoint.size).desc()).limit(1)
        ).one()
    assert [e.index for e in entries] == list(range(size))
    for entry in entries:
        assert decode_entry(entry.leaf)["index"] == entry.index
    assert latest.size == size
    leaves = [merkle.leaf_hash(e.leaf) for e in entries]
    checkpoint = open_checkpoint(latest.note, verifier)
    assert checkpoint.root_hash == merkle.root_from_leaf_hashes(leaves)
    return entries


def test_concurrent_writers_get_gap_free_indexes_in_batches(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    log = make_log()
    acknowledged: list[int] = []
    guard = threading.Lock()

    def writer(worker: int) -> None:
        for n in range(25):
            index = _append(log, database, worker * 100 + n)
            with guard:
                acknowledged.append(index)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(acknowledged) == list(range(200))
    _audit(database, signer.verifier())
    with database.session() as session:
        checkpoints = session.exec(select(SignedCheckpoint.size)).all()
    # One checkpoint per batch, and concurrent writers share batches.
    assert len(checkpoints) < 200


def _tree_reads(database: Database) -> list[str]:
    """The statements that read stored tree nodes, on connections made from now on
    (a connection made before the listener never tells it)."""
    reads: list[str] = []

    @event.listens_for(database.engine, "before_cursor_execute")
    def record(*args: object) -> None:
        if "FROM tree_node" in str(args[2]):
            reads.append(str(args[2]))

    return reads


def test_each_batch_starts_from_the_frontier_the_last_one_left(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    reads = _tree_reads(database)
    log = make_log()
    for n in range(10):
        _append(log, database, n)
    assert len(reads) == 0  # this process led every batch: nothing read back
    _audit(database, signer.verifier())


@pytest.mark.parametrize("how", ["wrong hash", "wrong size"])
def test_a_frontier_that_is_not_the_stored_trees_is_read_again(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner, how: str
) -> None:
    reads = _tree_reads(database)
    log = make_log()
    for n in range(5):
        _append(log, database, n)
    leader = log.sequencer(database.engine)
    kept = leader._frontier
    assert kept.size == 5 and len(reads) == 0
    # What another leader's batches, or a database restored under a running process,
    # would leave: a kept frontier that is not the tree stored now.
    if how == "wrong hash":
        wrong = sequencer.Frontier(size=kept.size, nodes=dict.fromkeys(kept.nodes, bytes(32)))
    else:
        wrong = sequencer.Frontier(size=kept.size - 1, nodes={})
    with leader._batch_lock:  # between two of its looks
        leader._frontier = wrong
    assert _append(log, database, 5) == 5
    assert len(reads) == 1
    _audit(database, signer.verifier())  # the tree is the one its leaves make


def test_a_batch_runs_at_read_committed_whatever_the_database_default(
    database: Database, signer: NoteSigner
) -> None:
    """The batch re-reads entries committed after its first read: under a database whose
    default is REPEATABLE READ one snapshot would hide them."""
    with database.engine.connect() as admin:
        name = admin.execute(text("SELECT current_database()")).scalar_one()
        admin.execute(
            text(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'")
        )
        admin.commit()
    # A new engine: sqlalchemy learns a database's default isolation at its first connect.
    strict = open_database(database.engine.url.render_as_string(hide_password=False))
    levels: dict[str, set[object]] = {}

    @event.listens_for(strict.engine, "before_cursor_execute")
    def record(connection: Connection, cursor: object, statement: str, *args: object) -> None:
        kind = next((k for k, mark in _SEQUENCER_STATEMENTS.items() if mark in statement), None)
        if kind is not None:
            driver = connection.connection.driver_connection
            levels.setdefault(kind, set()).add(driver.isolation_level)  # type: ignore[union-attr]

    log = CustodyLog(signer=signer, origin=ORIGIN)
    try:
        with strict.engine.connect() as plain:
            shown = plain.execute(text("SHOW transaction_isolation")).scalar_one()
        assert shown == "repeatable read"  # what any other transaction here runs at
        for n in range(3):
            _append(log, strict, n)
    finally:
        log.close()
        strict.dispose()
    committed = psycopg.IsolationLevel.READ_COMMITTED
    assert levels == {"look": {committed}, "read": {committed}, "write": {committed}}
    _audit(database, signer.verifier())


def test_looks_leave_nothing_behind_on_the_leaders_connection(
    database: Database, make_log: Callable[[], CustodyLog]
) -> None:
    """The leader keeps one connection for as long as it leads and looks every few
    milliseconds: a look that left a record on it (as switching its isolation level
    did, one sqlalchemy reset callback each) would grow without end."""
    log = make_log()
    _append(log, database, 0)
    leader = log.sequencer(database.engine)
    connection = leader._connection
    assert connection is not None
    record = connection.connection._connection_record  # type: ignore[union-attr]
    before = len(record.finalize_callback)
    for _ in range(200):
        assert leader.integrate() is None  # nothing to integrate: a look, nothing else
    assert leader._connection is connection
    assert len(record.finalize_callback) == before


def test_a_leader_behind_the_tree_learns_its_size_at_the_next_look(
    database: Database, make_log: Callable[[], CustodyLog]
) -> None:
    """As when a notification was dropped while the process took the lead: its writers
    learn the size from the leader's next look, not only from its own batches."""
    log = make_log()
    for n in range(3):
        _append(log, database, n)
    leader = log.sequencer(database.engine)
    with leader._integrated:
        leader._size = 0
    leader.wait(2, timeout=5)


_SEQUENCER_STATEMENTS = {
    "look": "SELECT head.size, (SELECT CASE",
    "read": "FOR UPDATE",
    "write": "INSERT INTO tree_node",
}


def test_an_abandoned_reservation_is_filled_and_says_why(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    log = make_log()
    assert _append(log, database, 0) == 0
    # A writer reserves index 1 and its transaction rolls back (a failed request).
    with database.engine.connect() as connection:
        reserved = connection.execute(RESERVE, {"class": RESERVATION_CLASS}).scalar_one()
        connection.rollback()
    assert reserved == 1

    assert _append(log, database, 2) == 2  # waits for the gap to be filled, then lands

    entries = _audit(database, signer.verifier())
    filled = decode_entry(entries[1].leaf)
    assert filled["action"] == INDEX_UNUSED
    assert filled["actor"] == "sequencer"
    assert "did not commit" in str(filled["reason"])


def test_a_reservation_still_in_its_transaction_is_never_filled(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    log = make_log()
    later: list[int] = []
    with database.session() as slow:
        entry = log.append(
            slow,
            organisation_id="org-1",
            actor="user:slow",
            action="evidence.ingested",
            subjects=["evidence:slow"],
        )
        writer = threading.Thread(target=lambda: later.append(_append(log, database, 1)))
        writer.start()
        # Longer than the sequencer waits before it looks at a missing reservation.
        time.sleep(sequencer._ABANDONED_AFTER_SECONDS + 1.0)
        assert later == []  # behind the open transaction: not acknowledged yet
    writer.join(timeout=30)

    assert (entry.index, later) == (0, [1])
    entries = _audit(database, signer.verifier())
    assert [decode_entry(e.leaf)["actor"] for e in entries] == ["user:slow", "user:alice"]


def test_another_process_takes_over_when_the_leader_dies(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    first, second = make_log(), make_log()
    other = open_database(str(database.engine.url.render_as_string(hide_password=False)))
    try:
        assert _append(first, database, 0) == 0
        leader = first.sequencer(database.engine)
        standby = second.sequencer(other.engine)
        assert leader.leading
        assert _append(second, other, 1) == 1  # integrated by the leader, seen by the standby
        assert not standby.leading
        assert standby.integrate() is None  # only the leader integrates

        # The leader's connection dies (its process was killed): the lock goes with it.
        _kill_sequencer_connection(other)
        started = time.monotonic()
        assert _append(second, other, 2) == 2
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while not (leader.leading or standby.leading) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leader.leading or standby.leading
        assert _append(first, database, 3) == 3
        _audit(database, signer.verifier())
    finally:
        second.close()
        other.dispose()


def test_a_request_whose_entry_cannot_be_integrated_gets_503_and_keeps_its_index(
    database: Database,
    make_log: Callable[[], CustodyLog],
    signer: NoteSigner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = make_log()
    monkeypatch.setattr(log_module, "_INTEGRATION_WAIT_SECONDS", 0.5)
    # Something else holds the sequencer's lock and never integrates.
    with database.engine.connect() as squatter:
        squatter.execute(text("SELECT pg_advisory_lock(:key)"), {"key": sequencer._SEQUENCER})
        squatter.commit()
        with pytest.raises(Unavailable) as refused:
            _append(log, database, 0)
        assert refused.value.retry_after > 0
        assert "entry 0 is recorded" in str(refused.value)
        squatter.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": sequencer._SEQUENCER})
        squatter.commit()
    monkeypatch.undo()
    assert _append(log, database, 1) == 1
    entries = _audit(database, signer.verifier())
    assert decode_entry(entries[0].leaf)["subject"] == "evidence:0"  # the 503's entry, kept


def test_a_sequencer_that_loses_the_database_lets_go_and_recovers(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    log = make_log()
    assert _append(log, database, 0) == 0
    assert log.sequencer(database.engine).leading
    _kill_sequencer_connection(database)
    assert _append(log, database, 1) == 1  # after the failed batch, a new lead
    _audit(database, signer.verifier())


@pytest.mark.parametrize("backend", ["alive", "died under the failure"])
def test_a_failing_signer_is_retried_without_losing_entries(
    database: Database, signer: NoteSigner, backend: str
) -> None:
    """If the backend died as the batch failed for another reason, the rollback fails
    too: the process must give up the lead with that connection rather than go on
    leading on a new backend that holds no lock."""
    failures = [RuntimeError("signing device unplugged")]

    def sign(checkpoint: Checkpoint) -> str:
        if failures:
            if backend != "alive":
                _kill_sequencer_connection(database)
            raise failures.pop()
        return sign_checkpoint(checkpoint, signer)

    runner = Sequencer(database.engine, sign=sign, origin=ORIGIN)
    try:
        index = _commit_entry(database)
        runner.wait(index, timeout=10)
        assert failures == []
        connection = runner._connection
        assert connection is not None
        pid = connection.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        assert _sequencer_lock_holders(database) == [pid]
    finally:
        runner.close()
    with pytest.raises(Unavailable):
        runner.wait(index + 1, timeout=1)  # closed: nothing will integrate it
    _audit(database, signer.verifier())


def test_signing_with_waits_for_the_leader_and_signs_the_batch(
    database: Database,
    make_log: Callable[[], CustodyLog],
    signer: NoteSigner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log_module, "_LEAD_WAIT_SECONDS", 0.5)
    busy, rotating = make_log(), make_log()
    other = open_database(str(database.engine.url.render_as_string(hide_password=False)))
    second_key = NoteSigner.generate(ORIGIN)

    def both(checkpoint: Checkpoint) -> str:
        return cosign(sign_checkpoint(checkpoint, second_key), signer)

    try:
        assert _append(busy, database, 0) == 0  # `busy` leads
        with (
            pytest.raises(Unavailable, match="another process is sequencing"),
            rotating.signing_with(other, both),
        ):
            pass  # pragma: no cover - the lead is refused before the block runs
        busy.close()
        with rotating.signing_with(other, both), other.session() as session:
            rotating.append(
                session,
                organisation_id="deployment",
                actor="operator",
                action="log.key_rotated",
                subjects=["log:signing-key"],
            )
            rotating.sign_head(session, both)  # PostgreSQL: the sequencer signs instead
        with database.session() as session:
            latest = session.exec(select(SignedCheckpoint).where(SignedCheckpoint.size == 2)).one()
        assert open_checkpoint(latest.note, second_key.verifier()).size == 2
        assert open_checkpoint(latest.note, signer.verifier()).size == 2
    finally:
        rotating.close()
        other.dispose()


def _kill_sequencer_connection(database: Database) -> None:
    """End the backend holding the sequencer's advisory lock, as a dead process would."""
    [holder] = _sequencer_lock_holders(database)
    with database.engine.connect() as admin:
        killed = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        assert killed.scalar_one() is True
        admin.commit()


def _sequencer_lock_holders(database: Database) -> list[int]:
    key = sequencer._SEQUENCER
    with database.engine.connect() as admin:
        return list(
            admin.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND classid = :high AND objid = :low AND objsubid = 1 AND granted"
                ),
                {"high": key >> 32, "low": key & 0xFFFFFFFF},
            ).scalars()
        )


def _commit_entry(database: Database) -> int:
    """Reserve an index and commit its entry, as a writer does, without waiting for it."""
    with database.session() as session:
        index = int(session.execute(RESERVE, {"class": RESERVATION_CLASS}).scalar_one())
        session.add(
            CustodyEntry(
                index=index,
                leaf=_leaf(index),
                organisation_id="org-1",
                action="evidence.ingested",
                recorded_at=_now(),
            )
        )
    return index


def _leaf(index: int) -> bytes:
    return encode_entry(
        entry_fields(
            index=index,
            time=rfc3339(_now()),
            organisation="org-1",
            actor="user:alice",
            action="evidence.ingested",
            subjects=["evidence:direct"],
        )
    )


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_rotation_waits_for_an_earlier_writer_and_signs_over_both(
    database: Database, tmp_path: Path
) -> None:
    runtime = open_runtime(
        Settings(data_dir=tmp_path, database_url=database.engine.url.render_as_string(False))
    )
    reserved = threading.Event()

    def slow_writer() -> None:
        with runtime.database.session() as slow:
            runtime.log.append(
                slow,
                organisation_id="org-1",
                actor="user:slow",
                action="evidence.ingested",
                subjects=["evidence:slow"],
            )
            reserved.set()
            time.sleep(0.5)  # an earlier index, still in its transaction

    try:
        assert _append(runtime.log, runtime.database, 0) == 0
        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert reserved.wait(10)
        rotation = rotate_key(runtime, overlap=timedelta(days=1))
        writer.join(timeout=30)
        assert rotation.index == 2
        with runtime.database.session() as session:
            latest = session.exec(
                select(SignedCheckpoint).order_by(col(SignedCheckpoint.size).desc()).limit(1)
            ).one()
        # Integrated by the rotation itself, after the earlier entry: signed by both keys.
        assert latest.size == 3
        for key in (rotation.old_key, rotation.new_key):
            assert open_checkpoint(latest.note, NoteVerifier.from_text(key)).size == 3
    finally:
        runtime.close()


def test_a_failed_try_for_the_lead_discards_its_connection_and_tries_again(
    database: Database, signer: NoteSigner
) -> None:
    failures = [OperationalError("SELECT pg_try_advisory_lock", {}, Exception("link down"))]

    def cut(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "pg_try_advisory_lock" in statement and failures:
            raise failures.pop()

    event.listen(database.engine, "before_cursor_execute", cut)
    runner = Sequencer(database.engine, sign=lambda c: sign_checkpoint(c, signer), origin=ORIGIN)
    try:
        deadline = time.monotonic() + 10
        while not runner.leading and time.monotonic() < deadline:
            time.sleep(0.05)
        assert failures == [] and runner.leading
    finally:
        runner.close()
        event.remove(database.engine, "before_cursor_execute", cut)


def test_a_standby_whose_listening_connection_is_cut_listens_anew(
    database: Database, make_log: Callable[[], CustodyLog], signer: NoteSigner
) -> None:
    leading, standing_by = make_log(), make_log()
    other = open_database(str(database.engine.url.render_as_string(hide_password=False)))
    try:
        assert _append(leading, database, 0) == 0
        assert _append(standing_by, other, 1) == 1  # learnt from the batch's notification
        standby = standing_by.sequencer(other.engine)
        assert not standby.leading
        time.sleep(3 * sequencer._TAKEOVER_SECONDS)  # rounds of standing by on one listener
        first = _listening_backends(database)
        assert len(first) == 1

        # The listener's connection dies (a restart, a firewall): the standby listens
        # again on a new one, and its writers still learn when their batch is in.
        _terminate(database, first)
        deadline = time.monotonic() + 5
        while _listening_backends(database) in ([], first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening_backends(database) not in ([], first)
        started = time.monotonic()
        assert _append(standing_by, other, 2) == 2
        # Not left waiting: well inside the 30 s after which a writer gives up.
        assert time.monotonic() - started < 10
        _audit(database, signer.verifier())
    finally:
        standing_by.close()
        other.dispose()
    # Closing let go of the listener too (its backend exits a moment after the client
    # hangs up: on busy CPUs that moment is seen).
    deadline = time.monotonic() + 5
    while _listening_backends(database) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _listening_backends(database) == []


def _listening_backends(database: Database) -> list[int]:
    with database.engine.connect() as admin:
        return list(
            admin.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query = :listen"
                ),
                {"listen": f"LISTEN {sequencer._CHANNEL}"},
            ).scalars()
        )


def _terminate(database: Database, backends: list[int]) -> None:
    with database.engine.connect() as admin:
        for pid in backends:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


@pytest.mark.parametrize(
    "details",
    [
        {"reason": "plain"},
        {"part": {"index": 0}},  # the index key again, nested: encoded after reserving
        {"quoted": '"index":0', "number": 0.5},
    ],
)
def test_the_stored_leaf_is_the_canonical_entry_of_its_index(
    database: Database,
    make_log: Callable[[], CustodyLog],
    signer: NoteSigner,
    details: dict[str, object],
) -> None:
    log = make_log()
    appended = []
    for n in range(12):  # indexes of one and of two digits
        with database.session() as session:
            appended.append(
                log.append(
                    session,
                    organisation_id="org-1",
                    actor="user:alice",
                    action="evidence.ingested",
                    subjects=[f"evidence:{n}", "incident:1"],
                    details=details,
                )
            )
    entries = _audit(database, signer.verifier())
    assert [e.index for e in entries] == [a.index for a in appended] == list(range(12))
    for entry, made in zip(entries, appended, strict=True):
        assert entry.leaf == made.leaf
        fields = decode_entry(entry.leaf)
        assert entry.leaf == encode_entry({k: v for k, v in fields.items() if k != "format"})
        assert {k: fields[k] for k in details} == details
    with database.session() as session:
        subjects = session.exec(
            select(CustodySubject.subject).where(CustodySubject.entry_index == 11)
        ).all()
    assert sorted(subjects) == ["evidence:11", "incident:1"]
