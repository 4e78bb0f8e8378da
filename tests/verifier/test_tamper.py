"""The tamper suite: every change to a bundle is caught, by a finding that names it.

The named cases below check which finding each change gets; `test_generated_mutations`
runs the generated suite (tests/verifier/tamper_suite.py, over a thousand mutations)
and checks the refusal rate of every kind.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.client.verifier import verify_path
from service.client.verify_command import register
from service.core import bagit, bundle
from service.core.canonical import canonical_json
from service.core.checkpoint import NoteSigner
from service.core.entry import decode_entry, encode_entry
from tests.verifier import tamper_suite
from tests.verifier.bundles import (
    ORIGIN,
    PAYLOAD_PATHS,
    Built,
    add_member,
    build,
    drop_member,
    read_members,
    reseal,
    rewrite_member,
    write_members,
)
from tests.verifier.test_isolation import DOC


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One valid bundle, shared: every test writes its tampered copy elsewhere."""
    return build(tmp_path_factory.mktemp("bundle"))


def _member(built: Built, rel: str) -> bytes:
    return read_members(built.path)[built.name(rel)]


def _findings(path: Path, key: str | None) -> list[tuple[str, str, str]]:
    verdict = verify_path(path, key)
    assert not verdict.ok
    return [(f.check, f.subject, f.message) for f in verdict.findings]


def _assert_found(path: Path, key: str | None, check: str, subject: str, text: str = "") -> None:
    findings = _findings(path, key)
    assert any(c == check and subject in s and text in m for c, s, m in findings), (
        f"no {check!r} finding on {subject!r} with {text!r} in {findings}"
    )


def _flip(data: bytes, position: int = 0) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def test_untouched_bundle_verifies(built: Built) -> None:
    verdict = verify_path(built.path, built.key)
    assert verdict.ok, verdict.findings
    assert verdict.key_source == "given"
    assert verdict.checkpoint is not None and verdict.checkpoint.origin == ORIGIN
    assert verdict.checked[bagit.PAYLOAD] == len(PAYLOAD_PATHS)
    assert verdict.checked[bundle.PROOFS] == len(built.entry_indexes)


@pytest.mark.parametrize("rel", PAYLOAD_PATHS)
def test_flipped_byte_in_payload_file(built: Built, tmp_path: Path, rel: str) -> None:
    data = _member(built, rel)
    path = rewrite_member(
        built.path, tmp_path / "t.zip", built.name(rel), _flip(data, len(data) // 2)
    )
    _assert_found(path, built.key, bagit.PAYLOAD, rel, "sha256 mismatch")
    _assert_found(path, built.key, bagit.PAYLOAD, rel, "sha512 mismatch")


@pytest.mark.parametrize("rel", PAYLOAD_PATHS)
def test_flipped_byte_in_zip_is_caught_by_crc(built: Built, tmp_path: Path, rel: str) -> None:
    raw = built.path.read_bytes()
    data = _member(built, rel)
    start = raw.index(data)  # stored uncompressed: the content sits in the zip as is
    path = tmp_path / "t.zip"
    path.write_bytes(_flip(raw, start + len(data) // 2))
    _assert_found(path, built.key, bagit.PAYLOAD, rel, "unreadable")


@pytest.mark.parametrize("number", [0, 1])
def test_evidence_replaced_and_resealed(built: Built, tmp_path: Path, number: int) -> None:
    """A forger who also rewrites the manifests is caught by the signed ingest entry."""
    rel = PAYLOAD_PATHS[number]
    changed = rewrite_member(built.path, tmp_path / "a.zip", built.name(rel), b"forged")
    path = reseal(changed, tmp_path / "t.zip", built.top)
    subject = f"evidence:{built.evidence_ids[number]}"
    _assert_found(path, built.key, bundle.ITEMS, subject, "sha256 mismatch")


def _entry_rel(built: Built, position: int) -> str:
    return bundle.entry_path(built.entry_indexes[position])


def _edited_entry(leaf: bytes) -> bytes:
    fields = decode_entry(leaf)
    del fields["format"]
    return encode_entry({**fields, "actor": "user:666"})


@pytest.mark.parametrize("position", range(5))
@pytest.mark.parametrize("sealed", [False, True])
def test_edited_custody_entry(built: Built, tmp_path: Path, position: int, sealed: bool) -> None:
    rel = _entry_rel(built, position)
    edited = _edited_entry(_member(built, rel))
    path = rewrite_member(built.path, tmp_path / "a.zip", built.name(rel), edited)
    if sealed:
        path = reseal(path, tmp_path / "t.zip", built.top)
    else:
        _assert_found(path, built.key, bagit.TAGS, rel, "sha256 mismatch")
    _assert_found(path, built.key, bundle.PROOFS, rel, "not in the checkpoint")


def test_dropped_entry(built: Built, tmp_path: Path) -> None:
    rel = _entry_rel(built, 1)  # the ingest entry of the first evidence item
    path = reseal(
        drop_member(built.path, tmp_path / "a.zip", built.name(rel)), tmp_path / "t.zip", built.top
    )
    index = str(built.entry_indexes[1])
    _assert_found(path, built.key, bundle.PROOFS, bundle.PROOFS_PATH, f"entry '{index}'")
    _assert_found(path, built.key, bundle.ITEMS, built.evidence_ids[0], "ingest entry")


def test_swapped_entries(built: Built, tmp_path: Path) -> None:
    first, second = _entry_rel(built, 1), _entry_rel(built, 3)
    members = read_members(built.path)
    a, b = built.name(first), built.name(second)
    members[a], members[b] = members[b], members[a]
    path = reseal(write_members(tmp_path / "a.zip", members.items()), tmp_path / "t.zip", built.top)
    _assert_found(path, built.key, bundle.ENTRIES, first, "file name")
    _assert_found(path, built.key, bundle.ENTRIES, second, "file name")


def test_altered_proof_hash(built: Built, tmp_path: Path) -> None:
    proofs = json.loads(_member(built, bundle.PROOFS_PATH))
    index = str(built.entry_indexes[2])
    raw = base64.b64decode(proofs["proofs"][index][0])
    proofs["proofs"][index][0] = base64.b64encode(_flip(raw)).decode()
    name = built.name(bundle.PROOFS_PATH)
    path = rewrite_member(built.path, tmp_path / "a.zip", name, canonical_json(proofs))
    _assert_found(path, built.key, bagit.TAGS, bundle.PROOFS_PATH, "mismatch")
    _assert_found(path, built.key, bundle.PROOFS, bundle.entry_path(int(index)), "root")


def _resigned(built: Built, signer: NoteSigner) -> bytes:
    note = _member(built, bundle.CHECKPOINT_PATH).decode()
    body = note[: note.rindex("\n\n") + 1]
    return signer.sign(body).encode()


def test_checkpoint_resigned_by_another_key(built: Built, tmp_path: Path) -> None:
    forged = _resigned(built, NoteSigner.generate(ORIGIN))
    name = built.name(bundle.CHECKPOINT_PATH)
    path = reseal(
        rewrite_member(built.path, tmp_path / "a.zip", name, forged), tmp_path / "t.zip", built.top
    )
    _assert_found(path, built.key, bundle.CHECKPOINT, bundle.CHECKPOINT_PATH, "no signature")


def test_forger_replacing_key_and_checkpoint_fails_only_with_the_given_key(
    built: Built, tmp_path: Path
) -> None:
    forger = NoteSigner.generate(ORIGIN)
    members = read_members(built.path)
    members[built.name(bundle.CHECKPOINT_PATH)] = _resigned(built, forger)
    members[built.name(bundle.KEY_PATH)] = (forger.verifier().to_text() + "\n").encode()
    path = reseal(write_members(tmp_path / "a.zip", members.items()), tmp_path / "t.zip", built.top)
    trusted_blindly = verify_path(path, None)
    assert trusted_blindly.ok and trusted_blindly.key_source == "bundle"  # integrity only
    _assert_found(path, built.key, bundle.CHECKPOINT, bundle.CHECKPOINT_PATH, "no signature")
    _assert_found(path, built.key, bundle.CHECKPOINT, bundle.KEY_PATH, "not the given key")


def test_altered_signature(built: Built, tmp_path: Path) -> None:
    note = _member(built, bundle.CHECKPOINT_PATH).decode()
    head, _, signature = note.rstrip("\n").rpartition(" ")
    raw = base64.b64decode(signature)
    forged = f"{head} {base64.b64encode(_flip(raw, 10)).decode()}\n".encode()
    name = built.name(bundle.CHECKPOINT_PATH)
    path = rewrite_member(built.path, tmp_path / "t.zip", name, forged)
    _assert_found(path, built.key, bundle.CHECKPOINT, bundle.CHECKPOINT_PATH, "invalid signature")


def test_wrong_key(built: Built) -> None:
    other = NoteSigner.generate(ORIGIN).verifier().to_text()
    _assert_found(built.path, other, bundle.CHECKPOINT, bundle.CHECKPOINT_PATH, "no signature")


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("Payload-Oxum", "103497.5"),
        ("Source-Organization", "org-9999"),
        ("Bagging-Date", "2024-01-01"),
        ("External-Identifier", "someone-else"),
        ("Bag-Software-Agent", "forged"),
        ("Locker-Log-Origin", "evil.example/log"),
    ],
)
def test_edited_bag_info(built: Built, tmp_path: Path, label: str, value: str) -> None:
    lines = _member(built, "bag-info.txt").decode().splitlines(keepends=True)
    edited = "".join(f"{label}: {value}\n" if line.startswith(label) else line for line in lines)
    path = rewrite_member(
        built.path, tmp_path / "t.zip", built.name("bag-info.txt"), edited.encode()
    )
    _assert_found(path, built.key, bagit.TAGS, "bag-info.txt", "sha256 mismatch")
    if label == "Payload-Oxum":
        _assert_found(path, built.key, bagit.BAG_INFO, "Payload-Oxum", value)
    if label == "Locker-Log-Origin":
        _assert_found(path, built.key, bundle.CHECKPOINT, bundle.CHECKPOINT_PATH, "origin")


@pytest.mark.parametrize("rel", ["data/extra.txt", "data/evidence/x/planted.jpg"])
def test_added_payload_file(built: Built, tmp_path: Path, rel: str) -> None:
    path = add_member(built.path, tmp_path / "t.zip", built.name(rel), b"planted")
    _assert_found(path, built.key, bagit.MANIFESTS, rel, "not listed in manifest-sha256.txt")
    _assert_found(path, built.key, bagit.MANIFESTS, rel, "not listed in manifest-sha512.txt")
    _assert_found(path, built.key, bagit.BAG_INFO, "Payload-Oxum")


def test_added_tag_file(built: Built, tmp_path: Path) -> None:
    path = add_member(built.path, tmp_path / "t.zip", built.name("custody/note.txt"), b"x")
    _assert_found(path, built.key, bagit.TAGS, "custody/note.txt", "not listed")


@pytest.mark.parametrize("rel", PAYLOAD_PATHS)
def test_removed_payload_file(built: Built, tmp_path: Path, rel: str) -> None:
    path = drop_member(built.path, tmp_path / "t.zip", built.name(rel))
    _assert_found(path, built.key, bagit.MANIFESTS, rel, "missing from the bag")
    _assert_found(path, built.key, bagit.BAG_INFO, "Payload-Oxum")


@pytest.mark.parametrize(
    "name", ["../evil", "{top}/../../evil", "/etc/evil", "{top}/data/..\\evil", "{top}/./x"]
)
def test_path_traversal_names(built: Built, tmp_path: Path, name: str) -> None:
    name = name.format(top=built.top)
    path = add_member(built.path, tmp_path / "t.zip", name, b"evil")
    _assert_found(path, built.key, bagit.PATHS, name, "unsafe path")


@pytest.mark.parametrize(
    "rel", ["manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt", "bagit.txt"]
)
def test_missing_manifest(built: Built, tmp_path: Path, rel: str) -> None:
    path = drop_member(built.path, tmp_path / "t.zip", built.name(rel))
    findings = _findings(path, built.key)
    assert any(rel == s and "missing from the bag" in m for _, s, m in findings), findings


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_zip(built: Built, tmp_path: Path, keep: float) -> None:
    raw = built.path.read_bytes()
    path = tmp_path / "t.zip"
    path.write_bytes(raw[: int(len(raw) * keep)])
    _assert_found(path, built.key, "zip", str(path), "not a readable zip")


def test_not_a_zip(built: Built, tmp_path: Path) -> None:
    path = tmp_path / "t.zip"
    path.write_text("%PDF-1.7 not a zip at all\n")
    _assert_found(path, built.key, "zip", str(path), "not a readable zip")


def test_symlink_duplicate_and_stray_entries(built: Built, tmp_path: Path) -> None:
    members = [*read_members(built.path).items()]
    members += [(built.name("custody/link"), b"/etc/passwd"), ("stray.txt", b"x")]
    members += [(built.name("report/report.html"), b"<html>second</html>")]
    link = built.name("custody/link")
    path = write_members(tmp_path / "t.zip", members, symlinks=[link])
    _assert_found(path, built.key, "zip", link, "symbolic link")
    _assert_found(path, built.key, "zip", "stray.txt", "outside the bag folder")
    _assert_found(path, built.key, "zip", built.name("report/report.html"), "2 entries")


def test_generated_mutations(built: Built) -> None:
    """Every mutation that touches signed content is refused (100 % per kind); every one
    that changes only the zip container's metadata verifies, as designed. The rates are
    those docs/verification.md shows."""
    table: dict[str, tuple[int, int, bool]] = {}
    wrong: list[str] = []
    for mutation in tamper_suite.mutations(built):
        refused = tamper_suite.refused(mutation, built.key)
        done, total, _ = table.get(mutation.kind, (0, 0, mutation.touches_signed))
        table[mutation.kind] = (done + refused, total + 1, mutation.touches_signed)
        if refused != mutation.touches_signed:
            verdict = "verified" if mutation.touches_signed else "was refused"
            wrong.append(f"{mutation.kind}: {mutation.description} {verdict}")
    assert not wrong, "\n".join(wrong)
    assert sum(total for _, total, _ in table.values()) >= 1000
    for kind in ("remove an item", "insert an item (other organisation)", "edit the report"):
        assert table[kind][0] == table[kind][1] > 0, (kind, table[kind])
    assert table["zip metadata only"] == (0, 4, False)
    documented = re.search(
        r"<!-- tamper-rates:begin -->\n(.*?)<!-- tamper-rates:end -->", DOC.read_text(), re.S
    )
    assert documented and documented[1] == tamper_suite.markdown(table), "update the docs table"


# --- The command: exit codes and JSON --------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for the locker's CLI."""

    register(app)
    return app


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), ["verify", *map(str, args)])
    return result.exit_code, result.stdout


def _key_file(built: Built, tmp_path: Path) -> Path:
    key = tmp_path / "locker.key"
    key.write_text(built.key + "\n")
    return key


def test_cli_verified(built: Built, tmp_path: Path) -> None:
    code, out = _run(built.path, "--key", _key_file(built, tmp_path))
    assert code == 0, out
    assert "VERIFIED" in out and "WARNING" not in out


def test_cli_without_key_warns(built: Built) -> None:
    code, out = _run(built.path)
    assert code == 3  # intact, origin unproven: never 0 without a trusted key
    assert "WARNING" in out and "integrity" in out
    assert "ORIGIN UNPROVEN" in out and "VERIFIED" not in out.replace("NOT VERIFIED", "")


def test_cli_integrity_failure(built: Built, tmp_path: Path) -> None:
    path = drop_member(built.path, tmp_path / "t.zip", built.name(PAYLOAD_PATHS[0]))
    code, out = _run(path, "--key", _key_file(built, tmp_path))
    assert code == 1
    assert "NOT VERIFIED" in out


def test_cli_json(built: Built, tmp_path: Path) -> None:
    rel = PAYLOAD_PATHS[0]
    data = _member(built, rel)
    path = rewrite_member(built.path, tmp_path / "t.zip", built.name(rel), _flip(data))
    code, out = _run(path, "--key", _key_file(built, tmp_path), "--json")
    assert code == 1
    document = json.loads(out)
    assert document["ok"] is False and document["key_source"] == "given"
    assert {"check": bagit.PAYLOAD, "subject": rel} in [
        {"check": f["check"], "subject": f["subject"]} for f in document["findings"]
    ]
    code, out = _run(built.path, "--key", _key_file(built, tmp_path), "--json")
    assert code == 0 and json.loads(out)["findings"] == []


@pytest.mark.parametrize("problem", ["no bundle", "no key file", "malformed key"])
def test_cli_usage_errors(built: Built, tmp_path: Path, problem: str) -> None:
    key = _key_file(built, tmp_path)
    if problem == "malformed key":
        key.write_text("not a key\n")
    bundle_path = tmp_path / "absent.zip" if problem == "no bundle" else built.path
    key_path = tmp_path / "absent.key" if problem == "no key file" else key
    code, _ = _run(bundle_path, "--key", key_path)
    assert code == 2
