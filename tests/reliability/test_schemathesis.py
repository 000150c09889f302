"""Schemathesis against the served OpenAPI document: no 5xx, documented statuses and schemas, problem+json.

Every operation is fuzzed, with schema-valid and schema-invalid data, using valid credentials (an owner
JWT for owner operations, a service API key for token operations) and, half of the time, the id of a
real linked account in the path, so that the happy paths run too, not only 404s.

Schemathesis' own pytest integration does not work with this pytest, so the operations are driven
through its strategies and checks directly: one Hypothesis run per operation, failures collected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.factories import bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

OWNER = "owner-fuzz"
PROBLEM = "application/problem+json"
EXAMPLES_PER_OPERATION = 50


def errors_are_problem_json(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every error is RFC 9457 problem+json with the contract's fields."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM, f"{response.status_code} answered with {content_type!r}"
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == response.status_code, body
    return None


CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    errors_are_problem_json,
]


@dataclass(frozen=True)
class Target:
    base_url: str
    account_id: str
    owner_jwt: str
    api_key: str

    def headers_for(self, case: Case[Any]) -> dict[str, str]:
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            return {}  # the case is about a missing or malformed Authorization header: keep it so
        raw = case.operation.definition.raw
        if str(raw.get("operationId", "")).startswith("tokens-"):
            return bearer(self.api_key)
        if raw.get("security"):
            return bearer(self.owner_jwt)
        return {}


@pytest.fixture
async def target(harness: LinkHarness, service_url: str) -> Target:
    linked = await harness.link(OWNER, "Fuzzowany")
    assert linked.status_code == 200, linked.text
    key = await new_api_key(harness.settings, "tokens:read", "accounts:read")
    return Target(service_url, linked.json()["account"]["id"], owner_token(OWNER), key)


def _fuzz(operation: Any, target: Target, session: requests.Session) -> None:
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(case=cases, use_real_account=st.booleans())
    def run(case: Case[Any], use_real_account: bool) -> None:
        negative_path = case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)
        if use_real_account and not negative_path and "account_id" in (case.path_parameters or {}):
            case.path_parameters["account_id"] = target.account_id
        case.call_and_validate(
            base_url=target.base_url,
            session=session,
            headers=target.headers_for(case),
            checks=CHECKS,
            timeout=30,
        )

    run()


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    parts += [f"  - {type(e).__name__}: {e}" for e in getattr(exc, "exceptions", ())]
    return "\n".join(parts)[:4000]


@pytest.mark.slow
def test_every_operation_behaves_as_documented(target: Target) -> None:
    schema = schemathesis.openapi.from_url(f"{target.base_url}/openapi.json")
    # A body over the size limit is refused with 413 (documented), which is a rejection too.
    schema.config.checks.negative_data_rejection.expected_statuses.append("413")
    failures: dict[str, str] = {}
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            operations += 1
            try:
                _fuzz(operation, target, session)
            except (Exception, BaseExceptionGroup) as exc:
                failures[operation.label] = _describe(exc)
    assert operations >= 12
    assert failures == {}, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
