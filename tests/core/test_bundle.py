"""verify_bundle over a memory reader: the findings for custody files that are present
but wrong (proof shapes, item paths, a missing key, the timestamp's CA). The exporter's
round trip and the tampering of a real bundle zip are in tests/verifier."""

from __future__ import annotations

import json

import pytest

from service.core import bundle
from service.core.canonical import canonical_json
from tests.verifier.bundles import TOP, Built, build, read_members
from tests.verifier.test_bundle import MemoryReader


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def files(built: Built) -> dict[str, bytes]:
    """The valid bag's files by bag path: mutate freely."""
    return {n.removeprefix(f"{TOP}/"): d for n, d in read_members(built.path).items()}


def _findings(files: dict[str, bytes], key: str | None) -> set[tuple[str, str, str]]:
    verdict = bundle.verify_bundle(MemoryReader(files), verifier_key=key)
    return {(f.check, f.subject, f.message) for f in verdict.findings}


def _edited(files: dict[str, bytes], name: str, edit: object) -> None:
    document = json.loads(files[name])
    edit(document)  # type: ignore[operator]
    files[name] = canonical_json(document)


def test_the_untouched_bag_has_no_findings(built: Built, files: dict[str, bytes]) -> None:
    assert _findings(files, built.key) == set()


def test_without_any_verifier_key_the_checkpoint_is_unchecked(files: dict[str, bytes]) -> None:
    del files[bundle.KEY_PATH]
    verdict = bundle.verify_bundle(MemoryReader(files), verifier_key=None)
    assert verdict.checkpoint is None
    assert ("checkpoint", bundle.KEY_PATH, "missing from the bag") in {
        (f.check, f.subject, f.message) for f in verdict.findings
    }
    assert "checkpoint" not in verdict.checked  # no signature was checked


@pytest.mark.parametrize(
    ("proof", "message"),
    [
        ("AAAA", "a proof must be a list of base64 strings"),
        ([1, 2], "a proof must be a list of base64 strings"),
        (["not base64!"], "a proof hash is not base64"),
    ],
)
def test_a_malformed_proof_is_a_finding_on_its_entry(
    built: Built, files: dict[str, bytes], proof: object, message: str
) -> None:
    index = built.entry_indexes[0]
    _edited(files, bundle.PROOFS_PATH, lambda d: d["proofs"].update({str(index): proof}))
    assert (
        bundle.PROOFS,
        bundle.entry_path(index),
        f"not in the checkpoint: {message}",
    ) in _findings(files, built.key)


def test_an_item_path_outside_its_folder_is_a_finding(
    built: Built, files: dict[str, bytes]
) -> None:
    item = json.loads(files[bundle.ITEMS_PATH])["evidence"][0]
    wrong = f"data/evidence/{item['id']}/nested/{item['path'].rsplit('/', 1)[1]}"
    _edited(files, bundle.ITEMS_PATH, lambda d: d["evidence"][0].update(path=wrong))
    assert (
        bundle.ITEMS,
        f"evidence:{item['id']}",
        f"path {wrong!r} is not data/evidence/{item['id']}/<name>",
    ) in _findings(files, built.key)


def test_a_token_without_its_ca_is_a_finding(built: Built, files: dict[str, bytes]) -> None:
    files[bundle.TIMESTAMP_PATH] = b"a token"
    verdict = bundle.verify_bundle(MemoryReader(files), verifier_key=built.key)
    assert verdict.timestamp is None
    assert (
        bundle.TIMESTAMP,
        bundle.TSA_CA_PATH,
        "missing: give the TSA's CA certificate (--tsa-ca)",
    ) in {(f.check, f.subject, f.message) for f in verdict.findings}


def test_a_malformed_bundled_ca_is_a_finding(built: Built, files: dict[str, bytes]) -> None:
    files[bundle.TIMESTAMP_PATH] = b"a token"
    files[bundle.TSA_CA_PATH] = b"not a certificate"
    verdict = bundle.verify_bundle(MemoryReader(files), verifier_key=built.key)
    assert verdict.timestamp is None
    messages = {(f.check, f.subject, f.message) for f in verdict.findings}
    assert any(
        (check, subject) == (bundle.TIMESTAMP, bundle.TSA_CA_PATH)
        and message.startswith("not a PEM certificate bundle")
        for check, subject, message in messages
    ), messages


def test_an_unreadable_tag_manifest_is_a_finding(built: Built, files: dict[str, bytes]) -> None:
    files["tagmanifest-sha512.txt"] = b"\xff\xfe"
    assert ("tag manifest", "tagmanifest-sha512.txt", "not UTF-8 text") in _findings(
        files, built.key
    )
