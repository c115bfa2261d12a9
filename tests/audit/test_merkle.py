"""The Merkle tree against a direct, recursive reading of RFC 6962, and its proofs checked by
the RFC 9162 verification algorithms (and refused when anything is changed)."""

from __future__ import annotations

import hashlib

import pytest

from ironhold.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    frontier_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_nodes_needed,
    root_from,
    verify_consistency,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH, read literally."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


LEAVES = [f"record {i}".encode() for i in range(70)]


class Tree:
    """Stored perfect subtrees, as the audit store keeps them: level 0 the leaf hashes, level
    k >= 1 the nodes each append reported."""

    def __init__(self, leaves: list[bytes]):
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.frontier = Frontier()
        for i, data in enumerate(leaves):
            h = leaf_hash(data)
            self.nodes[(0, i)] = h
            for level, node in enumerate(self.frontier.append(h), start=1):
                self.nodes[(level, ((i + 1) >> level) - 1)] = node

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


def test_known_roots() -> None:
    assert Frontier().root() == EMPTY_ROOT
    # The empty-leaf root from RFC 6962's test vectors (certificate-transparency-go).
    f = Frontier()
    f.append(leaf_hash(b""))
    assert f.root().hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_frontier_root_equals_the_rfc_definition_at_every_size() -> None:
    tree = Tree([])
    for n, data in enumerate(LEAVES, start=1):
        tree.frontier.append(leaf_hash(data))
        assert tree.frontier.size == n
        assert tree.frontier.root() == mth(LEAVES[:n])
        assert len(tree.frontier.hashes) == bin(n).count("1")


def test_the_frontier_can_be_rebuilt_from_stored_nodes() -> None:
    tree = Tree(LEAVES)
    for n in range(1, len(LEAVES) + 1):
        hashes = [tree.get(level, index) for level, index in frontier_nodes(n)]
        assert root_from(hashes) == mth(LEAVES[:n])


def test_inclusion_proofs_verify_for_every_leaf_and_size() -> None:
    tree = Tree(LEAVES)
    for n in range(1, 40):
        root = mth(LEAVES[:n])
        for m in range(n):
            proof = inclusion_proof(m, n, tree.get)
            assert verify_inclusion(leaf_hash(LEAVES[m]), m, n, proof, root), (m, n)


def test_inclusion_proofs_refuse_any_change() -> None:
    tree = Tree(LEAVES)
    n, m = 37, 21
    root = mth(LEAVES[:n])
    proof = inclusion_proof(m, n, tree.get)
    leaf = leaf_hash(LEAVES[m])
    assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
    assert not verify_inclusion(leaf, m + 1, n, proof, root)
    assert not verify_inclusion(leaf, m, 30, proof, root)
    assert not verify_inclusion(leaf, m, n, proof[:-1], root)
    assert not verify_inclusion(leaf, m, n, [*proof, proof[0]], root)
    bent = list(proof)
    bent[2] = bytes(32)
    assert not verify_inclusion(leaf, m, n, bent, root)
    with pytest.raises(ValueError):
        inclusion_proof(n, n, tree.get)


def test_consistency_proofs_verify_between_every_pair_of_sizes() -> None:
    tree = Tree(LEAVES)
    for second in range(1, 40):
        for first in range(1, second + 1):
            proof = consistency_proof(first, second, tree.get)
            assert verify_consistency(first, second, mth(LEAVES[:first]),
                                      mth(LEAVES[:second]), proof), (first, second)


def test_consistency_proofs_refuse_a_rewritten_history() -> None:
    tree = Tree(LEAVES)
    rewritten = list(LEAVES)
    rewritten[3] = b"changed"
    first, second = 13, 50
    proof = consistency_proof(first, second, tree.get)
    assert not verify_consistency(first, second, mth(rewritten[:first]),
                                  mth(LEAVES[:second]), proof)
    assert not verify_consistency(first, second, mth(LEAVES[:first]),
                                  mth(rewritten[:second]), proof)
    assert not verify_consistency(first, second, mth(LEAVES[:first]),
                                  mth(LEAVES[:second]), proof[1:])
    assert not verify_consistency(second, first, mth(LEAVES[:second]),
                                  mth(LEAVES[:first]), proof)


def test_a_proof_reads_few_stored_nodes_and_says_which_first() -> None:
    tree = Tree(LEAVES)
    wanted = perfect_nodes_needed(lambda get: inclusion_proof(5, 70, get))
    assert wanted <= set(tree.nodes)
    assert len(wanted) <= 7 * 7
    fetched = {k: tree.nodes[k] for k in wanted}
    proof = inclusion_proof(5, 70, lambda level, index: fetched[(level, index)])
    assert verify_inclusion(leaf_hash(LEAVES[5]), 5, 70, proof, mth(LEAVES))
