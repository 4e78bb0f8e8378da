"""A running locker settles the upload intents a failure left pending, without a restart,
as `fsck --repair` would; an upload still in flight keeps its intent alive."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from service.db.models import Evidence, UploadIntent
from service.errors import Conflict
from service.evidence.intents import settle_intent, settle_pending
from service.evidence.recording import finish_intent
from service.operations.fsck import fsck
from service.runtime import Runtime
from service.storage import S3Store
from tests.cli.test_fsck import PNG, _crashed_upload
from tests.databases import allow_connections
from tests.harness import Locker, free_port

# Heartbeats every 0.5 s, stale after 2 s; the workers look every 0.2 s.
_IDLE_SECONDS = 2.0
_FAST = {"upload_idle_timeout_seconds": _IDLE_SECONDS, "job_reconcile_seconds": 0.2}
_BOUNDARY = "stale-intents-boundary"


def _intents(runtime: Runtime) -> dict[str, UploadIntent]:
    with runtime.database.session() as session:
        return {i.id: i for i in session.exec(select(UploadIntent))}


def _settled(runtime: Runtime, ids: set[str], *, seconds: float = 60) -> dict[str, UploadIntent]:
    deadline = time.monotonic() + seconds
    while True:
        intents = _intents(runtime)
        if all(intents[i].status != "pending" for i in ids):
            return intents
        assert time.monotonic() < deadline, {i: intents[i].status for i in ids}
        time.sleep(0.1)


def test_a_running_locker_settles_what_a_crash_left_pending(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(**_FAST)
    runtime = locker.runtime
    stored = _crashed_upload(runtime, locker.organisation_id, PNG + b"1", stage="locked")
    unstored = _crashed_upload(runtime, locker.organisation_id, PNG + b"2", stage="none")
    assert sum("still pending" in f for f in fsck(runtime).findings) == 2

    intents = _settled(runtime, {stored, unstored})
    assert (intents[stored].status, intents[unstored].status) == ("done", "abandoned")
    assert intents[unstored].outcome == "interrupted before its bytes were stored"
    with runtime.database.session() as session:
        recorded = session.exec(select(Evidence)).one()
    assert recorded.object_key == intents[stored].object_key
    with locker.client() as client:  # recorded as its request would have recorded it
        item = client.get(f"/v1/evidence/{recorded.id}")
        content = client.get(f"/v1/evidence/{recorded.id}/content")
    assert item.status_code == 200 and item.json()["sha256"] == recorded.sha256
    assert content.content == PNG + b"1"
    assert fsck(runtime).findings == []  # nothing pending, no staging bytes left


def _multipart(pieces: Iterator[bytes]) -> Iterator[bytes]:
    yield (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    yield from pieces
    yield f"\r\n--{_BOUNDARY}--\r\n".encode()


def _upload(locker: Locker, pieces: Iterator[bytes]) -> httpx.Response:
    with locker.client() as client:
        return client.post(
            "/v1/evidence",
            content=_multipart(pieces),
            headers={"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"},
        )


def _pending_upload(runtime: Runtime, filename: str) -> UploadIntent:
    """The intent of the upload in flight, once its request has recorded it."""
    deadline = time.monotonic() + 30
    while True:
        with runtime.database.session() as session:
            found = session.exec(
                select(UploadIntent).where(col(UploadIntent.filename) == filename)
            ).first()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "the upload's intent was never recorded"
        time.sleep(0.05)


def test_an_upload_in_flight_is_never_settled_from_under_it(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(**_FAST)
    runtime = locker.runtime
    crashed: list[str] = []

    def slowly() -> Iterator[bytes]:
        yield PNG
        _pending_upload(runtime, "slow.png")
        # A younger intent no request handles: the workers settle it once it is stale,
        # when the upload in flight is older still.
        young = datetime.now(UTC)
        crashed.append(
            _crashed_upload(runtime, locker.organisation_id, PNG + b"3", stage="none", at=young)
        )
        while _intents(runtime)[crashed[0]].status == "pending":
            time.sleep(_IDLE_SECONDS / 4)  # never idle as long as the idle timeout
            yield PNG

    response = _upload(locker, slowly())
    assert response.status_code == 201, response.text
    intents = _intents(runtime)
    live = next(i for i in intents.values() if i.filename == "slow.png")
    assert live.status == "done"
    # Settled while the upload, older than the stale age by then, was still streaming:
    # only its heartbeat kept it from being settled too.
    settled_at = intents[crashed[0]].finished_at
    assert intents[crashed[0]].status == "abandoned" and settled_at is not None
    assert live.finished_at is not None and settled_at < live.finished_at
    assert settled_at - live.created_at > timedelta(seconds=_IDLE_SECONDS)
    assert fsck(runtime).findings == []


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_an_upload_cut_off_by_a_database_outage_is_settled_once_it_returns(
    make_locker: Callable[..., Locker],
) -> None:
    locker = make_locker(**_FAST)
    runtime = locker.runtime
    database = make_url(runtime.settings.effective_database_url).database
    assert database is not None
    cut = threading.Event()

    def across_an_outage() -> Iterator[bytes]:
        yield PNG + b"before the outage"
        _pending_upload(runtime, "slow.png")
        allow_connections(database, False)  # the database goes away mid-upload
        cut.set()
        yield PNG + b"after it"

    try:
        response = _upload(locker, across_an_outage())
    finally:
        if cut.is_set():
            allow_connections(database, True)
    # Neither the recording nor the clean-up could reach the database.
    assert response.status_code == 503, response.text
    left = _pending_upload(runtime, "slow.png")
    assert left.status == "pending"

    intents = _settled(runtime, {left.id})  # the same server, still running
    assert intents[left.id].status == "abandoned"
    assert fsck(runtime).findings == []  # its staging bytes are gone too


def test_an_intent_is_settled_once_whoever_comes_second(locker: Locker) -> None:
    runtime = locker.runtime
    # Silent only just now: the server's own reconciliation must not settle them first.
    now = datetime.now(UTC)
    stored = _crashed_upload(runtime, locker.organisation_id, PNG + b"4", stage="locked", at=now)
    unstored = _crashed_upload(runtime, locker.organisation_id, PNG + b"5", stage="none", at=now)
    # What a second worker read before the first settled them.
    snapshots = {i: _intents(runtime)[i] for i in (stored, unstored)}
    assert settle_intent(runtime, snapshots[stored]) == f"finished upload intent {stored}"
    assert settle_intent(runtime, snapshots[unstored]) is not None
    assert settle_intent(runtime, snapshots[stored]) is None
    assert settle_intent(runtime, snapshots[unstored]) is None
    with runtime.database.session() as session:
        assert len(session.exec(select(Evidence)).all()) == 1
    # The upload's own request, waking up late, records nothing either.
    with pytest.raises(Conflict, match="settled meanwhile"):
        finish_intent(runtime, stored, object_key="", object_version=None)
    assert fsck(runtime).findings == []


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_an_unreachable_store_leaves_stored_bytes_pending(locker: Locker) -> None:
    runtime = locker.runtime
    stored = _crashed_upload(runtime, locker.organisation_id, PNG + b"6", stage="locked")
    gone = S3Store(
        endpoint=f"127.0.0.1:{free_port()}",
        access_key="a",
        secret_key="b",
        bucket="evidence",
        secure=False,
    )
    # An outage is no reason to give up stored bytes: nothing settled, try again later.
    assert settle_pending(dataclasses.replace(runtime, store=gone), stale_only=False) == []
    assert _intents(runtime)[stored].status == "pending"
    assert settle_pending(runtime, stale_only=False) == [f"finished upload intent {stored}"]
