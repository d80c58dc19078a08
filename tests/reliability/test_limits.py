"""Input limits of CDS requests: nesting depth and entry counts answered 413 before the engine runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.api.cds.schemas import CdsRequest
from app.api.limits import (
    DEFAULT_LIMITS,
    InputLimits,
    check_cds_request,
    count_prefetch_entries,
    exceeds_depth,
)
from app.errors import PayloadTooLarge
from tests.api.requests import bundle, empty_prefetch, hook_request

PV = "/cds-services/iliac-workup-patient-view"
SIGN = "/cds-services/iliac-workup-order-sign"


def nested(levels: int) -> dict[str, Any]:
    """A JSON object `levels` levels deep (the object itself is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def observation(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{i}", "status": "final"}


def draft_order(i: int) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": f"sr-{i}",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/pat-api-001"},
        "code": {"text": "synthetic"},
    }


def request_with(**body: Any) -> CdsRequest:
    return CdsRequest.model_validate(hook_request(**body))


class TestDepth:
    @pytest.mark.parametrize(
        ("levels", "too_deep"), [(1, False), (64, False), (65, True)]
    )
    def test_counts_objects_and_arrays(self, levels: int, too_deep: bool) -> None:
        assert exceeds_depth(nested(levels), 64) is too_deep

    def test_arrays_count_as_levels(self) -> None:
        assert exceeds_depth([[[]]], 3) is False
        assert exceeds_depth([[[[]]]], 3) is True

    def test_a_deep_document_does_not_hit_the_recursion_limit(self) -> None:
        value: list[Any] = []
        for _ in range(50_000):
            value = [value]
        assert exceeds_depth(value, 64) is True

    def test_request_over_the_depth_cap_is_rejected_naming_the_cap(self) -> None:
        body = hook_request()
        # request(1) > context(2) > deep(3..)
        body["context"]["extension"] = nested(63)
        with pytest.raises(PayloadTooLarge, match="deeper than 64 levels"):
            check_cds_request(CdsRequest.model_validate(body))
        body["context"]["extension"] = nested(62)
        check_cds_request(CdsRequest.model_validate(body))


class TestEntryCounts:
    def test_prefetch_entries_count_bundle_entries_and_single_resources(self) -> None:
        prefetch = empty_prefetch()
        prefetch["observations"] = bundle(*(observation(i) for i in range(3)))
        prefetch["conditions"] = None
        # patient (1) + 3 observations; empty bundles count 0
        assert count_prefetch_entries(prefetch) == 4

    def test_prefetch_over_the_cap_is_413(self) -> None:
        prefetch = empty_prefetch()
        prefetch["observations"] = bundle(*(observation(i) for i in range(11)))
        limits = InputLimits(max_prefetch_entries=11)
        with pytest.raises(PayloadTooLarge, match="12 resources, more than the 11"):
            check_cds_request(request_with(prefetch=prefetch), limits)

    def test_draft_orders_over_the_cap_is_413(self) -> None:
        orders = [draft_order(i) for i in range(4)]
        limits = InputLimits(max_draft_orders=3)
        with pytest.raises(PayloadTooLarge, match=r"draftOrders carries 4 entries"):
            check_cds_request(
                request_with(hook="order-sign", draft_orders=orders), limits
            )
        check_cds_request(
            request_with(hook="order-sign", draft_orders=orders[:3]), limits
        )

    def test_defaults_are_the_documented_ones(self) -> None:
        assert (
            InputLimits(max_depth=64, max_prefetch_entries=20_000, max_draft_orders=500)
            == DEFAULT_LIMITS
        )


class TestLargeRecords:
    def test_a_long_followed_patient_passes_the_default_limits(self) -> None:
        """2,000 resources (bench workload 3's size) are far under the caps; their cost is measured in bench/."""
        prefetch = empty_prefetch()
        prefetch["observations"] = bundle(*(observation(i) for i in range(2_000)))
        request = request_with(prefetch=prefetch)
        assert count_prefetch_entries(prefetch) == 2_001
        check_cds_request(request)


@pytest.mark.db
class TestOverHttp:
    async def test_deep_context_is_413(self, api: httpx.AsyncClient) -> None:
        body = hook_request()
        body["context"]["extension"] = nested(100)
        response = await api.post(PV, json=body)
        assert response.status_code == 413
        assert response.json() == {
            "error": "payload_too_large",
            "detail": "request JSON is nested deeper than 64 levels",
        }

    async def test_too_many_draft_orders_is_413(self, api: httpx.AsyncClient) -> None:
        body = hook_request(
            "order-sign", draft_orders=[draft_order(i) for i in range(501)]
        )
        response = await api.post(SIGN, json=body)
        assert response.status_code == 413
        assert "501 entries, more than the 500 allowed" in response.json()["detail"]

    async def test_too_many_prefetch_entries_is_413(
        self, api: httpx.AsyncClient
    ) -> None:
        prefetch = empty_prefetch()
        prefetch["observations"] = bundle(*(observation(i) for i in range(20_000)))
        response = await api.post(PV, json=hook_request(prefetch=prefetch))
        assert response.status_code == 413
        assert "20001 resources" in response.json()["detail"]

    async def test_nesting_beyond_the_parser_is_400_not_500(
        self, api: httpx.AsyncClient
    ) -> None:
        depth = 100_000
        raw = (
            b'{"hook":"patient-view","hookInstance":"h","context":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        )
        response = await api.post(
            PV, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
