"""The audit store's contract, over SQLite and PostgreSQL: one gap-free sequence, the stored
tree equal to the RFC 6962 tree of the records' bytes, proofs that verify, and several writers
(replicas) sharing one sequence."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhold.audit.checkpoint import sign_checkpoint
from ironhold.audit.merkle import (
    Frontier,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ironhold.audit.store import AuditStore
from ironhold.audit.verify import verify_log
from tests.audit.conftest import make_log, open_audit_store
from tests.helpers import Entry


def records(n: int, tag: str = "r") -> list[Entry]:
    return [Entry(f"{tag}-{i}", {"status": 200, "note": "é ✓"}) for i in range(n)]


def recomputed(store: AuditStore) -> Frontier:
    frontier = Frontier()
    for row in store.records(batch=7):
        frontier.append(leaf_hash(row.record.encode()))
    return frontier


def test_appends_get_consecutive_numbers_and_the_stored_tree_is_the_rfc_tree(
        audit_store: AuditStore) -> None:
    assert audit_store.size() == 0
    first = audit_store.append(records(5, "a"), 1.0)
    second = audit_store.append(records(12, "b"), 2.0)
    assert [r.seq for r in first + second] == list(range(17))
    assert audit_store.size() == 17
    row = audit_store.get(3)
    assert row is not None
    assert orjson.loads(row.record) == {"request_id": "a-3", "status": 200, "note": "é ✓",
                                        "seq": 3}
    assert row.leaf_hash == leaf_hash(row.record.encode())
    for size in (1, 5, 6, 16, 17):
        assert audit_store.frontier(size).root() == _root_of_prefix(audit_store, size)
    assert audit_store.frontier().root() == recomputed(audit_store).root()
    assert [r.request_id for r in audit_store.find("b-4")] == ["b-4"]


def _root_of_prefix(store: AuditStore, size: int) -> bytes:
    frontier = Frontier()
    for row in store.records(0, size):
        frontier.append(leaf_hash(row.record.encode()))
    return frontier.root()


def test_proofs_from_the_store_verify(audit_store: AuditStore) -> None:
    for chunk in (1, 2, 3, 10, 25):
        audit_store.append(records(chunk), 1.0)
    size = audit_store.size()
    root = audit_store.frontier().root()
    for seq in range(size):
        row = audit_store.get(seq)
        assert row is not None
        proof = audit_store.inclusion_proof(seq, size)
        assert verify_inclusion(row.leaf_hash, seq, size, proof, root)
    old_root = audit_store.frontier(6).root()
    proof = audit_store.consistency_proof(6, size)
    assert verify_consistency(6, size, old_root, root, proof)


def test_checkpoints_are_stored_once_per_size(audit_store: AuditStore,
                                             signing_key: Ed25519PrivateKey) -> None:
    audit_store.append(records(3), 1.0)
    checkpoint = sign_checkpoint(signing_key, "o", 3, audit_store.frontier().root(), 10.0)
    assert audit_store.add_checkpoint(checkpoint)
    assert not audit_store.add_checkpoint(checkpoint)  # another replica signed it already
    assert audit_store.checkpoint(3) == checkpoint
    assert checkpoint.verify(signing_key.public_key())
    assert not checkpoint.verify(Ed25519PrivateKey.generate().public_key())


def test_several_writers_share_one_gap_free_sequence(audit_url: str, tmp_path: Path,
                                                     signing_key: Ed25519PrivateKey) -> None:
    """Four stores on their own engines (as four replicas have) append at once, each as the
    log's writer does (numbered from its own tail first: on SQLite, straight through its kept
    connection until another writer's rows collide, then from the tail read again)."""
    stores = [open_audit_store(audit_url, tmp_path) for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: AuditStore, tag: str) -> None:
        try:
            for i in range(15):
                batch = records(1 + i % 4, f"{tag}{i}")
                store.append(batch, 1.0, store.prepare(batch, 1.0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, f"w{n}-")) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    expected = 4 * sum(1 + i % 4 for i in range(15))
    seqs = [row.seq for row in stores[0].records()]
    assert seqs == list(range(expected))
    ids = [row.request_id for row in stores[0].records()]
    assert len(set(ids)) == expected  # every record of every writer, each once
    # Every writer's view of the tree is the tree of all the records.
    for store in stores:
        assert store.frontier().root() == recomputed(stores[0]).root()
    report = verify_log(stores[0], signing_key.public_key())
    assert report.ok and report.records == expected
    for store in stores:
        store.close()


def test_the_log_acknowledges_only_durable_records_and_batches_them(
        audit_store: AuditStore, signing_key: Ed25519PrivateKey) -> None:
    async def scenario() -> None:
        log = make_log(audit_store, signing_key)
        await log.start()
        stored = await asyncio.gather(*(log.append(Entry(f"q{i}"))
                                        for i in range(200)))
        # Each acknowledgement is a committed row (read back through another path).
        assert sorted(r.seq for r in stored) == list(range(200))
        assert audit_store.size() == 200
        assert log.batches < 200  # group commit: many records per transaction
        checkpoint = await log.checkpoint()
        assert checkpoint is not None and checkpoint.size == 200
        assert await log.checkpoint() is None  # nothing new to sign
        await log.close()

    asyncio.run(scenario())
    assert audit_store.checkpoints()[0].size == 200


def test_a_failed_write_is_not_acknowledged(tmp_path: Path,
                                            signing_key: Ed25519PrivateKey) -> None:
    store = open_audit_store(f"sqlite:///{tmp_path / 'gone.db'}", tmp_path)

    async def scenario() -> None:
        log = make_log(store, signing_key)
        await log.start()
        await log.append(Entry("before"))
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE ironhold_audit_records")
        try:
            await log.append(Entry("after"))
        except Exception as exc:
            assert exc.__class__.__name__ == "AuditUnavailableError"
        else:
            raise AssertionError("a record that could not be written was acknowledged")
        await log.close()

    asyncio.run(scenario())
    store.close()


def test_a_caller_that_stops_waiting_does_not_take_its_record_out_of_the_batch(
        audit_store: AuditStore, signing_key: Ed25519PrivateKey) -> None:
    async def scenario() -> None:
        log = make_log(audit_store, signing_key)
        await log.start()
        waiting = asyncio.create_task(log.append(Entry("left-early")))
        await asyncio.sleep(0)  # queued, not yet committed
        waiting.cancel()
        await log.append(Entry("stayed"))
        await log.close()
        assert waiting.cancelled()

    asyncio.run(scenario())
    assert [row.request_id for row in audit_store.records()] == ["left-early", "stayed"]
