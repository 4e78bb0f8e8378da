"""Resumable uploads stored once, as pieces of the object at the upload's own key:
long chunks become pieces, short tails wait for the next PATCH, digests continue in the
process that received the bytes, and a client away for long keeps its unfinished write."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, update
from sqlmodel import col, select

from service.db.models import CustodyEntry, ResumablePart, ResumableUpload, UploadIntent
from service.errors import StorageError
from service.evidence import resumable
from service.evidence.pieces import DigestCache
from service.operations.fsck import fsck
from service.runtime import open_runtime
from tests.api.test_tus import (
    TUS,
    _wait_for_offset,
    _wait_until_writing,
    bytes_left,
    checksum,
    create,
    evidence_count,
    metadata_header,
    patch,
    raw_connection,
    raw_patch_head,
    unsniffable,
)
from tests.harness import Locker

MIB = 1024 * 1024


def _held_aside(locker: Locker) -> list[int]:
    """Sizes of the bytes uploads hold aside (tails too short for a piece)."""
    with locker.runtime.database.session() as session:
        rows = session.exec(
            select(ResumablePart).where(col(ResumablePart.staging_key).is_not(None))
        )
        return [row.size for row in rows]


def _read_back() -> float:
    return REGISTRY.get_sample_value("locker_upload_read_back_bytes_total") or 0.0


def test_long_chunks_become_pieces_and_a_short_tail_waits(locker: Locker) -> None:
    """6 MiB, then 3 MiB (below S3's smallest part: held aside there), then a chunk
    with a wrong checksum (refused, the tail kept as it was), then the rest."""
    content = os.urandom(13 * MIB)
    store, read_back = locker.runtime.store, _read_back()
    with locker.client() as client:
        location = create(client, len(content), metadata_header("v.mp4", content)).headers[
            "Location"
        ]
        assert patch(client, location, 0, content[: 6 * MIB]).status_code == 204
        assert _held_aside(locker) == []
        assert patch(client, location, 6 * MIB, content[6 * MIB : 9 * MIB]).status_code == 204
        expected_tail = [3 * MIB] if store.min_piece_bytes > 3 * MIB else []
        assert _held_aside(locker) == expected_tail
        wrong = patch(
            client,
            location,
            9 * MIB,
            content[9 * MIB : 10 * MIB],
            **{"Upload-Checksum": checksum(b"something else")},
        )
        assert wrong.status_code == 460
        assert _held_aside(locker) == expected_tail
        assert client.head(location, headers=TUS).headers["Upload-Offset"] == str(9 * MIB)
        done = patch(client, location, 9 * MIB, content[9 * MIB :])
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        item = client.get(f"/v1/evidence/{evidence_id}").json()
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == [] and _held_aside(locker) == []
    # Every byte arrived at this process: its running digests were used, nothing re-read.
    assert _read_back() == read_back
    assert fsck(locker.runtime).healthy


def test_digests_lost_with_the_process_are_rebuilt_from_the_store(
    locker: Locker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the last PATCH landed on another process (or after a restart): the
    completion reads the joined object back once and records the same digests."""
    content = unsniffable(700_000)
    read_back = _read_back()
    with locker.client() as client:
        location = create(client, len(content), metadata_header("w.bin", content)).headers[
            "Location"
        ]
        assert patch(client, location, 0, content[:300_000]).status_code == 204
        monkeypatch.setattr(resumable, "_digests", DigestCache())
        done = patch(client, location, 300_000, content[300_000:])
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        item = client.get(f"/v1/evidence/{evidence_id}").json()
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        assert item["sha512"] == hashlib.sha512(content).hexdigest()
        assert item["media_type"] == "application/octet-stream"
    assert _read_back() == read_back + len(content)
    assert bytes_left(locker.runtime) == []


def test_fsck_repair_spares_the_write_of_a_client_away_for_long(locker: Locker) -> None:
    """Silent for longer than the idle timeout is a crash for a form upload, not for a
    resumable one: its client may be offline for hours, until the upload expires."""
    content = os.urandom(6 * MIB)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("x.bin", content)).headers[
            "Location"
        ]
        assert patch(client, location, 0, content[: 5 * MIB]).status_code == 204
        settings = locker.runtime.settings.model_copy(update={"upload_idle_timeout_seconds": 1})
        impatient = open_runtime(settings)
        try:
            time.sleep(1.5)
            report = fsck(impatient, repair=True)
        finally:
            impatient.close()
        assert report.repairs == [], report.repairs
        assert report.checked["unfinished writes in progress"] == 1
        done = patch(client, location, 5 * MIB, content[5 * MIB :])
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content


def test_terminating_drops_the_write_and_the_tail(locker: Locker) -> None:
    content = os.urandom(7 * MIB)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("y.bin", content)).headers[
            "Location"
        ]
        assert patch(client, location, 0, content[: 5 * MIB]).status_code == 204
        assert patch(client, location, 5 * MIB, content[5 * MIB : 6 * MIB]).status_code == 204
        assert bytes_left(locker.runtime) != []
        assert client.delete(location, headers=TUS).status_code == 204
        assert client.head(location, headers=TUS).status_code == 404
    assert bytes_left(locker.runtime) == []
    with locker.runtime.database.session() as session:
        assert session.exec(select(ResumablePart)).all() == []


@pytest.mark.parametrize("died", ["before its intent", "after its intent"])
def test_a_completion_whose_process_died_is_finished_for_the_uploader(
    locker: Locker, monkeypatch: pytest.MonkeyPatch, died: str
) -> None:
    """The process that took the last byte dies while completing: HEAD already says
    every byte arrived, so a tus client asks nothing more. Once the upload has been
    silent past the idle timeout, `fsck --repair` (as the workers do) completes it for
    its uploader; its intent is not abandoned and its bytes are not dropped."""
    content = os.urandom(700_000)

    async def dies(runtime, principal, upload, known):  # type: ignore[no-untyped-def]
        if died == "after its intent":
            resumable._completion_intent(runtime, principal, upload)
        return upload, None

    with locker.client() as client:
        location = create(client, len(content), metadata_header("d.bin", content)).headers[
            "Location"
        ]
        upload_id = location.rsplit("/", 1)[1]
        assert patch(client, location, 0, content[:300_000]).status_code == 204
        with monkeypatch.context() as crash:
            crash.setattr(resumable, "_complete", dies)
            cut = patch(client, location, 300_000, content[300_000:])
        assert cut.status_code == 204 and "Locker-Evidence-Id" not in cut.headers
        assert patch(client, location, len(content), b"").status_code == 409
        # Not silent long enough yet: a live completion is left alone.
        assert fsck(locker.runtime, repair=True).repairs == []
        _silent_for_an_hour(locker, upload_id)
        repaired = fsck(locker.runtime, repair=True).repairs
        head = client.head(location, headers=TUS)
        evidence_id = head.headers["Locker-Evidence-Id"]
        assert repaired == [f"completed upload {upload_id}: evidence {evidence_id}"]
        assert head.headers["Upload-Offset"] == str(len(content))
        item = client.get(f"/v1/evidence/{evidence_id}").json()
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        assert item["filename"] == "d.bin"
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []
    with locker.runtime.database.session() as session:
        assert [i.status for i in session.exec(select(UploadIntent))] == ["done"]


def _silent_for_an_hour(locker: Locker, upload_id: str) -> None:
    """As if the process died an hour ago: nothing touched the upload or its intent since."""
    then = datetime.now(UTC) - timedelta(hours=1)
    with locker.runtime.database.session() as session:
        session.execute(
            update(ResumableUpload)
            .where(col(ResumableUpload.id) == upload_id)
            .values(updated_at=then, writing_since=None)
        )
        session.execute(
            update(UploadIntent)
            .where(col(UploadIntent.id) == upload_id)
            .values(created_at=then, heartbeat_at=then)
        )


def test_a_long_file_in_short_chunks_cannot_run_out_of_piece_numbers(locker: Locker) -> None:
    """A store allows 10,000 pieces a write: a 60 GiB file sent in 6 MiB PATCHes would
    need more, so a tail shorter than a 5,000th of the file is held aside, not stored
    as a piece (the next PATCH makes a long enough piece of it)."""
    first = os.urandom(6 * MIB)
    with locker.client() as client:
        location = create(client, 60 * 1024**3, metadata_header("long.mp4")).headers["Location"]
        assert patch(client, location, 0, first).status_code == 204
        assert _held_aside(locker) == [6 * MIB]
        with locker.runtime.database.session() as session:
            pieces = session.exec(
                select(ResumablePart).where(col(ResumablePart.number).is_not(None))
            ).all()
        assert pieces == []
        head = client.head(location, headers=TUS)
        assert head.headers["Upload-Offset"] == str(6 * MIB)
        assert client.delete(location, headers=TUS).status_code == 204
    assert bytes_left(locker.runtime) == [] and _held_aside(locker) == []


def test_a_join_whose_answer_was_lost_is_found_by_the_next_try(
    locker: Locker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store joined the pieces but the answer never came back (a timeout, or the
    process died): the joining write is gone, its object is at the key (S3) or in a
    file named after the write (filesystem). The next PATCH at the end records it."""
    content = os.urandom(700_000)
    store = locker.runtime.store
    joins: list[str] = []
    real_finish = store.finish_pieces

    def finish_then_lose_the_answer(key, write_id, pieces):  # type: ignore[no-untyped-def]
        real_finish(key, write_id, pieces)
        joins.append(key)
        raise StorageError(f"{key}: the answer to joining its pieces was lost")

    with locker.client() as client:
        location = create(client, len(content), metadata_header("j.bin", content)).headers[
            "Location"
        ]
        assert patch(client, location, 0, content[:300_000]).status_code == 204
        with monkeypatch.context() as lossy:
            lossy.setattr(store, "finish_pieces", finish_then_lose_the_answer)
            lost = patch(client, location, 300_000, content[300_000:])
        assert lost.status_code == 503, lost.text
        assert len(joins) == 1
        done = patch(client, location, len(content), b"")
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []
    assert fsck(locker.runtime).healthy


def test_a_completion_recorded_but_not_told_answers_with_its_own_submission(
    locker: Locker,
) -> None:
    """The completion recorded the evidence, then its process died before marking the
    upload done: the next PATCH at the end answers with that record (its own submission,
    by the intent's id), records nothing twice and appends nothing to the log."""
    content = os.urandom(400_000)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("t.bin", content)).headers[
            "Location"
        ]
        upload_id = location.rsplit("/", 1)[1]
        first = patch(client, location, 0, content)
        assert first.status_code == 204, first.text
        with locker.runtime.database.session() as session:
            session.execute(
                update(ResumableUpload)
                .where(col(ResumableUpload.id) == upload_id)
                .values(status="receiving", evidence_id=None, custody_index=None)
            )
        entries = _custody_entries(locker)
        again = patch(client, location, len(content), b"")
        assert again.status_code == 204, again.text
        assert again.headers["Locker-Evidence-Id"] == first.headers["Locker-Evidence-Id"]
        assert again.headers["Locker-Custody-Index"] == first.headers["Locker-Custody-Index"]
        assert again.headers["Locker-Duplicate"] == "false"
        assert _custody_entries(locker) == entries
    assert evidence_count(locker.runtime) == 1


def _custody_entries(locker: Locker) -> int:
    with locker.runtime.database.session() as session:
        return session.exec(select(func.count()).select_from(CustodyEntry)).one()


def test_a_piece_cut_short_while_it_streams_is_stored_from_the_bytes_kept(
    locker: Locker,
) -> None:
    """The first 8 MiB piece streams to the store while it arrives; the client goes
    away after 7 MiB. That write stores nothing, and the 7 MiB that arrived (long
    enough for a piece) are stored as one from the bytes the request kept."""
    content = os.urandom(12 * MIB)
    with locker.client() as client:
        location = create(client, len(content), metadata_header("cut.mp4", content)).headers[
            "Location"
        ]
        head = raw_patch_head(locker, location, len(content))
        with raw_connection(locker) as raw:
            raw.sendall(head + content[: 7 * MIB])
            _wait_until_writing(locker, location)
        offset = _wait_for_offset(client, location, 7 * MIB)
        assert offset == 7 * MIB
        assert _held_aside(locker) == []
        done = patch(client, location, offset, content[offset:])
        assert done.status_code == 204, done.text
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}").json()["sha256"] == (
            hashlib.sha256(content).hexdigest()
        )
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []
    assert fsck(locker.runtime).healthy


def test_a_piece_the_store_drops_while_it_streams_is_stored_again(
    locker: Locker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link to the store drops after the first mebibyte of a streaming piece: the
    piece is stored once more, whole, from the bytes the request kept; the client sees
    nothing of it."""
    content = os.urandom(9 * MIB)
    store = locker.runtime.store
    dropped: list[int] = []

    def drop_after_a_mebibyte(key, write_id, number, chunks, *, size):  # type: ignore[no-untyped-def]
        taken = 0
        for chunk in chunks:
            taken += len(chunk)
            if taken >= MIB:
                break
        dropped.append(number)
        raise StorageError(f"writing piece {number} of {key}: ConnectionResetError")

    with locker.client() as client:
        location = create(client, len(content), metadata_header("drop.mp4", content)).headers[
            "Location"
        ]
        with monkeypatch.context() as flaky:
            flaky.setattr(store, "stream_piece", drop_after_a_mebibyte)
            done = patch(client, location, 0, content)
        assert done.status_code == 204, done.text
        assert dropped  # the pieces that stream were all dropped, and stored again
        evidence_id = done.headers["Locker-Evidence-Id"]
        item = client.get(f"/v1/evidence/{evidence_id}").json()
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []
    assert fsck(locker.runtime).healthy


def test_a_body_without_a_length_is_stored_in_pieces_once_each_is_whole(
    locker: Locker,
) -> None:
    """A chunked PATCH declares no length, so no piece can stream before its bytes are
    all here: each is stored once whole, the tail with the upload's last byte."""
    content = os.urandom(9 * MIB + 123)

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(content), MIB):
            yield content[start : start + MIB]

    with locker.client() as client:
        location = create(client, len(content), metadata_header("c.mp4", content)).headers[
            "Location"
        ]
        done = client.patch(
            location,
            content=chunked(),
            headers=TUS | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        )
        assert done.status_code == 204, done.text
        assert done.request.headers.get("transfer-encoding") == "chunked"
        evidence_id = done.headers["Locker-Evidence-Id"]
        assert client.get(f"/v1/evidence/{evidence_id}").json()["sha256"] == (
            hashlib.sha256(content).hexdigest()
        )
        assert client.get(f"/v1/evidence/{evidence_id}/content").content == content
    assert bytes_left(locker.runtime) == []
