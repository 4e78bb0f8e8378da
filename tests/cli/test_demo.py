"""`locker demo` fills a fresh locker with a small, realistic sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.ExifTags import IFD

from service.errors import InvalidInput
from service.operations.demo import DEMO_EMAIL, DEMO_NAME, load_demo
from tests.cli.test_commands import _run
from tests.harness import Locker


def test_demo_fills_a_fresh_locker(locker: Locker) -> None:
    loaded = load_demo(locker.runtime)
    with locker.client(loaded.api_key) as client:
        incidents = client.get("/v1/incidents").json()["items"]
        found = client.get("/v1/search", params={"q": "مَقَابِر", "type": "incident"}).json()
        items = client.get("/v1/evidence").json()["items"]
        details = [client.get(f"/v1/evidence/{i['id']}").json() for i in items]
        history = client.get(f"/v1/incidents/{loaded.incidents[0]}/history").json()
        notes = client.get(f"/v1/evidence/{loaded.evidence[1]}/notes").json()
        related = client.get(f"/v1/incidents/{loaded.incidents[1]}").json()
        members = client.get("/v1/members").json()
    assert [i["id"] for i in incidents] == loaded.incidents
    assert [h["id"] for h in found["items"]] == [loaded.incidents[0]]
    assert len(items) == 4
    site, forwarded, farmland, statement = details
    assert site["analysis"]["extracted"]["gps"] == {"latitude": 32.4335, "longitude": 13.6345}
    assert farmland["analysis"]["extracted"]["gps"]["latitude"] == 32.4335
    assert forwarded["near_duplicates"][0]["evidence_id"] == site["id"]
    assert {d["description"]["asserted"]["source_reliability"] for d in details} == {"A", "B", "C"}
    assert statement["media_type"].startswith("text/plain")
    assert statement["filename"] == "إفادة-W03.txt"
    assert [v["document"]["status"] for v in history] == ["under_review", "corroborated"]
    assert len(notes) == 1
    assert related["document"]["related_incidents"] == [loaded.incidents[0]]
    assert [(m["email"], m["name"]) for m in members] == [(DEMO_EMAIL, DEMO_NAME)]
    with pytest.raises(InvalidInput, match="already loaded"):
        load_demo(locker.runtime)


def test_locker_demo_command(tmp_path: Path) -> None:
    env = {"LOCKER_DATA_DIR": str(tmp_path)}
    done = _run(["demo"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("lk_")
    assert "loaded 2 incidents and 4 items" in done.stdout
    again = _run(["demo"], env)
    assert again.returncode == 2 and "already loaded" in again.stderr
    assert "Traceback" not in again.stderr
    healthy = _run(["fsck"], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr


def test_demo_samples_are_the_walkthroughs_files(tmp_path: Path) -> None:
    data = {"LOCKER_DATA_DIR": str(tmp_path / "data")}
    done = _run(["demo", "--samples", str(tmp_path / "samples"), "--json"], data)
    assert done.returncode == 0, done.stderr
    written = [Path(p) for p in json.loads(done.stdout)["samples"]]
    assert [p.name for p in written] == ["مقبرة.jpg", "الموقع-2.jpg", "إفادة-W03.txt"]
    with Image.open(written[0]) as photo:
        assert photo.format == "JPEG" and photo.size == (1024, 768)
        assert photo.getexif().get_ifd(IFD.GPSInfo)[1] == "N"  # it places itself at the site
    assert not (tmp_path / "data").exists()  # no locker was opened, nothing loaded
