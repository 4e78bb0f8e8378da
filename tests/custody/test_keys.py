"""The log's signing key: created once with owner-only permissions, then reloaded as is."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from service.custody.keys import load_or_create_signer
from service.errors import ConfigurationError


def test_first_start_creates_a_private_key_that_later_starts_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.key"
    created = load_or_create_signer(path, name="locker.example/log")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == created.private_bytes()

    reloaded = load_or_create_signer(path, name="locker.example/log")
    assert reloaded.private_bytes() == created.private_bytes()
    assert reloaded.verifier().to_text() == created.verifier().to_text()
    assert reloaded.verifier().open(created.sign("same key\n")) == "same key\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not base64!\n", "base64"),
        (base64.b64encode(b"\x01" * 31).decode() + "\n", "must be 32 bytes, got 31"),
        ("\n", "must be 32 bytes, got 0"),
    ],
)
def test_a_damaged_key_file_is_a_configuration_error(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "log.key"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=f"cannot load {path}: .*{reason}"):
        load_or_create_signer(path, name="locker.example/log")
    assert path.read_text() == content  # never replaced by a new key


def test_an_unreadable_key_path_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    path.mkdir()
    with pytest.raises(ConfigurationError, match="LOCKER_SIGNING_KEY_FILE: cannot load"):
        load_or_create_signer(path, name="locker.example/log")
