"""Prefetch template rendering and the reading of prefetch values sent by the CDS client."""

from __future__ import annotations

import pytest

from app.fhir.errors import InvalidPrefetch, PrefetchUnavailable
from app.fhir.prefetch import (
    PREFETCH_TEMPLATES,
    render_template,
    resources_from_prefetch,
)
from tests.fhir.builders import (
    CONTEXT,
    PATIENT_ID,
    make_bundle,
    make_outcome,
    make_patient,
    make_resource,
)


class TestRenderTemplate:
    @pytest.mark.parametrize(
        "template", PREFETCH_TEMPLATES.values(), ids=PREFETCH_TEMPLATES.keys()
    )
    def test_renders_every_service_template(self, template: str) -> None:
        rendered = render_template(template, CONTEXT, None)
        assert rendered == template.replace("{{context.patientId}}", PATIENT_ID)
        assert "{{" not in rendered

    def test_url_encodes_values(self) -> None:
        context = {"patientId": "a b/c&d=e#f?g"}
        rendered = render_template(
            "Observation?patient={{context.patientId}}", context, None
        )
        assert rendered == "Observation?patient=a%20b%2Fc%26d%3De%23f%3Fg"

    @pytest.mark.parametrize(
        "context",
        [
            {},
            {"patientId": None},
            {"patientId": ""},
            {"patientId": {"id": PATIENT_ID}},
            {"patientId": 7},
        ],
    )
    def test_missing_or_non_string_context_value_is_unavailable(
        self, context: dict[str, object]
    ) -> None:
        with pytest.raises(PrefetchUnavailable) as caught:
            render_template("Patient/{{context.patientId}}", context, None)
        assert "context.patientId" in caught.value.reason

    @pytest.mark.parametrize(
        "template",
        [
            "Patient/{{patientId}}",
            "Patient/{{context.patientId.id}}",
            "Patient/{{context.patientId}",
            "Practitioner/{{userId}}",
        ],
    )
    def test_unknown_or_broken_token_is_unavailable(self, template: str) -> None:
        with pytest.raises(PrefetchUnavailable):
            render_template(template, CONTEXT, None)

    @pytest.mark.parametrize(
        ("token", "user_id", "user_practitioner_id", "expected"),
        [
            ("userPractitionerId", "Practitioner/pr-1", None, "pr-1"),
            ("userPractitionerId", "PractitionerRole/role-1", "pr-9", "pr-9"),
            ("userPractitionerRoleId", "PractitionerRole/role-1", None, "role-1"),
            ("userPatientId", f"Patient/{PATIENT_ID}", None, PATIENT_ID),
            ("userRelatedPersonId", "RelatedPerson/rp 1", None, "rp%201"),
        ],
    )
    def test_fills_user_tokens_from_context_user_id(
        self, token: str, user_id: str, user_practitioner_id: str | None, expected: str
    ) -> None:
        context = {"userId": user_id}
        rendered = render_template(f"X/{{{{{token}}}}}", context, user_practitioner_id)
        assert rendered == f"X/{expected}"

    @pytest.mark.parametrize(
        ("token", "user_id"),
        [
            ("userPractitionerId", "PractitionerRole/role-1"),
            ("userPractitionerRoleId", "Practitioner/pr-1"),
            ("userPatientId", None),
            ("userRelatedPersonId", "RelatedPerson/"),
        ],
    )
    def test_user_token_the_context_cannot_fill_is_unavailable(
        self, token: str, user_id: str | None
    ) -> None:
        with pytest.raises(PrefetchUnavailable):
            render_template(f"X/{{{{{token}}}}}", {"userId": user_id}, None)


class TestResourcesFromPrefetch:
    def test_resource_becomes_a_list_of_one(self) -> None:
        assert resources_from_prefetch("patient", make_patient()) == [make_patient()]

    def test_null_is_no_data(self) -> None:
        assert resources_from_prefetch("observations", None) == []

    def test_bundle_yields_entries_without_outcomes_or_empty_entries(self) -> None:
        bundle = make_bundle([make_resource("Observation", "o1"), make_outcome()])
        bundle["entry"].append({"search": {"mode": "match"}})
        assert resources_from_prefetch("observations", bundle) == [
            make_resource("Observation", "o1")
        ]

    def test_bundle_without_entry_is_empty(self) -> None:
        assert resources_from_prefetch("observations", {"resourceType": "Bundle"}) == []

    @pytest.mark.parametrize(
        "value",
        [
            [make_patient()],
            f"Patient/{PATIENT_ID}",
            7,
            {"id": PATIENT_ID},
            {"resourceType": None, "id": PATIENT_ID},
            {"resourceType": "Bundle", "entry": {"resource": make_patient()}},
            {"resourceType": "Bundle", "entry": [make_patient()]},
            {"resourceType": "Bundle", "entry": [{"resource": {"id": PATIENT_ID}}]},
        ],
    )
    def test_value_that_is_not_fhir_json_is_invalid_naming_the_key(
        self, value: object
    ) -> None:
        with pytest.raises(InvalidPrefetch) as caught:
            resources_from_prefetch("observations", value)
        assert caught.value.key == "observations"
        assert "observations" in caught.value.reason
        assert PATIENT_ID not in caught.value.reason

    def test_operation_outcome_value_means_the_client_could_not_prefetch(self) -> None:
        with pytest.raises(PrefetchUnavailable) as caught:
            resources_from_prefetch("observations", make_outcome())
        assert "observations" in caught.value.reason
