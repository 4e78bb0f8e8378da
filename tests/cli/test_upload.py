"""`locker upload` and `locker verify --receipt`: from the field to a proof the file was logged."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.client.uploader import UploadError, upload
from service.core.receipt import Receipt
from tests.harness import Locker

runner = CliRunner()
NAME = "شهادة ../أم الخير (1).pdf"


@pytest.fixture
def key(locker: Locker, tmp_path: Path) -> Path:
    path = tmp_path / "verifier-key.txt"
    path.write_text(locker.runtime.log.verifier.to_text() + "\n")
    return path


def _upload(locker: Locker, key: Path, file: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["upload", str(file), "--server", locker.base_url, "--key", str(key), *extra],
        env={"LOCKER_API_KEY": locker.api_key},
    )
    return result.exit_code, result.output


def _verify(key: Path, receipt: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", "--receipt", str(receipt), "--key", str(key), *extra])
    return result.exit_code, result.output


def test_upload_keeps_a_receipt_that_verifies_offline(
    locker: Locker, key: Path, tmp_path: Path
) -> None:
    file = tmp_path / NAME.replace("/", "∕")
    file.write_bytes(b"%PDF-1.4\n" + "إفادة شاهد عيان".encode() * 1000)
    receipt_path = tmp_path / "receipt.json"
    metadata = json.dumps({"title": "إفادة من ترهونة", "captured_at": "2020-06-05T10:00:00Z"})
    code, output = _upload(
        locker, key, file, "--metadata", metadata, "--receipt", str(receipt_path)
    )
    assert code == 0, output
    receipt = Receipt.from_json(receipt_path.read_text("utf-8"))
    assert receipt.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert f"logged as entry {receipt.index}" in output
    with locker.client() as client:
        item = client.get(f"/v1/evidence/{receipt.evidence_id}").json()
    assert item["filename"] == file.name and item["sha256"] == receipt.sha256

    code, output = _verify(key, receipt_path, "--file", str(file))
    assert code == 0 and "receipt verified" in output and "evidence.ingested" in output, output

    changed = tmp_path / "changed.pdf"
    changed.write_bytes(file.read_bytes() + b"\n")
    code, output = _verify(key, receipt_path, "--file", str(changed))
    assert code == 1 and "FINDING" in output and receipt.sha256 in output, output

    forged = json.loads(receipt_path.read_text("utf-8"))
    forged["sha256"] = hashlib.sha256(b"something else").hexdigest()
    receipt_path.write_text(json.dumps(forged), "utf-8")
    code, output = _verify(key, receipt_path)
    assert code == 1 and "sha256" in output, output


def test_the_same_file_again_is_recorded_not_stored_twice(
    locker: Locker, key: Path, tmp_path: Path
) -> None:
    file = tmp_path / "grave-site.jpg"
    file.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    receipts = [tmp_path / "first.json", tmp_path / "second.json"]
    for receipt_path in receipts:
        code, output = _upload(locker, key, file, "--receipt", str(receipt_path))
        assert code == 0, output
    assert "already held" in output
    first, second = (Receipt.from_json(p.read_text("utf-8")) for p in receipts)
    assert first.evidence_id == second.evidence_id and second.index > first.index
    code, output = _verify(key, receipts[1], "--file", str(file))
    assert code == 0 and "evidence.resubmitted" in output, output


def test_refusals_and_usage_errors_are_one_line(locker: Locker, key: Path, tmp_path: Path) -> None:
    file = tmp_path / "empty.bin"
    file.write_bytes(b"")
    code, output = _upload(locker, key, file)
    assert code == 2 and "HTTP 4" in output and "Traceback" not in output, output
    file.write_bytes(b"content")
    code, output = _upload(locker, key, file, "--metadata", "[1]")
    assert code == 2 and "--metadata must be a JSON object" in output
    code, output = _upload(locker, key, tmp_path / "missing.bin")
    assert code == 2 and "no such file" in output
    bad_key = tmp_path / "bad-key.txt"
    bad_key.write_text("not a key\n")
    code, output = _upload(locker, bad_key, file)
    assert code == 2 and "cannot use the key" in output
    with pytest.raises(UploadError, match="HTTP 422"):
        upload(
            locker.base_url,
            file,
            api_key=locker.api_key,
            verifier=locker.runtime.log.verifier,
            sha256="0" * 64,
            sleep=_no_wait,
        )
    with pytest.raises(UploadError, match="HTTP 401"):
        upload(locker.base_url, file, api_key="lk_bad", verifier=locker.runtime.log.verifier)
    with locker.client() as client:
        assert client.get("/v1/evidence").json()["items"] == []


def test_a_broken_connection_is_retried_and_nothing_is_half_recorded(
    locker: Locker, tmp_path: Path
) -> None:
    file = tmp_path / "video.mp4"
    file.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4096)  # 1 MiB
    waits: list[float] = []
    with _cutting_proxy(locker.base_url, cut_after=300_000) as proxy:
        done = upload(
            proxy.url,
            file,
            api_key=locker.api_key,
            verifier=locker.runtime.log.verifier,
            sleep=waits.append,
        )
    assert done.attempts == 2 and waits == [1.0]
    assert proxy.connections >= 3  # the cut upload, the one that went through, the trail
    assert done.facts.entry["action"] == "evidence.ingested"
    with locker.client() as client:
        items = client.get("/v1/evidence").json()["items"]
        trail = client.get(f"/v1/evidence/{done.receipt.evidence_id}/custody").json()
    assert [item["id"] for item in items] == [done.receipt.evidence_id]
    assert [e["fields"]["action"] for e in trail["entries"]].count("evidence.ingested") == 1


def test_the_command_says_why_it_sends_again(locker: Locker, key: Path, tmp_path: Path) -> None:
    file = tmp_path / "statement.txt"
    file.write_bytes("أقوال الشاهد\n".encode() * 40_000)  # 1 MiB
    with _cutting_proxy(locker.base_url, cut_after=200_000) as proxy:
        result = runner.invoke(
            app,
            [
                "upload",
                str(file),
                "--server",
                proxy.url,
                "--key",
                str(key),
                "--receipt",
                str(tmp_path / "r.json"),
            ],
            env={"LOCKER_API_KEY": locker.api_key},
        )
    assert result.exit_code == 0, result.output
    assert "sending failed" in result.output and "again in 1 s" in result.output
    assert "(stored)" in result.output


def _no_wait(_seconds: float) -> None:
    raise AssertionError("a refusal must not be retried")


class _Proxy:
    def __init__(self, url: str) -> None:
        self.url = url
        self.connections = 0


@contextmanager
def _cutting_proxy(target: str, *, cut_after: int) -> Iterator[_Proxy]:  # noqa: PLR0915 (the proxy's nested pipe and accept loops)
    """A loopback TCP proxy whose first connection is cut after `cut_after` bytes sent."""
    host, port = target.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = _Proxy(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while chunk := source.recv(65536):
                if limit is not None and sent + len(chunk) > limit:
                    break
                sink.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        for side in (source, sink):
            with suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            proxy.connections += 1
            upstream = socket.create_connection((host, int(port)))
            limit = cut_after if proxy.connections == 1 else None
            threading.Thread(target=pipe, args=(client, upstream, limit), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, None), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("name", ['say "no".jpg', "back\\slash.pdf", "a;b=c.png", "٢٠٢٠ ‏تقرير.pdf"])
def test_awkward_file_names_arrive_exactly(locker: Locker, tmp_path: Path, name: str) -> None:
    file = tmp_path / name
    file.write_bytes(name.encode() * 10)
    done = upload(
        locker.base_url, file, api_key=locker.api_key, verifier=locker.runtime.log.verifier
    )
    with locker.client() as client:
        item = client.get(f"/v1/evidence/{done.receipt.evidence_id}").json()
    assert item["filename"] == name


def test_a_name_with_control_characters_is_refused_before_sending(
    locker: Locker, tmp_path: Path
) -> None:
    file = tmp_path / "two\nlines.txt"
    file.write_bytes(b"statement")
    with pytest.raises(UploadError, match="control characters"):
        upload(locker.base_url, file, api_key=locker.api_key, verifier=locker.runtime.log.verifier)
