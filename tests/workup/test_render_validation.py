"""Suggested draft orders are validated with fhir.resources; a validated shape is remembered across patients, and
that memory never lets an invalid draft through."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from app.workup import render
from app.workup.jsontypes import JsonObject, JsonValue


def draft(patient: str, reasons: list[str], code: str = "37252") -> JsonObject:
    resource: JsonObject = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {
            "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}],
            "text": "IVUS",
        },
    }
    if reasons:
        resource["reasonReference"] = [{"reference": r} for r in reasons]
    return resource


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[JsonObject]:
    """Counts real fhir.resources validations, starting from an empty memory."""
    seen: list[JsonObject] = []
    real = render._validates

    def counting(model: type[ServiceRequest], resource: JsonObject) -> bool:
        seen.append(resource)
        return real(model, resource)

    monkeypatch.setattr(render, "_validates", counting)
    monkeypatch.setattr(render, "_VALID_SHAPES", {})
    return seen


class TestDraftValidationMemory:
    def test_same_shape_for_another_patient_is_not_validated_again(
        self, validations: list[JsonObject]
    ) -> None:
        first = draft("p1", ["Observation/a"])
        second = draft("p2", ["Observation/b"])

        assert render._validated(ServiceRequest, first) is first
        assert render._validated(ServiceRequest, second) is second
        assert validations == [first]

    def test_a_different_shape_is_validated(
        self, validations: list[JsonObject]
    ) -> None:
        render._validated(ServiceRequest, draft("p1", ["Observation/a"]))
        render._validated(ServiceRequest, draft("p1", ["Observation/a", "Condition/c"]))
        render._validated(ServiceRequest, draft("p1", ["Observation/a"], code="37238"))

        assert len(validations) == 3

    def test_an_invalid_shape_stays_refused(
        self, validations: list[JsonObject]
    ) -> None:
        bad = draft("p1", [])
        del bad["intent"]  # required in R4

        assert render._validated(ServiceRequest, bad) is None
        assert render._validated(ServiceRequest, {**bad}) is None
        assert len(validations) == 1

    @pytest.mark.parametrize(
        "reference", [{"reference": ""}, {"display": "no reference"}, "Observation/a"]
    )
    def test_an_unusual_reference_is_always_validated_in_full(
        self, validations: list[JsonObject], reference: JsonValue
    ) -> None:
        good = draft("p1", ["Observation/a"])
        render._validated(ServiceRequest, good)
        odd = draft("p1", ["Observation/a"])
        odd["reasonReference"] = [reference]

        result = render._validated(ServiceRequest, odd)

        assert len(validations) == 2
        assert result == (odd if reference == {"display": "no reference"} else None)

    def test_an_empty_patient_reference_is_refused(
        self, validations: list[JsonObject]
    ) -> None:
        render._validated(ServiceRequest, draft("p1", []))
        empty = draft("p1", [])
        empty["subject"] = {"reference": ""}

        assert render._validated(ServiceRequest, empty) is None
        assert len(validations) == 2
