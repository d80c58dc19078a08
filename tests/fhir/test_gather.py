"""gather_resources: prefetch used as sent, omitted keys fetched (one batch, else query by query) under one deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
import pytest

from app.fhir.client import FhirFetcher
from app.fhir.errors import (
    FhirTimeout,
    FhirUnauthorized,
    InvalidPrefetch,
    PrefetchUnavailable,
)
from app.fhir.prefetch import PREFETCH_TEMPLATES, GatherResult, gather_resources
from tests.fhir.builders import (
    CONTEXT,
    PATIENT_ID,
    SEARCH_TYPES,
    TOKEN,
    full_prefetch,
    make_bundle,
    make_patient,
    make_resource,
    open_fetcher,
    refuse,
    serve_record,
    without_batch,
)


async def gather(
    *,
    prefetch: Mapping[str, object] | None,
    fhir: FhirFetcher | None,
    deadline_seconds: float = 5.0,
) -> GatherResult:
    """gather_resources with the service's prefetch templates and this module's context."""
    return await gather_resources(
        prefetch=prefetch,
        templates=PREFETCH_TEMPLATES,
        context=CONTEXT,
        user_practitioner_id=None,
        fhir=fhir,
        deadline_seconds=deadline_seconds,
    )


class TestGatherResources:
    async def test_uses_complete_prefetch_as_is_without_fetching(self) -> None:
        async with open_fetcher(refuse) as fhir:
            result = await gather(prefetch=full_prefetch(), fhir=fhir)
        assert result.fetched_keys == ()
        assert result.prefetched_keys == tuple(PREFETCH_TEMPLATES)
        assert len(result.resources) == len(PREFETCH_TEMPLATES)
        assert make_patient() in result.resources

    async def test_null_key_is_no_data_and_is_not_fetched(self) -> None:
        prefetch = full_prefetch()
        prefetch["observations"] = None
        async with open_fetcher(refuse) as fhir:
            result = await gather(prefetch=prefetch, fhir=fhir)
        assert "observations" in result.prefetched_keys
        assert not [r for r in result.resources if r["resourceType"] == "Observation"]

    async def test_omitted_key_is_fetched_from_fhir_server(self) -> None:
        prefetch = full_prefetch()
        del prefetch["observations"]
        async with open_fetcher(serve_record) as fhir:
            result = await gather(prefetch=prefetch, fhir=fhir)
        assert result.fetched_keys == ("observations",)
        assert "observations" not in result.prefetched_keys
        observations = [
            r for r in result.resources if r["resourceType"] == "Observation"
        ]
        assert observations == [make_resource("Observation", "served-1")]
        assert not [
            r for r in result.resources if r["resourceType"] == "OperationOutcome"
        ]

    async def test_no_prefetch_fetches_every_key(self) -> None:
        async with open_fetcher(serve_record) as fhir:
            result = await gather(prefetch=None, fhir=fhir)
        assert result.fetched_keys == tuple(PREFETCH_TEMPLATES)
        assert {r["resourceType"] for r in result.resources} == {
            "Patient",
            *SEARCH_TYPES.values(),
        }

    async def test_omitted_keys_without_fhir_server_are_unavailable(self) -> None:
        prefetch = full_prefetch()
        del prefetch["observations"]
        del prefetch["procedures"]
        with pytest.raises(PrefetchUnavailable) as caught:
            await gather(prefetch=prefetch, fhir=None)
        assert caught.value.reason == (
            "prefetch key(s) observations, procedures missing and no fhirServer given"
        )

    async def test_unfillable_template_for_omitted_key_is_unavailable(self) -> None:
        async with open_fetcher(refuse) as fhir:
            with pytest.raises(PrefetchUnavailable) as caught:
                await gather_resources(
                    prefetch={},
                    templates={"patient": PREFETCH_TEMPLATES["patient"]},
                    context={"userId": "Practitioner/pr-1"},
                    user_practitioner_id=None,
                    fhir=fhir,
                    deadline_seconds=5.0,
                )
        assert "patient" in caught.value.reason

    async def test_invalid_prefetch_value_names_its_key(self) -> None:
        prefetch = full_prefetch()
        prefetch["conditions"] = {"entry": []}
        with pytest.raises(InvalidPrefetch) as caught:
            await gather(prefetch=prefetch, fhir=None)
        assert caught.value.key == "conditions"

    async def test_keys_outside_the_templates_are_ignored(self) -> None:
        prefetch = full_prefetch()
        prefetch["somethingElse"] = "not FHIR at all"
        result = await gather(prefetch=prefetch, fhir=None)
        assert "somethingElse" not in result.prefetched_keys

    async def test_resource_in_two_keys_is_kept_once(self) -> None:
        shared = make_resource("Observation", "shared-1")
        prefetch: dict[str, object] = {
            "observations": make_bundle([shared, make_resource("Observation", "o2")]),
            "diagnosticReports": make_bundle(
                [make_resource("DiagnosticReport", "d1"), shared]
            ),
        }
        result = await gather_resources(
            prefetch=prefetch,
            templates={key: PREFETCH_TEMPLATES[key] for key in prefetch},
            context=CONTEXT,
            user_practitioner_id=None,
            fhir=None,
            deadline_seconds=5.0,
        )
        assert [r["id"] for r in result.resources] == ["shared-1", "o2", "d1"]


class TestGatherConcurrency:
    """The query-by-query path (a server without batch): concurrent queries, one deadline, first failure wins."""

    async def test_all_queries_start_before_any_finishes(self) -> None:
        expected = len(PREFETCH_TEMPLATES)
        started: list[str] = []
        everyone_started = asyncio.Event()
        finished_early: list[str] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            started.append(request.url.path)
            if len(started) == expected:
                everyone_started.set()
            # A sequential gather would block here forever and hit the deadline instead.
            await everyone_started.wait()
            if len(started) < expected:
                finished_early.append(request.url.path)
            return serve_record(request)

        async with open_fetcher(without_batch(handler)) as fhir:
            result = await gather(prefetch=None, fhir=fhir)
        assert len(started) == expected
        assert finished_early == []
        assert len(result.fetched_keys) == expected

    async def test_deadline_over_the_whole_gather_raises_fhir_timeout(self) -> None:
        never = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if "/Observation" in request.url.path:
                await never.wait()
            return serve_record(request)

        async with open_fetcher(without_batch(handler)) as fhir:
            with pytest.raises(FhirTimeout) as caught:
                await gather(prefetch=None, fhir=fhir, deadline_seconds=0.05)
        assert "observations" in caught.value.reason
        assert "conditions" not in caught.value.reason
        assert PATIENT_ID not in caught.value.reason

    async def test_first_failure_cancels_the_other_queries_and_names_its_key(
        self,
    ) -> None:
        never = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if "/Procedure" in request.url.path:
                return httpx.Response(401, text=f"bad token {TOKEN} for {PATIENT_ID}")
            # Were the siblings not cancelled, the gather would end in FhirTimeout, not 401.
            await never.wait()
            raise AssertionError("unreachable")

        async with open_fetcher(without_batch(handler)) as fhir:
            with pytest.raises(FhirUnauthorized) as caught:
                await gather(prefetch=None, fhir=fhir)
        assert caught.value.prefetch_key == "procedures"
        assert caught.value.reason.startswith("prefetch key 'procedures': ")
        assert "401" in caught.value.reason
        assert PATIENT_ID not in caught.value.reason
        assert TOKEN not in caught.value.reason

    async def test_unexpected_bug_in_a_query_is_not_disguised(self) -> None:
        def handler(_: httpx.Request) -> httpx.Response:
            raise RuntimeError("bug")

        async with open_fetcher(without_batch(handler)) as fhir:
            with pytest.raises(ExceptionGroup) as caught:
                await gather_resources(
                    prefetch=None,
                    templates={"patient": PREFETCH_TEMPLATES["patient"]},
                    context=CONTEXT,
                    user_practitioner_id=None,
                    fhir=fhir,
                    deadline_seconds=5.0,
                )
        assert caught.group_contains(RuntimeError)
