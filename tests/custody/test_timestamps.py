"""Stamping checkpoints with several authorities: a broken one is named in the log with a
one-line reason, left to its retries, and never keeps the others from stamping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from service.core.timestamp import authority_name, timestamp_request
from service.custody.timestamps import list_timestamps, stamp, timestamp_latest
from service.errors import ConfigurationError
from service.operations.fsck import fsck
from service.runtime import Runtime, open_runtime
from service.settings import load_settings
from tests.tsa import TsaServer, run_tsa

_REFUSAL = b"\x30\x05\x30\x03\x02\x01\x02"  # TimeStampResp, status rejection (RFC 3161 §2.4.2)


@pytest.fixture
def tsas() -> Iterator[tuple[TsaServer, TsaServer]]:
    with run_tsa() as first, run_tsa() as second:
        yield first, second
        first.gate.set()  # a silent one's held request ends with the test
        second.gate.set()


@pytest.fixture
def stamped_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def factory(*servers: TsaServer) -> Runtime:
        cas = []
        for n, server in enumerate(servers):
            cas.append(tmp_path / f"ca-{n}.pem")
            cas[-1].write_bytes(server.authority.ca_pem())
        settings = load_settings(
            data_dir=tmp_path / "data",
            tsa_url=" ".join(s.url for s in servers),
            tsa_ca_file=",".join(str(c) for c in cas),
            tsa_timeout=5,
            tsa_interval=60,
        )
        opened.append(open_runtime(settings))
        return opened[-1]

    yield factory
    for runtime in opened:
        runtime.close()


def _misbehave(server: TsaServer, how: str) -> str:
    """Make `server` fail as `how` says; the reason its failure should be logged with."""
    if how == "garbage":
        server.answer = lambda _: b"<html>gateway error</html>"
        return "not an RFC 3161 TimeStampResp"
    if how == "refusal":
        server.answer = lambda _: _REFUSAL
        return "the TSA refused: status"
    if how == "another imprint":
        server.answer = lambda _: server.authority.respond(timestamp_request(b"other").der)
        return "the token attests sha256:"
    if how == "error status":
        server.down = True
        return "HTTP 503"
    server.gate.clear()  # silent until the test ends, longer than LOCKER_TSA_TIMEOUT
    return "no answer within 5 s"


@pytest.mark.parametrize(
    "how", ["garbage", "refusal", "another imprint", "error status", "silence"]
)
def test_a_broken_authority_is_named_and_rests_while_the_other_stamps(
    stamped_runtime: Callable[..., Runtime], tsas: tuple[TsaServer, TsaServer], how: str
) -> None:
    broken, working = tsas
    reason = _misbehave(broken, how)
    runtime = stamped_runtime(broken, working)
    with capture_logs() as logs:
        tokens = timestamp_latest(runtime)
    assert [t.tsa_url for t in tokens] == [working.url]
    [failure] = [e for e in logs if e["event"] == "checkpoint not timestamped"]
    assert failure["tsa"] == authority_name(broken.url) and failure["url"] == broken.url
    assert reason in failure["error"] and "\n" not in failure["error"], failure
    [success] = [e for e in logs if e["event"] == "checkpoint timestamped"]
    assert success["tsa"] == authority_name(working.url)
    assert success["size"] == tokens[0].checkpoint_size
    hits = broken.hits
    assert timestamp_latest(runtime) == tokens  # resting: not asked again at once
    assert broken.hits == hits


def test_an_authority_back_up_stamps_the_same_checkpoint_too(
    stamped_runtime: Callable[..., Runtime], tsas: tuple[TsaServer, TsaServer]
) -> None:
    first, second = tsas
    first.down = True
    runtime = stamped_runtime(first, second)
    [token] = timestamp_latest(runtime)
    first.down = False
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    assert checkpoint.size == token.checkpoint_size
    assert runtime.tsa is not None
    again = stamp(runtime, runtime.tsa.authorities[0], checkpoint)  # as its retry loop does
    assert again is not None and again.tsa_url == first.url
    assert [t.tsa_url for t in list_timestamps(runtime, checkpoint.size)] == [second.url, first.url]
    assert runtime.tsa.resting_until == {} and runtime.tsa.failures == {}
    report = fsck(runtime)  # each token against its own authority's CA
    assert report.checked["checkpoint timestamps"] == 2
    assert not [f for f in report.findings if "timestamp" in f], report.findings
    first_ca = runtime.settings.tsa_ca_files[0]
    swapped = runtime.settings.model_copy(update={"tsa_ca_file": f"{first_ca} {first_ca}"})
    reopened = open_runtime(swapped)  # the second authority configured with the first's CA
    try:
        [finding] = [f for f in fsck(reopened).findings if "timestamp" in f]
    finally:
        reopened.close()
    assert finding.startswith(f"timestamp of checkpoint {checkpoint.size} by {second.url}: ")


def test_settings_list_authorities_and_their_cas(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        tsa_url="https://tsa.example.org/tsr, http://10.0.0.1:8080/ts",
        tsa_ca_file=tmp_path / "ca.pem",
    )
    assert settings.tsa_urls == ("https://tsa.example.org/tsr", "http://10.0.0.1:8080/ts")
    assert settings.tsa_ca_files == (tmp_path / "ca.pem",) * 2
    assert [authority_name(u) for u in settings.tsa_urls] == ["tsa.example.org", "10.0.0.1-8080"]
    for url, ca, message in (
        ("https://a.example/tsr https://b.example/tsr", "a.pem b.pem c.pem", "names 3 files"),
        ("https://a.example/tsr https://a.example/other", "a.pem", "the same authority"),
        ("https://a.example/tsr ftp://b.example/tsr", "a.pem", "ftp://b.example/tsr is not"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            load_settings(data_dir=tmp_path, tsa_url=url, tsa_ca_file=ca)


def test_an_authority_name_fits_a_file_name() -> None:
    assert authority_name("https://FreeTSA.org/tsr") == "freetsa.org"
    assert authority_name("http://[::1]:318/") == "1-318"
    assert authority_name("http://tsa.example:port/") == "tsa.example"
    assert authority_name("https:///tsr") == "tsa"


def test_retries_back_off_up_to_the_interval(
    stamped_runtime: Callable[..., Runtime], tsas: tuple[TsaServer, TsaServer]
) -> None:
    down, _ = tsas
    down.down = True
    runtime = stamped_runtime(down)
    assert runtime.tsa is not None
    [authority] = runtime.tsa.authorities
    checkpoint = runtime.log.latest_checkpoint(runtime.database)
    with capture_logs() as logs:
        for _ in range(6):
            assert stamp(runtime, authority, checkpoint) is None
        runtime.tsa.failures[authority.name] = 5000  # down for weeks: still a bounded pause
        assert stamp(runtime, authority, checkpoint) is None
    assert [e["retry_in"] for e in logs] == [5, 10, 20, 40, 60, 60, 60]
    down.down = False
    assert stamp(runtime, authority, checkpoint) is not None
    assert runtime.tsa.failures == {} and runtime.tsa.resting_until == {}
