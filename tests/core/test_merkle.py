"""RFC 9162 Merkle trees: hand-built trees, exhaustive properties against the reference."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import merkle
from service.core.merkle import NodeId
from service.errors import ProofError, RootMismatch, VerificationError

# The leaves transparency-dev/merkle and the RFC 6962 test suites use.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
# Their roots for sizes 1..8, as published with those suites.
KNOWN_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def leaf_hashes(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def build_nodes(hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
    """Simulate the custody log: store every node each append completes."""
    nodes: dict[NodeId, bytes] = {}
    for index, leaf in enumerate(hashes):
        siblings = {n: nodes[n] for n in merkle.append_siblings(index)}
        nodes.update(merkle.hashes_for_append(index, leaf, siblings))
    return nodes


HASHES = leaf_hashes(200)
NODES = build_nodes(HASHES)


def test_hashing_domain_separation() -> None:
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_known_roots(size: int) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert merkle.root_from_leaf_hashes(hashes).hex() == KNOWN_ROOTS[size - 1]


def test_hand_built_trees() -> None:
    a, b, c, d, e, f, g, h = (merkle.leaf_hash(leaf) for leaf in LEAVES)
    n = merkle.node_hash
    expected = [
        a,
        n(a, b),
        n(n(a, b), c),
        n(n(a, b), n(c, d)),
        n(n(n(a, b), n(c, d)), e),
        n(n(n(a, b), n(c, d)), n(e, f)),
        n(n(n(a, b), n(c, d)), n(n(e, f), g)),
        n(n(n(a, b), n(c, d)), n(n(e, f), n(g, h))),
    ]
    hashes = [a, b, c, d, e, f, g, h]
    nodes = build_nodes(hashes)
    for size, root in enumerate(expected, start=1):
        assert merkle.root_from_leaf_hashes(hashes[:size]) == root
        assert merkle.range_hash(0, size, nodes) == root
    # RFC 9162 §2.1.5 examples: inclusion proof for d in the 7-leaf tree, c in 4.
    assert merkle.build_proof(merkle.inclusion_ranges(3, 7), nodes) == [c, n(a, b), n(n(e, f), g)]
    assert merkle.build_proof(merkle.inclusion_ranges(2, 4), nodes) == [d, n(a, b)]
    # ... and consistency proofs between 3, 4 and 6 leaves and the 7-leaf tree.
    assert merkle.build_proof(merkle.consistency_ranges(3, 7), nodes) == [
        c,
        d,
        n(a, b),
        n(n(e, f), g),
    ]
    assert merkle.build_proof(merkle.consistency_ranges(4, 7), nodes) == [n(n(e, f), g)]
    assert merkle.build_proof(merkle.consistency_ranges(6, 7), nodes) == [
        n(e, f),
        g,
        n(n(a, b), n(c, d)),
    ]


def test_perfect_subtrees() -> None:
    assert merkle.perfect_subtrees(0, 7) == [NodeId(2, 0), NodeId(1, 2), NodeId(0, 6)]
    assert merkle.perfect_subtrees(4, 8) == [NodeId(2, 1)]
    assert merkle.perfect_subtrees(1, 4) == [NodeId(0, 1), NodeId(1, 1)]
    assert merkle.perfect_subtrees(5, 6) == [NodeId(0, 5)]


@pytest.mark.parametrize(("start", "end"), [(0, 0), (3, 2), (-1, 2)])
def test_perfect_subtrees_needs_a_range(start: int, end: int) -> None:
    with pytest.raises(ProofError, match="start < end"):
        merkle.perfect_subtrees(start, end)


def test_range_hash_refuses_ranges_outside_the_tree() -> None:
    with pytest.raises(ProofError, match=r"\[1, 4\) is not a subtree"):
        merkle.range_hash(1, 4, NODES)


def test_range_hash_names_missing_node() -> None:
    with pytest.raises(ProofError, match="level 2 index 0 is missing"):
        merkle.range_hash(0, 5, {NodeId(0, 4): HASHES[4]})


def test_append_bookkeeping() -> None:
    assert merkle.nodes_completed_by_append(0) == [NodeId(0, 0)]
    assert merkle.append_siblings(0) == []
    assert merkle.nodes_completed_by_append(6) == [NodeId(0, 6)]
    assert merkle.nodes_completed_by_append(7) == [
        NodeId(0, 7),
        NodeId(1, 3),
        NodeId(2, 1),
        NodeId(3, 0),
    ]
    assert merkle.append_siblings(7) == [NodeId(0, 6), NodeId(1, 2), NodeId(2, 0)]
    assert merkle.append_siblings(5) == [NodeId(0, 4)]


def test_hashes_for_append_needs_siblings_and_a_hash() -> None:
    with pytest.raises(ProofError, match="level 0 index 2 is missing"):
        merkle.hashes_for_append(3, HASHES[3], {})
    with pytest.raises(ProofError, match="leaf hash has wrong size: expected 32, got 3"):
        merkle.hashes_for_append(0, b"abc", {})


def test_stored_nodes_are_the_perfect_subtrees() -> None:
    for node, value in NODES.items():
        start, end = node.index << node.level, (node.index + 1) << node.level
        assert value == merkle.root_from_leaf_hashes(HASHES[start:end])
    assert len(NODES) == 2 * len(HASHES) - bin(len(HASHES)).count("1")


@pytest.mark.parametrize("size", range(1, 201))
def test_every_inclusion_proof(size: int) -> None:
    root = merkle.root_from_leaf_hashes(HASHES[:size])
    assert merkle.range_hash(0, size, NODES) == root
    for index in range(size):
        ranges = merkle.inclusion_ranges(index, size)
        needed = merkle.nodes_needed(ranges)
        assert len(needed) <= 2 * math.ceil(math.log2(size)) + 1
        proof = merkle.build_proof(ranges, {n: NODES[n] for n in needed})
        merkle.verify_inclusion(
            index=index, size=size, leaf_hash=HASHES[index], proof=proof, root=root
        )


@pytest.mark.parametrize("second", range(1, 101))
def test_every_consistency_proof(second: int) -> None:
    second_root = merkle.root_from_leaf_hashes(HASHES[:second])
    for first in range(1, second + 1):
        first_root = merkle.root_from_leaf_hashes(HASHES[:first])
        ranges = merkle.consistency_ranges(first, second)
        proof = merkle.build_proof(ranges, {n: NODES[n] for n in merkle.nodes_needed(ranges)})
        merkle.verify_consistency(
            first=first, second=second, first_root=first_root, second_root=second_root, proof=proof
        )
        if second <= 48:
            _check_consistency_tampering(first, second, first_root, second_root, proof)


def _variants(proof: list[bytes]) -> list[list[bytes]]:
    """The proof with one element changed in each way an attacker or a bug might."""
    out: list[list[bytes]] = [[*proof, HASHES[0]], [HASHES[0], *proof]]
    for i, element in enumerate(proof):
        for bit in (0, 7 + 8 * i, 255):
            flipped = bytearray(element)
            flipped[bit // 8] ^= 1 << (bit % 8)
            out.append([*proof[:i], bytes(flipped), *proof[i + 1 :]])
        out.append(proof[:i] + proof[i + 1 :])
        out.append([*proof[: i + 1], element, *proof[i + 1 :]])
    return out


def _check_consistency_tampering(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> None:
    def rejects(a: int, b: int, ra: bytes, rb: bytes, p: list[bytes]) -> None:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(first=a, second=b, first_root=ra, second_root=rb, proof=p)

    for variant in _variants(proof):
        rejects(first, second, first_root, second_root, variant)
    if first != second:
        rejects(first, second, second_root, first_root, proof)
    # Changing only a size is not always detectable from hashes (a leaf hash can stand in
    # for a subtree hash), so the sizes themselves must come from signed checkpoints.


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100])
def test_inclusion_tampering_is_rejected(size: int) -> None:
    root = merkle.root_from_leaf_hashes(HASHES[:size])
    for index in range(size):
        proof = merkle.build_proof(merkle.inclusion_ranges(index, size), NODES)
        for variant in _variants(proof):
            with pytest.raises(VerificationError):
                merkle.verify_inclusion(
                    index=index, size=size, leaf_hash=HASHES[index], proof=variant, root=root
                )
        for wrong_index in {index ^ 1, index + 1} - {index}:
            with pytest.raises(VerificationError):
                merkle.verify_inclusion(
                    index=wrong_index, size=size, leaf_hash=HASHES[index], proof=proof, root=root
                )


@settings(deadline=None, max_examples=200)
@given(data=st.data(), size=st.integers(min_value=1, max_value=5000))
def test_inclusion_bit_flips(data: st.DataObject, size: int) -> None:
    hashes = leaf_hashes(size)
    nodes = build_nodes(hashes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    root = merkle.range_hash(0, size, nodes)
    assert root == merkle.root_from_leaf_hashes(hashes)
    proof = merkle.build_proof(merkle.inclusion_ranges(index, size), nodes)
    merkle.verify_inclusion(index=index, size=size, leaf_hash=hashes[index], proof=proof, root=root)
    bit = data.draw(st.integers(min_value=0, max_value=(len(proof) + 2) * 256 - 1))
    blob = bytearray(b"".join([hashes[index], root, *proof]))
    blob[bit // 8] ^= 1 << (bit % 8)
    parts = [bytes(blob[i : i + 32]) for i in range(0, len(blob), 32)]
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(
            index=index, size=size, leaf_hash=parts[0], proof=parts[2:], root=parts[1]
        )


def test_root_mismatch_names_both_roots() -> None:
    proof = merkle.build_proof(merkle.inclusion_ranges(1, 3), NODES)
    with pytest.raises(RootMismatch) as caught:
        merkle.verify_inclusion(index=1, size=3, leaf_hash=HASHES[1], proof=proof, root=HASHES[0])
    assert caught.value.expected_root == HASHES[0]
    assert caught.value.calculated_root == merkle.root_from_leaf_hashes(HASHES[:3])


@pytest.mark.parametrize(
    ("index", "size", "proof_length", "message"),
    [
        (3, 3, 2, "index 3 is beyond size 3"),
        (-1, 3, 2, "index -1 is beyond size 3"),
        (0, 3, 3, "inclusion proof has wrong size: expected 2, got 3"),
        (2, 3, 0, "inclusion proof has wrong size: expected 1, got 0"),
    ],
)
def test_inclusion_proof_errors(index: int, size: int, proof_length: int, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        merkle.verify_inclusion(
            index=index, size=size, leaf_hash=HASHES[0], proof=HASHES[:proof_length], root=HASHES[0]
        )


@pytest.mark.parametrize(
    ("leaf", "proof", "root", "message"),
    [
        (b"short", [HASHES[1]], HASHES[0], "leaf hash has wrong size: expected 32, got 5"),
        (HASHES[0], [b""], HASHES[0], "proof element 0 has wrong size: expected 32, got 0"),
        (HASHES[0], [HASHES[1]], b"x" * 33, "root has wrong size: expected 32, got 33"),
    ],
)
def test_inclusion_hash_sizes(leaf: bytes, proof: list[bytes], root: bytes, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        merkle.verify_inclusion(index=0, size=2, leaf_hash=leaf, proof=proof, root=root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 4)])
def test_inclusion_ranges_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ProofError, match="need 0 <= index < size"):
        merkle.inclusion_ranges(index, size)


@pytest.mark.parametrize(("first", "second"), [(0, 5), (6, 5), (-1, 3)])
def test_consistency_ranges_bad_arguments(first: int, second: int) -> None:
    with pytest.raises(ProofError, match="need 0 < first <= second"):
        merkle.consistency_ranges(first, second)


def test_consistency_ranges_equal_sizes_is_empty() -> None:
    assert merkle.consistency_ranges(5, 5) == []


R3, R5 = merkle.root_from_leaf_hashes(HASHES[:3]), merkle.root_from_leaf_hashes(HASHES[:5])
EMPTY = merkle.EMPTY_ROOT


@pytest.mark.parametrize(
    ("first", "second", "first_root", "second_root", "proof", "error", "message"),
    [
        (4, 3, R3, R3, [], ProofError, "need 0 <= first <= second"),
        (-1, 3, R3, R3, [], ProofError, "need 0 <= first <= second"),
        (3, 3, R3, R3, [R3], ProofError, "wrong size: expected 0, got 1"),
        (3, 3, R3, R5, [], RootMismatch, "does not match"),
        (0, 0, R3, R3, [], RootMismatch, "does not match"),
        (0, 0, EMPTY, R3, [], RootMismatch, "does not match"),
        (0, 5, R3, R5, [], RootMismatch, "does not match"),
        (0, 5, EMPTY, R5, [R5], ProofError, "wrong size: expected 0, got 1"),
        (0, 5, EMPTY, b"x", [], ProofError, "second root has wrong size"),
        (3, 5, b"", R5, [R5], ProofError, "first root has wrong size"),
        (3, 5, R3, R5, [b"x"], ProofError, "proof element 0 has wrong size"),
        (3, 5, R3, R5, [], ProofError, "consistency proof has wrong size: expected 4, got 0"),
        (4, 5, R3, R5, [R3, R5], ProofError, "wrong size: expected 1, got 2"),
    ],
)
def test_consistency_errors(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: list[bytes],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        merkle.verify_consistency(
            first=first, second=second, first_root=first_root, second_root=second_root, proof=proof
        )


def test_consistency_trivial_cases() -> None:
    merkle.verify_consistency(first=0, second=0, first_root=EMPTY, second_root=EMPTY, proof=[])
    merkle.verify_consistency(first=0, second=5, first_root=EMPTY, second_root=R5, proof=[])
    merkle.verify_consistency(first=5, second=5, first_root=R5, second_root=R5, proof=[])
