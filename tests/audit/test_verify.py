"""Offline verification: a clean log verifies; every kind of tampering is caught and the first
bad record named. The tampering is done the way an attacker with database access would: SQL
on the real tables."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from ironhold.audit.checkpoint import Checkpoint
from ironhold.audit.merkle import Frontier, leaf_hash
from ironhold.audit.store import AuditStore
from ironhold.audit.verify import verify_log
from tests.audit.conftest import make_log
from tests.helpers import Entry


@pytest.fixture
def filled(audit_store: AuditStore, signing_key: Ed25519PrivateKey) -> Iterator[AuditStore]:
    """40 records with checkpoints at 10, 25 and 40."""
    async def fill() -> None:
        log = make_log(audit_store, signing_key)
        await log.start()
        for upto in (10, 25, 40):
            while audit_store.size() < upto:
                await log.append(Entry(f"req-{audit_store.size()}", {"status": 200}))
            await log.checkpoint()
        await log.close()

    asyncio.run(fill())
    yield audit_store


def sql(store: AuditStore, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_an_untouched_log_verifies(filled: AuditStore, signing_key: Ed25519PrivateKey) -> None:
    report = verify_log(filled, signing_key.public_key())
    assert report.ok, report.problem
    assert (report.records, report.checkpoints, report.covered) == (40, 3, 40)
    assert report.root == filled.frontier().root()


def test_an_edited_record_is_named(filled: AuditStore,
                                   signing_key: Ed25519PrivateKey) -> None:
    sql(filled, "UPDATE ironhold_audit_records SET record = replace(record, :a, :b) "
                "WHERE seq = 17", a='"status":200', b='"status":403')
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 17 and problem.request_id == "req-17"
    assert "edited" in problem.message


def test_a_deleted_record_is_named(filled: AuditStore, signing_key: Ed25519PrivateKey) -> None:
    sql(filled, "DELETE FROM ironhold_audit_records WHERE seq = 8")
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 8 and "missing" in problem.message


def test_records_removed_from_the_end_are_caught(filled: AuditStore,
                                                 signing_key: Ed25519PrivateKey) -> None:
    sql(filled, "DELETE FROM ironhold_audit_records WHERE seq >= 33")
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 33 and "removed" in problem.message


def test_a_record_rewritten_with_all_its_hashes_is_caught_by_the_checkpoint(
        filled: AuditStore, signing_key: Ed25519PrivateKey) -> None:
    """The attacker edits record 12 and recomputes every stored hash after it: only the
    signed checkpoint of size 25 can tell, and the damage is bounded to 10..24."""
    rows = list(filled.records())
    edited = orjson.loads(rows[12].record)
    edited["status"] = 500
    rows_data = [r.record.encode() for r in rows]
    rows_data[12] = orjson.dumps(edited, option=orjson.OPT_SORT_KEYS)
    frontier = Frontier()
    for seq, data in enumerate(rows_data):
        leaf = leaf_hash(data)
        nodes = b"".join(frontier.append(leaf))
        sql(filled, "UPDATE ironhold_audit_records SET record = :r, leaf_hash = :l, "
                    "nodes = :n WHERE seq = :s", r=data.decode(), l=leaf, n=nodes, s=seq)
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 10
    assert "10..24" in problem.message and "checkpoint" in problem.message


def test_swapped_records_are_caught(filled: AuditStore,
                                    signing_key: Ed25519PrivateKey) -> None:
    a, b = filled.get(3), filled.get(4)
    assert a is not None and b is not None
    for row, seq in ((a, 4), (b, 3)):
        sql(filled, "UPDATE ironhold_audit_records SET record = :r, leaf_hash = :l, "
                    "request_id = :q WHERE seq = :s", r=row.record, l=row.leaf_hash,
            q=row.request_id, s=seq)
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 3 and "moved" in problem.message


def test_edited_tree_nodes_are_named(filled: AuditStore,
                                     signing_key: Ed25519PrivateKey) -> None:
    sql(filled, "UPDATE ironhold_audit_records SET nodes = :n WHERE seq = 15",
        n=bytes(32 * 4))
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and problem.seq == 15 and "nodes" in problem.message


def test_a_forged_checkpoint_is_caught(filled: AuditStore,
                                       signing_key: Ed25519PrivateKey) -> None:
    sql(filled, "UPDATE ironhold_audit_checkpoints SET signed_at = signed_at + 1 "
                "WHERE size = 25")
    problem = verify_log(filled, signing_key.public_key()).problem
    assert problem is not None and "signature" in problem.message
    assert not verify_log(filled, Ed25519PrivateKey.generate().public_key()).ok


def test_an_outside_checkpoint_catches_a_log_rebuilt_with_the_key(
        filled: AuditStore, signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Someone with the database and the signing key rewrites the log and re-signs it; a
    checkpoint saved elsewhere earlier still catches it."""
    saved = Checkpoint.from_dict(orjson.loads(orjson.dumps(filled.checkpoints(1)[0].as_dict())))
    sql(filled, "DELETE FROM ironhold_audit_checkpoints")
    sql(filled, "DELETE FROM ironhold_audit_records WHERE seq >= 30")
    filled._tail = None

    async def rewrite() -> None:
        log = make_log(filled, signing_key)
        await log.start()
        for i in range(10):
            await log.append(Entry(f"forged-{i}", {"status": 200}))
        await log.checkpoint()
        await log.close()

    asyncio.run(rewrite())
    assert verify_log(filled, signing_key.public_key()).ok  # self-consistent after the rewrite
    problem = verify_log(filled, signing_key.public_key(), [saved]).problem
    assert problem is not None and problem.seq == 0  # no earlier anchor bounds it tighter
