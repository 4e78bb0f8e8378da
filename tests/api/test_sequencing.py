"""Through HTTP, on PostgreSQL: a request whose entry cannot reach the log's tree in time.

Its records and entry are committed; it answers 503 with Retry-After; a repeat with
the same Idempotency-Key gets 409, never a second record; once a sequencer runs, the
entry is in the tree at the index it was given, and the repeat gets the first answer's
record never made twice.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import select

from service.custody import log as log_module
from service.custody import sequencer
from service.db.models import CustodyEntry, Incident
from tests.harness import Locker


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_a_503_after_commit_keeps_the_record_and_the_idempotency_claim(
    locker: Locker, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = locker.runtime
    runtime.log.close()  # this process lets go of the lead ...
    monkeypatch.setattr(log_module, "_INTEGRATION_WAIT_SECONDS", 0.5)
    with runtime.database.engine.connect() as squatter:
        # ... and something that never integrates takes it.
        squatter.execute(text("SELECT pg_advisory_lock(:key)"), {"key": sequencer._SEQUENCER})
        squatter.commit()
        with locker.client() as client:
            key = {"Idempotency-Key": "0b7e6a1c-503-after-commit"}
            first = client.post("/v1/incidents", json={"title": "مقبرة"}, headers=key)
            assert first.status_code == 503, first.text
            assert int(first.headers["Retry-After"]) > 0
            assert "recorded but not yet in the log" in first.json()["detail"]
            repeat = client.post("/v1/incidents", json={"title": "مقبرة"}, headers=key)
            assert repeat.status_code == 409, repeat.text
        squatter.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": sequencer._SEQUENCER})
        squatter.commit()
    monkeypatch.undo()
    with locker.client() as client:
        # The next write starts a sequencer, which integrates the waiting entry first.
        later = client.post("/v1/incidents", json={"title": "later"})
        assert later.status_code == 201, later.text
        incidents = client.get("/v1/incidents").json()
    with runtime.database.session() as session:
        [kept] = session.exec(select(Incident).where(Incident.title == "مقبرة")).all()
        entry = session.get(CustodyEntry, kept.custody_index)
        assert entry is not None and kept.id.encode() in entry.leaf
        assert runtime.log.size(session) > kept.custody_index  # in the tree now
    assert later.json()["custody_index"] > kept.custody_index
    assert sorted(i["title"] for i in incidents["items"]) == sorted(["later", "مقبرة"])
