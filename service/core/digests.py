"""Content digests: SHA-256 and SHA-512 computed in one streaming pass.

A digest is a value (`Digest`), printed and parsed as "<algorithm>:<lowercase hex>",
never a bare string passed around.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from service.errors import FormatError

# Length in hex characters of each supported algorithm's digest.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """A hash value named by its algorithm; always well-formed once constructed."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = _HEX_LENGTHS.get(self.algorithm)
        if want is None:
            raise FormatError(f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.hex) != want or not _LOWER_HEX.fullmatch(self.hex):
            raise FormatError(
                f"{self.algorithm} digest must be {want} lowercase hex characters, got {self.hex!r}"
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse "sha256:<hex>" or "sha512:<hex>"; FormatError if malformed."""
        algorithm, sep, hex_ = text.partition(":")
        if not sep:
            raise FormatError(f"digest must look like 'sha256:<hex>', got {text!r}")
        return cls(algorithm=algorithm, hex=hex_)

    @property
    def raw(self) -> bytes:
        """The digest bytes."""
        return bytes.fromhex(self.hex)

    @property
    def b64(self) -> str:
        """The digest bytes in standard base64 (RFC 4648 §4), as in HTTP Repr-Digest."""
        return base64.b64encode(self.raw).decode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentDigests:
    """Everything we record about a blob's bytes: both digests and the byte count."""

    sha256: Digest
    sha512: Digest
    size: int


class ContentDigester:
    """Feeds chunks to SHA-256 and SHA-512 at once, so content is read only once."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512()
        self._size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add the next chunk of content."""
        self._sha256.update(chunk)
        self._sha512.update(chunk)
        self._size += len(chunk)

    def copy(self) -> ContentDigester:
        """An independent digester at the same point (hash states are small)."""
        twin = ContentDigester()
        twin._sha256, twin._sha512, twin._size = (
            self._sha256.copy(),
            self._sha512.copy(),
            self._size,
        )
        return twin

    @property
    def size(self) -> int:
        """Bytes seen so far."""
        return self._size

    def finish(self) -> ContentDigests:
        """The digests of everything seen so far."""
        return ContentDigests(
            sha256=Digest(algorithm="sha256", hex=self._sha256.hexdigest()),
            sha512=Digest(algorithm="sha512", hex=self._sha512.hexdigest()),
            size=self._size,
        )


def digest_stream(chunks: Iterable[bytes]) -> ContentDigests:
    """Digest a stream of chunks without holding it in memory."""
    digester = ContentDigester()
    for chunk in chunks:
        digester.update(chunk)
    return digester.finish()


def sha256(data: bytes) -> Digest:
    """The SHA-256 digest of a small byte string."""
    return Digest(algorithm="sha256", hex=hashlib.sha256(data).hexdigest())


def sha256_hex_valid(text: str) -> bool:
    """Whether `text` is exactly 64 lowercase hex characters."""
    return len(text) == _HEX_LENGTHS["sha256"] and _LOWER_HEX.fullmatch(text) is not None
