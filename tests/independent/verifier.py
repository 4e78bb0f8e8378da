"""Independent verifier for the custody log's signed checkpoints, Merkle proofs, entries
and bundle claims.

Written from the public specifications (RFC 9162 §2.1, C2SP signed-note, C2SP
tlog-checkpoint, RFC 8785) and from docs/verification.md for the entry format and what a
bundle's export entries sign; it imports nothing from the locker. Every function takes
plain bytes, ints and str, and raises ValueError when something does not check out.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re

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


# --- custody entries (docs/verification.md, "Entry formats") ---------------------------

ENTRY_V1, ENTRY_V2 = "locker.custody.v1", "locker.custody.v2"
_ENTRY_FIELDS = {"index": int, "time": str, "organisation": str, "actor": str, "action": str}


def _jcs(value: object) -> str:
    """RFC 8785 for what entries hold: objects, arrays, strings, integers, booleans, null."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))  # §3.2.3: UTF-16 order
        return "{" + ",".join(f"{_jcs(k)}:{_jcs(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, float):
        raise ValueError("entries hold no fractional numbers")
    # Strings, integers, booleans and null serialise as ECMAScript's JSON.stringify does.
    return json.dumps(value, ensure_ascii=False)


def parse_entry(leaf: bytes) -> dict:
    """A custody leaf's fields, checked: canonical JSON, a known format, typed fields;
    v2 signs a `subjects` list of distinct strings starting with `subject`."""
    try:
        fields = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("entry is not UTF-8 JSON") from exc
    if not isinstance(fields, dict) or fields.get("format") not in (ENTRY_V1, ENTRY_V2):
        raise ValueError("entry is not an object of a known format")
    if _jcs(fields).encode() != leaf:
        raise ValueError("entry is not RFC 8785 canonical JSON")
    for name, kind in {**_ENTRY_FIELDS, "subject": str}.items():
        if type(fields.get(name)) is not kind:
            raise ValueError(f"entry field {name} is not a {kind.__name__}")
    subjects = fields.get("subjects")
    if fields["format"] == ENTRY_V1:
        if subjects is not None:
            raise ValueError("a v1 entry has no subjects list")
        return fields
    if not isinstance(subjects, list) or not all(type(s) is str for s in subjects):
        raise ValueError("a v2 entry's subjects must be a list of strings")
    if not subjects or subjects[0] != fields["subject"] or len(set(subjects)) != len(subjects):
        raise ValueError("a v2 entry's subjects must be distinct and start with its subject")
    return fields


def signed_subjects(fields: dict) -> list:
    """Every party an entry signs."""
    return list(fields["subjects"]) if fields["format"] == ENTRY_V2 else [fields["subject"]]


# --- what a bundle's export entries sign (docs/verification.md, "Bundles") -------------


def check_bundle_claims(files: dict, verifier_key_text: str) -> None:
    """A bundle (bag path → bytes) holds exactly what its signed entries say: every entry
    proven in the signed checkpoint and of the bundle's organisation; the items those of
    export.created; every file but the self-checking ones sealed by export.sealed."""
    origin, size, root = open_checkpoint(
        files["custody/checkpoint.txt"].decode(), verifier_key_text
    )
    proofs = json.loads(files["custody/proofs.json"])
    if proofs["tree_size"] != size:
        raise ValueError("proofs are not for the checkpoint's tree size")
    info = dict(line.split(": ", 1) for line in files["bag-info.txt"].decode().splitlines())
    organisation, export = info["Source-Organization"], f"export:{info['External-Identifier']}"
    if info["Locker-Log-Origin"] != origin:
        raise ValueError("the checkpoint is of another log than bag-info names")
    entries = []
    for path, leaf in files.items():
        if not path.startswith("custody/entries/"):
            continue
        fields = parse_entry(leaf)
        if path != f"custody/entries/{fields['index']:012d}.json":
            raise ValueError(f"{path} holds entry {fields['index']}")
        hashes = [_b64(h, "proof hash") for h in proofs["proofs"][str(fields["index"])]]
        verify_inclusion(leaf, fields["index"], size, hashes, root)
        if fields["organisation"] != organisation:
            raise ValueError(f"{path} is of another organisation")
        entries.append(fields)
    _check_export_claims(files, entries, export)


def _only(entries: list, action: str, export: str) -> dict:
    found = [e for e in entries if e["action"] == action and export in signed_subjects(e)]
    if len(found) != 1:
        raise ValueError(f"needs exactly one {action} entry for {export}, got {len(found)}")
    return found[0]


def _check_export_claims(files: dict, entries: list, export: str) -> None:
    created = _only(entries, "export.created", export)
    items = json.loads(files["custody/items.json"])
    held = sorted((e["id"], e["sha256"]) for e in items["evidence"])
    if held != sorted((e["id"], e["sha256"]) for e in created["evidence"]):
        raise ValueError("the bundle's items are not those export.created signs")
    for item in items["evidence"]:
        if hashlib.sha256(files[item["path"]]).hexdigest() != item["sha256"]:
            raise ValueError(f"{item['path']} is not the signed item")
    sealed = _only(entries, "export.sealed", export)
    seal = files["custody/seal.json"]
    if hashlib.sha256(seal).hexdigest() != sealed["seal_sha256"]:
        raise ValueError("custody/seal.json is not the seal export.sealed signs")
    listed = json.loads(seal)["files"]
    unsealed = {"custody/checkpoint.txt", "custody/verifier-key.txt", "custody/proofs.json"}
    unsealed |= {"custody/seal.json", "custody/checkpoint.tsr", "custody/tsa-ca.pem"}
    unsealed |= {"tagmanifest-sha256.txt", "tagmanifest-sha512.txt"}
    for path, data in files.items():
        # RFC 3161 tokens, one per authority, are checked on their own (openssl ts).
        token = re.fullmatch(
            r"custody/(checkpoint(\.[a-z0-9][a-z0-9.-]*)?\.tsr|tsa-ca(\.[a-z0-9][a-z0-9.-]*)?\.pem)",
            path,
        )
        if path in unsealed or token or path.startswith("custody/entries/"):
            continue
        if listed.get(path) != hashlib.sha256(data).hexdigest():
            raise ValueError(f"{path} is not sealed as it is")
    if set(listed) - set(files):
        raise ValueError("a sealed file is missing")
