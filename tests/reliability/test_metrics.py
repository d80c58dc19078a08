"""Prometheus metrics: what is counted, and that label values come only from fixed vocabularies."""

from __future__ import annotations

import httpx
import pytest

from app.api.metrics import (
    REGISTRY,
    card_labels,
    count_audit_failure,
    count_fetch_failure,
    observe_hook,
)
from tests.api.requests import empty_prefetch, hook_request
from tests.fixtures.app import AppFactory

PV_ID = "iliac-workup-patient-view"
PV = f"/cds-services/{PV_ID}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def card(rule: str, indicator: str) -> dict[str, object]:
    return {
        "summary": "s",
        "indicator": indicator,
        "source": {"label": "l", "topic": {"code": rule}},
    }


class TestObserveHook:
    def test_counts_call_latency_and_cards_by_rule_and_indicator(self) -> None:
        labels = {"service_id": PV_ID, "hook": "patient-view", "status": "200"}
        calls = sample("iliac_cds_hook_calls_total", **labels)
        latency = sample(
            "iliac_cds_hook_duration_seconds_count",
            service_id=PV_ID,
            hook="patient-view",
        )
        r02 = sample(
            "iliac_cds_cards_total",
            service_id=PV_ID,
            rule_id="R02",
            indicator="warning",
        )
        observe_hook(
            PV_ID, 200, 0.012, [card("R02", "warning"), card("R02", "warning")]
        )
        assert sample("iliac_cds_hook_calls_total", **labels) == calls + 1
        assert (
            sample(
                "iliac_cds_hook_duration_seconds_count",
                service_id=PV_ID,
                hook="patient-view",
            )
            == latency + 1
        )
        assert (
            sample(
                "iliac_cds_cards_total",
                service_id=PV_ID,
                rule_id="R02",
                indicator="warning",
            )
            == r02 + 2
        )

    def test_412_is_counted_separately(self) -> None:
        before = sample("iliac_cds_hook_precondition_failed_total", service_id=PV_ID)
        observe_hook(PV_ID, 412, 0.5)
        assert (
            sample("iliac_cds_hook_precondition_failed_total", service_id=PV_ID)
            == before + 1
        )

    @pytest.mark.parametrize(
        ("service_id", "rule", "indicator"),
        [
            ("pat-sntl-4d8e1c", "R01", "info"),
            (PV_ID, "Patient/pat-sntl-4d8e1c is a rule id?", "info"),
            (PV_ID, "R01", "<script>"),
        ],
    )
    def test_values_outside_the_vocabularies_become_other(
        self, service_id: str, rule: str, indicator: str
    ) -> None:
        observe_hook(service_id, 200, 0.01, [card(rule, indicator)])
        exposition = _exposition()
        assert "pat-sntl" not in exposition
        assert "<script>" not in exposition
        assert "rule id?" not in exposition

    def test_card_labels_tolerate_malformed_cards(self) -> None:
        assert card_labels([{}, {"source": "x", "indicator": 3}]) == [
            ("", ""),
            ("", ""),
        ]


class TestFailureCounters:
    def test_fetch_failures_by_error_class(self) -> None:
        before = sample("iliac_cds_fhir_fetch_failures_total", error_type="FhirTimeout")
        count_fetch_failure("FhirTimeout")
        assert (
            sample("iliac_cds_fhir_fetch_failures_total", error_type="FhirTimeout")
            == before + 1
        )

    def test_an_error_type_that_is_not_a_class_name_is_other(self) -> None:
        before = sample("iliac_cds_fhir_fetch_failures_total", error_type="other")
        count_fetch_failure("GET https://ehr.example.org/fhir/Patient/pat-sntl-4d8e1c")
        assert (
            sample("iliac_cds_fhir_fetch_failures_total", error_type="other")
            == before + 1
        )

    def test_audit_gap_is_counted(self) -> None:
        before = sample("iliac_cds_audit_write_failures_total", service_id=PV_ID)
        count_audit_failure(PV_ID)
        assert (
            sample("iliac_cds_audit_write_failures_total", service_id=PV_ID)
            == before + 1
        )


def _exposition() -> str:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


@pytest.mark.db
class TestEndpoint:
    async def test_metrics_endpoint_reports_hook_and_http_traffic(
        self, api: httpx.AsyncClient
    ) -> None:
        ok = sample(
            "iliac_cds_hook_calls_total",
            service_id=PV_ID,
            hook="patient-view",
            status="200",
        )
        http_404 = sample(
            "iliac_cds_http_requests_total",
            route="/cds-services/{service_id}",
            method="POST",
            status="404",
        )
        assert (await api.post(PV, json=hook_request())).status_code == 200
        assert (
            await api.post("/cds-services/nope", json=hook_request())
        ).status_code == 404
        prefetch = empty_prefetch()
        del prefetch["observations"]
        assert (
            await api.post(PV, json=hook_request(prefetch=prefetch))
        ).status_code == 412

        response = await api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert "iliac_cds_hook_duration_seconds_bucket" in text
        assert "iliac_cds_hook_precondition_failed_total" in text
        assert (
            sample(
                "iliac_cds_hook_calls_total",
                service_id=PV_ID,
                hook="patient-view",
                status="200",
            )
            == ok + 1
        )
        assert (
            sample(
                "iliac_cds_http_requests_total",
                route="/cds-services/{service_id}",
                method="POST",
                status="404",
            )
            == http_404 + 1
        )

    async def test_unmatched_paths_are_not_labels(self, api: httpx.AsyncClient) -> None:
        await api.get("/Patient/pat-sntl-4d8e1c")
        text = (await api.get("/metrics")).text
        assert "pat-sntl" not in text
        assert 'route="unmatched"' in text

    async def test_metrics_are_not_in_the_openapi_document(
        self, app_factory: AppFactory
    ) -> None:
        api = await app_factory()
        document = (await api.get("/openapi.json")).json()
        assert "/metrics" not in document["paths"]
