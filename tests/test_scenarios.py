"""Golden tests: every scenario in tests/scenarios/ through the engine alone and through HTTP.

The scenarios were written from clinical-rules.md independently of the engine. Through the engine each `must`
card is present (rule, side, indicator, suggestion codes) and each `mustNot` card absent; through HTTP (with the
clock fixed to the scenario's `now`) the service answers the same cards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from app.workup.engine import WorkupInput, WorkupResult, run_workup
from tests.api.spec import assert_spec_valid_response
from tests.fixtures.app import AppFactory
from tests.workup.factories import LINKS, catalog

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))
SERVICE_BY_HOOK = {
    "patient-view": "iliac-workup-patient-view",
    "order-select": "iliac-workup-order-select",
    "order-sign": "iliac-workup-order-sign",
}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def flatten(value: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not value:
        return []
    if value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry", [])
            if e.get("resource", {}).get("resourceType")
            not in (None, "OperationOutcome")
        ]
    return [value]


def run_scenario(scenario: dict[str, Any]) -> WorkupResult:
    request = scenario["request"]
    context = request["context"]
    resources = [r for v in request.get("prefetch", {}).values() for r in flatten(v)]
    return run_workup(
        WorkupInput(
            hook=request["hook"],
            now=datetime.fromisoformat(scenario["now"]),
            patient_id=context["patientId"],
            resources=tuple(resources),
            draft_orders=tuple(flatten(context.get("draftOrders"))),
            selections=tuple(context.get("selections", [])),
            links=LINKS,
        ),
        catalog(),
    )


def suggestion_codes(card: dict[str, Any]) -> set[str]:
    codes: set[str] = set()
    for suggestion in card.get("suggestions", []):
        for action in suggestion.get("actions", []):
            resource = action.get("resource") or {}
            for key in ("code", "medicationCodeableConcept", "codeCodeableConcept"):
                codes.update(c["code"] for c in resource.get(key, {}).get("coding", []))
    return codes


def cards_with_sides(
    result: WorkupResult,
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    for raw in result.cards:
        card = cast(dict[str, Any], raw)
        yield card["source"]["topic"]["code"], result.card_sides.get(card["uuid"]), card


def problems(scenario: dict[str, Any], result: WorkupResult) -> list[str]:
    got = list(cards_with_sides(result))
    found: list[str] = []
    for want in scenario["expect"].get("must", []):
        hits = [
            card
            for rule, side, card in got
            if rule == want["rule"]
            and want.get("side") in (None, side)
            and want.get("indicator") in (None, card["indicator"])
        ]
        if not hits:
            found.append(f"missing {want}")
            continue
        missing_codes = set(want.get("suggestionCodes", [])) - set().union(
            *(suggestion_codes(c) for c in hits)
        )
        if missing_codes:
            found.append(
                f"{want['rule']}: suggestion codes {sorted(missing_codes)} missing"
            )
    for banned in scenario["expect"].get("mustNot", []):
        if any(
            rule == banned["rule"] and banned.get("side") in (None, side)
            for rule, side, _ in got
        ):
            found.append(f"unexpected {banned}")
    return found


def test_library_is_large_enough() -> None:
    assert len(SCENARIOS) >= 60


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_engine_meets_expectations(path: Path) -> None:
    scenario = load(path)
    result = run_scenario(scenario)
    got = [(rule, side) for rule, side, _ in cards_with_sides(result)]
    assert problems(scenario, result) == [], f"{scenario['description']}\ncards: {got}"


@pytest.mark.db
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_http_answers_the_same_cards(
    path: Path, app_factory: AppFactory, database_url: str
) -> None:
    if database_url.startswith("postgresql"):
        # One backend suffices for the clinical content; the database tests cover PostgreSQL.
        return
    scenario = load(path)
    api: httpx.AsyncClient = await app_factory(
        now=datetime.fromisoformat(scenario["now"])
    )
    service = SERVICE_BY_HOOK[scenario["request"]["hook"]]
    response = await api.post(f"/cds-services/{service}", json=scenario["request"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert_spec_valid_response(body)
    expected = sorted(
        (c["source"]["topic"]["code"], c["indicator"], c["summary"])
        for _, _, c in cards_with_sides(run_scenario(scenario))
    )
    assert (
        sorted(
            (c["source"]["topic"]["code"], c["indicator"], c["summary"])
            for c in body["cards"]
        )
        == expected
    )
