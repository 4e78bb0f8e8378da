"""`locker upload` and `locker verify --receipt`: from the field to a proof the file was logged."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from service.cli import app
from service.client.uploader import UploadError, upload
from service.core.checkpoint import NoteVerifier
from service.core.receipt import Receipt
from service.db.models import ResumableUpload
from tests.cutting_proxy import cutting_proxy
from tests.harness import Locker

runner = CliRunner()
NAME = "شهادة ../أم الخير (1).pdf"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Unfinished uploads are remembered under the user's cache: this test's own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "locker" / "uploads"


@pytest.fixture
def key(locker: Locker, tmp_path: Path) -> Path:
    path = tmp_path / "verifier-key.txt"
    path.write_text(locker.runtime.log.verifier.to_text() + "\n")
    return path


def _upload(locker: Locker, key: Path, file: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["upload", str(file), "--server", locker.base_url, "--verifier-key", str(key), *extra],
        env={"LOCKER_API_KEY": locker.api_key},
    )
    return result.exit_code, result.output


def _verify(key: Path, receipt: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["verify", "--receipt", str(receipt), "--verifier-key", str(key), *extra]
    )
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
    assert code == 2 and "holds no verifier key" in output and "not a key" not in output
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


def test_a_cut_at_90_percent_resumes_from_the_server_offset(locker: Locker, tmp_path: Path) -> None:
    """The connection drops at 90 % of the file: the rest is sent, not the whole file
    again, so less than 1.1x the file crosses the wire; one record, one entry."""
    file = tmp_path / "video.mp4"
    file.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4 * 1024 * 1024))
    size = file.stat().st_size
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with cutting_proxy(locker.base_url, cuts=[size * 9 // 10]) as proxy:
        done = upload(
            proxy.url,
            file,
            api_key=locker.api_key,
            verifier=locker.runtime.log.verifier,
            sleep=wait,
        )
    assert proxy.was_cut and done.attempts == 2 and waits[0] == 1.0
    print(f"bytes on the wire: {proxy.sent} for a file of {size} ({proxy.sent / size:.3f}x)")
    assert proxy.sent < 1.1 * size, f"{proxy.sent} bytes crossed for a file of {size}"
    assert done.facts.entry["action"] == "evidence.ingested"
    assert done.answer["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    with locker.client() as client:
        items = client.get("/v1/evidence").json()["items"]
        trail = client.get(f"/v1/evidence/{done.receipt.evidence_id}/custody").json()
        content = client.get(f"/v1/evidence/{done.receipt.evidence_id}/content").content
    assert [item["id"] for item in items] == [done.receipt.evidence_id]
    assert [e["fields"]["action"] for e in trail["entries"]].count("evidence.ingested") == 1
    assert content == file.read_bytes()


def test_a_link_that_drops_again_and_again_never_runs_out_of_tries(
    locker: Locker, tmp_path: Path
) -> None:
    """Six cuts with one try to spare: each try moved the upload on, so the count starts
    afresh and the wait stays at its shortest; nothing is sent twice but what was in
    flight when the link dropped."""
    file = tmp_path / "long-interview.mp4"
    file.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3 * 1024 * 1024))
    size = file.stat().st_size
    waits: list[float] = []
    cuts = [size * n // 7 for n in range(1, 7)]
    with cutting_proxy(locker.base_url, cuts=cuts) as proxy:
        done = upload(
            proxy.url,
            file,
            api_key=locker.api_key,
            verifier=key_of(locker),
            retries=1,
            on_retry=lambda _reason, wait: waits.append(wait),
        )
    assert proxy.cut == 6 and done.attempts == 7
    assert waits == [1.0] * 6
    assert proxy.sent < 1.1 * size, f"{proxy.sent} bytes for {size}"
    assert done.answer["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()


def test_a_run_that_gave_up_is_resumed_by_the_next(
    locker: Locker, tmp_path: Path, _own_cache: Path
) -> None:
    """The first run loses its connection at half the file and has no tries left; the
    next run of the same upload asks the server and sends only the other half."""
    file = tmp_path / "interview.wav"
    file.write_bytes(b"RIFF" + os.urandom(2 * 1024 * 1024))
    size = file.stat().st_size
    with cutting_proxy(locker.base_url, cuts=[size // 2]) as proxy:
        with pytest.raises(UploadError, match="gave up after 1 tries"):
            upload(
                proxy.url,
                file,
                api_key=locker.api_key,
                verifier=key_of(locker),
                retries=0,
                sleep=_no_wait,
            )
        assert len(list(_own_cache.iterdir())) == 1  # the unfinished upload's URL
        time.sleep(0.5)  # let the server count the bytes of the cut request
        done = upload(proxy.url, file, api_key=locker.api_key, verifier=key_of(locker))
    assert proxy.was_cut and proxy.sent < 1.1 * size, f"{proxy.sent} bytes for {size}"
    assert done.answer["duplicate"] is False and list(_own_cache.iterdir()) == []
    with locker.client() as client:
        assert len(client.get("/v1/evidence").json()["items"]) == 1
    # A remembered upload the server no longer has is started again, not an error.
    other = tmp_path / "other.wav"
    other.write_bytes(b"RIFF" + os.urandom(100_000))
    with cutting_proxy(locker.base_url, cuts=[50_000]) as proxy:
        with pytest.raises(UploadError, match="gave up"):
            upload(proxy.url, other, api_key=locker.api_key, verifier=key_of(locker), retries=0)
        [remembered] = list(_own_cache.iterdir())
        location = json.loads(remembered.read_text())["location"]
        with httpx.Client(headers={"Authorization": f"Bearer {locker.api_key}"}) as client:
            assert client.delete(location, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
        done = upload(proxy.url, other, api_key=locker.api_key, verifier=key_of(locker))
    assert done.answer["size"] == other.stat().st_size


def test_the_command_says_why_it_sends_again(locker: Locker, key: Path, tmp_path: Path) -> None:
    file = tmp_path / "statement.txt"
    file.write_bytes("أقوال الشاهد\n".encode() * 40_000)  # 1 MiB
    with cutting_proxy(locker.base_url, cuts=[500_000]) as proxy:
        result = runner.invoke(
            app,
            [
                "upload",
                str(file),
                "--server",
                proxy.url,
                "--verifier-key",
                str(key),
                "--receipt",
                str(tmp_path / "r.json"),
            ],
            env={"LOCKER_API_KEY": locker.api_key},
        )
    assert result.exit_code == 0, result.output
    assert "sending failed" in result.output and "again in 1 s" in result.output
    assert "from where the server stopped" in result.output
    assert "(stored)" in result.output and proxy.was_cut


def test_a_wrong_key_is_refused_before_a_byte_of_the_file(
    locker: Locker, key: Path, tmp_path: Path
) -> None:
    file = tmp_path / "large.mov"
    with file.open("wb") as handle:
        handle.truncate(1024**3)  # 1 GiB, sparse: never read if the key is checked first
    with cutting_proxy(locker.base_url) as proxy:
        result = runner.invoke(
            app,
            ["upload", str(file), "--server", proxy.url, "--verifier-key", str(key)],
            env={"LOCKER_API_KEY": "lk_wrong"},
        )
    assert result.exit_code == 2, result.output
    assert "HTTP 401: invalid API key" in result.output and "Traceback" not in result.output
    assert proxy.sent < 4096, f"{proxy.sent} bytes sent for a refused key"
    with locker.runtime.database.session() as session:
        assert session.exec(select(ResumableUpload)).all() == []


def test_refusals_and_malformed_addresses_are_never_retried(
    locker: Locker, key: Path, tmp_path: Path
) -> None:
    file = tmp_path / "note.txt"
    file.write_bytes(b"statement")
    for server in ("localhost:8000", "ftp://example.org", "http://", "http://host:port"):
        with pytest.raises(UploadError, match="malformed server URL"):
            upload(server, file, api_key=locker.api_key, verifier=key_of(locker), sleep=_no_wait)
        result = runner.invoke(
            app,
            ["upload", str(file), "--server", server, "--verifier-key", str(key)],
            env={"LOCKER_API_KEY": locker.api_key},
        )
        assert result.exit_code == 2 and "malformed server URL" in result.output, result.output
    other = tmp_path / "other.txt"
    other.write_bytes(b"other")
    with pytest.raises(UploadError, match=r"HTTP 422: metadata\.incident_id"):
        upload(
            locker.base_url,
            other,
            api_key=locker.api_key,
            verifier=key_of(locker),
            metadata={"incident_id": "no-such-incident"},
            sleep=_no_wait,
        )


def key_of(locker: Locker) -> NoteVerifier:
    return locker.runtime.log.verifier


def test_a_receipt_is_never_overwritten(locker: Locker, key: Path, tmp_path: Path) -> None:
    file = tmp_path / "photo.jpg"
    file.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    existing = tmp_path / "kept.json"
    existing.write_text("an earlier receipt")
    code, output = _upload(locker, key, file, "--receipt", str(existing))
    assert code == 2 and "exists; a receipt is never overwritten" in output, output
    assert existing.read_text() == "an earlier receipt"
    with locker.client() as client:
        assert client.get("/v1/evidence").json()["items"] == []
    # The same file twice into one folder: the second receipt gets a name of its own.
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    for _ in range(2):
        code, output = _upload(locker, key, file, "--receipt-dir", str(receipts))
        assert code == 0, output
    first, second = sorted(receipts.iterdir(), key=lambda p: len(p.name))
    one, two = (Receipt.from_json(p.read_text("utf-8")) for p in (first, second))
    assert one.evidence_id == two.evidence_id and one.index != two.index
    assert second.name == f"{two.evidence_id}.{two.index}.receipt.json"


def test_a_folder_and_files_with_an_incident_a_table_and_json(
    locker: Locker, key: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "field-trip"
    (folder / "day-2").mkdir(parents=True)
    contents = {
        folder / "a.jpg": b"\xff\xd8\xff\xe0" + os.urandom(3000),
        folder / "day-2" / "b.pdf": b"%PDF-1.4\n" + os.urandom(3000),
        folder / "empty.txt": b"",
    }
    for path, content in contents.items():
        path.write_bytes(content)
    loose = tmp_path / "c.txt"
    loose.write_bytes(b"a loose statement")
    with locker.client() as client:
        incident = client.post("/v1/incidents", json={"title": "Field trip"}).json()["id"]
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    args = [str(folder), str(loose), "--incident", incident, "--receipt-dir", str(receipts)]
    code, output = _upload(locker, key, *args)
    assert code == 2, output  # the empty file is refused; the others are proven
    for name in ("a.jpg", "b.pdf", "c.txt"):
        assert name in output
    assert "empty.txt" in output and "FAILED" in output and "HTTP 422" in output
    assert "3 of 4 files uploaded and proven" in output
    assert len(list(receipts.iterdir())) == 3
    with locker.client() as client:
        linked = client.get("/v1/evidence", params={"incident": incident}).json()["items"]
    assert len(linked) == 3
    # --json: one document per file, in order; the duplicates are recorded again.
    more = tmp_path / "more"
    more.mkdir()
    code, output = _upload(locker, key, str(folder), "--json", "--receipt-dir", str(more))
    documents = json.loads(output[output.index("[") :])
    assert [Path(d["file"]).name for d in documents] == ["a.jpg", "b.pdf", "empty.txt"]
    assert [d["duplicate"] for d in documents[:2]] == [True, True]
    assert "HTTP 422" in documents[2]["error"] and documents[2]["receipt"] is None


def _no_wait(_seconds: float) -> None:
    raise AssertionError("a refusal must not be retried")


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
