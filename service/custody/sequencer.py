"""Integrating the log on PostgreSQL: writers reserve an index, one sequencer builds the tree.

A writer's transaction takes the next index from the `custody_index_seq` sequence and,
in the same statement, a transaction-level advisory lock named after that index; it
writes its entry (leaf, subjects) with everything else it writes and commits. No lock
outlives the statement but the writer's own, so writers never queue behind each other.

One process at a time, whoever holds the session-level advisory lock `_SEQUENCER`,
integrates: in one transaction per batch it reads the committed entries that follow the
tree, in index order and without gaps, computes the new tree nodes in memory, stores
them, moves `log_head` and signs one checkpoint. A batch commits whole or not at all.
Every process runs a `Sequencer`; the others stand by, retry the lock every
`_TAKEOVER_SECONDS` (a holder that dies loses its connection and with it the lock),
and meanwhile tell the writers of their own process how far the tree has grown: each
batch's transaction notifies `_CHANNEL` with the new size (PostgreSQL delivers it on
commit), so a standby listens instead of polling `log_head`.

A reservation whose transaction rolled back or died leaves its index missing. Once it
has been missing for `_ABANDONED_AFTER_SECONDS`, the sequencer tries the reservation's
own advisory lock: if it gets it, no transaction holds that index any more, and a signed
`log.index_unused` entry fills it, so indexes stay gap-free and every gap says why.
A writer that somehow still held the index then fails on the primary key and its whole
transaction rolls back; it was never acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from service.core import merkle
from service.core.checkpoint import Checkpoint
from service.core.entry import encode_entry, entry_fields, rfc3339
from service.errors import NotYetInLog, Unavailable

_log = structlog.get_logger("locker.custody")

_SEQUENCER = 0x6C6F6773657172  # the advisory lock of the one sequencer ("logseqr")
RESERVATION_CLASS = 0x6C6F6772  # two-key advisory locks of reserved indexes ("logr")
_BATCH = 2000  # entries per batch: one transaction, one checkpoint
_TAKEOVER_SECONDS = 0.5
_WATCH_SECONDS = 0.003  # how often the leader looks for entries other processes committed
_CHANNEL = "custody_log"  # LISTEN/NOTIFY channel: the tree size after each batch
_LISTEN_SECONDS = 0.1  # the longest a standby waits for a notification before looking around
_IDLE_SECONDS = 0.05  # the longest the sequencer sleeps when nothing is reserved
_BUSY_SECONDS = 1.0  # after a batch, how long the log counts as busy
# A reservation takes its index and its lock in one statement; a missing index whose lock
# is free this long after it was first seen missing belongs to no live transaction.
_ABANDONED_AFTER_SECONDS = 0.25
_RETRY_AFTER_SECONDS = 5

# Deployment-wide entries belong to no organisation's members (ids are UUIDs).
DEPLOYMENT = "deployment"
INDEX_UNUSED = "log.index_unused"

# The statement every batched append runs: reserve the index and hold it until commit.
RESERVE = text(
    "SELECT reserved, pg_advisory_xact_lock(:class, (reserved % 2147483648)::int) "
    "FROM (SELECT nextval('custody_index_seq') AS reserved) AS next"
)

SignNote = Callable[[Checkpoint], str]


@dataclass(frozen=True, slots=True)
class Frontier:
    """The hashes of the perfect subtrees of the tree of `size` leaves: all that
    appending to it needs."""

    size: int
    nodes: dict[merkle.NodeId, bytes]

    def root(self) -> bytes | None:
        return merkle.range_hash(0, self.size, self.nodes) if self.size else None


@dataclass(frozen=True, slots=True)
class Batch:
    """What one integration did: the tree size before and after, and the new root."""

    start: int
    end: int
    root: bytes


class Sequencer:
    """This process's part in integrating one PostgreSQL log."""

    def __init__(self, engine: Engine, *, sign: SignNote, origin: str) -> None:
        self._engine = engine
        self._sign = sign
        self._origin = origin
        self._integrated = threading.Condition()
        self._size = -1  # the tree size last seen; -1 before the first look
        self._waiting = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._batch_lock = threading.RLock()  # one batch at a time in this process
        self._exclusive: tuple[int, SignNote] | None = None  # (thread, its signer)
        self._connection: Connection | None = None  # holds _SEQUENCER while we lead
        self._listener: Connection | None = None  # LISTENs on _CHANNEL while we stand by
        self._missing_since: dict[int, float] = {}  # reserved indexes seen missing, when
        # The tree's frontier (its perfect subtrees) after this process's last batch: the
        # next batch starts from it instead of reading it back, if the tree is still there.
        self._frontier = Frontier(size=0, nodes={})
        self._busy_until = 0.0  # time.monotonic() until which the log counts as busy
        self._thread = threading.Thread(target=self._run, name="custody-sequencer", daemon=True)
        self._thread.start()

    @property
    def leading(self) -> bool:
        return self._connection is not None

    def wait(self, index: int, *, timeout: float) -> None:
        """Return once entry `index` is in the tree; Unavailable after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        exclusive = self._exclusive
        if exclusive is not None and exclusive[0] == threading.get_ident():
            while self._size <= index and time.monotonic() < deadline:
                if self.integrate(exclusive[1]) is None:
                    time.sleep(_WATCH_SECONDS)  # an earlier index is still in its transaction
        self._wake.set()
        with self._integrated:
            self._waiting += 1
            try:
                while self._size <= index:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        raise NotYetInLog(
                            f"custody entry {index} is recorded but not yet in the log's tree; "
                            "it will be, with that index: ask again later",
                            retry_after=_RETRY_AFTER_SECONDS,
                        )
                    self._integrated.wait(min(left, 0.1))
            finally:
                self._waiting -= 1

    def lead(self, *, timeout: float) -> None:
        """Become the sequencer, waiting up to `timeout` seconds for another to let go."""
        deadline = time.monotonic() + timeout
        while not self._try_lead():
            if time.monotonic() >= deadline:
                raise Unavailable(
                    "another process is sequencing the custody log; stop the locker's "
                    "servers and workers first",
                    retry_after=_RETRY_AFTER_SECONDS,
                )
            time.sleep(0.05)

    @contextmanager
    def exclusive(self, sign: SignNote, *, timeout: float) -> Iterator[None]:
        """Lead, and let only this thread integrate, signing with `sign`, in the block."""
        with self._batch_lock:
            self.lead(timeout=timeout)
            self._exclusive = (threading.get_ident(), sign)
            try:
                yield
            finally:
                self._exclusive = None

    def integrate(self, sign: SignNote | None = None) -> Batch | None:
        """Integrate one batch now (as the leader); None if nothing was waiting."""
        with self._batch_lock:
            connection = self._connection
            if connection is None:
                return None
            try:
                batch, self._frontier, size = _integrate(
                    connection,
                    sign or self._sign,
                    self._origin,
                    self._overdue,
                    self._void,
                    self._frontier,
                )
            except DBAPIError as exc:
                # Nothing of the batch committed; the lead is given up with the connection.
                self._let_go(f"integration failed: {exc.orig}")
                raise
            except BaseException:
                self._roll_back(connection)
                raise
            if batch is not None:
                self._missing_since = {
                    i: t for i, t in self._missing_since.items() if i >= batch.end
                }
        # Every look tells the tree's size, not only a batch: a notification lost while
        # this process took the lead must not leave its writers waiting.
        self._publish(size)
        return batch

    def _roll_back(self, connection: Connection) -> None:
        """End a failed batch; a connection that cannot even do that (its backend died
        under the failure) takes the lead with it: its session lock is gone."""
        try:
            connection.rollback()  # nothing half-written stays in the next batch
        except BaseException:
            self._let_go("the batch's connection failed")
            raise

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        with self._batch_lock:
            self._let_go(None)
        self._stop_listening()
        with self._integrated:
            self._integrated.notify_all()

    # --- the background loop

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except DBAPIError as exc:
                _log.warning("custody sequencer paused", error=str(exc.orig))
                self._stop.wait(_TAKEOVER_SECONDS)
            except psycopg.Error as exc:  # on the listening connection, used directly
                _log.warning("custody sequencer paused", error=str(exc))
                self._stop.wait(_TAKEOVER_SECONDS)
            except Exception:  # a bug must not end integration for good
                _log.exception("custody sequencer failed; retrying")
                self._stop.wait(_TAKEOVER_SECONDS)

    def _step(self) -> None:
        if self.leading or self._try_lead():
            self._stop_listening()
            self._wake.clear()  # before looking: a writer's later wake-up is not lost
            if self.integrate() is not None:
                self._busy_until = time.monotonic() + _BUSY_SECONDS
                return
            # Writers of other processes cannot wake us: while the log is busy, look often.
            busy = self._waiting or time.monotonic() < self._busy_until
            self._wake.wait(_WATCH_SECONDS if busy else _IDLE_SECONDS)
            return
        # Standing by: follow the leader's progress for this process's writers.
        try:
            self._follow(deadline=time.monotonic() + _TAKEOVER_SECONDS)
        except BaseException:
            self._stop_listening()  # it may have missed notifications: listen anew
            raise

    def _follow(self, *, deadline: float) -> None:
        """Until `deadline`, publish the tree size each batch's notification carries."""
        if self._listener is None:
            listener = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._listener = listener  # from here on, a failure drops it (`_stop_listening`)
            listener.exec_driver_sql(f"LISTEN {_CHANNEL}")
        driver = self._listener.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        # Once a round besides the notifications (two cheap reads a second): what batches
        # committed before this LISTEN did is never missed.
        self._publish(_tree_size(self._engine))
        while time.monotonic() < deadline and not self._stop.is_set():
            wait = min(_LISTEN_SECONDS, max(deadline - time.monotonic(), 0))
            notes = driver.notifies(timeout=wait, stop_after=1)
            sizes = [int(note.payload) for note in notes if note.channel == _CHANNEL]
            if sizes:
                self._publish(max(sizes))

    def _stop_listening(self) -> None:
        connection, self._listener = self._listener, None
        if connection is not None:
            # Never pooled: a pooled connection would go on listening for its next user.
            connection.invalidate()
            connection.close()

    def _try_lead(self) -> bool:
        with self._batch_lock:
            if self._connection is not None:
                return True
            connection = self._engine.connect()
            try:
                # The batch re-reads what a writer committed after its first read: that
                # needs READ COMMITTED, whatever the database's default isolation is. Set
                # before the lock is taken, so nothing can fail between the two.
                connection.execution_options(isolation_level=_BATCH_ISOLATION)
                got = bool(
                    connection.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": _SEQUENCER}
                    ).scalar_one()
                )
                connection.commit()
            except BaseException:
                # The lock may be held by this connection: discard it, never pool it.
                connection.invalidate()
                connection.close()
                raise
            if not got:
                connection.close()
                return False
            self._connection = connection
        _log.info("custody sequencer leading")
        return True

    def _let_go(self, reason: str | None) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if reason is not None:
            _log.warning("custody sequencer let go", reason=reason)
        # Discarding the connection ends its backend, and the session lock with it (a
        # connection merely returned to the pool would keep holding the lock).
        connection.invalidate()
        connection.close()

    def _publish(self, size: int) -> None:
        with self._integrated:
            if size > self._size:
                self._size = size
                self._integrated.notify_all()

    def _overdue(self, index: int) -> bool:
        """Whether reserved index `index` has been missing long enough to test its lock."""
        now = time.monotonic()
        return now - self._missing_since.setdefault(index, now) >= _ABANDONED_AFTER_SECONDS

    def _void(self, connection: Connection, index: int) -> bool:
        """Whether reserved index `index` was abandoned (and may be filled) by now."""
        if not self._overdue(index):
            return False
        free = connection.execute(
            text("SELECT pg_try_advisory_xact_lock(:class, (:index % 2147483648)::int)"),
            {"class": RESERVATION_CLASS, "index": index},
        ).scalar_one()
        if free:
            del self._missing_since[index]
        return bool(free)


def _tree_size(engine: Engine) -> int:
    with engine.connect() as connection:
        return _size(connection)


def _size(connection: Connection) -> int:
    return int(connection.execute(text("SELECT size FROM log_head WHERE id = 1")).scalar_one())


def _integrate(
    connection: Connection,
    sign: SignNote,
    origin: str,
    overdue: Callable[[int], bool],
    abandoned: Callable[[Connection, int], bool],
    frontier: Frontier,
) -> tuple[Batch | None, Frontier, int]:
    """One batch in one transaction: the committed entries after the tree, in order;
    the tree's frontier after it, and its size."""
    # A look that locks nothing first: on a busy log most looks find the next index still
    # in its writer's transaction, and row-locking `log_head` to learn that costs the
    # database a transaction id and a WAL record each time.
    size, highest, ready = connection.execute(_LOOK).one()
    if highest < size or not (ready or overdue(size)):
        connection.rollback()
        return None, frontier, size  # nothing to integrate yet: no lock taken, nothing written
    # One statement: the tree's size (locked), the highest reservation, the root signed
    # at that size, then the committed entries after the tree (one that commits
    # meanwhile is read as missing and looked up again below, or left for the next batch).
    rows = connection.execute(_READ_BATCH, {"limit": _BATCH}).all()
    start, highest, signed_root = int(rows[0][0]), int(rows[0][1]), rows[0][2]
    committed = {int(index): bytes(leaf) for _, _, _, index, leaf in rows if index is not None}
    leaves: list[bytes] = []
    while len(leaves) < _BATCH and start + len(leaves) <= highest:
        index = start + len(leaves)
        leaf = committed.get(index)
        if leaf is None:
            if not abandoned(connection, index):
                break  # still in its writer's transaction: the batch ends before it
            # Its writer may have committed between the read above and the lock.
            leaf = _stored_leaf(connection, index) or _fill(connection, index)
        leaves.append(leaf)
    if not leaves:
        connection.rollback()
        return None, frontier, start
    # The frontier this process kept counts only if it is the stored tree's: same size,
    # same root as the checkpoint signed at that size. Otherwise (another process led
    # meanwhile, or the database is not the one it was) it is read from the database.
    if frontier.size != start or signed_root is None or frontier.root() != bytes(signed_root):
        stored = fetch_nodes(connection, merkle.perfect_subtrees(0, start)) if start else {}
        frontier = Frontier(size=start, nodes=stored)
    nodes = dict(frontier.nodes)
    created: dict[merkle.NodeId, bytes] = {}
    for offset, leaf in enumerate(leaves):
        index = start + offset
        hashes = merkle.hashes_for_append(index, merkle.leaf_hash(leaf), nodes)
        nodes.update(hashes)
        created.update(hashes)
    end = start + len(leaves)
    root = merkle.range_hash(0, end, nodes)
    note = sign(Checkpoint(origin=origin, size=end, root_hash=root))
    connection.execute(
        _WRITE_BATCH,
        {
            "levels": [n.level for n in created],
            "indexes": [n.index for n in created],
            "hashes": list(created.values()),
            "end": end,
            "root": root,
            "note": note,
            "at": datetime.now(UTC),
            "channel": _CHANNEL,
        },
    )
    connection.commit()
    after = Frontier(size=end, nodes={n: nodes[n] for n in merkle.perfect_subtrees(0, end)})
    return Batch(start=start, end=end, root=root), after, end


# A batch reads in one statement and writes in one: few round trips per batch.
_READ_BATCH = text(
    "WITH head AS (SELECT size FROM log_head WHERE id = 1 FOR UPDATE), "
    "reserved AS (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS highest "
    "FROM custody_index_seq) "
    "SELECT head.size, reserved.highest, "
    "(SELECT root_hash FROM checkpoint WHERE checkpoint.size = head.size), "
    'entry."index", entry.leaf '
    "FROM head CROSS JOIN reserved LEFT JOIN LATERAL ("
    'SELECT "index", leaf FROM custody_entry WHERE "index" >= head.size '
    'ORDER BY "index" LIMIT :limit) AS entry ON true ORDER BY entry."index"'
)
# The new nodes, the head, the checkpoint; the notification is delivered on commit, and
# only then: standbys learn the size the batch made durable.
_WRITE_BATCH = text(
    "WITH nodes AS ("
    'INSERT INTO tree_node (level, "index", hash) SELECT * FROM unnest('
    "CAST(:levels AS integer[]), CAST(:indexes AS bigint[]), CAST(:hashes AS bytea[]))), "
    "head AS (UPDATE log_head SET size = :end WHERE id = 1), "
    "signed AS (INSERT INTO checkpoint (size, root_hash, note, signed_at) "
    "VALUES (:end, :root, :note, :at) ON CONFLICT (size) DO NOTHING) "
    "SELECT pg_notify(:channel, CAST(:end AS text))"
)
# The batch's transaction (see `_try_lead`).
_BATCH_ISOLATION = "READ COMMITTED"
# The leader's cheap look, one statement: the tree's size, the highest reserved index,
# and whether the entry that would come next is committed.
_LOOK = text(
    "SELECT head.size, (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END "
    "FROM custody_index_seq), "
    'EXISTS (SELECT 1 FROM custody_entry WHERE "index" = head.size) '
    "FROM log_head AS head WHERE head.id = 1"
)


def _stored_leaf(connection: Connection, index: int) -> bytes | None:
    leaf = connection.execute(
        text('SELECT leaf FROM custody_entry WHERE "index" = :index'), {"index": index}
    ).scalar_one_or_none()
    return bytes(leaf) if leaf is not None else None


def _fill(connection: Connection, index: int) -> bytes:
    """Store the entry that says why `index` holds nothing else; its leaf."""
    now = datetime.now(UTC)
    subject = "log:sequence"
    leaf = encode_entry(
        entry_fields(
            index=index,
            time=rfc3339(now),
            organisation=DEPLOYMENT,
            actor="sequencer",
            action=INDEX_UNUSED,
            subjects=[subject],
            details={"reason": "the transaction that reserved this index did not commit"},
        )
    )
    connection.execute(
        text(
            'INSERT INTO custody_entry ("index", leaf, organisation_id, action, recorded_at) '
            "VALUES (:index, :leaf, :organisation, :action, :at)"
        ),
        {
            "index": index,
            "leaf": leaf,
            "organisation": DEPLOYMENT,
            "action": INDEX_UNUSED,
            "at": now,
        },
    )
    connection.execute(
        text("INSERT INTO custody_subject (entry_index, subject) VALUES (:index, :subject)"),
        {"index": index, "subject": subject},
    )
    _log.warning("custody index filled as unused", index=index)
    return leaf


def fetch_nodes(connection: Connection, ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    """The given tree nodes, on PostgreSQL, in one statement whose text is the same for
    any number of nodes: the driver parses it once and the server plans it once."""
    rows = connection.execute(
        _NODES, {"levels": [n.level for n in ids], "indexes": [n.index for n in ids]}
    ).all()
    return {merkle.NodeId(level, index): bytes(value) for level, index, value in rows}


_NODES = text(
    'SELECT level, "index", hash FROM tree_node '
    'WHERE (level, "index") IN (SELECT * FROM unnest(CAST(:levels AS integer[]), '
    "CAST(:indexes AS bigint[])))"
)
