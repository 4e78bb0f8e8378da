"""The running server keeps the contract its OpenAPI document states (schemathesis).

Every operation of the document is called with cases schemathesis generates from it,
valid ones and invalid ones, by an authenticated member of a bootstrapped organisation,
on each database. Any 5xx fails, and so does any answer the document does not describe
(a status code it does not list, a media type it does not name, a body or header that
does not match its schema) and an invalid request that is not refused with a 4xx.
The budget is bounded (a few examples per operation, a fixed seed) so that CI's run
stays short and repeatable; a developer hunting for bugs raises EXAMPLES.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness import Locker

EXAMPLES = 6  # per operation, valid and invalid cases together
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _exercise(operation: schemathesis.APIOperation, base_url: str, api_key: str) -> None:
    authorised = {"Authorization": f"Bearer {api_key}"}

    @seed(20261201)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE))
    def call(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=authorised, checks=CHECKS, timeout=30)

    call()


def test_every_operation_keeps_the_documented_contract(locker: Locker) -> None:
    schema = schemathesis.openapi.from_url(f"{locker.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a document that failed to load
    failures: list[str] = []
    for operation in operations:
        try:
            _exercise(operation, locker.base_url, locker.api_key)
        except (Exception, BaseExceptionGroup) as exc:  # every operation's, not the first only
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
