"""File names that cannot lie: the one safe form of a name the locker shows or writes.

The original filename stays in the record exactly as received. Everywhere a name is
displayed or becomes a file (a download's Content-Disposition, a bundle member, a
report, CLI output) the safe form is used: without bidirectional or invisible
controls, which make `photo\u202egpj.exe` display as `photoexe.jpg` (Unicode TR 9
§2, TR 36 §2.1), without path separators, and without what Windows refuses in a
name (Microsoft, "Naming Files, Paths, and Namespaces").
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_MAX_NAME = 200  # bytes of UTF-8; filesystems mostly allow 255
_MAX_EXTENSION = 16
# Removed outright: format characters (bidi embeddings, overrides and isolates, zero-width
# joiners and spaces, the BOM), surrogates, private use, unassigned code points, and
# line and paragraph separators. Nothing of them is visible; all of them can deceive.
_INVISIBLE = frozenset({"Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Replaced by "_": C0/C1 controls, path separators, and the characters Windows refuses.
_REFUSED = frozenset('/\\<>:"|?*')
# Windows device names, reserved with any extension (CON.txt is still the console).
_DEVICE = re.compile(r"(?i)(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?")


def safe_filename(name: str) -> str:
    """`name` as one harmless path segment that displays as what it is.

    NFC; invisible and bidi controls removed; controls, separators and characters
    Windows refuses replaced by "_", as are leading dots (hidden files) and trailing
    dots and spaces (which Windows drops); a Windows device name gets a leading "_";
    at most 200 bytes of UTF-8, keeping a short extension. Never empty.
    """
    # NFC again after the removals: a removed joiner may leave a composable pair.
    text = "".join(_safe_character(c) for c in unicodedata.normalize("NFC", name))
    text = unicodedata.normalize("NFC", text)
    body = text.lstrip(".")
    text = "_" * (len(text) - len(body)) + body
    end = text.rstrip(". ")
    text = end + "_" * (len(text) - len(end))
    if _DEVICE.fullmatch(text):
        text = "_" + text
    return _shortened(text) or "_"


def visible_text(text: str) -> str:
    """`text` for a terminal or a report line: invisible and bidi controls removed,
    other control characters shown as U+FFFD. For names read from untrusted input
    (a bundle's member names) that are printed, not written as files."""
    return "".join(
        "" if category in _INVISIBLE else "\ufffd" if category == "Cc" else c
        for c, category in ((c, unicodedata.category(c)) for c in text)
    )


def _safe_character(character: str) -> str:
    category = unicodedata.category(character)
    if category in _INVISIBLE:
        return ""
    if category == "Cc" or character in _REFUSED:
        return "_"
    return character


def _shortened(name: str) -> str:
    """At most _MAX_NAME bytes of UTF-8, keeping a short extension so the file still
    opens with the right program."""
    if len(name.encode()) <= _MAX_NAME:
        return name
    stem, dot, suffix = name.rpartition(".")
    extension = f".{suffix}" if dot and stem and len(suffix.encode()) <= _MAX_EXTENSION else ""
    room = _MAX_NAME - len(extension.encode())
    kept = name[: len(name) - len(extension)].encode()[:room].decode("utf-8", "ignore")
    return kept + extension


def attachment_disposition(name: str) -> str:
    """A Content-Disposition for downloading `name` (RFC 6266 §4.3, RFC 8187 §3.2).

    `filename` is an ASCII fallback for old clients; `filename*` carries the safe name
    in UTF-8. Both are derived from `safe_filename`, so neither can lie.
    """
    safe = safe_filename(name)
    fallback = "".join(c if " " <= c <= "~" else "_" for c in safe)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe, safe='')}"
