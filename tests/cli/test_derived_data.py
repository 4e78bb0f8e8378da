"""`locker analyse` and `locker reindex`: catching up the data derived from the records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from service.accounts.members import Principal, bootstrap
from service.accounts.permissions import Role
from service.evidence.extraction import pending_analysis
from service.evidence.intake import FormEvent, PartData, PartEnd, PartStart, ingest
from service.operations.demo import sample_photo
from service.runtime import open_runtime
from service.settings import load_settings
from tests.cli.test_commands import _run


async def _photo_form() -> AsyncIterator[FormEvent]:
    yield PartStart(name="file", filename="site.jpg")
    yield PartData(sample_photo(seed=5))
    yield PartEnd()


async def _text_form() -> AsyncIterator[FormEvent]:
    yield PartStart(name="file", filename="note.txt")
    yield PartData("شهادة".encode())
    yield PartEnd()


def test_analyse_picks_up_what_the_background_missed(tmp_path: Path) -> None:
    runtime = open_runtime(load_settings(data_dir=tmp_path))
    try:
        made = bootstrap(runtime, organisation="NGO", email="a@example.org")
        lead = Principal(
            user_id=made.user_id, organisation_id=made.organisation_id, role=Role.ADMIN
        )
        # Stored and recorded, but no background task ran (as after a crash).
        photo = asyncio.run(ingest(runtime, lead, _photo_form())).evidence.id
        asyncio.run(ingest(runtime, lead, _text_form()))  # plain text: nothing to read
        assert pending_analysis(runtime) == [photo]
    finally:
        runtime.close()
    done = _run(["analyse"], {"LOCKER_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert f"evidence {photo}: done" in done.stdout
    runtime = open_runtime(load_settings(data_dir=tmp_path))
    try:
        assert pending_analysis(runtime) == []
    finally:
        runtime.close()
    again = _run(["analyse"], {"LOCKER_DATA_DIR": str(tmp_path)})
    assert "analysed 0 item(s)" in again.stdout


def test_reindex_rebuilds_every_search_view(tmp_path: Path) -> None:
    from service.documentation.incidents import create_incident, parse_document

    runtime = open_runtime(load_settings(data_dir=tmp_path))
    try:
        made = bootstrap(runtime, organisation="NGO", email="a@example.org")
        lead = Principal(
            user_id=made.user_id, organisation_id=made.organisation_id, role=Role.ADMIN
        )
        for title in ("مقبرة جماعية", "Shelling of a hospital"):
            create_incident(runtime, lead, parse_document({"title": title}))
        asyncio.run(ingest(runtime, lead, _text_form()))
    finally:
        runtime.close()
    done = _run(["reindex"], {"LOCKER_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "reindexed 2 incident(s) and 1 item(s)" in done.stdout
