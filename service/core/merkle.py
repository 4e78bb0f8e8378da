"""RFC 9162 §2.1 Merkle trees: hashing, proof building from stored nodes, proof checking.

The three concerns are separate, as in transparency-dev/merkle:

* hashing (`leaf_hash`, `node_hash`, the reference `root_from_leaf_hashes`);
* building: every hash a proof needs is the hash of a leaf range [start, end) that is a
  node of the RFC tree. Such a range splits into aligned perfect subtrees (`NodeId`),
  whose hashes the custody log stores as it appends (`hashes_for_append`), so any proof
  costs O(log n) stored-node reads fetched in one query (`nodes_needed`);
* verification (`verify_inclusion`, `verify_consistency`), which trusts nothing but its
  arguments and follows transparency-dev/merkle proof/verify.go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from service.errors import ProofError, RootMismatch

HASH_SIZE = 32

# RFC 9162 §2.1.1: domain separation between leaves and interior nodes.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n. Requires n > 1 (RFC 9162 §2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) straight from RFC 9162 §2.1.1, O(n): the reference the rest is tested on."""
    if not hashes:
        return EMPTY_ROOT
    return _mth(hashes, 0, len(hashes))


def _mth(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return hashes[start]
    mid = start + _split(end - start)
    return node_hash(_mth(hashes, start, mid), _mth(hashes, mid, end))


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """The perfect subtree at `level` covering leaves [index * 2**level, (index+1) * 2**level)."""

    level: int
    index: int


def perfect_subtrees(start: int, end: int) -> list[NodeId]:
    """The maximal aligned perfect subtrees covering [start, end), left to right.

    Requires 0 <= start < end.
    """
    if not 0 <= start < end:
        raise ProofError(f"need 0 <= start < end, got [{start}, {end})")
    nodes: list[NodeId] = []
    while start < end:
        # The biggest subtree that starts at `start` (alignment) and fits before `end`.
        level = (start & -start).bit_length() - 1 if start else end.bit_length()
        while start + (1 << level) > end:
            level -= 1
        nodes.append(NodeId(level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) from the stored hashes of its perfect subtrees.

    Requires [start, end) to be a node of the RFC 9162 tree, as every range returned by
    `inclusion_ranges` and `consistency_ranges` is: then its subtrees shrink strictly
    from left to right and folding them right to left with `node_hash` follows the
    §2.1.1 split exactly.
    """
    subtrees = perfect_subtrees(start, end)
    if any(a.level <= b.level for a, b in pairwise(subtrees)):
        raise ProofError(f"[{start}, {end}) is not a subtree of the Merkle tree")
    hashes = [_stored(nodes, node) for node in subtrees]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _stored(nodes: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    try:
        return nodes[node]
    except KeyError:
        raise ProofError(f"tree node level {node.level} index {node.index} is missing") from None


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf first.

    Requires 0 <= index < size.
    """
    if not 0 <= index < size:
        raise ProofError(f"need 0 <= index < size, got index {index}, size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:  # PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((mid, end))
            end = mid
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(first, D[second]) (RFC 9162 §2.1.4.1).

    Requires 0 < first <= second; first == second gives the empty proof.
    """
    if not 0 < first <= second:
        raise ProofError(f"need 0 < first <= second, got first {first}, second {second}")
    ranges: list[tuple[int, int]] = []
    start, end, whole = 0, second, True  # SUBPROOF(m, D[start:end], b) with b = whole
    while first != end:
        mid = start + _split(end - start)
        if first <= mid:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((mid, end))
            end = mid
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, mid))
            start, whole = mid, False
    if not whole:  # m == n and b is false: the proof starts with MTH(D[m])
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def nodes_needed(ranges: Iterable[tuple[int, int]]) -> set[NodeId]:
    """Every stored node the hashes of `ranges` are computed from (fetch them at once)."""
    return {node for start, end in ranges for node in perfect_subtrees(start, end)}


def build_proof(ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """The proof: the hash of each range, in order, from the stored nodes."""
    return [range_hash(start, end, nodes) for start, end in ranges]


def nodes_completed_by_append(index: int) -> list[NodeId]:
    """The perfect subtrees that appending leaf `index` completes, bottom-up."""
    completed = [NodeId(0, index)]
    level = 0
    while (index >> level) & 1:  # the node just completed is a right child
        level += 1
        completed.append(NodeId(level, index >> level))
    return completed


def append_siblings(index: int) -> list[NodeId]:
    """The left siblings needed to hash the nodes leaf `index` completes, bottom-up."""
    return [NodeId(node.level, node.index - 1) for node in nodes_completed_by_append(index)[:-1]]


def hashes_for_append(
    index: int, leaf_hash: bytes, siblings: Mapping[NodeId, bytes]
) -> dict[NodeId, bytes]:
    """The hash of every node completed by appending leaf `index` with `leaf_hash`."""
    _check_hash_size("leaf hash", leaf_hash)
    completed = nodes_completed_by_append(index)
    hashes = {completed[0]: leaf_hash}
    current = leaf_hash
    for sibling, parent in zip(append_siblings(index), completed[1:], strict=True):
        current = node_hash(_stored(siblings, sibling), current)
        hashes[parent] = current
    return hashes


# --- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2; transparency-dev/merkle proof/verify.go)


def _check_hash_size(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has wrong size: expected {HASH_SIZE}, got {len(value)}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        _check_hash_size(f"proof element {position}", element)


def _check_root(*, expected: bytes, calculated: bytes) -> None:
    if calculated != expected:
        raise RootMismatch(expected_root=expected, calculated_root=calculated)


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border) parts.

    `inner` hashes sit where the paths to `index` and to `size - 1` still differ; the
    `border` hashes are left siblings on the tree's right border above that.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(proof):
        # Bit `level` of the index says whether the path goes right at that level.
        seed = node_hash(sibling, seed) if (index >> level) & 1 else node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like `_chain_inner`, but only the left siblings: the path to a smaller tree's root."""
    for level, sibling in enumerate(proof):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def root_from_inclusion_proof(
    *, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` leads to from `leaf_hash` at `index` (RFC 9162 §2.1.3.2).

    Requires 0 <= index < size and a proof of exactly the right length.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} is beyond size {size}")
    _check_hash_size("leaf hash", leaf_hash)
    _check_proof(proof)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof has wrong size: expected {inner + border}, got {len(proof)}"
        )
    result = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(result, proof[inner:])


def verify_inclusion(
    *, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` with `root`."""
    _check_hash_size("root", root)
    calculated = root_from_inclusion_proof(index=index, size=size, leaf_hash=leaf_hash, proof=proof)
    _check_root(expected=root, calculated=calculated)


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `first` with `first_root` is a prefix of the tree of `second`.

    RFC 9162 §2.1.4.2. Requires 0 <= first <= second. Equal sizes need an empty proof and
    equal roots. The empty tree (root SHA-256("")) is a prefix of every tree, with an
    empty proof; such a check proves nothing about the second tree.
    """
    if not 0 <= first <= second:
        raise ProofError(f"need 0 <= first <= second, got first {first}, second {second}")
    if first < second:
        _check_hash_size("first root", first_root)
        _check_hash_size("second root", second_root)
        _check_proof(proof)
    if first == 0 or first == second:
        if proof:
            raise ProofError(f"consistency proof has wrong size: expected 0, got {len(proof)}")
        if first == 0:
            _check_root(expected=first_root, calculated=EMPTY_ROOT)
        if first == second:
            _check_root(expected=second_root, calculated=first_root)
        return
    _verify_consistency_proof(first, second, first_root, second_root, proof)


def _verify_consistency_proof(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2 for 0 < first < second, as in transparency-dev/merkle."""
    # The proof is, in effect, the inclusion proof of leaf first - 1 in the second tree,
    # started from the largest perfect subtree ending at `first` (size 2**shift) ...
    inner, border = _decompose(first - 1, second)
    shift = (first & -first).bit_length() - 1
    inner -= shift
    # ... preceded by that subtree's hash, unless it is the whole first tree.
    start = 0 if first == 1 << shift else 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof has wrong size: expected {start + inner + border}, got {len(proof)}"
        )
    seed = first_root if start == 0 else proof[0]
    path, border_path = proof[start : start + inner], proof[start + inner :]
    mask = (first - 1) >> shift
    first_calculated = _chain_border_right(_chain_inner_right(seed, path, mask), border_path)
    _check_root(expected=first_root, calculated=first_calculated)
    second_calculated = _chain_border_right(_chain_inner(seed, path, mask), border_path)
    _check_root(expected=second_root, calculated=second_calculated)
