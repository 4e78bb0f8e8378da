"""`locker demo`: a small, self-written sample so a new user sees a populated locker.

Everything here is invented for illustration (names, statements, pictures), modelled on
how a team documenting the mass graves found in Tarhuna, Libya, in 2020 might work:
an incident recorded in Arabic with an English translation, sources of different
reliability, photos whose EXIF places them at the site, a re-encoded copy that the
locker recognises as the same picture, a witness statement, an edit and a note.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw
from PIL.ExifTags import IFD
from sqlmodel import select

from service.accounts.members import Principal, bootstrap
from service.accounts.permissions import Role
from service.db.models import Organisation
from service.documentation.incidents import create_incident, parse_document, update_incident
from service.documentation.notes import add_note
from service.errors import InvalidInput
from service.evidence.extraction import analyse_evidence
from service.evidence.intake import FormEvent, PartData, PartEnd, PartStart, ingest

if TYPE_CHECKING:
    from service.runtime import Runtime

DEMO_ORGANISATION = "Demo: Libya documentation team"
DEMO_EMAIL = "demo@locker.example"
DEMO_NAME = "ليلى (demo lead)"  # the admin's name: reports show it in both scripts

_TARHUNA = {
    "title": {
        "ar": "مقابر جماعية في ترهونة",
        "en": "Mass graves in Tarhuna",
    },
    "summary": {
        "ar": (
            "بعد انسحاب المجموعة المسلحة من ترهونة في يونيو 2020، عُثر على مقابر جماعية "
            "في المكبّ وفي أراضٍ زراعية جنوب المدينة. تفيد عائلات بفقدان أقاربها منذ 2019."
        ),
        "en": (
            "After the armed group withdrew from Tarhuna in June 2020, mass graves were "
            "found at the landfill and on farmland south of the town. Families report "
            "relatives missing since 2019."
        ),
    },
    "original_language": "ar",
    "start": {"value": "2019-04", "precision": "month", "approximate": True},
    "end": {"value": "2020-06-05", "precision": "day"},
    "locations": [
        {
            "name": "ترهونة — المكب",
            "admin_area": "المرقب",
            "country": "LY",
            "lat": 32.4335,
            "lon": 13.6345,
            "precision_m": 200,
        }
    ],
    "categories": ["mass_grave", "enforced_disappearance", "killing"],
    "actors": [
        {"role": "victim", "kind": "group", "count": 12, "affiliation": "residents of Tarhuna"},
        {
            "role": "victim",
            "kind": "individual",
            "name": "Witness W-03 (protected)",
            "identity_restricted": True,
        },
        {"role": "perpetrator", "kind": "group", "affiliation": "local armed group"},
    ],
    "status": "under_review",
    "tags": ["Tarhuna", "exhumation"],
}
_DETENTION = {
    "title": {"en": "Detention site reported near Tarhuna", "ar": "موقع احتجاز قرب ترهونة"},
    "summary": {"en": "Former detainees describe a makeshift detention site in 2019."},
    "original_language": "en",
    "start": {"value": "2019", "precision": "year"},
    "locations": [{"name": "Tarhuna outskirts", "country": "LY"}],
    "categories": ["arbitrary_detention", "torture"],
    "status": "open",
}
_STATEMENT = (
    "إفادة شاهد (W-03) — مثال مكتوب لأغراض العرض فقط.\n"
    "في صباح 6 يونيو 2020 رأيت فرق البحث تصل إلى المكب. كان أخي قد اختفى في سبتمبر 2019.\n"
    "Witness statement (W-03), written for this demonstration only.\n"
)


@dataclass
class DemoResult:
    api_key: str
    incidents: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def load_demo(runtime: Runtime) -> DemoResult:
    """Create the demo organisation and fill it; refuses if it is already there."""
    with runtime.database.session() as session:
        exists = session.exec(
            select(Organisation).where(Organisation.name == DEMO_ORGANISATION)
        ).first()
    if exists is not None:
        raise InvalidInput(f"the demo organisation {DEMO_ORGANISATION!r} is already loaded")
    made = bootstrap(runtime, organisation=DEMO_ORGANISATION, email=DEMO_EMAIL, name=DEMO_NAME)
    lead = Principal(user_id=made.user_id, organisation_id=made.organisation_id, role=Role.ADMIN)
    result = DemoResult(api_key=made.api_key)
    tarhuna = create_incident(runtime, lead, parse_document(_TARHUNA))
    detention = create_incident(
        runtime, lead, parse_document(_DETENTION | {"related_incidents": [tarhuna.id]})
    )
    result.incidents += [tarhuna.id, detention.id]
    site = sample_photo(seed=7)
    items = [
        ("الموقع-1.jpg", site, _asserted("Landfill site, first visit", "A", 1, tarhuna.id)),
        (
            "IMG-20200610-WA0004.jpg",  # the same picture as forwarded by a messaging app
            forwarded_copy(site),
            _asserted("Forwarded copy of the site photo", "C", 3, tarhuna.id),
        ),
        (
            "الموقع-2.jpg",
            sample_photo(seed=11),
            _asserted("Farmland south of town", "B", 2, tarhuna.id),
        ),
        (
            "إفادة-W03.txt",
            _STATEMENT.encode(),
            _asserted("Witness statement W-03", "B", 2, tarhuna.id, language="ar"),
        ),
    ]
    for filename, content, metadata in items:
        uploaded = asyncio.run(ingest(runtime, lead, _form(filename, content, metadata)))
        result.evidence.append(uploaded.evidence.id)
        analyse_evidence(runtime, uploaded.evidence.id)
    update_incident(
        runtime,
        lead,
        tarhuna.id,
        {"status": "corroborated"},
        reason="two independent sources place the photos at the landfill",
    )
    add_note(
        runtime,
        lead,
        kind="evidence",
        item_id=result.evidence[1],
        body="Forwarded copy: keep for the chain of forwarding, rely on the original.",
    )
    return result


SAMPLE_FILES = ("مقبرة.jpg", "الموقع-2.jpg", "إفادة-W03.txt")


def write_samples(directory: Path) -> list[Path]:
    """Write the walk-through's sample files into `directory` (made if need be): two
    generated photos whose EXIF places them at the site, and the witness statement.
    Existing files are left as they are."""
    contents = (sample_photo(seed=7), sample_photo(seed=11), _STATEMENT.encode())
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in zip(SAMPLE_FILES, contents, strict=True):
        target = directory / name
        if not target.exists():
            target.write_bytes(content)
        written.append(target)
    return written


def _asserted(
    title: str,
    reliability: str,
    credibility: int,
    incident_id: str,
    *,
    language: str | None = None,
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "title": title,
        "collector": "Demo investigator",
        "collected_at": "2020-06-12T10:00:00Z",
        "captured_at": "2020-06-10T09:30:00Z",
        "source_platform": "field visit" if reliability in "AB" else "messaging app",
        "location": {"name": "ترهونة", "country": "LY", "lat": 32.4335, "lon": 13.6345},
        "source_reliability": reliability,
        "information_credibility": credibility,
        "tags": ["Tarhuna"],
        "incident_id": incident_id,
    }
    if language:
        metadata["language"] = language
    return metadata


async def _form(
    filename: str, content: bytes, metadata: dict[str, object]
) -> AsyncIterator[FormEvent]:
    yield PartStart(name="metadata", filename=None)
    yield PartData(json.dumps(metadata, ensure_ascii=False).encode())
    yield PartEnd()
    yield PartStart(name="file", filename=filename)
    yield PartData(content)
    yield PartEnd()


def sample_photo(*, seed: int) -> bytes:
    """A generated landscape (sky, ground, shapes) with EXIF placing it at the site."""
    rng = random.Random(seed)
    image = Image.new("RGB", (1024, 768))
    draw = ImageDraw.Draw(image)
    for y in range(768):
        sky = y < 330
        base = (110 + y // 6, 150 + y // 8, 210) if sky else (150 - y // 12, 120 - y // 14, 80)
        draw.line([(0, y), (1024, y)], fill=base)
    for _ in range(14):  # mounds of earth
        x, y = rng.randrange(0, 1000), rng.randrange(360, 740)
        w, h = rng.randrange(30, 200), rng.randrange(15, 90)
        shade = rng.randrange(40, 120)
        draw.ellipse([x, y, x + w, y + h], fill=(shade, shade - 20, shade - 30))
    for _ in range(400):  # stones and debris: the texture a real photo has
        x, y, size = rng.randrange(0, 1020), rng.randrange(330, 765), rng.randrange(2, 14)
        shade = rng.randrange(30, 220)
        draw.rectangle([x, y, x + size, y + size // 2 + 1], fill=(shade, shade - 10, shade - 25))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=_site_exif())
    return buffer.getvalue()


def _site_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Demo Phone"  # Make
    exif[0x0110] = "Model D"  # Model
    exif[IFD.Exif] = {0x9003: "2020:06:10 11:30:00", 0x9011: "+02:00"}  # DateTimeOriginal
    exif[IFD.GPSInfo] = {1: "N", 2: (32.0, 26.0, 0.6), 3: "E", 4: (13.0, 38.0, 4.2)}
    return exif


def forwarded_copy(jpeg: bytes) -> bytes:
    """What a messaging app makes of a photo: smaller, more compressed, metadata gone."""
    image = Image.open(io.BytesIO(jpeg))
    smaller = image.resize((640, 480))
    buffer = io.BytesIO()
    smaller.save(buffer, "JPEG", quality=45)
    return buffer.getvalue()
