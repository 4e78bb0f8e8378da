"""Independent verifier for the custody log's signed checkpoints and Merkle proofs.

Written from the public specifications only (RFC 9162 §2.1, C2SP signed-note, C2SP
tlog-checkpoint); it imports nothing from the locker. Every function takes plain bytes,
ints and str, and raises ValueError when something does not check out.
"""

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_SIZE = 32  # SHA-256
ED25519 = b"\x01"  # signed-note signature type byte for Ed25519
SIG_PREFIX = "\u2014 "  # em dash and a space start every signature line


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(hashes: list[bytes], what: str) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"{what}: every hash must be {HASH_SIZE} bytes, got {len(h)}")


def _bad_name(name: str) -> bool:
    return not name or "+" in name or any(c.isspace() for c in name)


def parse_verifier_key(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """Parse "<name>+<8 hex key hash>+<base64(0x01 || pubkey)>"."""
    parts = text.strip().split("+", 2)  # the name has no "+", base64 may
    if len(parts) != 3 or _bad_name(parts[0]) or len(parts[1]) != 8:
        raise ValueError("verifier key must look like <name>+<8 hex digits>+<base64 key>")
    name, hash_hex, key_b64 = parts
    try:
        keyhash = bytes.fromhex(hash_hex)
    except ValueError as exc:
        raise ValueError("verifier key hash is not hex") from exc
    key = _b64(key_b64, "verifier key")
    if len(key) != 33 or key[:1] != ED25519:
        raise ValueError("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
    want = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if keyhash != want:
        raise ValueError("verifier key hash does not match its name and public key")
    return name, keyhash, Ed25519PublicKey.from_public_bytes(key[1:])


def open_note(note_text: str, verifier_key_text: str) -> str:
    """Check a signed note against one trusted key; return the signed body text."""
    name, keyhash, pub = parse_verifier_key(verifier_key_text)
    if any(c < " " and c != "\n" for c in note_text):
        raise ValueError("note contains control characters")
    if not note_text.endswith("\n"):
        raise ValueError("note must end with a newline")
    split = note_text.rfind("\n\n")
    if split < 0:
        raise ValueError("note has no blank line between body and signatures")
    body, sig_block = note_text[: split + 1], note_text[split + 2 :]
    verified = 0
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
            raise ValueError(f"malformed signature line: {line!r}")
        sig_name, sig_b64 = line[len(SIG_PREFIX) :].split(" ")
        raw = _b64(sig_b64, "signature")
        if _bad_name(sig_name) or len(raw) < 5:
            raise ValueError(f"malformed signature line: {line!r}")
        if sig_name != name or raw[:4] != keyhash:
            continue  # another signer (e.g. a witness) we were not asked to trust
        try:
            pub.verify(raw[4:], body.encode())
        except InvalidSignature as exc:
            raise ValueError(f"signature by {name} does not verify") from exc
        verified += 1
    if not verified:
        raise ValueError(f"note carries no signature by the trusted key {name}")
    return body


def open_checkpoint(note_text: str, verifier_key_text: str) -> tuple[str, int, bytes]:
    """Verify a signed tlog checkpoint; return (origin, tree size, root hash)."""
    lines = open_note(note_text, verifier_key_text)[:-1].split("\n")
    if len(lines) < 3:
        raise ValueError("checkpoint needs origin, tree size and root hash lines")
    origin, size_text, root_b64, *extensions = lines
    if not origin:
        raise ValueError("checkpoint origin line is empty")
    if not (size_text.isascii() and size_text.isdigit()) or size_text != str(int(size_text)):
        raise ValueError(f"checkpoint tree size is not a plain decimal: {size_text!r}")
    root = _b64(root_b64, "checkpoint root hash")
    _check_hashes([root], "checkpoint root")
    if any(not ext for ext in extensions):
        raise ValueError("checkpoint has an empty extension line")
    return origin, int(size_text), root


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """Check that the raw leaf bytes sit at `index` in the tree of `size` with `root`."""
    verify_inclusion_hash(hashlib.sha256(b"\x00" + leaf).digest(), index, size, proof, root)


def verify_inclusion_hash(
    leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    _check_hashes([leaf_hash, root, *proof], "inclusion proof")
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise ValueError("inclusion proof does not lead to the expected root")


def verify_consistency(  # noqa: C901, PLR0912 (RFC 9162 §2.1.4.2 step by step)
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> None:
    """Check that the tree (second, second_root) extends the tree (first, first_root)."""
    _check_hashes(proof, "consistency proof")  # roots are only ever compared, never hashed
    if not 0 < first <= second:
        raise ValueError(f"need 0 < first <= second, got first={first} second={second}")
    if first == second:  # nothing to prove beyond equal roots
        if proof:
            raise ValueError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(first_root, second_root):
            raise ValueError("roots differ for the same tree size")
        return
    if not proof:
        raise ValueError("consistency proof is empty")
    _check_hashes([first_root, second_root], "consistency roots")
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ValueError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("consistency proof is shorter than needed")
    if not hmac.compare_digest(fr, first_root):
        raise ValueError("consistency proof does not reproduce the first root")
    if not hmac.compare_digest(sr, second_root):
        raise ValueError("consistency proof does not reproduce the second root")
