"""FhirFetcher against httpx.MockTransport: headers, paging, token containment, errors and safe reasons."""

from __future__ import annotations

import gzip
import logging

import httpx
import pytest

from app.fhir.client import FhirFetcher, create_http_client
from app.fhir.errors import (
    FhirError,
    FhirInvalidResponse,
    FhirResponseTooLarge,
    FhirTimeout,
    FhirUnauthorized,
    FhirUnavailable,
)
from tests.fhir.builders import (
    BASE_URL,
    PATIENT_ID,
    TOKEN,
    fhir_response,
    make_bundle,
    make_outcome,
    make_patient,
    make_resource,
    open_fetcher,
)

OBSERVATION_QUERY = f"Observation?patient={PATIENT_ID}"


def assert_reason_is_safe(error: FhirError) -> None:
    assert PATIENT_ID not in error.reason
    assert TOKEN not in error.reason
    assert PATIENT_ID not in str(error)


class TestCreateHttpClient:
    async def test_never_follows_redirects_nor_reads_proxy_environment(self) -> None:
        async with create_http_client(timeout_seconds=1.0) as client:
            assert client.follow_redirects is False
            assert client.trust_env is False

    async def test_redirect_is_refused_and_not_followed(self) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return httpx.Response(
                302, headers={"Location": "https://elsewhere.example.test/x"}
            )

        async with open_fetcher(handler) as fetcher:
            with pytest.raises(FhirUnavailable) as caught:
                await fetcher.search(OBSERVATION_QUERY)
        assert len(requests) == 1
        assert caught.value.status_code == 302

    async def test_a_servers_cookies_are_not_kept_nor_sent_back(self) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            response = fhir_response(make_bundle([]))
            response.headers["Set-Cookie"] = "session=user-a; Path=/"
            return response

        async with open_fetcher(handler) as fetcher:
            await fetcher.search(OBSERVATION_QUERY)
            await fetcher.search(OBSERVATION_QUERY)
        assert len(requests) == 2
        assert "cookie" not in requests[1].headers


class TestSearch:
    async def test_read_sends_fhir_accept_and_bearer_token(self) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return fhir_response(make_patient())

        async with open_fetcher(handler) as fetcher:
            resources = await fetcher.search(f"Patient/{PATIENT_ID}")

        assert resources == [make_patient()]
        (request,) = requests
        assert str(request.url) == f"{BASE_URL}/Patient/{PATIENT_ID}"
        assert request.method == "GET"
        assert request.headers["Accept"] == "application/fhir+json"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"

    async def test_sends_no_authorization_without_token(self) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return fhir_response(make_bundle([]))

        async with open_fetcher(handler, token=None) as fetcher:
            await fetcher.search(OBSERVATION_QUERY)
        assert "Authorization" not in requests[0].headers

    async def test_drops_operation_outcome_entries_and_entries_without_resource(
        self,
    ) -> None:
        bundle = make_bundle([make_resource("Observation", "o1"), make_outcome()])
        bundle["entry"].append(
            {"fullUrl": "urn:uuid:0c0d9b1e-0000-4000-8000-000000000001"}
        )

        async with open_fetcher(lambda _: fhir_response(bundle)) as fetcher:
            resources = await fetcher.search(OBSERVATION_QUERY)
        assert resources == [make_resource("Observation", "o1")]

    async def test_searchset_without_entry_is_empty(self) -> None:
        body = {"resourceType": "Bundle", "type": "searchset", "total": 0}
        async with open_fetcher(lambda _: fhir_response(body)) as fetcher:
            assert await fetcher.search(OBSERVATION_QUERY) == []

    async def test_reads_a_patient_whose_observations_span_pages(self) -> None:
        observations = [make_resource("Observation", f"o{i}") for i in range(25)]
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            page = int(request.url.params.get("_page", "0"))
            chunk = observations[page * 10 : page * 10 + 10]
            has_more = page * 10 + 10 < len(observations)
            next_url = f"{BASE_URL}/Observation?patient={PATIENT_ID}&_page={page + 1}"
            return fhir_response(
                make_bundle(chunk, next_url=next_url if has_more else None)
            )

        async with open_fetcher(handler, max_pages=3) as fetcher:
            resources = await fetcher.search(OBSERVATION_QUERY)

        assert resources == observations
        assert len(requests) == 3
        assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in requests)

    async def test_follows_relative_next_link_under_base(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            if "_page" in request.url.params:
                return fhir_response(make_bundle([make_resource("Observation", "o2")]))
            next_url = f"Observation?patient={PATIENT_ID}&_page=2"
            return fhir_response(
                make_bundle([make_resource("Observation", "o1")], next_url=next_url)
            )

        async with open_fetcher(handler) as fetcher:
            resources = await fetcher.search(OBSERVATION_QUERY)
        assert [r["id"] for r in resources] == ["o1", "o2"]

    async def test_refuses_a_search_with_more_pages_than_the_cap(self) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            next_url = (
                f"{BASE_URL}/Observation?patient={PATIENT_ID}&_page={len(requests)}"
            )
            return fhir_response(
                make_bundle(
                    [make_resource("Observation", f"o{len(requests)}")],
                    next_url=next_url,
                )
            )

        async with open_fetcher(handler, max_pages=2) as fetcher:
            with pytest.raises(FhirResponseTooLarge) as caught:
                await fetcher.search(OBSERVATION_QUERY)
        assert len(requests) == 2
        assert_reason_is_safe(caught.value)

    @pytest.mark.parametrize(
        "next_url",
        [
            "https://ehr.example.test/fhirish/Observation?_page=2",
            "https://someone@ehr.example.test/fhir/Observation?_page=2",
            "https://ehr.example.test/fhir/../admin/Observation?_page=2",
            "https://evil.example.test/admin/Observation?_page=2",
            "http://[::1",
        ],
    )
    async def test_refuses_next_link_off_the_base_url_without_following_it(
        self, next_url: str
    ) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return fhir_response(
                make_bundle([make_resource("Observation", "o1")], next_url=next_url)
            )

        async with open_fetcher(handler) as fetcher:
            with pytest.raises(FhirInvalidResponse) as caught:
                await fetcher.search(OBSERVATION_QUERY)

        # The token never travels to the link, and a partial record is never used as the whole one.
        assert [str(r.url) for r in requests] == [f"{BASE_URL}/{OBSERVATION_QUERY}"]
        assert_reason_is_safe(caught.value)

    @pytest.mark.parametrize(
        "next_url",
        [
            "https://evil.example.test/fhir/Observation?_page=2",
            "https://ehr.example.test.evil.test/fhir/Observation?_page=2",
            "http://ehr.example.test/fhir/Observation?_page=2",
            "https://ehr.example.test:8443/fhir/Observation?_page=2",
            "//evil.example.test/fhir/Observation?_page=2",
        ],
    )
    async def test_next_link_on_another_origin_is_asked_of_fhir_server_itself(
        self, next_url: str
    ) -> None:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            if len(requests) == 1:
                page = make_bundle(
                    [make_resource("Observation", "o1")], next_url=next_url
                )
            else:
                page = make_bundle([make_resource("Observation", "o2")])
            return fhir_response(page)

        async with open_fetcher(handler) as fetcher:
            resources = await fetcher.search(OBSERVATION_QUERY)

        # The whole record is read, and every request (with the token) went to fhirServer's origin.
        assert [r["id"] for r in resources] == ["o1", "o2"]
        assert {str(r.url).split("/fhir/")[0] for r in requests} == {
            BASE_URL.split("/fhir")[0]
        }
        assert str(requests[1].url).endswith("/fhir/Observation?_page=2")


class TestErrors:
    @pytest.mark.parametrize(
        ("status_code", "expected"),
        [
            (401, FhirUnauthorized),
            (403, FhirUnauthorized),
            (404, FhirUnavailable),
            (400, FhirUnavailable),
            (429, FhirUnavailable),
            (500, FhirUnavailable),
            (503, FhirUnavailable),
        ],
    )
    async def test_http_status_maps_to_error(
        self, status_code: int, expected: type[FhirError]
    ) -> None:
        body = f"<html>no access to {PATIENT_ID} with {TOKEN}</html>"

        async with open_fetcher(
            lambda _: httpx.Response(status_code, text=body)
        ) as fetcher:
            with pytest.raises(FhirError) as caught:
                await fetcher.search(OBSERVATION_QUERY)

        assert type(caught.value) is expected
        assert caught.value.status_code == status_code
        assert str(status_code) in caught.value.reason
        assert "Observation" in caught.value.reason
        assert "html" not in caught.value.reason
        assert_reason_is_safe(caught.value)

    @pytest.mark.parametrize(
        ("query", "content"),
        [
            (
                OBSERVATION_QUERY,
                f"<html><body>Error for {PATIENT_ID}</body></html>".encode(),
            ),
            (
                OBSERVATION_QUERY,
                f'{{"resourceType": "Bundle", "id": "{PATIENT_ID}"'.encode(),
            ),
            (OBSERVATION_QUERY, b"\xff\xfe not utf-8"),
            (OBSERVATION_QUERY, b'[{"resourceType": "Bundle"}]'),
            (OBSERVATION_QUERY, f'{{"id": "{PATIENT_ID}"}}'.encode()),
            (OBSERVATION_QUERY, b'{"resourceType": "Patient", "id": "p"}'),
            (
                OBSERVATION_QUERY,
                b'{"resourceType": "Bundle", "entry": {"resource": {}}}',
            ),
            (
                OBSERVATION_QUERY,
                b'{"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}',
            ),
            (f"Patient/{PATIENT_ID}", b'{"resourceType": "Bundle", "entry": []}'),
        ],
    )
    async def test_body_that_is_not_the_expected_fhir_json_is_invalid(
        self, query: str, content: bytes
    ) -> None:
        async with open_fetcher(
            lambda _: httpx.Response(200, content=content)
        ) as fetcher:
            with pytest.raises(FhirInvalidResponse) as caught:
                await fetcher.search(query)
        assert_reason_is_safe(caught.value)
        assert caught.value.__cause__ is None

    async def test_oversize_body_is_refused_while_reading(self) -> None:
        body = b'{"resourceType": "Bundle", "entry": []}'
        content = body + b" " * 100

        async with open_fetcher(
            lambda _: httpx.Response(200, content=content),
            max_response_bytes=len(body) + 99,
        ) as fetcher:
            with pytest.raises(FhirResponseTooLarge) as caught:
                await fetcher.search(OBSERVATION_QUERY)
        assert_reason_is_safe(caught.value)

    async def test_limit_applies_to_decompressed_bytes(self) -> None:
        padding = " " * 50_000
        content = gzip.compress(
            f'{{"resourceType": "Bundle", "entry": []{padding}}}'.encode()
        )
        headers = {"Content-Encoding": "gzip"}
        assert len(content) < 1_000

        async with open_fetcher(
            lambda _: httpx.Response(200, content=content, headers=headers),
            max_response_bytes=10_000,
        ) as fetcher:
            with pytest.raises(FhirResponseTooLarge):
                await fetcher.search(OBSERVATION_QUERY)

    async def test_body_at_the_byte_limit_is_accepted(self) -> None:
        content = b'{"resourceType": "Bundle", "entry": []}'

        async with open_fetcher(
            lambda _: httpx.Response(200, content=content),
            max_response_bytes=len(content),
        ) as fetcher:
            assert await fetcher.search(OBSERVATION_QUERY) == []

    async def test_refused_connection_is_unavailable(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        async with open_fetcher(handler) as fetcher:
            with pytest.raises(FhirUnavailable) as caught:
                await fetcher.search(OBSERVATION_QUERY)
        assert caught.value.status_code is None
        assert_reason_is_safe(caught.value)

    async def test_transport_timeout_is_fhir_timeout(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        async with open_fetcher(handler) as fetcher:
            with pytest.raises(FhirTimeout) as caught:
                await fetcher.search(OBSERVATION_QUERY)
        assert_reason_is_safe(caught.value)

    @pytest.mark.parametrize(
        "base_url",
        ["ftp://ehr.example.test/fhir", "not a url", "https://u:p@ehr.example.test"],
    )
    async def test_unusable_base_url_is_unavailable(self, base_url: str) -> None:
        async with create_http_client(timeout_seconds=1.0) as client:
            with pytest.raises(FhirUnavailable):
                FhirFetcher(client, base_url, TOKEN, 10, 1000)


class TestLogging:
    async def test_logs_type_status_and_pages_but_no_ids_urls_or_token(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        next_url = f"{BASE_URL}/Observation?patient={PATIENT_ID}&_page=2"

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/Patient/" + PATIENT_ID):
                return httpx.Response(500, text=f"boom {PATIENT_ID}")
            if "_page" in request.url.params:
                return fhir_response(make_bundle([make_resource("Observation", "o2")]))
            return fhir_response(
                make_bundle([make_resource("Observation", "o1")], next_url=next_url)
            )

        async with open_fetcher(handler) as fetcher:
            await fetcher.search(OBSERVATION_QUERY)
            with pytest.raises(FhirUnavailable):
                await fetcher.search(f"Patient/{PATIENT_ID}")

        fhir_records = [r for r in caplog.records if r.name == "iliac_cds.fhir"]
        assert len(fhir_records) == 2
        assert (
            "resource_type=Observation status=200 pages=2"
            in fhir_records[0].getMessage()
        )
        assert (
            "resource_type=Patient status=500 pages=1" in fhir_records[1].getMessage()
        )
        assert PATIENT_ID not in caplog.text
        assert TOKEN not in caplog.text
        assert "example.test" not in caplog.text
