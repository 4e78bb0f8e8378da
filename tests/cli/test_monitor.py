"""`locker verify --server`: a partner watches the log from outside and catches a fork."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from service.cli import app
from service.core.checkpoint import Checkpoint, sign_checkpoint
from tests.harness import Locker, free_port

runner = CliRunner()


def _monitor(
    locker: Locker, key: Path, state: Path, *, server: str | None = None
) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "verify",
            "--server",
            server or locker.base_url,
            "--verifier-key",
            str(key),
            "--state",
            str(state),
            "--api-key",
            locker.api_key,
        ],
    )
    return result.exit_code, result.output


def test_growing_log_passes_and_a_fork_is_caught(locker: Locker, tmp_path: Path) -> None:
    key, state = tmp_path / "key.txt", tmp_path / "state.txt"
    key.write_text(locker.runtime.log.verifier.to_text() + "\n")
    code, output = _monitor(locker, key, state)
    assert code == 0, output
    first = state.read_text()
    with locker.client() as client:
        for n in range(5):
            client.post("/v1/incidents", json={"title": f"n{n}"})
    code, output = _monitor(locker, key, state)
    assert code == 0 and "consistent with saved size" in output, output
    assert state.read_text() != first
    # A checkpoint of the same size with another root, as a forked log would show.
    saved = Checkpoint.from_text(state.read_text().split("\n\n")[0] + "\n")
    forged = Checkpoint(origin=saved.origin, size=saved.size, root_hash=b"\x01" * 32)
    state.write_text(sign_checkpoint(forged, locker.runtime.log._signer))
    code, output = _monitor(locker, key, state)
    assert code == 1 and "fork" in output, output
    # An older checkpoint of a different history: the consistency proof fails.
    older = Checkpoint(origin=saved.origin, size=2, root_hash=b"\x02" * 32)
    state.write_text(sign_checkpoint(older, locker.runtime.log._signer))
    code, output = _monitor(locker, key, state)
    assert code == 1 and "not an extension" in output, output


def test_wrong_key_and_missing_options(locker: Locker, tmp_path: Path) -> None:
    from service.core.checkpoint import NoteSigner

    other = tmp_path / "other.txt"
    other.write_text(NoteSigner.generate(locker.runtime.log.origin).verifier().to_text())
    code, output = _monitor(locker, other, tmp_path / "state.txt")
    assert code == 1 and "does not verify" in output
    assert not (tmp_path / "state.txt").exists()
    usage = runner.invoke(app, ["verify", "--server", locker.base_url])
    assert usage.exit_code == 2


def test_an_unreachable_server_is_could_not_check_not_a_finding(
    locker: Locker, tmp_path: Path
) -> None:
    key, state = tmp_path / "key.txt", tmp_path / "state.txt"
    key.write_text(locker.runtime.log.verifier.to_text() + "\n")
    code, output = _monitor(locker, key, state)
    assert code == 0, output
    saved = state.read_text()
    # Nothing listens on a fresh free port: an outage, exit 2, not 1 (tampering) or 0.
    code, output = _monitor(locker, key, state, server=f"http://127.0.0.1:{free_port()}")
    assert code == 2, output
    assert "could not check" in output and "FINDING" not in output, output
    assert state.read_text() == saved
    # A server that refuses the caller is no finding either.
    options = ["--key", str(key), "--state", str(state), "--api-key", "not-a-key"]
    refused = runner.invoke(app, ["verify", "--server", locker.base_url, *options])
    assert refused.exit_code == 2, refused.output
    assert "could not check" in refused.output and "401" in refused.output, refused.output
