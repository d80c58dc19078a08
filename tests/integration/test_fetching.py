"""Fetching done right against the real server: paging, bearer token, and 412 (never 500, never a hang) on failure."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.fhir.client import FhirFetcher, create_http_client
from app.fhir.prefetch import PREFETCH_TEMPLATES, GatherResult, gather_resources
from app.sandbox import Scenario
from tests.fixtures.app import AppFactory
from tests.integration.conftest import FhirServer
from tests.integration.paths import request_for, service_path
from tests.integration.tcp import FixedAnswer, RecordingProxy, Silent

pytestmark = pytest.mark.integration
PAGED = "int-paged-observations"
# Bounds a call that should answer long before it; a hang fails the test instead of stalling the suite.
HANG_GUARD_SECONDS = 30.0


def port_of(fhir_server: FhirServer) -> int:
    port = httpx.URL(fhir_server.base_url).port
    assert port is not None
    return port


async def call_without_prefetch(
    api: httpx.AsyncClient,
    scenario: Scenario,
    *,
    fhir_server: str,
    token: str | None,
) -> httpx.Response:
    body = request_for(scenario, "no-prefetch", fhir_server=fhir_server, token=token)
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        return await api.post(service_path(scenario), json=body)


async def sent_for_paged_call(
    api: httpx.AsyncClient, fhir_server: FhirServer, scenario: Scenario
) -> bytes:
    """What the service sent to the FHIR server (lower-cased) for one successful call without prefetch."""
    async with RecordingProxy(port_of(fhir_server)) as proxy:
        response = await call_without_prefetch(
            api, scenario, fhir_server=proxy.url(), token=fhir_server.token
        )
    assert response.status_code == 200, response.text
    return bytes(proxy.received).lower()


def assert_412(response: httpx.Response, *fragments: str) -> str:
    assert response.status_code == 412, response.text
    detail = str(response.json()["detail"])
    for fragment in fragments:
        assert fragment in detail, detail
    return detail


class TestPaging:
    async def test_fetcher_reads_every_page_of_a_long_search(
        self, fhir_server: FhirServer, loaded_scenarios: dict[str, Scenario]
    ) -> None:
        scenario = loaded_scenarios[PAGED]
        expected = {r["id"] for r in scenario.resources_by_key()["observations"]}
        async with create_http_client(timeout_seconds=10.0) as http:
            observations = await fetcher_for(http, fhir_server).search(
                f"Observation?patient={scenario.patient_id}"
            )
        # The server pages by 20, so this patient's search takes three pages.
        assert len(expected) > 40
        assert sorted(r["id"] for r in observations) == sorted(expected)

    async def test_more_pages_than_allowed_is_412_not_a_partial_record(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        # Pages of 20 (the server's default): this patient's Observations take three.
        api = await app_factory(fhir_max_pages=2, fhir_page_size=20)
        response = await call_without_prefetch(
            api,
            loaded_scenarios[PAGED],
            fhir_server=fhir_server.base_url,
            token=fhir_server.token,
        )
        assert_412(response, "observations", "more than 2 pages")

    async def test_the_page_size_asked_for_fetches_the_record_in_one_exchange(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        # The default ILIAC_CDS_FHIR_PAGE_SIZE: the same record in one page per search, so even a one-page cap
        # holds, and nothing but the batch goes to the server.
        api = await app_factory(fhir_max_pages=1)
        sent = await sent_for_paged_call(api, fhir_server, loaded_scenarios[PAGED])
        assert sent.count(b"post /fhir ") == 1
        assert sent.count(b"get /fhir/") == 0
        assert b"_count=1000" in sent


class RefuseBatch(httpx.AsyncBaseTransport):
    """In front of the real server: a POST to the base gets 405, as from a server without batch."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.methods: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods.append(request.method)
        if request.method == "POST":
            return httpx.Response(405, text="batch not supported")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def fetcher_for(http: httpx.AsyncClient, fhir_server: FhirServer) -> FhirFetcher:
    """The service's fetcher against the test server (10 pages, 20 MB per response at most)."""
    return FhirFetcher(
        http,
        fhir_server.base_url,
        fhir_server.token,
        max_pages=10,
        max_response_bytes=20 * 1024 * 1024,
    )


async def gather_from(
    fhir_server: FhirServer,
    scenario: Scenario,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GatherResult:
    async with create_http_client(timeout_seconds=10.0, transport=transport) as http:
        fetcher = fetcher_for(http, fhir_server)
        return await gather_resources(
            prefetch=None,
            templates=PREFETCH_TEMPLATES,
            context={"patientId": scenario.patient_id},
            user_practitioner_id=None,
            fhir=fetcher,
            deadline_seconds=10.0,
        )


class TestBatch:
    async def test_batch_and_query_by_query_give_the_same_record(
        self, fhir_server: FhirServer, loaded_scenarios: dict[str, Scenario]
    ) -> None:
        scenario = loaded_scenarios[PAGED]
        refuse = RefuseBatch()
        batched = await gather_from(fhir_server, scenario)
        one_by_one = await gather_from(fhir_server, scenario, transport=refuse)
        assert refuse.methods.count("POST") == 1
        assert refuse.methods.count("GET") == len(PREFETCH_TEMPLATES) + 2
        assert batched.resources == one_by_one.resources
        expected = {
            (r["resourceType"], r["id"])
            for resources in scenario.resources_by_key().values()
            for r in resources
        }
        assert {(r["resourceType"], r["id"]) for r in batched.resources} == expected

    async def test_real_server_answers_the_batch(
        self, fhir_server: FhirServer, loaded_scenarios: dict[str, Scenario]
    ) -> None:
        scenario = loaded_scenarios[PAGED]
        async with create_http_client(timeout_seconds=10.0) as http:
            firsts = await fetcher_for(http, fhir_server).first_answers(
                [
                    f"Patient/{scenario.patient_id}",
                    f"Observation?patient={scenario.patient_id}",
                ]
            )
        assert firsts is not None
        assert firsts[0]["resourceType"] == "Patient"
        assert firsts[1]["resourceType"] == "Bundle"


class TestBearerToken:
    async def test_token_from_fhir_authorization_is_sent_as_bearer(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        api = await app_factory(fhir_page_size=20)
        sent = await sent_for_paged_call(api, fhir_server, loaded_scenarios[PAGED])
        # One batch carries the nine queries; the Observations' further pages (of 20) follow as GETs.
        requests = sent.count(b"post /fhir ") + sent.count(b"get /fhir/")
        assert sent.count(b"post /fhir ") == 1
        assert sent.count(b"get /fhir/observation?") == 2
        bearer = f"authorization: bearer {fhir_server.token}".lower().encode()
        assert sent.count(bearer) == requests

    async def test_wrong_token_is_412_with_a_reason(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        api = await app_factory()
        response = await call_without_prefetch(
            api,
            loaded_scenarios[PAGED],
            fhir_server=fhir_server.base_url,
            token="not-the-token",
        )
        detail = assert_412(response, "HTTP 401")
        assert "not-the-token" not in detail

    async def test_no_fhir_authorization_is_412(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        api = await app_factory()
        response = await call_without_prefetch(
            api,
            loaded_scenarios[PAGED],
            fhir_server=fhir_server.base_url,
            token=None,
        )
        assert_412(response, "HTTP 401")


class TestServerFailures:
    async def test_server_stopped_is_412(
        self, loaded_scenarios: dict[str, Scenario], app_factory: AppFactory
    ) -> None:
        api = await app_factory()
        async with Silent() as stopped:
            url = stopped.url()
        response = await call_without_prefetch(
            api, loaded_scenarios[PAGED], fhir_server=url, token="t"
        )
        assert_412(response, "could not be reached")

    async def test_server_slower_than_the_deadline_is_412(
        self,
        fhir_server: FhirServer,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
    ) -> None:
        api = await app_factory(fhir_deadline_seconds=0.5)
        async with RecordingProxy(
            port_of(fhir_server), delay_seconds=HANG_GUARD_SECONDS
        ) as proxy:
            response = await call_without_prefetch(
                api,
                loaded_scenarios[PAGED],
                fhir_server=proxy.url(),
                token=fhir_server.token,
            )
        assert response.status_code == 412, response.text
        assert "timed out" in response.text or "no answer" in response.text

    @pytest.mark.parametrize(
        ("body", "content_type", "reason"),
        [
            (b"<html><body>Login</body></html>", "text/html", "not JSON"),
            (b'{"status": "ok"}', "application/json", "not a FHIR resource"),
            (
                b'{"resourceType": "Bundle", "entry": 7}',
                "application/fhir+json",
                "another resource type",
            ),
        ],
        ids=["html", "json-not-fhir", "broken-bundle"],
    )
    async def test_body_that_is_not_fhir_json_is_412(
        self,
        loaded_scenarios: dict[str, Scenario],
        app_factory: AppFactory,
        body: bytes,
        content_type: str,
        reason: str,
    ) -> None:
        api = await app_factory()
        async with FixedAnswer(body, content_type=content_type) as server:
            response = await call_without_prefetch(
                api, loaded_scenarios[PAGED], fhir_server=server.url(), token="t"
            )
        assert_412(response, reason)

    async def test_server_error_is_412_without_echoing_its_page(
        self, loaded_scenarios: dict[str, Scenario], app_factory: AppFactory
    ) -> None:
        api = await app_factory()
        page = b"<html><body>Internal Server Error: stack trace for syn-pt-secret</body></html>"
        async with FixedAnswer(page, content_type="text/html", status=500) as server:
            response = await call_without_prefetch(
                api, loaded_scenarios[PAGED], fhir_server=server.url(), token="t"
            )
        detail = assert_412(response, "HTTP 500")
        assert "syn-pt-secret" not in detail

    async def test_response_over_the_size_cap_is_412(
        self, loaded_scenarios: dict[str, Scenario], app_factory: AppFactory
    ) -> None:
        api = await app_factory(fhir_max_response_bytes=64 * 1024)
        padding = b" " * (256 * 1024)
        body = (
            b'{"resourceType": "Bundle", "type": "searchset", "entry": []'
            + padding
            + b"}"
        )
        async with FixedAnswer(body, content_type="application/fhir+json") as server:
            response = await call_without_prefetch(
                api, loaded_scenarios[PAGED], fhir_server=server.url(), token="t"
            )
        assert_412(response)


class TestAllowList:
    async def test_non_loopback_server_is_refused_in_dev_mode(
        self, loaded_scenarios: dict[str, Scenario], app_factory: AppFactory
    ) -> None:
        api = await app_factory()
        response = await call_without_prefetch(
            api,
            loaded_scenarios[PAGED],
            fhir_server="http://fhir.example.org/fhir",
            token="t",
        )
        assert response.status_code == 403, response.text
