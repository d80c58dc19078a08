"""CDS Hooks 2.0 protocol behaviour over HTTP: discovery, validation, errors, prefetch semantics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from app.api.cds.services import SERVICES
from app.fhir.prefetch import PREFETCH_TEMPLATES
from tests.api.requests import PATIENT_ID, bundle, empty_prefetch, hook_request
from tests.api.spec import assert_no_empty_optionals, assert_spec_valid_response
from tests.fixtures.app import AppFactory

pytestmark = pytest.mark.db
PV = "/cds-services/iliac-workup-patient-view"
TOKEN_2_0 = re.compile(
    r"\{\{(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)\}\}"
)


class TestDiscovery:
    async def test_lists_the_three_hooks_with_2_0_prefetch_tokens(
        self, api: httpx.AsyncClient
    ) -> None:
        response = await api.get("/cds-services")
        assert response.status_code == 200
        services = response.json()["services"]
        assert {s["hook"] for s in services} == {
            "patient-view",
            "order-select",
            "order-sign",
        }
        assert {s["id"] for s in services} == {s.id for s in SERVICES}
        for service in services:
            assert service["title"]
            assert service["description"]
            assert set(service["prefetch"]) == set(PREFETCH_TEMPLATES)
            for template in service["prefetch"].values():
                for token in re.findall(r"\{\{[^}]*\}\}", template):
                    assert TOKEN_2_0.fullmatch(token), token
        assert_no_empty_optionals(response.json())


class TestRequestValidation:
    async def test_unknown_service_is_404(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/cds-services/no-such-service", json=hook_request())
        assert response.status_code == 404
        assert "no-such-service" in response.json()["detail"]

    async def test_hook_not_matching_service_is_400(
        self, api: httpx.AsyncClient
    ) -> None:
        response = await api.post(PV, json=hook_request("order-sign"))
        assert response.status_code == 400
        assert "patient-view" in response.json()["detail"]

    async def test_truncated_json_is_400(self, api: httpx.AsyncClient) -> None:
        raw = httpx.Request("POST", "http://x", json=hook_request()).content[:-40]
        response = await api.post(
            PV, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"

    @pytest.mark.parametrize(
        ("mutation", "field"),
        [
            (lambda b: b.pop("hookInstance"), "hookInstance"),
            (lambda b: b.update(context=["not", "an", "object"]), "context"),
            (lambda b: b["context"].pop("patientId"), "context.patientId"),
            (lambda b: b["context"].update(userId=17), "context.userId"),
            (lambda b: b.update(hook=None), "hook"),
            (lambda b: b.update(prefetch="nope"), "prefetch"),
        ],
    )
    async def test_wrong_or_missing_fields_are_422_naming_the_field(
        self, api: httpx.AsyncClient, mutation: object, field: str
    ) -> None:
        body = hook_request()
        mutation(body)  # type: ignore[operator]
        response = await api.post(PV, json=body)
        assert response.status_code == 422
        fields = [p["field"] for p in response.json()["problems"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), fields

    async def test_order_sign_needs_draft_orders_bundle(
        self, api: httpx.AsyncClient
    ) -> None:
        body = hook_request("order-sign")
        body["context"]["draftOrders"] = {"resourceType": "Patient"}
        response = await api.post("/cds-services/iliac-workup-order-sign", json=body)
        assert response.status_code == 422
        assert "draftOrders" in response.json()["detail"]

    async def test_fhir_authorization_without_server_is_422(
        self, api: httpx.AsyncClient
    ) -> None:
        body = hook_request(
            fhirAuthorization={
                "access_token": "t",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "cds",
            }
        )
        response = await api.post(PV, json=body)
        assert response.status_code == 422

    async def test_body_over_the_cap_is_413(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            PV,
            content=b"{" + b" " * (20 * 1024 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413

    async def test_prefetch_value_that_is_not_fhir_is_400_naming_the_key(
        self, api: httpx.AsyncClient
    ) -> None:
        prefetch = empty_prefetch()
        prefetch["observations"] = {"hello": "world"}
        response = await api.post(PV, json=hook_request(prefetch=prefetch))
        assert response.status_code == 400
        assert "observations" in response.json()["detail"]


class TestPrefetchSemantics:
    async def test_no_advice_is_an_empty_card_list(
        self, api: httpx.AsyncClient
    ) -> None:
        response = await api.post(PV, json=hook_request())
        assert response.status_code == 200
        assert response.json() == {"cards": []}

    async def test_null_keys_mean_no_data(self, api: httpx.AsyncClient) -> None:
        prefetch = dict.fromkeys(PREFETCH_TEMPLATES)
        response = await api.post(PV, json=hook_request(prefetch=prefetch))
        assert response.status_code == 200
        assert response.json() == {"cards": []}

    async def test_omitted_keys_without_fhir_server_is_412_with_reason(
        self, api: httpx.AsyncClient
    ) -> None:
        prefetch = empty_prefetch()
        del prefetch["observations"]
        response = await api.post(PV, json=hook_request(prefetch=prefetch))
        assert response.status_code == 412
        assert "observations" in response.json()["detail"]

    async def test_operation_outcome_entries_are_ignored(
        self, api: httpx.AsyncClient
    ) -> None:
        prefetch = empty_prefetch()
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "informational"}],
        }
        prefetch["observations"] = bundle(outcome)
        response = await api.post(PV, json=hook_request(prefetch=prefetch))
        assert response.status_code == 200
        assert_spec_valid_response(response.json())

    async def test_missing_keys_are_fetched_from_the_fhir_server(
        self, app_factory: AppFactory
    ) -> None:
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
            assert request.headers["authorization"] == "Bearer sandbox-token"
            # Every answer is a searchset, the batch POST's too: not a batch-response, so the service asks
            # each omitted key on its own (tests/fhir/test_batch.py covers the batch itself).
            return httpx.Response(200, json=bundle())

        api = await app_factory(fhir_transport=httpx.MockTransport(handler))
        prefetch = empty_prefetch()
        del prefetch["observations"], prefetch["conditions"]
        body = hook_request(
            prefetch=prefetch,
            fhirServer="http://127.0.0.1:9/fhir",
            fhirAuthorization={
                "access_token": "sandbox-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "cds",
            },
        )
        response = await api.post(PV, json=body)
        assert response.status_code == 200, response.text
        assert sorted(seen) == ["GET Condition", "GET Observation", "POST fhir"]

    async def test_fhir_server_failure_is_412_without_echoing_the_body(
        self, app_factory: AppFactory
    ) -> None:
        def handler(_: httpx.Request) -> httpx.Response:
            return httpx.Response(500, text=f"<html>crash for {PATIENT_ID}</html>")

        api = await app_factory(fhir_transport=httpx.MockTransport(handler))
        prefetch = empty_prefetch()
        del prefetch["observations"]
        response = await api.post(
            PV,
            json=hook_request(prefetch=prefetch, fhirServer="http://127.0.0.1:9/fhir"),
        )
        assert response.status_code == 412
        assert PATIENT_ID not in response.text
        assert "crash" not in response.text

    async def test_fhir_server_off_the_dev_allow_list_is_403_and_not_contacted(
        self, app_factory: AppFactory
    ) -> None:
        contacted: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            contacted.append(request)
            return httpx.Response(200, json=bundle())

        api = await app_factory(fhir_transport=httpx.MockTransport(handler))
        prefetch = empty_prefetch()
        del prefetch["observations"]
        response = await api.post(
            PV,
            json=hook_request(
                prefetch=prefetch, fhirServer="https://fhir.elsewhere.example/r4"
            ),
        )
        assert response.status_code == 403
        assert contacted == []


class TestRulesPage:
    async def test_every_card_link_lands_on_a_rule_section(
        self, api: httpx.AsyncClient
    ) -> None:
        from tests.api.requests import left_whole_leg_swelling_negative_duplex

        page = await api.get("/rules")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<script" not in page.text
        body = (
            await api.post(
                PV,
                json=hook_request(prefetch=left_whole_leg_swelling_negative_duplex()),
            )
        ).json()
        links = [
            link
            for card in body["cards"]
            for link in card.get("links", [])
            if link["type"] == "absolute"
        ]
        assert links, "cards carry an absolute link to the rules catalogue"
        for link in links:
            url, _, anchor = link["url"].partition("#")
            assert url == "http://cds.test/rules"
            assert f'id="{anchor}"' in page.text


class TestReviewedInputs:
    """Inputs found by review that once gave a 500, a wrong status, or silently checked nothing."""

    async def test_hook_instance_must_be_a_uuid(self, api: httpx.AsyncClient) -> None:
        response = await api.post(PV, json=hook_request(hookInstance="h" * 300))
        assert response.status_code == 422
        assert [p["field"] for p in response.json()["problems"]] == ["hookInstance"]

    async def test_fhir_authorization_without_server_names_the_field(
        self, api: httpx.AsyncClient
    ) -> None:
        auth = {
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "s",
            "subject": "c",
        }
        response = await api.post(PV, json=hook_request(fhirAuthorization=auth))
        assert response.status_code == 422
        assert [p["field"] for p in response.json()["problems"]] == [
            "fhirAuthorization"
        ]

    async def test_draft_order_entry_without_resource_is_422(
        self, api: httpx.AsyncClient
    ) -> None:
        body = hook_request("order-sign")
        body["context"]["draftOrders"]["entry"].append({"fullUrl": "urn:uuid:x"})
        response = await api.post("/cds-services/iliac-workup-order-sign", json=body)
        assert response.status_code == 422
        assert "entry[1] has no FHIR resource" in response.json()["detail"]
        assert response.json()["problems"][0]["field"] == "context.draftOrders"

    async def test_selection_naming_no_draft_order_is_422(
        self, api: httpx.AsyncClient
    ) -> None:
        body = hook_request("order-select")
        body["context"]["selections"] = ["ServiceRequest/nope"]
        response = await api.post("/cds-services/iliac-workup-order-select", json=body)
        assert response.status_code == 422
        assert "ServiceRequest/nope" in response.json()["detail"]

    @pytest.mark.parametrize(
        "server", ["http://[::1", "http://a]/", "file:///etc/passwd"]
    )
    async def test_malformed_fhir_server_is_403(
        self, api: httpx.AsyncClient, server: str
    ) -> None:
        response = await api.post(PV, json=hook_request(fhirServer=server))
        assert response.status_code == 403

    async def test_chunked_body_over_the_cap_is_413(
        self, api: httpx.AsyncClient
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(7):
                yield b" " * (1024 * 1024)

        response = await api.post(
            PV, content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413

    async def test_next_link_outside_the_server_is_412_not_a_partial_record(
        self, app_factory: AppFactory
    ) -> None:
        def handler(_: httpx.Request) -> httpx.Response:
            page = bundle(
                {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "x"},
                }
            )
            page["link"] = [
                {
                    "relation": "next",
                    "url": "http://127.0.0.1:9999/elsewhere/Observation?page=2",
                }
            ]
            return httpx.Response(200, json=page)

        api = await app_factory(fhir_transport=httpx.MockTransport(handler))
        prefetch = empty_prefetch()
        del prefetch["observations"]
        response = await api.post(
            PV,
            json=hook_request(prefetch=prefetch, fhirServer="http://127.0.0.1:9/fhir"),
        )
        assert response.status_code == 412
