"""Checks of CDS Hooks 2.0 response rules that the API tests apply to every answer."""

from __future__ import annotations

import uuid
from typing import Any

from app.api.cds.schemas import CdsResponse


def assert_no_empty_optionals(value: Any, path: str = "$") -> None:
    """Optional fields are omitted, never null, "" or []."""
    if isinstance(value, dict):
        for key, item in value.items():
            # FHIR resources inside actions follow FHIR's own rules, checked by fhir.resources.
            if key == "resource":
                continue
            assert item is not None, f"{path}.{key} is null"
            assert item != "", f"{path}.{key} is an empty string"
            assert item != [], f"{path}.{key} is an empty list"
            assert_no_empty_optionals(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_no_empty_optionals(item, f"{path}[{i}]")


def assert_spec_valid_response(body: dict[str, Any]) -> None:
    CdsResponse.model_validate(body)
    assert set(body) <= {"cards", "systemActions"}
    assert_no_empty_optionals({k: v for k, v in body.items() if k != "cards"})
    for card in body["cards"]:
        assert_no_empty_optionals(card)
        uuid.UUID(card["uuid"])
        assert len(card["summary"]) <= 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
        assert card["source"]["topic"]["code"]
        assert card["detail"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] in ("at-most-one", "any")
            for suggestion in card["suggestions"]:
                uuid.UUID(suggestion["uuid"])
                assert suggestion["label"]
                for action in suggestion["actions"]:
                    assert action["type"] in ("create", "update", "delete")
                    assert action["description"]
        for reason in card.get("overrideReasons", []):
            assert reason["code"]
            assert reason["display"]
        for link in card.get("links", []):
            assert link["type"] in ("absolute", "smart")


def rules_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"]]
