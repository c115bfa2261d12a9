"""Offline verification of the whole audit log: every record, every stored hash, every
checkpoint, recomputed from the records' bytes alone.

What each check catches, and how precisely it names the damage:

- a record whose bytes were edited: its content no longer matches its leaf hash (named);
- a record deleted, or moved to another place: a gap in the sequence, or a record whose own
  ``seq`` disagrees with its row (named);
- stored tree nodes edited: they differ from the ones recomputed (named: the record that
  completed them);
- a record edited *and* its stored hashes rewritten to match: only a signed checkpoint can
  tell. The first checkpoint whose root differs bounds the damage to the records after the last
  checkpoint that still matched, and the first of those is named;
- records removed from the end: a checkpoint covers more records than are left;
- a checkpoint forged or edited: its Ed25519 signature does not verify.

A checkpoint saved outside the log (``--checkpoint``) is checked the same way, so a log
rewritten by someone who also held the signing key is still caught against an earlier copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ironhold.audit.checkpoint import Checkpoint
from ironhold.audit.merkle import Frontier, leaf_hash
from ironhold.audit.store import AuditStore, StoredRecord

__all__ = ["Problem", "VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    #: The first bad record, where one can be named.
    seq: int | None = None
    request_id: str | None = None


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    root: bytes = b""
    checkpoints: int = 0
    #: The newest checkpoint that matched (None: no checkpoint covered anything).
    covered: int = 0
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_log(store: AuditStore, public_key: Ed25519PublicKey,
               anchors: list[Checkpoint] | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
    report = VerifyReport()
    checkpoints, problem = _signed_checkpoints(store.all_checkpoints(), anchors or [],
                                               public_key)
    if problem is not None:
        report.problem = problem
        return report
    pending = list(checkpoints)  # by size, ascending
    frontier = Frontier()
    last_good = 0
    for row in store.records():
        problem = _check_row(row, frontier.size)
        if problem is None:
            leaf = leaf_hash(row.record.encode())
            if leaf != row.leaf_hash:
                problem = _bad(row, "its content no longer matches its leaf hash (edited)")
            elif b"".join(frontier.append(leaf)) != row.nodes:
                problem = _bad(row, "the tree nodes stored with it were changed")
        if problem is None:
            here = []
            while pending and pending[0].size == frontier.size:
                here.append(pending.pop(0))
            if here:
                root = frontier.root()
                wrong = [c for c in here if c.root != root]
                if wrong:
                    problem = _rewritten(store, wrong[0], last_good)
                else:
                    last_good = frontier.size
                    report.checkpoints += len(here)
        if problem is not None:
            report.problem = problem
            report.records = frontier.size
            return report
        if progress is not None and frontier.size % 10_000 == 0:
            progress(frontier.size)
    report.records = frontier.size
    report.root = frontier.root()
    report.covered = last_good
    if pending:
        gone = pending[0]
        report.problem = Problem(
            f"checkpoint of size {gone.size} covers records {frontier.size}.."
            f"{gone.size - 1}, which are gone: records were removed from the end of the log",
            seq=frontier.size)
    elif last_good < frontier.size:
        report.warnings.append(
            f"records {last_good}..{frontier.size - 1} are not yet covered by a signed "
            "checkpoint (they are signed at the next checkpoint interval)")
    if progress is not None:
        progress(frontier.size)
    return report


def _signed_checkpoints(stored: list[Checkpoint], anchors: list[Checkpoint],
                        public_key: Ed25519PublicKey) -> tuple[list[Checkpoint],
                                                               Problem | None]:
    for checkpoint in [*anchors, *stored]:
        if not checkpoint.verify(public_key):
            where = "the given checkpoint" if checkpoint in anchors else "a stored checkpoint"
            return [], Problem(
                f"{where} of size {checkpoint.size} has no valid signature by the audit key "
                f"(forged or edited, or signed by another key: {checkpoint.key_id})")
    by_size: dict[tuple[int, bytes], Checkpoint] = {}
    for checkpoint in [*stored, *anchors]:
        by_size.setdefault((checkpoint.size, checkpoint.root), checkpoint)
    return sorted(by_size.values(), key=lambda c: c.size), None


def _check_row(row: StoredRecord, expected: int) -> Problem | None:
    if row.seq != expected:
        return Problem(f"record {expected} is missing (the next stored record is {row.seq})",
                       seq=expected)
    try:
        data = orjson.loads(row.record)
    except orjson.JSONDecodeError:
        return _bad(row, "it is not valid JSON any more")
    if not isinstance(data, dict) or data.get("seq") != row.seq:
        claimed = data.get("seq") if isinstance(data, dict) else None
        return _bad(row, f"its content says it is record {claimed} (moved)")
    if data.get("request_id") != row.request_id:
        return _bad(row, "its request id column was changed")
    return None


def _bad(row: StoredRecord, why: str) -> Problem:
    return Problem(f"record {row.seq} (request {row.request_id}): {why}", seq=row.seq,
                   request_id=row.request_id)


def _rewritten(store: AuditStore, checkpoint: Checkpoint, last_good: int) -> Problem:
    first = store.get(last_good)
    return Problem(
        f"the tree of {checkpoint.size} records does not match the checkpoint signed for it: "
        f"one of records {last_good}..{checkpoint.size - 1} was changed and its stored hashes "
        f"rewritten to match; the first that may be bad is record {last_good}",
        seq=last_good, request_id=first.request_id if first is not None else None)
