"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the checkpoints
(c2sp.org/tlog-checkpoint) the custody log signs with them.

A signed note is its text, a blank line, then lines "— <key name> <base64 signature>".
Everything here is strict: text that does not follow the specs raises FormatError, and
a note without a valid signature by the expected key raises SignatureError.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from service.errors import FormatError, SignatureError

_SIGNATURE_PREFIX = "— "  # signed-note §Format: em dash (U+2014), space
_ED25519 = b"\x01"  # signed-note §Signature types
_KEY_HASH_SIZE = 4
_ROOT_HASH_SIZE = 32
# signed-note asks verifiers to cap the signature count and to accept at least 16.
_MAX_SIGNATURES = 100
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # tlog-checkpoint: no leading zeroes
_KEY_HASH_HEX = re.compile(r"[0-9a-fA-F]{8}")
_MAX_SIZE = 2**64 - 1


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), refusing anything but the one canonical spelling."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise FormatError(f"{what} is not valid base64: {text!r}") from None
    if _b64encode(raw) != text:
        raise FormatError(f"{what} is not canonical base64: {text!r}")
    return raw


def _check_text(text: str, what: str) -> None:
    """Signed-note §Format: valid UTF-8, no ASCII control characters but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{what} is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise FormatError(f"{what} contains a control character")


def _check_line(line: str, what: str) -> None:
    """A non-empty line of note text (tlog-checkpoint §Note text)."""
    _check_text(line, what)
    if not line or "\n" in line:
        raise FormatError(f"{what} must be one non-empty line, got {line!r}")


def _check_name(name: str) -> None:
    """Signed-note §Format: key names are non-empty, without Unicode spaces or '+'."""
    _check_text(name, "key name")
    if not name or "+" in name or any(c.isspace() for c in name):
        raise FormatError(f"invalid key name {name!r}: need no spaces and no '+'")


def _key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """Signed-note §Ed25519 signatures: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    material = name.encode("utf-8") + b"\n" + _ED25519 + public_key.public_bytes_raw()
    return hashlib.sha256(material).digest()[:_KEY_HASH_SIZE]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A log's tree head: origin, tree size and RFC 9162 root hash (tlog-checkpoint)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not 0 <= self.size <= _MAX_SIZE:
            raise FormatError(f"checkpoint size must be in [0, 2**64), got {self.size}")
        if len(self.root_hash) != _ROOT_HASH_SIZE:
            raise FormatError(
                f"checkpoint root hash has wrong size: expected {_ROOT_HASH_SIZE}, "
                f"got {len(self.root_hash)}"
            )
        for line in self.extensions:
            _check_line(line, "checkpoint extension line")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse note text; FormatError unless it is exactly what `to_text` would write."""
        if not text.endswith("\n"):
            raise FormatError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"checkpoint needs at least 3 lines, got {len(lines)}")
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise FormatError(f"checkpoint size is not a plain decimal number: {size!r}")
        return cls(
            origin=origin,
            size=int(size),
            root_hash=_b64decode(root, "checkpoint root hash"),
            extensions=tuple(extensions),
        )


class NoteVerifier:
    """An Ed25519 note verifier key: checks signatures made by one named key."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_name(name)
        self.name = name
        self.public_key = public_key
        self.key_hash = _key_hash(name, public_key)

    def to_text(self) -> str:
        """The verifier key: "<name>+<8 hex key hash>+<base64(0x01 || public key)>"."""
        key = _b64encode(_ED25519 + self.public_key.public_bytes_raw())
        return f"{self.name}+{self.key_hash.hex()}+{key}"

    @classmethod
    def from_text(cls, text: str) -> NoteVerifier:
        """Parse a verifier key; FormatError if malformed or its hash does not match."""
        name, _, rest = text.partition("+")
        key_hash, _, key_b64 = rest.partition("+")
        if not _KEY_HASH_HEX.fullmatch(key_hash):
            raise FormatError(f"verifier key needs '<name>+<8 hex digits>+<key>': {text!r}")
        key = _b64decode(key_b64, "verifier public key")
        if len(key) != 1 + 32 or key[:1] != _ED25519:
            raise FormatError("verifier key is not a 32-byte Ed25519 (type 0x01) key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(key[1:]))
        if verifier.key_hash != bytes.fromhex(key_hash):
            raise FormatError(
                f"verifier key hash mismatch: expected {verifier.key_hash.hex()}, "
                f"got {key_hash.lower()}"
            )
        return verifier

    def open(self, note: str) -> str:
        """Check this key's signature on `note` and return the note text.

        Signatures by other keys are ignored (signed-note §Signatures); every signature
        with this key's name and hash must verify, and there must be at least one.
        """
        text, signatures = _split_note(note)
        signed = False
        for name, key_hash, signature in signatures:
            if (name, key_hash) != (self.name, self.key_hash):
                continue
            try:
                self.public_key.verify(signature, text.encode("utf-8"))
            except InvalidSignature:
                raise SignatureError(f"invalid signature by {self.name} on note") from None
            signed = True
        if not signed:
            raise SignatureError(f"note has no signature by {self.name}")
        return text


class NoteSigner:
    """An Ed25519 note signing key with its name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._private_key = private_key

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> NoteSigner:
        """The key whose raw 32-byte RFC 8032 private key is `raw`."""
        if len(raw) != 32:
            raise FormatError(f"Ed25519 private key must be 32 bytes, got {len(raw)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key."""
        return self._private_key.private_bytes_raw()

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self.name, self._private_key.public_key())

    def sign(self, body: str) -> str:
        """The signed note: `body` (ending in newline), a blank line, one signature line."""
        _check_text(body, "note text")
        if not body.endswith("\n"):
            raise FormatError("note text must end with a newline")
        signature = self._private_key.sign(body.encode("utf-8"))
        key_hash = _key_hash(self.name, self._private_key.public_key())
        return f"{body}\n{_SIGNATURE_PREFIX}{self.name} {_b64encode(key_hash + signature)}\n"


class KeyHistory:
    """The verifier keys a log has had, oldest first, as its operator publishes them.

    After a key rotation (`log.key_rotated`, whose checkpoint the old key signs) a
    checkpoint is valid when any key of the history signed it. Opens notes like a
    `NoteVerifier`.
    """

    def __init__(self, verifiers: tuple[NoteVerifier, ...]) -> None:
        if not verifiers:
            raise FormatError("a key history needs at least one verifier key")
        names = {v.name for v in verifiers}
        if len(names) != 1:
            raise FormatError(f"a key history names one log, got keys for {sorted(names)}")
        self.verifiers = verifiers
        self.name = verifiers[0].name

    def to_text(self) -> str:
        """One verifier key per line, oldest first."""
        return "".join(v.to_text() + "\n" for v in self.verifiers)

    def open(self, note: str) -> str:
        """The note's text if some key of the history signed it; else SignatureError.

        A signature line by a key of the history that does not verify is refused, as
        `NoteVerifier.open` refuses it.
        """
        text, signatures = _split_note(note)
        known = {v.key_hash: v for v in self.verifiers}
        if not any(name == self.name and key_hash in known for name, key_hash, _ in signatures):
            raise SignatureError(f"note has no signature by any key of {self.name}'s history")
        for name, key_hash, _ in signatures:
            if name == self.name and key_hash in known:
                known[key_hash].open(note)
        return text


def parse_verifier_keys(text: str) -> NoteVerifier | KeyHistory:
    """One verifier key, or a key history (one key per line, oldest first)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        return NoteVerifier.from_text(lines[0])
    return KeyHistory(tuple(NoteVerifier.from_text(line) for line in lines))


def cosign(note: str, signer: NoteSigner) -> str:
    """`note` with one more signature line, by `signer`, over the same text."""
    text, _ = _split_note(note)
    signed = signer.sign(text)
    return note + signed[len(text) + 1 :]


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and (key name, key hash, signature) triples."""
    _check_text(note, "signed note")
    # signed-note §Format: the text ends at the last blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise FormatError("signed note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise FormatError("signed note must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise FormatError(f"signed note has more than {_MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise FormatError(f"signature line must start with an em dash and a space: {line!r}")
    name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    _check_name(name)
    raw = _b64decode(encoded, "signature")
    if len(raw) <= _KEY_HASH_SIZE:
        raise FormatError(f"signature by {name} is too short")
    return name, raw[:_KEY_HASH_SIZE], raw[_KEY_HASH_SIZE:]


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a note signed by `signer`."""
    return signer.sign(checkpoint.to_text())


def open_checkpoint(
    note: str, verifier: NoteVerifier | KeyHistory, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and parse it; if `origin` is given the log must match."""
    checkpoint = Checkpoint.from_text(verifier.open(note))
    if origin is not None and checkpoint.origin != origin:
        raise FormatError(f"checkpoint origin is {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint
