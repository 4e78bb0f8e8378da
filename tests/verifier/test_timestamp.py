"""The checkpoint's RFC 3161 timestamp in a bundle: checked offline, tampering named."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.client.verifier import verify_path
from service.client.verify_command import register
from service.core import bagit, bundle
from service.core.timestamp import load_certificates, timestamp_request
from tests.tsa import Authority
from tests.verifier.bundles import Built, add_member, build, read_members, reseal, rewrite_member
from tests.verifier.test_isolation import _block


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.create()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bundle"))


def _token(authority: Authority, message: bytes) -> bytes:
    return authority.respond(timestamp_request(message).der)


def _stamped(built: Built, authority: Authority, tmp_path: Path, token: bytes) -> Path:
    """The bundle with a token and the TSA's CA added, resealed as the exporter would."""
    with_token = add_member(
        built.path, tmp_path / "t.zip", built.name(bundle.TIMESTAMP_PATH), token
    )
    with_ca = add_member(
        with_token, tmp_path / "c.zip", built.name(bundle.TSA_CA_PATH), authority.ca_pem()
    )
    return reseal(with_ca, tmp_path / "stamped.zip", built.top)


def _note(built: Built) -> bytes:
    return read_members(built.path)[built.name(bundle.CHECKPOINT_PATH)]


def _findings(path: Path, key: str, roots: object = None) -> list[tuple[str, str, str]]:
    verdict = verify_path(path, key, roots)  # type: ignore[arg-type]
    return [(f.check, f.subject, f.message) for f in verdict.findings]


def test_a_valid_token_verifies_and_reports_the_time(
    built: Built, authority: Authority, tmp_path: Path
) -> None:
    path = _stamped(built, authority, tmp_path, _token(authority, _note(built)))
    for roots, source in ((None, "bundle"), ([authority.ca], "given")):
        verdict = verify_path(path, built.key, roots)
        assert verdict.ok, verdict.findings
        assert verdict.timestamp is not None and verdict.tsa_source == source
        assert verdict.timestamp.authority == "CN=Locker Test TSA,O=Locker Test TSA"
        assert verdict.checked[bundle.TIMESTAMP] == 1


def test_a_bundle_without_a_token_has_no_timestamp(built: Built) -> None:
    verdict = verify_path(built.path, built.key)
    assert verdict.ok and verdict.timestamp is None and bundle.TIMESTAMP not in verdict.checked


def test_a_token_for_another_checkpoint(built: Built, authority: Authority, tmp_path: Path) -> None:
    other = _note(built).replace(b"\n", b"\n\n", 1)
    path = _stamped(built, authority, tmp_path, _token(authority, other))
    [(check, subject, message)] = _findings(path, built.key)
    assert (check, subject) == (bundle.TIMESTAMP, bundle.TIMESTAMP_PATH)
    assert message.startswith("not a timestamp of custody/checkpoint.txt: the token attests")


def test_a_tampered_token(built: Built, authority: Authority, tmp_path: Path) -> None:
    token = bytearray(_token(authority, _note(built)))
    token[-5] ^= 0x01  # inside the CMS signature
    path = _stamped(built, authority, tmp_path, bytes(token))
    [(check, subject, message)] = _findings(path, built.key)
    assert (check, subject) == (bundle.TIMESTAMP, bundle.TIMESTAMP_PATH)
    assert message.startswith("not verified: signature or certificate does not hold")


def test_a_token_replaced_after_sealing(built: Built, authority: Authority, tmp_path: Path) -> None:
    path = _stamped(built, authority, tmp_path, _token(authority, _note(built)))
    forged = rewrite_member(
        path, tmp_path / "f.zip", built.name(bundle.TIMESTAMP_PATH), _token(authority, b"x")
    )
    checks = {(c, s) for c, s, _ in _findings(forged, built.key)}
    assert checks == {
        (bagit.TAGS, bundle.TIMESTAMP_PATH),
        (bundle.TIMESTAMP, bundle.TIMESTAMP_PATH),
    }


def test_a_token_from_another_authority(built: Built, authority: Authority, tmp_path: Path) -> None:
    forger = Authority.create("Forger")
    path = _stamped(built, forger, tmp_path, _token(forger, _note(built)))
    assert verify_path(path, built.key).ok  # self-consistent against the bundled CA copy
    [(check, subject, message)] = _findings(path, built.key, [authority.ca])
    assert (check, subject) == (bundle.TIMESTAMP, bundle.TIMESTAMP_PATH)
    assert "unable to get local issuer certificate" in message


def _run(*args: str | Path) -> tuple[int, str]:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for the locker's CLI."""

    register(app)
    result = CliRunner().invoke(app, ["verify", *map(str, args)])
    return result.exit_code, " ".join(result.stdout.split())  # rich wraps long lines


def test_cli_reports_the_attested_time(built: Built, authority: Authority, tmp_path: Path) -> None:
    path = _stamped(built, authority, tmp_path, _token(authority, _note(built)))
    key, ca = tmp_path / "locker.key", tmp_path / "tsa-ca.pem"
    key.write_text(built.key + "\n")
    ca.write_bytes(authority.ca_pem())
    verdict = verify_path(path, built.key, load_certificates(authority.ca_pem()))
    assert verdict.timestamp is not None
    code, out = _run(path, "--key", key, "--tsa-ca", ca)
    assert code == 0, out
    assert f"existed at {verdict.timestamp.time.isoformat()}" in out and "WARNING" not in out
    code, out = _run(path, "--key", key)
    assert code == 0 and "--tsa-ca" in out and "WARNING" in out
    code, out = _run(path, "--key", key, "--tsa-ca", key)
    assert code == 2


def test_cli_names_a_token_for_another_checkpoint(
    built: Built, authority: Authority, tmp_path: Path
) -> None:
    path = _stamped(built, authority, tmp_path, _token(authority, b"another checkpoint"))
    key = tmp_path / "locker.key"
    key.write_text(built.key + "\n")
    code, out = _run(path, "--key", key, "--json")
    assert code == 1
    assert '"check": "trusted timestamp"' in out and "custody/checkpoint.tsr" in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.parametrize("message", ["checkpoint", "another"])
def test_documented_openssl_ts_steps(
    built: Built, authority: Authority, tmp_path: Path, message: str
) -> None:
    note = _note(built) if message == "checkpoint" else b"another checkpoint\n"
    path = _stamped(built, authority, tmp_path, _token(authority, note))
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "bundle")
    bag = tmp_path / "bundle" / built.top
    (bag / "tsa-ca.pem").write_bytes(authority.ca_pem())
    result = subprocess.run(
        ["bash", "-e", "-c", _block("openssl-ts-check")], cwd=bag, capture_output=True, text=True
    )
    assert ("Verification: OK" in result.stdout) == (message == "checkpoint"), result
    assert (result.returncode == 0) == (message == "checkpoint")
