"""The example requests under examples/ answer the cards examples/README.md documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.app import AppFactory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "service", "expected"),
    [
        (
            "patient-view-left-whole-leg-swelling.json",
            "iliac-workup-patient-view",
            {("R02", "warning")},
        ),
        (
            "order-select-stent-without-ivus.json",
            "iliac-workup-order-select",
            {("R09", "critical")},
        ),
        (
            "order-sign-stent-without-ivus.json",
            "iliac-workup-order-sign",
            {("R01", "warning"), ("R09", "critical")},
        ),
    ],
)
async def test_example_answers_documented_cards(
    sqlite_app_factory: AppFactory,
    name: str,
    service: str,
    expected: set[tuple[str, str]],
) -> None:
    api = await sqlite_app_factory(now=EXAMPLE_NOW)
    body = json.loads((EXAMPLES / name).read_text())
    response = await api.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.text
    got = {
        (c["source"]["topic"]["code"], c["indicator"]) for c in response.json()["cards"]
    }
    assert expected <= got
