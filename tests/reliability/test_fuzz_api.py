"""Schema-driven fuzzing of the committed OpenAPI contract through the ASGI app (auth disabled, SQLite).

Every operation in openapi/openapi.json gets a bounded, derandomized set of generated requests (valid and
invalid bodies, path ids, headers); no answer may be a 5xx, and every answer must be documented: a declared
status code, a declared content type and a body matching its schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import AuthMode, Settings
from app.db.migrate import upgrade_database
from app.main import create_app
from tests.fixtures.app import BASE_URL, FIXED_NOW
from tests.fixtures.database import run_outside_loop

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    path = tmp_path_factory.mktemp("fuzz") / "iliac-cds-fuzz.db"
    url = f"sqlite+aiosqlite:///{path}"
    run_outside_loop(lambda: upgrade_database(url))
    settings = Settings(
        _env_file=None,
        database_url=url,
        auth_mode=AuthMode.DISABLED,
        now=FIXED_NOW,
        hmac_key=SecretStr("fuzz-hmac-key"),
        public_base_url=BASE_URL,
    )
    return create_app(settings)


# Loaded at collection: a missing or unreadable contract must fail loudly (`iliac-cds export-openapi`).
CONTRACT = schemathesis.openapi.from_path(OPENAPI)
Operation = APIOperation[Any, Any, Any, Any]


def _operations() -> list[Operation]:
    operations: list[Operation] = []
    for result in CONTRACT.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()
        operations.append(result.ok())
    return operations


OPERATIONS = _operations()


# Operations without a body or parameters have no invalid input to generate.
CASES = [
    pytest.param(op, mode, id=f"{op.label} {mode.value}")
    for op in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or op.body or op.path_parameters
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_no_5xx_and_answers_match_the_contract(
    fuzz_app: FastAPI, operation: Operation, mode: GenerationMode
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, app=fuzz_app)

    check()
