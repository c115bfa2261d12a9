"""The RFC 6962 / RFC 9162 Merkle tree: hashes, the compact frontier, proofs and their checks.

Leaves hash as ``SHA-256(0x00 || data)``, interior nodes as ``SHA-256(0x01 || left || right)``.
A tree of any size is the left-to-right fold of its *perfect* subtrees (one per set bit of the
size); the log stores, with each leaf, the perfect subtrees that leaf completed, so any proof
needs only O(log² n) stored hashes (see ``audit.store``).

Node addresses: ``(level, index)`` is the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["EMPTY_ROOT", "Frontier", "NodeSource", "consistency_proof", "frontier_nodes",
           "inclusion_proof", "leaf_hash", "node_hash", "perfect_nodes_needed", "root_from",
           "verify_consistency", "verify_inclusion"]

EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Returns the hash of the perfect subtree ``(level, index)``.
NodeSource = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass
class Frontier:
    """The right edge of a tree: one perfect-subtree hash per set bit of ``size``, largest
    first. Appending is O(log n) amortised O(1); it reports the perfect subtrees it completes."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf hash; returns the hashes of the perfect subtrees this leaf completed, by
        level (1, 2, ...): what the store keeps with the leaf."""
        completed: list[bytes] = []
        node = leaf
        size = self.size
        while size & 1:
            node = node_hash(self.hashes.pop(), node)
            completed.append(node)
            size >>= 1
        self.hashes.append(node)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return root_from(self.hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))


def root_from(hashes: Iterable[bytes]) -> bytes:
    """The root of a tree from its frontier (perfect subtrees, largest first)."""
    ordered = list(hashes)
    if not ordered:
        return EMPTY_ROOT
    root = ordered[-1]
    for left in reversed(ordered[:-1]):
        root = node_hash(left, root)
    return root


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """The addresses of the frontier of a tree of ``size`` leaves, largest first."""
    return [(level, (size >> level) - 1)
            for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def _largest_power_below(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree(start: int, end: int, get: NodeSource) -> bytes:
    """MTH(D[start:end]) where ``start`` is aligned to the subtree's size class, as every
    subtree in RFC 6962's recursions is."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return get(level, start >> level)
    k = _largest_power_below(size)
    return node_hash(_subtree(start, start + k, get), _subtree(start + k, end, get))


def _path(index: int, start: int, end: int, get: NodeSource) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[start:end]), iteratively, leaf-side first."""
    out: list[bytes] = []
    while end - start > 1:
        k = _largest_power_below(end - start)
        if index < start + k:
            out.append(_subtree(start + k, end, get))
            end = start + k
        else:
            out.append(_subtree(start, start + k, get))
            start += k
    out.reverse()
    return out


def inclusion_proof(index: int, size: int, get: NodeSource) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    return _path(index, 0, size, get)


def consistency_proof(first: int, second: int, get: NodeSource) -> list[bytes]:
    """RFC 6962 2.1.2 PROOF(m, D[n]): the tree of ``first`` leaves is a prefix of the tree of
    ``second`` leaves."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first == second:
        return []
    return _subproof(first, 0, second, True, get)


def _subproof(m: int, start: int, end: int, whole: bool, get: NodeSource) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [_subtree(start, end, get)]
    k = _largest_power_below(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole, get), _subtree(start + k, end, get)]
    return [*_subproof(m - k, start + k, end, False, get), _subtree(start, start + k, get)]


def perfect_nodes_needed(build: Callable[[NodeSource], object]) -> set[tuple[int, int]]:
    """The stored nodes a proof will read: run ``build`` once against a recorder, so the store
    can fetch them all in one query before building the proof for real."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return EMPTY_ROOT

    build(record)
    return wanted


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree (``first``, ``first_root``) a prefix of
    (``second``, ``second_root``)?"""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is a proof node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
