"""Tokens from an authority nobody here wrote (`openssl ts -reply`), whose responses carry
the chain in chain order: accepted, verified offline, and refused when they should be."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
from rfc3161_client import decode_timestamp_response

from service.client.verifier import verify_path
from service.core import bundle
from service.core.der import der_timestamp_response
from service.core.timestamp import (
    TimestampInvalid,
    TimestampMismatch,
    timestamp_request,
    verify_timestamp,
)
from tests.openssl_tsa import OpensslAuthority, openssl_available
from tests.tsa import Authority
from tests.verifier.bundles import Built, add_member, build, read_members, reseal
from tests.verifier.test_isolation import _block

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> OpensslAuthority:
    return OpensslAuthority.create(tmp_path_factory.mktemp("openssl-tsa"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


def _note(built: Built) -> bytes:
    return read_members(built.path)[built.name(bundle.CHECKPOINT_PATH)]


def _stamped(built: Built, ca_pem: bytes, tmp_path: Path, token: bytes) -> Path:
    with_token = add_member(
        built.path, tmp_path / "t.zip", built.name(bundle.TIMESTAMP_PATH), token
    )
    with_ca = add_member(with_token, tmp_path / "c.zip", built.name(bundle.TSA_CA_PATH), ca_pem)
    return reseal(with_ca, tmp_path / "stamped.zip", built.top)


def test_the_chain_arrives_in_chain_order_which_strict_der_refuses(
    authority: OpensslAuthority,
) -> None:
    token = authority.respond(timestamp_request(b"note\n").der)
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        decode_timestamp_response(token)
    parsed = decode_timestamp_response(der_timestamp_response(token))
    assert len(parsed.signed_data.certificates) == 3  # TSA, intermediate, root


def test_a_token_with_the_chain_verifies(authority: OpensslAuthority) -> None:
    request = timestamp_request(b"note\n")
    token = authority.respond(request.der)
    attested = verify_timestamp(token, b"note\n", roots=[authority.root], nonce=request.nonce)
    assert attested.authority == "CN=Independent TSA,O=Independent Test Authority"
    assert attested.policy == "1.3.6.1.4.1.55738.2.1"


def test_refused_for_other_data_another_authority_or_a_broken_signature(
    authority: OpensslAuthority, tmp_path: Path
) -> None:
    token = authority.respond(timestamp_request(b"note\n").der)
    with pytest.raises(TimestampMismatch, match="the token attests sha256:"):
        verify_timestamp(token, b"other\n", roots=[authority.root])
    stranger = OpensslAuthority.create(tmp_path / "stranger", "Stranger")
    with pytest.raises(TimestampInvalid, match="signature or certificate does not hold"):
        verify_timestamp(token, b"note\n", roots=[stranger.root])
    broken = bytearray(token)
    broken[-5] ^= 0x01  # inside the CMS signature, which ends the response
    with pytest.raises(TimestampInvalid, match="signature or certificate does not hold"):
        verify_timestamp(bytes(broken), b"note\n", roots=[authority.root])


def test_a_bundle_keeps_the_token_as_received_and_verifies(
    built: Built, authority: OpensslAuthority, tmp_path: Path
) -> None:
    token = authority.respond(timestamp_request(_note(built)).der)
    path = _stamped(built, authority.ca_pem(), tmp_path, token)
    verdict = verify_path(path, built.key, [authority.root])
    assert verdict.ok, verdict.findings
    assert verdict.timestamp is not None
    assert verdict.timestamp.authority == "CN=Independent TSA,O=Independent Test Authority"
    with zipfile.ZipFile(path) as archive:
        assert archive.read(built.name(bundle.TIMESTAMP_PATH)) == token
        archive.extractall(tmp_path / "bundle")
    bag = tmp_path / "bundle" / built.top
    (bag / "tsa-ca.pem").write_bytes(authority.ca_pem())
    result = subprocess.run(
        ["bash", "-e", "-c", _block("openssl-ts-check")], cwd=bag, capture_output=True, text=True
    )
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result


def test_a_bundled_token_from_another_authority_is_a_finding(
    built: Built, authority: OpensslAuthority, tmp_path: Path
) -> None:
    stranger = OpensslAuthority.create(tmp_path / "stranger", "Stranger")
    token = stranger.respond(timestamp_request(_note(built)).der)
    path = _stamped(built, stranger.ca_pem(), tmp_path, token)
    findings = verify_path(path, built.key, [authority.root]).findings
    assert [(f.check, f.subject) for f in findings] == [(bundle.TIMESTAMP, bundle.TIMESTAMP_PATH)]
    # the stranger's own root travels in the token; it is not one the expert trusts
    assert "self-signed certificate in certificate chain" in findings[0].message


def _with_members(built: Built, tmp_path: Path, members: dict[str, bytes]) -> Path:
    tmp_path.mkdir()
    path = built.path
    for n, (name, data) in enumerate(members.items()):
        path = add_member(path, tmp_path / f"m{n}.zip", built.name(name), data)
    return reseal(path, tmp_path / "sealed.zip", built.top)


def test_each_authoritys_token_is_checked_and_reported_on_its_own(
    built: Built, authority: OpensslAuthority, tmp_path: Path
) -> None:
    ours = Authority.create()
    note = _note(built)
    second, second_ca = bundle.timestamp_paths("tsa.example")
    third, third_ca = bundle.timestamp_paths("127.0.0.1-8318")
    members = {
        bundle.TIMESTAMP_PATH: ours.respond(timestamp_request(note).der),
        bundle.TSA_CA_PATH: ours.ca_pem(),
        second: authority.respond(timestamp_request(note).der),
        second_ca: authority.ca_pem(),
    }
    path = _with_members(built, tmp_path / "two", members)
    verdict = verify_path(path, built.key)
    assert verdict.ok, verdict.findings
    assert [(p, t.authority) for p, t in verdict.timestamps.items()] == [
        (bundle.TIMESTAMP_PATH, "CN=Locker Test TSA,O=Locker Test TSA"),
        (second, "CN=Independent TSA,O=Independent Test Authority"),
    ]
    assert verdict.timestamp == verdict.timestamps[bundle.TIMESTAMP_PATH]
    # a third token without its CA, the second's CA unreadable: each named, the first stands
    members |= {third: authority.respond(timestamp_request(note).der), second_ca: b"not PEM"}
    verdict = verify_path(_with_members(built, tmp_path / "three", members), built.key)
    assert [(f.check, f.subject) for f in verdict.findings] == [  # by file name
        (bundle.TIMESTAMP, third_ca),
        (bundle.TIMESTAMP, second_ca),
    ]
    assert list(verdict.timestamps) == [bundle.TIMESTAMP_PATH]
    assert verdict.checked[bundle.TIMESTAMP] == 3
