"""Omitted prefetch keys asked in one FHIR batch: same record as query by query, fallback, paging, deadline."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

import app.fhir.client as client_module
from app.fhir.client import FhirFetcher
from app.fhir.errors import (
    FhirError,
    FhirInvalidResponse,
    FhirResponseTooLarge,
    FhirTimeout,
    FhirUnavailable,
)
from app.fhir.prefetch import (
    PREFETCH_TEMPLATES,
    GatherResult,
    gather_resources,
    render_template,
)
from tests.fhir.builders import (
    BASE_URL,
    CONTEXT,
    PATIENT_ID,
    TOKEN,
    Handler,
    batch_server,
    call_handler,
    fhir_response,
    full_prefetch,
    make_bundle,
    make_resource,
    open_fetcher,
    serve_record,
    without_batch,
)

OBSERVATIONS = [make_resource("Observation", f"obs-{n}") for n in range(5)]
QUERIES = [render_template(t, CONTEXT, None) for t in PREFETCH_TEMPLATES.values()]


async def gather(
    fhir: FhirFetcher,
    *,
    prefetch: dict[str, object] | None = None,
    deadline_seconds: float = 5.0,
) -> GatherResult:
    return await gather_resources(
        prefetch=prefetch,
        templates=PREFETCH_TEMPLATES,
        context=CONTEXT,
        user_practitioner_id=None,
        fhir=fhir,
        deadline_seconds=deadline_seconds,
    )


class Recorder:
    """Wraps a handler and keeps every request it was asked, in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await call_handler(self.handler, request)

    @property
    def seen(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    @property
    def asked(self) -> list[str]:
        """The URLs asked, relative to the server's base (query strings included)."""
        return [str(r.url).removeprefix(BASE_URL + "/") for r in self.requests]

    def clear(self) -> None:
        self.requests.clear()


def paged_record(request: httpx.Request) -> httpx.Response:
    """serve_record, but the Observations come two per page (3 pages) with absolute next links."""
    if not request.url.path.endswith("/Observation"):
        return serve_record(request)
    page = int(request.url.params.get("_page", "1"))
    chunk = OBSERVATIONS[(page - 1) * 2 : page * 2]
    next_url = None
    if page * 2 < len(OBSERVATIONS):
        next_url = f"{BASE_URL}/Observation?patient={PATIENT_ID}&_page={page + 1}"
    return fhir_response(make_bundle(chunk, next_url=next_url))


async def record_query_by_query(handler: Handler) -> list[dict[str, object]]:
    async with open_fetcher(without_batch(handler)) as fhir:
        return (await gather(fhir)).resources


class TestOneBatch:
    async def test_every_omitted_query_goes_out_in_one_batch(self) -> None:
        server = Recorder(serve_record)
        async with open_fetcher(server) as fhir:
            result = await gather(fhir)
        assert server.seen == ["POST /fhir"]
        batch = server.requests[0]
        assert batch.headers["Authorization"] == f"Bearer {TOKEN}"
        assert batch.headers["Accept"] == "application/fhir+json"
        entries = json.loads(batch.content)["entry"]
        assert [e["request"] for e in entries] == [
            {"method": "GET", "url": query} for query in QUERIES
        ]
        assert result.fetched_keys == tuple(PREFETCH_TEMPLATES)
        assert result.resources == await record_query_by_query(serve_record)

    async def test_searches_ask_for_the_page_size_and_reads_do_not(self) -> None:
        server = Recorder(serve_record)
        async with open_fetcher(server, page_size=500) as fhir:
            result = await gather(fhir)
        urls = [
            e["request"]["url"] for e in json.loads(server.requests[0].content)["entry"]
        ]
        assert urls == [
            query if "?" not in query else f"{query}&_count=500" for query in QUERIES
        ]
        assert result.resources == await record_query_by_query(serve_record)

    async def test_a_query_with_its_own_count_keeps_it(self) -> None:
        server = Recorder(lambda _request: fhir_response(make_bundle([])))
        async with open_fetcher(server, page_size=500) as fhir:
            await fhir.search(f"Observation?patient={PATIENT_ID}&_count=7")
            await fhir.search("Observation")
            await fhir.search(f"Observation?patient={PATIENT_ID}&")
        assert server.asked == [
            f"Observation?patient={PATIENT_ID}&_count=7",
            "Observation?_count=500",
            f"Observation?patient={PATIENT_ID}&_count=500",
        ]

    async def test_the_fallback_asks_for_the_page_size_too(self) -> None:
        server = Recorder(without_batch(serve_record))
        async with open_fetcher(server, page_size=500) as fhir:
            await gather(fhir)
        gets = [r for r in server.requests if r.method == "GET"]
        searches = [str(r.url) for r in gets if "?" in str(r.url)]
        assert len(searches) == len([q for q in QUERIES if "?" in q])
        assert all(url.endswith("&_count=500") for url in searches)

    async def test_only_omitted_keys_are_in_the_batch(self) -> None:
        prefetch = full_prefetch()
        del prefetch["observations"]
        del prefetch["patient"]
        server = Recorder(serve_record)
        async with open_fetcher(server) as fhir:
            result = await gather(fhir, prefetch=prefetch)
        entries = json.loads(server.requests[0].content)["entry"]
        assert [e["request"]["url"] for e in entries] == [QUERIES[0], QUERIES[2]]
        assert result.fetched_keys == ("patient", "observations")

    async def test_further_pages_are_read_after_the_batch(self) -> None:
        server = Recorder(batch_server(paged_record))
        async with open_fetcher(server) as fhir:
            result = await gather(fhir)
        assert server.seen == [
            "POST /fhir",
            "GET /fhir/Observation",
            "GET /fhir/Observation",
        ]
        assert [r for r in result.resources if r["resourceType"] == "Observation"] == (
            OBSERVATIONS
        )
        assert result.resources == await record_query_by_query(paged_record)

    async def test_the_batch_entry_counts_as_the_first_page_under_the_cap(self) -> None:
        async with open_fetcher(batch_server(paged_record), max_pages=2) as fhir:
            with pytest.raises(FhirResponseTooLarge) as caught:
                await gather(fhir)
        assert caught.value.prefetch_key == "observations"
        assert "more than 2 pages" in caught.value.reason

    async def test_next_link_off_fhir_server_in_a_batch_entry_is_refused(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/Observation"):
                bundle = make_bundle(
                    OBSERVATIONS[:2],
                    next_url="https://elsewhere.example/other/Observation?p=2",
                )
                return fhir_response(bundle)
            return serve_record(request)

        server = Recorder(batch_server(handler))
        async with open_fetcher(server) as fhir:
            with pytest.raises(FhirInvalidResponse) as caught:
                await gather(fhir)
        assert caught.value.prefetch_key == "observations"
        assert [r.url.host for r in server.requests] == ["ehr.example.test"]

    async def test_a_malformed_batch_entry_fails_first_in_template_order_before_any_page(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith(("/Condition", "/ImagingStudy")):
                return fhir_response(
                    {"resourceType": "Bundle", "entry": {"no": "list"}}
                )
            return paged_record(request)

        caplog.set_level(logging.INFO, logger="iliac_cds.fhir")
        server = Recorder(batch_server(handler))
        async with open_fetcher(server) as fhir:
            with pytest.raises(FhirInvalidResponse) as caught:
                await gather(fhir)
        # conditions comes before imagingStudies in the templates; the Observation pages are never asked.
        assert caught.value.prefetch_key == "conditions"
        assert "Bundle.entry is not a list" in caught.value.reason
        assert server.seen == ["POST /fhir"]
        assert (
            "fhir query failed resource_type=Condition status=200 pages=1"
            in caplog.text
        )

    async def test_a_read_entry_of_another_type_fails_as_the_read_would(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith(f"/Patient/{PATIENT_ID}"):
                return fhir_response(make_resource("Practitioner", PATIENT_ID))
            return serve_record(request)

        async with open_fetcher(batch_server(handler)) as fhir:
            with pytest.raises(FhirInvalidResponse) as batched:
                await gather(fhir)
        async with open_fetcher(without_batch(handler)) as fhir:
            with pytest.raises(FhirInvalidResponse) as single:
                await gather(fhir)
        assert batched.value.prefetch_key == single.value.prefetch_key == "patient"
        assert batched.value.reason == single.value.reason

    async def test_logs_name_no_patient_token_or_url(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="iliac_cds.fhir")
        async with open_fetcher(batch_server(paged_record)) as fhir:
            await gather(fhir)
        text = caplog.text
        assert "fhir batch done entries=9" in text
        assert "resource_type=Observation status=200 pages=3" in text
        for secret in (PATIENT_ID, TOKEN, "ehr.example.test"):
            assert secret not in text


def answer_post_with(answer: httpx.Response | None) -> Handler:
    """serve_record for GETs; a POST gets `answer` (None: a batch-response that lacks the last entry)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return serve_record(request)
        if answer is not None:
            return answer
        batch = json.loads(serve_record(request).content)
        batch["entry"] = batch["entry"][:-1]
        return fhir_response(batch)

    return handler


NOT_SUPPORTED = {
    "405": fhir_response({"resourceType": "OperationOutcome", "issue": []}, 405),
    "400": fhir_response({"resourceType": "OperationOutcome", "issue": []}, 400),
    "501": httpx.Response(501, text="Not Implemented"),
    "searchset-not-batch-response": fhir_response(make_bundle([])),
}
UNUSABLE_THIS_TIME = {
    "500": httpx.Response(500, text="<html>error</html>"),
    "401": httpx.Response(401, text="expired"),
    "503": httpx.Response(503, text="busy"),
    "html-200": httpx.Response(200, text="<html>login</html>"),
    "json-not-fhir": httpx.Response(200, json={"status": "ok"}),
    "entry-missing": None,
}


class TestFallback:
    @pytest.mark.parametrize("answer", NOT_SUPPORTED.values(), ids=NOT_SUPPORTED.keys())
    async def test_server_without_batch_is_asked_query_by_query_and_remembered(
        self, answer: httpx.Response
    ) -> None:
        server = Recorder(answer_post_with(answer))
        async with open_fetcher(server) as fhir:
            first = await gather(fhir)
            assert server.seen[0] == "POST /fhir"
            assert len(server.seen) == 1 + len(QUERIES)
            server.clear()
            second = await gather(fhir)
        assert "POST /fhir" not in server.seen
        assert len(server.seen) == len(QUERIES)
        expected = await record_query_by_query(serve_record)
        assert first.resources == expected
        assert second.resources == expected

    @pytest.mark.parametrize(
        "answer", UNUSABLE_THIS_TIME.values(), ids=UNUSABLE_THIS_TIME.keys()
    )
    async def test_unusable_batch_answer_falls_back_and_batch_is_tried_again(
        self, answer: httpx.Response | None
    ) -> None:
        server = Recorder(answer_post_with(answer))
        async with open_fetcher(server) as fhir:
            first = await gather(fhir)
            server.clear()
            await gather(fhir)
        assert server.seen[0] == "POST /fhir"
        assert len(server.seen) == 1 + len(QUERIES)
        assert first.resources == await record_query_by_query(serve_record)

    async def test_remembered_refusal_expires(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        server = Recorder(without_batch(serve_record))
        async with open_fetcher(server) as fhir:
            await gather(fhir)
            monkeypatch.setattr(client_module, "NO_BATCH_SECONDS", 0.0)
            server.clear()
            await gather(fhir)
        assert server.seen[0] == "POST /fhir"

    async def test_a_failed_entry_is_asked_again_and_fails_as_its_own_query(
        self,
    ) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith(f"/Patient/{PATIENT_ID}"):
                return httpx.Response(404, text=f"no {PATIENT_ID}")
            return serve_record(request)

        server = Recorder(batch_server(handler))
        async with open_fetcher(server) as fhir:
            with pytest.raises(FhirUnavailable) as caught:
                await gather(fhir)
        assert server.seen[0] == "POST /fhir"
        assert f"GET /fhir/Patient/{PATIENT_ID}" in server.seen
        assert caught.value.prefetch_key == "patient"
        assert "HTTP 404" in caught.value.reason
        assert PATIENT_ID not in caught.value.reason

    async def test_batch_over_the_byte_limit_falls_back_to_single_answers(self) -> None:
        gets = [httpx.Request("GET", f"{BASE_URL}/{q}") for q in QUERIES]
        largest_single = max(len(serve_record(get).content) for get in gets)
        server = Recorder(serve_record)
        async with open_fetcher(server, max_response_bytes=largest_single) as fhir:
            result = await gather(fhir)
        assert server.seen[0] == "POST /fhir"
        assert len(server.seen) == 1 + len(QUERIES)
        assert result.resources == await record_query_by_query(serve_record)


class TestDeadline:
    async def test_deadline_covers_a_batch_that_never_answers(self) -> None:
        never = asyncio.Event()

        async def handler(_: httpx.Request) -> httpx.Response:
            await never.wait()
            raise AssertionError("unreachable")

        async with open_fetcher(handler) as fhir:
            with pytest.raises(FhirTimeout) as caught:
                await gather(fhir, deadline_seconds=0.05)
        for key in PREFETCH_TEMPLATES:
            assert key in caught.value.reason
        assert PATIENT_ID not in caught.value.reason

    async def test_deadline_covers_the_pages_after_the_batch(self) -> None:
        never = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if "_page" in request.url.params:
                await never.wait()
            return paged_record(request)

        async with open_fetcher(batch_server(handler)) as fhir:
            with pytest.raises(FhirTimeout) as caught:
                await gather(fhir, deadline_seconds=0.05)
        assert "observations" in caught.value.reason
        assert "conditions" not in caught.value.reason

    async def test_unexpected_bug_in_the_batch_is_not_disguised(self) -> None:
        def handler(_: httpx.Request) -> httpx.Response:
            raise RuntimeError("bug")

        async with open_fetcher(handler) as fhir:
            with pytest.raises(RuntimeError):
                await gather(fhir)


class TestPageSize:
    """A page size the server refuses, or that makes a page too large, falls back to the server's own pages."""

    QUERY = f"Observation?patient={PATIENT_ID}"

    async def test_a_refused_page_size_is_asked_again_without_it(self) -> None:
        def refuses_count(request: httpx.Request) -> httpx.Response:
            if "_count" in str(request.url):
                return httpx.Response(400, text="_count too large")
            return fhir_response(make_bundle(OBSERVATIONS))

        server = Recorder(refuses_count)
        async with open_fetcher(server, page_size=1000) as fhir:
            found = await fhir.search(self.QUERY)
        assert [r["id"] for r in found] == [r["id"] for r in OBSERVATIONS]
        assert server.asked == [f"{self.QUERY}&_count=1000", self.QUERY]

    async def test_a_page_over_the_byte_cap_is_asked_again_in_smaller_pages(
        self,
    ) -> None:
        big = [make_resource("Observation", f"big-{n}") for n in range(200)]

        def pages(request: httpx.Request) -> httpx.Response:
            if "_count" in str(request.url):
                return fhir_response(make_bundle(big))
            return fhir_response(make_bundle(OBSERVATIONS))

        cap = len(json.dumps(make_bundle(OBSERVATIONS))) + 500
        server = Recorder(pages)
        async with open_fetcher(server, page_size=1000, max_response_bytes=cap) as fhir:
            found = await fhir.search(self.QUERY)
        assert len(found) == len(OBSERVATIONS)
        assert server.asked == [f"{self.QUERY}&_count=1000", self.QUERY]

    async def test_other_errors_are_not_asked_again(self) -> None:
        server = Recorder(lambda _request: httpx.Response(503, text="down"))
        async with open_fetcher(server, page_size=1000) as fhir:
            with pytest.raises(FhirError):
                await fhir.search(self.QUERY)
        assert server.asked == [f"{self.QUERY}&_count=1000"]

    async def test_a_refusal_without_the_page_size_is_the_answer(self) -> None:
        server = Recorder(lambda _request: httpx.Response(400, text="bad query"))
        async with open_fetcher(server, page_size=1000) as fhir:
            with pytest.raises(FhirError):
                await fhir.search(self.QUERY)
        assert server.asked == [f"{self.QUERY}&_count=1000", self.QUERY]
        server.clear()
        async with open_fetcher(server) as fhir:
            with pytest.raises(FhirError):
                await fhir.search(self.QUERY)
        assert server.asked == [self.QUERY]
