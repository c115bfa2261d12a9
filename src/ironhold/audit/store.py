"""The audit log's tables: records in sequence, each with its leaf hash and the perfect
subtrees it completed, and signed checkpoints.

One sequence across replicas: a batch is appended in one transaction that (on PostgreSQL) first
takes a transaction-scoped advisory lock, reads the highest sequence number, and inserts the
batch right after it. The lock serialises writers, the transaction makes a batch all-or-nothing,
so sequence numbers have no gaps and no duplicates. A writer whose cached frontier is behind
(another replica appended) rebuilds it from the stored nodes: O(log n) rows. On SQLite the
primary key catches a concurrent writer and the batch is retried on the new tail; so, while this
store's cached tail is current, a batch goes straight through the driver on one connection kept
for appends (no pool checkout, no read of the tail): a commit costs the disk's fsync and little
else. A collision there means another process appended: the tail is read again, as above.

Calls are synchronous; the async writer runs them in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, PoolProxiedConnection, func, select, text
from sqlalchemy.exc import IntegrityError

from ironhold.audit.checkpoint import Checkpoint
from ironhold.audit.merkle import (
    Frontier,
    NodeSource,
    consistency_proof,
    frontier_nodes,
    inclusion_proof,
    leaf_hash,
    perfect_nodes_needed,
)
from ironhold.audit.record import AuditRecord, encode_record
from ironhold.store.sql import audit_checkpoints, audit_records

__all__ = ["AuditStore", "StoredRecord"]

#: Any fixed 64-bit number: the PostgreSQL advisory lock held while appending.
_APPEND_LOCK = 7_215_011_743
_RETRIES = 8


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    request_id: str
    recorded_at: float
    leaf_hash: bytes
    #: Perfect subtrees completed by this leaf, levels 1, 2, ... (32 bytes each).
    nodes: bytes
    #: The canonical JSON the leaf hash covers.
    record: str

    def node(self, level: int) -> bytes:
        if level == 0:
            return self.leaf_hash
        return self.nodes[(level - 1) * 32:level * 32]


def node_row(level: int, index: int) -> int:
    """The sequence number of the leaf that completed perfect subtree ``(level, index)``."""
    return ((index + 1) << level) - 1


class AuditStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._tail: Frontier | None = None
        self._lock = threading.Lock()
        #: SQLite: the connection appends go through while the tail is current.
        self._appender: PoolProxiedConnection | None = None

    def close(self) -> None:
        with self._lock:
            if self._appender is not None:
                self._appender.close()
                self._appender = None
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------

    def prepare(self, records: Sequence[AuditRecord], now: float) -> Prepared | None:
        """Number, encode and hash ``records`` after the tail this store last wrote: pure CPU,
        so the writer runs it on the event loop (a worker thread doing CPU work would hold the
        GIL against the loop: latency spikes). None if the tail is unknown yet."""
        tail = self._tail
        if tail is None:
            return None
        return _prepare(records, tail.copy(), now)

    def append(self, records: Sequence[AuditRecord], now: float,
               prepared: Prepared | None = None) -> list[StoredRecord]:
        """Append ``records`` in order, durably, as one transaction; returns them stored.
        ``prepared`` (from ``prepare``) is used if the log's tail is still where it was."""
        with self._lock:
            if (prepared is not None and self.engine.dialect.name == "sqlite"
                    and self._tail is not None and prepared.start == self._tail.size
                    and self._append_direct(prepared)):
                return prepared.rows
            for _ in range(_RETRIES):
                try:
                    return self._append_once(records, now, prepared)
                except IntegrityError:  # another writer took these numbers: use the new tail
                    self._tail = None
                    prepared = None
            raise RuntimeError("audit append kept colliding with another writer")

    def _append_direct(self, prepared: Prepared) -> bool:
        """Write a batch numbered from this store's own tail through the kept connection; False
        (nothing written) if another writer appended first."""
        if self._appender is None:
            self._appender = self.engine.raw_connection()
        conn = self._appender
        try:
            cursor = conn.cursor()
            try:
                cursor.executemany(_INSERT, prepared.values())
            finally:
                cursor.close()
            conn.commit()
        except sqlite3.IntegrityError:
            conn.rollback()
            self._tail = None
            return False
        except BaseException:
            # A locked or full database: this batch fails; the next opens a fresh connection.
            self._appender = None
            try:
                conn.rollback()
            finally:
                conn.close()
            raise
        self._tail = prepared.frontier
        return True

    def _append_once(self, records: Sequence[AuditRecord], now: float,
                     prepared: Prepared | None) -> list[StoredRecord]:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
            size = _size(conn)
            if prepared is None or prepared.start != size:  # another replica appended
                tail = self._tail
                frontier = (tail.copy() if tail is not None and tail.size == size
                            else _load_frontier(conn, size))
                prepared = _prepare(records, frontier, now)
            # The driver's executemany: no per-row Python work beyond building the tuples.
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(_INSERT.replace("?", mark), prepared.values())
        self._tail = prepared.frontier
        return prepared.rows

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store a checkpoint; False if one of that size exists (another replica signed it)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(audit_checkpoints.insert().values(
                    size=checkpoint.size, root=checkpoint.root, origin=checkpoint.origin,
                    signed_at=checkpoint.signed_at, key_id=checkpoint.key_id,
                    signature=checkpoint.signature))
        except IntegrityError:
            return False
        return True

    # -- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return _size(conn)

    def frontier(self, size: int | None = None) -> Frontier:
        """The frontier of the tree of the first ``size`` records (default: all of them)."""
        with self.engine.connect() as conn:
            return _load_frontier(conn, _size(conn) if size is None else size)

    def get(self, seq: int) -> StoredRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_records).where(audit_records.c.seq == seq)).first()
        return None if row is None else _stored(row)

    def find(self, request_id: str) -> list[StoredRecord]:
        """Every record of a request id (a client may reuse one), oldest first."""
        query = (select(audit_records).where(audit_records.c.request_id == request_id)
                 .order_by(audit_records.c.seq))
        with self.engine.connect() as conn:
            return [_stored(row) for row in conn.execute(query)]

    def records(self, start: int = 0, end: int | None = None,
                batch: int = 5000) -> Iterator[StoredRecord]:
        """Records ``start <= seq < end`` in order, read in batches (memory stays flat)."""
        next_seq = start
        while end is None or next_seq < end:
            query = (select(audit_records).where(audit_records.c.seq >= next_seq)
                     .order_by(audit_records.c.seq).limit(batch))
            if end is not None:
                query = query.where(audit_records.c.seq < end)
            with self.engine.connect() as conn:
                rows = [_stored(row) for row in conn.execute(query)]
            if not rows:
                return
            yield from rows
            next_seq = rows[-1].seq + 1

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        return self._prove(lambda get: inclusion_proof(seq, size, get))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._prove(lambda get: consistency_proof(first, second, get))

    def _prove(self, build: Callable[[NodeSource], list[bytes]]) -> list[bytes]:
        wanted = perfect_nodes_needed(build)
        with self.engine.connect() as conn:
            nodes = _fetch_nodes(conn, wanted)
        return build(lambda level, index: nodes[(level, index)])

    def checkpoints(self, limit: int = 100) -> list[Checkpoint]:
        """The newest checkpoints first."""
        query = (select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc())
                 .limit(limit))
        with self.engine.connect() as conn:
            return [_checkpoint(row) for row in conn.execute(query)]

    def all_checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.size))
            return [_checkpoint(row) for row in rows]

    def checkpoint(self, size: int) -> Checkpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_checkpoints)
                               .where(audit_checkpoints.c.size == size)).first()
        return None if row is None else _checkpoint(row)


_INSERT = ("INSERT INTO ironhold_audit_records "
           "(seq, request_id, recorded_at, leaf_hash, nodes, record) VALUES (?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch numbered from ``start``, encoded and hashed; ``frontier`` is the tree after it."""

    start: int
    rows: list[StoredRecord]
    frontier: Frontier

    def values(self) -> list[tuple[int, str, float, bytes, bytes, str]]:
        """The rows as ``_INSERT`` takes them."""
        return [(r.seq, r.request_id, r.recorded_at, r.leaf_hash, r.nodes, r.record)
                for r in self.rows]


def _prepare(records: Sequence[AuditRecord], frontier: Frontier, now: float) -> Prepared:
    start = frontier.size
    rows: list[StoredRecord] = []
    for offset, record in enumerate(records):
        data = encode_record(record.fields(), start + offset)
        leaf = leaf_hash(data)
        nodes = b"".join(frontier.append(leaf))
        rows.append(StoredRecord(start + offset, record.request_id, now, leaf, nodes,
                                 data.decode()))
    return Prepared(start, rows, frontier)


def _size(conn: Connection) -> int:
    highest = conn.execute(select(func.max(audit_records.c.seq))).scalar()
    return 0 if highest is None else int(highest) + 1


def _load_frontier(conn: Connection, size: int) -> Frontier:
    addresses = frontier_nodes(size)
    nodes = _fetch_nodes(conn, set(addresses))
    return Frontier(size, [nodes[address] for address in addresses])


def _fetch_nodes(conn: Connection, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    if not wanted:
        return {}
    by_seq: dict[int, list[tuple[int, int]]] = {}
    for level, index in wanted:
        by_seq.setdefault(node_row(level, index), []).append((level, index))
    query = (select(audit_records.c.seq, audit_records.c.leaf_hash, audit_records.c.nodes)
             .where(audit_records.c.seq.in_(sorted(by_seq))))
    found: dict[tuple[int, int], bytes] = {}
    for seq, leaf, nodes in conn.execute(query):
        for level, index in by_seq[seq]:
            found[(level, index)] = leaf if level == 0 else nodes[(level - 1) * 32:level * 32]
    missing = wanted - found.keys()
    if missing:
        level, index = min(missing)
        raise LookupError(f"audit record {node_row(level, index)} is missing")
    return found


def _stored(row: Any) -> StoredRecord:
    return StoredRecord(int(row.seq), row.request_id, float(row.recorded_at),
                        bytes(row.leaf_hash), bytes(row.nodes), row.record)


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(row.origin, int(row.size), bytes(row.root), float(row.signed_at),
                      row.key_id, bytes(row.signature))
