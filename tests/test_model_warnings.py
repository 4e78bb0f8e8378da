"""The service's pydantic models misuse no `Field()` attribute.

The test configuration ignores UnsupportedFieldAttributeWarning (pydantic's own
suppression of it is not thread-safe; see pyproject.toml), so this builds every model
of the service again, in one thread, and requires that none of them emits it.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import pydantic
from pydantic.warnings import UnsupportedFieldAttributeWarning

import service

_SKIPPED = ("migrations", "_child", "__main__")


def _service_models() -> set[type[pydantic.BaseModel]]:
    for module in pkgutil.walk_packages(service.__path__, "service."):
        if not any(part in module.name for part in _SKIPPED):
            importlib.import_module(module.name)
    found: set[type[pydantic.BaseModel]] = set()
    pending = [pydantic.BaseModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found:
                found.add(subclass)
                pending.append(subclass)
    return {model for model in found if model.__module__.startswith("service.")}


def test_no_service_model_puts_a_field_attribute_where_it_has_no_effect() -> None:
    models = _service_models()
    assert len(models) > 50  # the walk found the service's models
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for model in models:
            model.model_rebuild(force=True)
    misplaced = [w for w in caught if issubclass(w.category, UnsupportedFieldAttributeWarning)]
    assert misplaced == [], [str(w.message) for w in misplaced]
