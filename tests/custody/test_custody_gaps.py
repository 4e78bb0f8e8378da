"""The custody layer's refusals and damaged states: a log key that is missing or foreign,
a tile with a node gone, bundle names for tokens of unconfigured authorities, oversized
TSA replies and a background loop that outlives a failure."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from service.core import merkle
from service.core.bundle import timestamp_paths
from service.core.checkpoint import NoteSigner
from service.core.tiles import TileId
from service.custody import CustodyLog
from service.custody.keys import load_or_create_signer, open_signer, write_key
from service.custody.tiles import read_tile
from service.custody.timestamps import (
    list_timestamps,
    stamp,
    timestamp_checkpoint,
    timestamp_files,
    timestamp_periodically,
)
from service.db import Database
from service.db.models import CheckpointTimestamp, SignedCheckpoint
from service.errors import ConfigurationError, InvalidInput, NotFound
from service.runtime import Runtime, open_runtime
from service.settings import load_settings
from tests.custody.conftest import ORIGIN
from tests.tsa import TsaServer, run_tsa


def _append(log: CustodyLog, database: Database, count: int) -> list[bytes]:
    with database.session() as session:
        return [
            log.append(
                session,
                organisation_id="org-1",
                actor="user:alice",
                action="evidence.ingested",
                subjects=[f"evidence:{n}"],
            ).leaf
            for n in range(count)
        ]


# --- The log key ---------------------------------------------------------------------


def test_a_log_with_entries_and_no_key_stops_the_locker(
    log: CustodyLog, database: Database, tmp_path: Path
) -> None:
    _append(log, database, 2)  # entries, but no checkpoint signed yet
    path = tmp_path / "log.key"
    missing = f"{re.escape(str(path))} is missing but the log has 2 entries"
    with pytest.raises(ConfigurationError, match=missing):
        open_signer(database, path, name=ORIGIN)
    assert not path.exists()  # no new key: it would fork the log
    # Restored from backup, the key is loaded as is while no checkpoint exists to check it.
    restored = NoteSigner.generate(ORIGIN)
    write_key(path, restored)
    assert open_signer(database, path, name=ORIGIN).private_bytes() == restored.private_bytes()


def test_a_key_that_did_not_sign_the_latest_checkpoint_stops_the_locker(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "log.key"
    signer = open_signer(database, path, name=ORIGIN)  # empty log: created
    log = CustodyLog(signer=signer, origin=ORIGIN)
    _append(log, database, 3)
    checkpoint = log.latest_checkpoint(database)
    assert open_signer(database, path, name=ORIGIN).private_bytes() == signer.private_bytes()

    elsewhere = tmp_path / "other.key"
    load_or_create_signer(elsewhere, name=ORIGIN)
    foreign = f"{re.escape(str(elsewhere))} did not sign the log's checkpoint of size"
    with pytest.raises(ConfigurationError, match=f"{foreign} {checkpoint.size}"):
        open_signer(database, elsewhere, name=ORIGIN)


# --- Tiles -----------------------------------------------------------------------------


def test_a_tile_with_a_node_gone_is_not_served(log: CustodyLog, database: Database) -> None:
    leaves = _append(log, database, 5)
    tile = TileId(level=0, index=0, width=5)
    with database.session() as session:
        assert read_tile(session, tile) == b"".join(merkle.leaf_hash(x) for x in leaves)
        with pytest.raises(NotFound, match="needs a tree of 6 entries"):
            read_tile(session, TileId(level=0, index=0, width=6))
    with database.session() as session:  # damage, as only a tampering administrator could
        session.execute(text("DROP TRIGGER tree_node_no_delete"))
        session.execute(text('DELETE FROM tree_node WHERE level = 0 AND "index" = 3'))
    with database.session() as session:
        with pytest.raises(NotFound, match=r"tile/0/000\.p/5: 4 of 5 nodes are stored"):
            read_tile(session, tile)
        narrower = TileId(level=0, index=0, width=3)  # the nodes before the gap are intact
        assert read_tile(session, narrower) == b"".join(merkle.leaf_hash(x) for x in leaves[:3])


# --- Timestamps ------------------------------------------------------------------------


@pytest.fixture
def tsa() -> Iterator[TsaServer]:
    with run_tsa() as server:
        yield server


@pytest.fixture
def stamped_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def factory(*servers: TsaServer, interval: float = 60) -> Runtime:
        cas = []
        for n, server in enumerate(servers):
            cas.append(tmp_path / f"ca-{n}.pem")
            cas[-1].write_bytes(server.authority.ca_pem())
        settings = load_settings(
            data_dir=tmp_path / "data",
            tsa_url=" ".join(s.url for s in servers),
            tsa_ca_file=",".join(str(c) for c in cas),
            tsa_timeout=2,
            tsa_interval=interval,
        )
        opened.append(open_runtime(settings))
        return opened[-1]

    yield factory
    for runtime in opened:
        runtime.close()


def _token(token_id: int, url: str) -> CheckpointTimestamp:
    return CheckpointTimestamp(
        id=token_id,
        checkpoint_size=1,
        tsa_url=url,
        response=f"token {token_id}".encode(),
        sha256="00" * 32,
        attested_at=datetime(2026, 1, 1, tzinfo=UTC),
        authority="CN=test",
        serial_number=str(token_id),
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_tokens_of_authorities_no_longer_configured_get_names_of_their_own(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer
) -> None:
    runtime = stamped_runtime(tsa)
    configured = tsa.url
    # Two retired authorities on one host, one on another; listed before the configured one.
    tokens = [
        _token(7, "https://old.example/a"),
        _token(3, "https://old.example/b"),
        _token(5, "https://gone.example/tsr"),
        _token(9, configured),
    ]
    files = dict(timestamp_files(runtime, tokens))
    primary_token, primary_ca = timestamp_paths(None)
    assert files[primary_token] == b"token 9"  # the configured authority comes first
    assert files[primary_ca] == tsa.authority.ca_pem()
    # Then the rest by id: 3 names old.example, 5 gone.example, 7 clashes with 3.
    assert files[timestamp_paths("old.example")[0]] == b"token 3"
    assert files[timestamp_paths("gone.example")[0]] == b"token 5"
    assert files[timestamp_paths("old.example-7")[0]] == b"token 7"
    assert len(files) == 5  # no CA beside the tokens of authorities no longer configured


def test_a_negative_tree_size_has_no_timestamps(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer
) -> None:
    runtime = stamped_runtime(tsa)
    with pytest.raises(InvalidInput, match="tree_size must be >= 0, got -1"):
        list_timestamps(runtime, -1)


def test_a_token_another_worker_stored_first_is_the_one_returned(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer
) -> None:
    runtime = stamped_runtime(tsa)
    assert runtime.tsa is not None
    [authority] = runtime.tsa.authorities
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    first = stamp(runtime, authority, checkpoint)
    assert first is not None
    again = stamp(runtime, authority, checkpoint)  # a second worker, asking at the same time
    assert tsa.hits == 2
    assert again is not None
    assert (again.id, again.response) == (first.id, first.response)
    assert [t.id for t in list_timestamps(runtime, checkpoint.size)] == [first.id]


def test_without_authorities_the_stored_tokens_are_all_there_is(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer, tmp_path: Path
) -> None:
    runtime = stamped_runtime(tsa)
    [token] = timestamp_checkpoint(runtime, runtime.log.latest_checkpoint(runtime.database))
    unstamped = open_runtime(load_settings(data_dir=tmp_path / "data"))  # no TSA configured
    try:
        assert unstamped.tsa is None
        checkpoint = unstamped.log.latest_checkpoint(unstamped.database)
        assert [t.id for t in timestamp_checkpoint(unstamped, checkpoint)] == [token.id]
    finally:
        unstamped.close()
    assert tsa.hits == 1


def test_an_oversized_reply_is_refused_and_the_authority_rests(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer
) -> None:
    tsa.answer = lambda _: b"\x30" * (1024 * 1024 + 1)
    runtime = stamped_runtime(tsa)
    assert runtime.tsa is not None
    [authority] = runtime.tsa.authorities
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    with capture_logs() as logs:
        assert stamp(runtime, authority, checkpoint) is None
    [failure] = [e for e in logs if e["event"] == "checkpoint not timestamped"]
    assert "exceeds 1048576 bytes" in failure["error"]
    assert runtime.tsa.failures == {authority.name: 1}
    assert list_timestamps(runtime, checkpoint.size) == []


def test_the_background_loop_outlives_a_failure_and_stamps_on_its_retry(
    stamped_runtime: Callable[..., Runtime], tsa: TsaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = stamped_runtime(tsa, interval=0.05)
    assert runtime.tsa is not None
    [authority] = runtime.tsa.authorities
    latest = runtime.log.latest_checkpoint
    calls: list[int] = []

    def flaky(database: Database) -> SignedCheckpoint:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return latest(database)

    monkeypatch.setattr(runtime.log, "latest_checkpoint", flaky)

    async def run_until_stamped() -> list[CheckpointTimestamp]:
        loop = asyncio.create_task(timestamp_periodically(runtime))
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                size = latest(runtime.database).size
                if tokens := await asyncio.to_thread(list_timestamps, runtime, size):
                    break
            else:
                raise AssertionError("the loop never stamped after its failure")
            # Two more rounds: the checkpoint is stamped, so the authority is not asked again.
            stamped_at = len(calls)
            while len(calls) < stamped_at + 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert len(calls) >= stamped_at + 2
            return tokens
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop

    with capture_logs() as logs:
        tokens = asyncio.run(run_until_stamped())
    [failure] = [e for e in logs if e["event"] == "timestamping failed"]
    assert failure["tsa"] == authority.name and failure["log_level"] == "error"
    assert [t.tsa_url for t in tokens] == [tsa.url]
    assert tsa.hits == 1
    assert runtime.tsa.failures == {} and runtime.tsa.resting_until == {}  # reset by success
