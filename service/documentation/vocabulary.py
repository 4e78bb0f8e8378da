"""The controlled vocabulary of violation categories an incident may carry.

The default follows the categories human-rights documentation commonly uses (HURIDOCS
micro-thesauri, the Rome Statute's crimes); a deployment may replace it with its own
list (`LOCKER_VOCABULARY_FILE`), read once at start.
"""

from __future__ import annotations

import json
from pathlib import Path

from service.errors import ConfigurationError

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "killing",
    "extrajudicial_execution",
    "enforced_disappearance",
    "torture",
    "cruel_inhuman_treatment",
    "arbitrary_detention",
    "mass_grave",
    "attack_on_civilians",
    "attack_on_protected_objects",
    "sexual_violence",
    "forced_displacement",
    "hostage_taking",
    "use_of_prohibited_weapons",
    "destruction_of_property",
    "persecution",
    "recruitment_of_children",
)
_MAX_TERM = 100


def load_vocabulary(path: Path | None) -> frozenset[str]:
    """The categories in `path`, or the default; ConfigurationError names the problem."""
    if path is None:
        return frozenset(DEFAULT_CATEGORIES)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"LOCKER_VOCABULARY_FILE: cannot read {path}: {exc}") from None
    terms = value.get("categories") if isinstance(value, dict) else value
    if (
        not isinstance(terms, list)
        or not terms
        or not all(isinstance(t, str) and 0 < len(t.strip()) <= _MAX_TERM for t in terms)
    ):
        raise ConfigurationError(
            "LOCKER_VOCABULARY_FILE: expected a non-empty JSON list of category names"
        )
    return frozenset(t.strip() for t in terms)
