"""service.core.bagit and .bundle: the writer helpers, and verify_bundle over a memory reader."""

from __future__ import annotations

import json
import random
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.client.verifier import ZipBundle, verify_path
from service.core import bagit, bundle, seal
from service.core.canonical import canonical_json
from service.errors import FormatError
from tests.independent import verifier as independent
from tests.verifier.bundles import TOP, Built, build, read_members


class MemoryReader:
    """A BundleReader over a dict, delivering content in small chunks."""

    def __init__(self, files: dict[str, bytes], *, broken: frozenset[str] = frozenset()) -> None:
        self.files, self.broken = files, broken

    def names(self) -> list[str]:
        return list(self.files)

    def open(self, name: str) -> Iterator[bytes]:
        data = self.files[name]
        for start in range(0, len(data), 1000):
            if name in self.broken:
                raise OSError("disk on fire")
            yield data[start : start + 1000]

    def read(self, name: str, limit: int) -> bytes:
        if len(self.files[name]) > limit:
            raise FormatError("too long")
        return b"".join(self.open(name))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def files(built: Built) -> dict[str, bytes]:
    """The valid bag's files by bag path: mutate freely."""
    return {n.removeprefix(f"{TOP}/"): d for n, d in read_members(built.path).items()}


def _verify(files: dict[str, bytes], key: str | None) -> bundle.Verdict:
    return bundle.verify_bundle(MemoryReader(files), verifier_key=key)


def _messages(verdict: bundle.Verdict) -> list[str]:
    return [f"{f.check}|{f.subject}|{f.message}" for f in verdict.findings]


# --- Writer helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("شهادة الشاهد.txt", "شهادة الشاهد.txt"),
        ("../../etc/passwd", "___.._etc_passwd"),
        ("a\\b/c", "a_b_c"),
        (".htaccess", "_htaccess"),
        ("...", "___"),
        ("", "_"),
        ("tab\there\nnew\x00nul\x7fdel\x85nel", "tab_here_new_nul_del_nel"),
        ("e\u0301te\u0301.jpg", "été.jpg"),
        ("a..b.txt", "a..b.txt"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert bagit.safe_filename(name) == safe


def test_safe_filename_is_short_nfc_and_never_unsafe() -> None:
    long = bagit.safe_filename("ش" * 500 + ".txt")
    assert len(long.encode()) <= 200 and long.endswith("ش.txt")
    assert bagit.safe_filename("a" * 300) == "a" * 200
    assert bagit.safe_filename("é" * 150 + "." + "x" * 40).encode() == "é".encode() * 100
    for name in ["..", "/", "\\", "./x", "\u0000", "a/../b"]:
        safe = bagit.safe_filename(name)
        assert safe and not bagit.unsafe_path(safe) and "/" not in safe
        assert unicodedata.is_normalized("NFC", safe)


def test_manifest_text_is_sorted_sha256sum_lines_with_percent_encoding() -> None:
    text = bagit.manifest_text([("data/b", "bb"), ("data/a%\r\nz", "aa")])
    assert text == "aa  data/a%25%0D%0Az\nbb  data/b\n"


def test_bag_info_text_keeps_order_and_refuses_line_breaks() -> None:
    text = bagit.bag_info_text({"Source-Organization": "Org", "Bagging-Date": "2025-01-02"})
    assert text == "Source-Organization: Org\nBagging-Date: 2025-01-02\n"
    for label, value in [("Bad:Label", "x"), (" Lead", "x"), ("Label", "two\nlines")]:
        with pytest.raises(FormatError):
            bagit.bag_info_text({label: value})


def test_proofs_items_and_entry_paths() -> None:
    proofs = bundle.proofs_json(9, {17: [b"\x00" * 32], 3: []})
    assert json.loads(proofs) == {"tree_size": 9, "proofs": {"17": ["A" * 43 + "="], "3": []}}
    assert canonical_json(json.loads(proofs)) == proofs
    items = bundle.items_json([{"id": "e", "size": 1}], ["i"])
    assert items == b'{"evidence":[{"id":"e","size":1}],"incidents":["i"]}'
    assert bundle.entry_path(17) == "custody/entries/000000000017.json"
    assert bagit.BAGIT_TXT == "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


# --- Verification through a reader -----------------------------------------------------


def test_valid_bag_verifies_with_given_and_with_bundled_key(
    built: Built, files: dict[str, bytes]
) -> None:
    given = _verify(files, built.key)
    assert given.ok and given.key_source == "given"
    bundled = _verify(files, None)
    assert bundled.ok and bundled.key_source == "bundle"
    assert bundled.checkpoint == given.checkpoint is not None


def test_manifest_path_with_percent_and_newline_round_trips(files: dict[str, bytes]) -> None:
    """RFC 8493 §2.1.3: a path with %, CR or LF is percent-encoded and still matches."""
    name = "data/odd%name\r\nhere.txt"
    files[name] = b"odd"
    verdict = _verify(files, None)
    assert all(
        name not in f.subject or "not listed" in f.message or "not sealed" in f.message
        for f in verdict.findings
    )
    assert any(f.subject == name for f in verdict.findings)  # unlisted, so still a finding


def test_bag_info_continuation_lines(built: Built, files: dict[str, bytes]) -> None:
    bag_info = files["bag-info.txt"].decode()
    files["bag-info.txt"] = bag_info.replace("tests\n", "tests\n  continued\n").encode()
    verdict = _verify(files, built.key)
    # The tag manifest's and the seal's digests, nothing about the continued value.
    assert [(f.check, f.subject) for f in verdict.findings] == [
        (bagit.TAGS, "bag-info.txt"),
        (seal.SEAL, "bag-info.txt"),
    ]


def test_unreadable_files_and_oversized_tag_files_are_findings(
    built: Built, files: dict[str, bytes]
) -> None:
    payload = next(name for name in files if name.startswith("data/evidence/"))
    verdict = bundle.verify_bundle(
        MemoryReader(files, broken=frozenset({payload, "custody/items.json"})),
        verifier_key=built.key,
    )
    assert f"payload digests|{payload}|unreadable: disk on fire" in _messages(verdict)
    assert "items|custody/items.json|unreadable: disk on fire" in _messages(verdict)
    files["custody/proofs.json"] = b" " * (bagit.TAG_LIMIT + 1)
    assert "inclusion proofs|custody/proofs.json|unreadable: too long" in _messages(
        _verify(files, built.key)
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("abc  data/x", "not a '<sha256 hex>  <path>' line"),
        ("nothing-here", "not a '<sha256 hex>  <path>' line"),
        (f"{'0' * 64}  data/../x", "unsafe path"),
        (f"{'0' * 64}  bagit.txt", "does not belong in manifest-sha256.txt"),
        (f"{'0' * 64}  data/records/incidents/{{incident}}", "listed twice"),
    ],
)
def test_bad_manifest_lines(files: dict[str, bytes], line: str, expected: str) -> None:
    incident = next(n for n in files if n.startswith("data/records/incidents/"))
    line = line.replace("data/records/incidents/{incident}", incident)
    files["manifest-sha256.txt"] += (line + "\n").encode()
    assert any(expected in m for m in _messages(_verify(files, None)))


@pytest.mark.parametrize(
    ("rel", "content", "expected"),
    [
        ("custody/items.json", b'{"evidence": [], "incidents": []}', "not canonical"),
        ("custody/items.json", b'{"evidence":{},"incidents":[]}', "needs an evidence list"),
        ("custody/items.json", b'{"evidence":[{"id":1}],"incidents":[7]}', "malformed"),
        ("custody/items.json", b"[]", "not a JSON object"),
        ("custody/proofs.json", b'{"proofs":[],"tree_size":"9"}', "integer tree_size"),
        ("custody/proofs.json", b'{"proofs":{},"tree_size":1}', "no inclusion proof"),
        ("custody/entries/000000000001.json", b'{"a":1}', "format is not"),
        ("custody/entries/1.json", b"{}", "12-digit index"),
        ("custody/verifier-key.txt", b"nonsense\n", "malformed verifier key"),
        ("custody/checkpoint.txt", b"\xff", "not UTF-8"),
        ("bagit.txt", b"BagIt-Version: 0.97\n", "expected"),
        ("bag-info.txt", b"no colon here\n", "Label: value"),
        ("bag-info.txt", b"Bagging-Date: yesterday\n", "YYYY-MM-DD"),
        ("fetch.txt", b"http://x 1 data/y\n", "must hold every file"),
        ("tagmanifest-md5.txt", b"", "unsupported tag manifest"),
    ],
)
def test_malformed_tag_files(
    files: dict[str, bytes], rel: str, content: bytes, expected: str
) -> None:
    files[rel] = content
    messages = _messages(_verify(files, None))
    assert any(expected in m for m in messages), messages


def test_unsafe_reader_names_are_never_read(files: dict[str, bytes]) -> None:
    files["../evil"] = files["/abs"] = files["data\\x"] = files["C:/x"] = b"evil"
    reader = MemoryReader(files, broken=frozenset({"../evil", "/abs", "data\\x", "C:/x"}))
    verdict = bundle.verify_bundle(reader, verifier_key=None)
    unsafe = {f.subject for f in verdict.findings if "unsafe path" in f.message}
    assert unsafe == {"../evil", "/abs", "data\\x", "C:/x"}


def test_random_corruption_never_raises_and_is_always_found(files: dict[str, bytes]) -> None:
    """Flip random bits or cut any file: never an exception, always a finding."""
    rng = random.Random(8493)
    for name, data in sorted(files.items()):
        for _ in range(6):
            mutated = dict(files)
            if rng.random() < 0.25:
                mutated[name] = data[: rng.randrange(len(data))]
            else:
                position = rng.randrange(len(data))
                flipped = data[position] ^ (1 << rng.randrange(8))
                mutated[name] = data[:position] + bytes([flipped]) + data[position + 1 :]
            assert not _verify(mutated, None).ok, (name, mutated[name][:80])


def test_findings_name_the_check_and_subject(built: Built, files: dict[str, bytes]) -> None:
    del files["custody/checkpoint.txt"]
    verdict = _verify(files, built.key)
    assert re.search(r"checkpoint\|custody/checkpoint.txt\|missing", "\n".join(_messages(verdict)))
    assert verdict.checkpoint is None and not verdict.ok


def test_zip_reader_round_trip(built: Built, tmp_path: Path) -> None:
    verdict = verify_path(built.path, built.key)
    assert verdict.ok and verdict.checked["zip"] == len(read_members(built.path))
    with zipfile.ZipFile(built.path) as archive:
        reader = ZipBundle(archive)
        assert reader.top == TOP and "bagit.txt" in reader.names()
        with pytest.raises(FormatError):
            reader.read("custody/items.json", 10)
        with pytest.raises(FormatError):
            list(reader.open("no/such/file"))


# --- The seal and the export entries -----------------------------------------------------


def test_the_seal_covers_only_what_is_not_checked_on_its_own() -> None:
    assert seal.is_sealed("report/report.html") and seal.is_sealed("custody/items.json")
    assert not seal.is_sealed("custody/entries/000000000001.json")
    with pytest.raises(FormatError, match="not sealed"):
        seal.seal_json(export_id="e", organisation="o", files={bundle.CHECKPOINT_PATH: "00"})


def _findings_of(files: dict[str, bytes], built: Built, check: str) -> list[str]:
    verdict = _verify(files, built.key)
    return [f"{f.subject}|{f.message}" for f in verdict.findings if f.check == check]


def test_a_seal_that_lists_no_files_is_refused(built: Built, files: dict[str, bytes]) -> None:
    files[seal.SEAL_PATH] = canonical_json({"export": "x", "organisation": "y", "files": []})
    assert any("needs a files object" in m for m in _findings_of(files, built, seal.SEAL))


def test_a_proof_that_is_not_a_list_is_refused(built: Built, files: dict[str, bytes]) -> None:
    proofs = json.loads(files[bundle.PROOFS_PATH])
    index = next(iter(proofs["proofs"]))
    proofs["proofs"][index] = "AAAA"
    files[bundle.PROOFS_PATH] = canonical_json(proofs)
    found = _findings_of(files, built, bundle.PROOFS)
    assert any("list of base64 strings" in m for m in found), found


def test_incidents_other_than_the_signed_ones_are_refused(
    built: Built, files: dict[str, bytes]
) -> None:
    items = json.loads(files[bundle.ITEMS_PATH])
    items["incidents"] = []
    files[bundle.ITEMS_PATH] = canonical_json(items)
    found = _findings_of(files, built, seal.EXPORT)
    assert any("incidents [], export.created signs" in m for m in found), found


def test_an_item_listed_twice_is_refused(built: Built, files: dict[str, bytes]) -> None:
    items = json.loads(files[bundle.ITEMS_PATH])
    items["evidence"].append(items["evidence"][0])
    files[bundle.ITEMS_PATH] = canonical_json(items)
    found = _findings_of(files, built, seal.EXPORT)
    assert any("3 items, export.created signs 2" in m for m in found), found


def test_a_log_of_v1_entries_before_the_export_still_verifies(tmp_path: Path) -> None:
    """Entries written before format v2 keep verifying, by both verifiers."""
    built = build(tmp_path, v1=True)
    files = {n.removeprefix(f"{TOP}/"): d for n, d in read_members(built.path).items()}
    formats = {json.loads(d)["format"] for p, d in files.items() if p.startswith("custody/ent")}
    assert formats == {"locker.custody.v1", "locker.custody.v2"}
    verdict = _verify(files, built.key)
    assert verdict.ok, verdict.findings
    independent.check_bundle_claims(files, built.key)
