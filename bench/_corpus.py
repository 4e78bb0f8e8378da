"""A made-up but realistic corpus of incidents: Arabic records with English translations.

Titles and summaries are built from small word lists (events, targets, people, forces,
places in Syria, Iraq, Yemen, Libya, Sudan and Gaza) picked with Zipf-like weights, so
some words are in a large share of the records and others in few. About half of the
Arabic is written with tashkeel, some with tatweel, articles and attached و/ب/ل as
investigators type them. Every record is validated by the locker's own
`IncidentDocument`; nothing here is real.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from service.documentation.documents import STATUSES, IncidentDocument
from service.documentation.vocabulary import DEFAULT_CATEGORIES

# (Arabic with tashkeel, English); the Arabic noun is written without its article.
EVENTS = (
    ("قَصْف", "shelling"),
    ("غَارَة جَوِّيَّة", "airstrike"),
    ("اِعْتِقَال", "arrest"),
    ("اِخْتِفَاء قَسْرِيّ", "enforced disappearance"),
    ("تَعْذِيب", "torture"),
    ("إِعْدَام مَيْدَانِيّ", "summary execution"),
    ("تَهْجِير", "displacement"),
    ("اِنْفِجَار", "explosion"),
    ("حِصَار", "siege"),
    ("اِقْتِحَام", "raid"),
    ("قَنْص", "sniper fire"),
    ("اِخْتِطَاف", "abduction"),
    ("نَهْب", "looting"),
    ("حَرْق", "burning"),
)
TARGETS = (
    ("مَدْرَسَة", "school"),
    ("مُسْتَشْفَى", "hospital"),
    ("سُوق", "market"),
    ("مَسْجِد", "mosque"),
    ("مُخَيَّم", "camp"),
    ("قَرْيَة", "village"),
    ("سِجْن", "prison"),
    ("مَخْبَز", "bakery"),
    ("جِسْر", "bridge"),
    ("مَزْرَعَة", "farm"),
    ("حَاجِز", "checkpoint"),
    ("مَنْزِل", "house"),
    ("كَنِيسَة", "church"),
    ("مَحَطَّة مِيَاه", "water station"),
)
PEOPLE = (
    ("مَدَنِيِّين", "civilians"),
    ("أَطْفَال", "children"),
    ("نِسَاء", "women"),
    ("صَحَفِيِّين", "journalists"),
    ("أَطِبَّاء", "doctors"),
    ("مُتَظَاهِرِين", "protesters"),
    ("لَاجِئِين", "refugees"),
    ("مُعْتَقَلِين", "detainees"),
    ("عُمَّال", "workers"),
    ("طُلَّاب", "students"),
    ("مُسْعِفِين", "paramedics"),
)
FORCES = (
    ("قُوَّات حُكُومِيَّة", "government forces"),
    ("مِيلِيشْيَا مُسَلَّحَة", "an armed militia"),
    ("الجَيْش", "the army"),
    ("الشُّرْطَة", "the police"),
    ("مُسَلَّحِين مَجْهُولِين", "unidentified gunmen"),
    ("طَائِرَات مُسَيَّرَة", "drones"),
)
SOURCES = (
    ("شُهُود عِيَان", "eyewitnesses"),
    ("مَقْطَع فِيدْيُو", "a video"),
    ("صُوَر أَقْمَار صِنَاعِيَّة", "satellite images"),
    ("تَقْرِير طِبِّيّ", "a medical report"),
    ("أَقَارِب الضَّحَايَا", "relatives of the victims"),
)
# (Arabic name, English name, ISO 3166 country, latitude, longitude)
CITIES = (
    ("حَلَب", "Aleppo", "SY", 36.20, 37.16),
    ("إِدْلِب", "Idlib", "SY", 35.93, 36.63),
    ("حِمْص", "Homs", "SY", 34.73, 36.72),
    ("دَيْر الزُّور", "Deir ez-Zor", "SY", 35.33, 40.14),
    ("المَوْصِل", "Mosul", "IQ", 36.34, 43.13),
    ("الفَلُّوجَة", "Fallujah", "IQ", 33.35, 43.78),
    ("البَصْرَة", "Basra", "IQ", 30.51, 47.78),
    ("صَنْعَاء", "Sanaa", "YE", 15.37, 44.19),
    ("تَعِز", "Taiz", "YE", 13.58, 44.02),
    ("الحُدَيْدَة", "Hodeidah", "YE", 14.80, 42.95),
    ("بَنْغَازِي", "Benghazi", "LY", 32.12, 20.09),
    ("طَرَابُلُس", "Tripoli", "LY", 32.89, 13.19),
    ("مِصْرَاتَة", "Misrata", "LY", 32.38, 15.09),
    ("الخُرْطُوم", "Khartoum", "SD", 15.50, 32.56),
    ("الفَاشِر", "El Fasher", "SD", 13.63, 25.35),
    ("الجُنَيْنَة", "El Geneina", "SD", 13.45, 22.44),
    ("غَزَّة", "Gaza", "PS", 31.50, 34.47),
    ("رَفَح", "Rafah", "PS", 31.30, 34.25),
)
TAGS = ("verified", "video", "satellite", "witness_statement", "osint", "priority", "medical")
# Syria, roughly (west, south, east, north): about a third of the records lie inside.
SYRIA_BBOX = "35.5,32.3,42.4,37.4"

_TASHKEEL = re.compile("[\u064b-\u0652]")
_FIRST_DAY = date(2011, 3, 1)
_DAYS = (date(2024, 12, 31) - _FIRST_DAY).days


def bare(arabic: str) -> str:
    """The Arabic without tashkeel, as most people type it."""
    return _TASHKEEL.sub("", arabic)


def _zipf(rng: random.Random, items: Sequence[Any]) -> Any:
    """An item, the first ones far more often than the last (weights 1, 1/2, 1/3, …)."""
    return rng.choices(items, weights=[1 / (rank + 1) for rank in range(len(items))])[0]


def _definite(arabic: str) -> str:
    """With the article on each word ("the"), unless it has one already."""
    return " ".join(w if bare(w).startswith("ال") else "ال" + w for w in arabic.split())


@dataclass(frozen=True, slots=True)
class _Story:
    event: tuple[str, str]
    target: tuple[str, str]
    people: tuple[str, str]
    force: tuple[str, str]
    source: tuple[str, str]
    city: tuple[str, str, str, float, float]
    dead: int


def _story(rng: random.Random) -> _Story:
    return _Story(
        event=_zipf(rng, EVENTS),
        target=_zipf(rng, TARGETS),
        people=_zipf(rng, PEOPLE),
        force=_zipf(rng, FORCES),
        source=_zipf(rng, SOURCES),
        city=_zipf(rng, CITIES),
        dead=rng.randint(1, 40),
    )


def _arabic(story: _Story, rng: random.Random) -> tuple[str, str]:
    """Title and summary in Arabic, vocalised or not, sometimes stretched with tatweel."""
    event, target, people = story.event[0], story.target[0], story.people[0]
    title = f"{event} عَلَى {target} فِي {story.city[0]}"
    summary = (
        f"أَفَادَ {story.source[0]} بِأَنَّ {story.force[0]} نَفَّذَت {event} "
        f"اِسْتَهْدَفَ {_definite(target)} وَسَطَ {story.city[0]}، مَا أَدَّى إِلَى "
        f"سُقُوط {story.dead} قَتِيلًا بَيْنَهُم {people}. "
        f"وَقَالَ {_definite(story.source[0].split()[0])} إِنَّ {_definite(people)} "
        f"كَانُوا فِي {_definite(target)} وَقْتَ {_definite(event.split()[0])}."
    )
    if rng.random() < 0.5:
        title, summary = bare(title), bare(summary)
    if rng.random() < 0.1:
        title = title.replace("ي", "ـي", 1)  # tatweel, as some keyboards insert it
    return title, summary


def _english(story: _Story) -> tuple[str, str]:
    event, target, people = story.event[1], story.target[1], story.people[1]
    title = f"{event.capitalize()} of a {target} in {story.city[1]}"
    summary = (
        f"According to {story.source[1]}, {story.force[1]} carried out the {event} "
        f"that hit the {target} in central {story.city[1]}, killing {story.dead} people, "
        f"among them {people}. The {people} were inside the {target} at the time."
    )
    return title, summary


def document(rng: random.Random) -> IncidentDocument:
    """A random incident record: Arabic original (sometimes English), both languages."""
    story = _story(rng)
    (ar_title, ar_summary), (en_title, en_summary) = _arabic(story, rng), _english(story)
    name_ar, name_en, country, latitude, longitude = story.city
    day = _FIRST_DAY + timedelta(days=rng.randrange(_DAYS))
    start: dict[str, str | bool] = {"value": f"{day:%Y-%m-%d}", "precision": "day"}
    if rng.random() < 0.2:
        start = {"value": f"{day:%Y-%m}", "precision": "month", "approximate": True}
    categories = {_zipf(rng, DEFAULT_CATEGORIES) for _ in range(rng.randint(1, 3))}
    return IncidentDocument.model_validate(
        {
            "title": {"ar": ar_title, "en": en_title},
            "summary": {"ar": ar_summary, "en": en_summary},
            "original_language": "ar" if rng.random() < 0.85 else "en",
            "start": start,
            "locations": [
                {
                    "name": name_ar if rng.random() < 0.7 else name_en,
                    "country": country,
                    "lat": round(latitude + rng.uniform(-0.1, 0.1), 5),
                    "lon": round(longitude + rng.uniform(-0.1, 0.1), 5),
                    "precision_m": rng.choice((100, 1000, 5000)),
                }
            ],
            "categories": sorted(categories),
            "actors": [
                {"role": "victim", "kind": "group", "count": story.dead},
                {"role": "perpetrator", "kind": "group", "affiliation": story.force[1]},
            ],
            "status": rng.choices(STATUSES, weights=(5, 3, 2, 1))[0],
            "tags": sorted({rng.choice(TAGS) for _ in range(rng.randint(0, 3))}),
        }
    )
