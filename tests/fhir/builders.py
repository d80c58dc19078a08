"""Synthetic FHIR JSON and a FhirFetcher wired to httpx.MockTransport for the tests in this package."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.fhir.client import FhirFetcher, create_http_client
from app.fhir.prefetch import PREFETCH_TEMPLATES

BASE_URL = "https://ehr.example.test/fhir"
# Sentinels: synthetic values that must never surface in an error reason or a log line.
PATIENT_ID = "pt-sentinel-7391"
TOKEN = "tok-sentinel-4471"

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def make_patient(patient_id: str = PATIENT_ID) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient_id, "birthDate": "1970-01-01"}


def make_resource(resource_type: str, resource_id: str) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": resource_id,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }


def make_outcome() -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "informational"}],
    }


def make_bundle(
    resources: list[dict[str, Any]], *, next_url: str | None = None
) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": resource} for resource in resources],
        "link": [
            {"relation": "self", "url": f"{BASE_URL}/Observation?patient={PATIENT_ID}"}
        ],
    }
    if next_url is not None:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def fhir_response(body: dict[str, Any], status_code: int = 200) -> httpx.Response:
    return httpx.Response(
        status_code, json=body, headers={"Content-Type": "application/fhir+json"}
    )


@asynccontextmanager
async def open_fetcher(
    handler: Handler,
    *,
    token: str | None = TOKEN,
    max_pages: int = 10,
    max_response_bytes: int = 1_000_000,
    page_size: int | None = None,
) -> AsyncIterator[FhirFetcher]:
    """A FhirFetcher on the production client factory, answering from handler."""
    transport = httpx.MockTransport(handler)
    async with create_http_client(timeout_seconds=5.0, transport=transport) as client:
        yield FhirFetcher(
            client,
            BASE_URL,
            token,
            max_pages,
            max_response_bytes,
            page_size=page_size,
        )


CONTEXT: dict[str, object] = {"patientId": PATIENT_ID, "userId": "Practitioner/pr-1"}
SEARCH_TYPES = {
    key: template.split("?", 1)[0]
    for key, template in PREFETCH_TEMPLATES.items()
    if "?" in template
}


def full_prefetch() -> dict[str, object]:
    prefetch: dict[str, object] = {"patient": make_patient()}
    for key, resource_type in SEARCH_TYPES.items():
        prefetch[key] = make_bundle([make_resource(resource_type, f"{key}-1")])
    return prefetch


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected FHIR request to {request.url.path}")


def serve_record(request: httpx.Request) -> httpx.Response:
    """A FHIR server holding one resource per searched type for PATIENT_ID; it answers batch Bundles too."""
    if request.method == "POST":
        return answer_batch(request, [serve_record(r) for r in batch_requests(request)])
    resource_type = request.url.path.rsplit("/", 2)[-1]
    if request.url.path.endswith(f"/Patient/{PATIENT_ID}"):
        return fhir_response(make_patient())
    assert request.url.params["patient"] == PATIENT_ID
    return fhir_response(
        make_bundle([make_resource(resource_type, "served-1"), make_outcome()])
    )


def batch_requests(request: httpx.Request) -> list[httpx.Request]:
    """The GETs a batch Bundle POSTed to the base URL asks for, with the batch's Accept and Authorization."""
    assert request.method == "POST"
    assert request.url == httpx.URL(BASE_URL)
    assert request.headers["Content-Type"] == "application/fhir+json"
    batch = json.loads(request.content)
    assert batch["resourceType"] == "Bundle"
    assert batch["type"] == "batch"
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() in ("accept", "authorization")
    }
    gets = []
    for entry in batch["entry"]:
        assert entry["request"]["method"] == "GET"
        url = f"{BASE_URL}/{entry['request']['url']}"
        gets.append(httpx.Request("GET", url, headers=headers))
    return gets


def answer_batch(
    request: httpx.Request, answers: list[httpx.Response]
) -> httpx.Response:
    """The batch-response a FHIR server sends for these per-entry answers (FHIR R4 http.html#transaction)."""
    assert len(answers) == len(batch_requests(request))
    entries = []
    for answer in answers:
        entry: dict[str, Any] = {
            "response": {"status": f"{answer.status_code} {answer.reason_phrase}"}
        }
        is_fhir = answer.headers.get("Content-Type", "").startswith(
            "application/fhir+json"
        )
        if is_fhir and answer.is_success:
            entry["resource"] = answer.json()
        elif is_fhir:
            entry["response"]["outcome"] = answer.json()
        entries.append(entry)
    return fhir_response(
        {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
    )


def batch_server(handler: Handler) -> Handler:
    """handler, plus batch: a Bundle POSTed to the base is answered entry by entry by handler, in order."""

    async def serve(request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return await call_handler(handler, request)
        answers = [await call_handler(handler, get) for get in batch_requests(request)]
        return answer_batch(request, answers)

    return serve


def without_batch(handler: Handler) -> Handler:
    """handler on a server that does not do batch: a POST to the base gets 405, as from a read-only server."""

    async def serve(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return fhir_response(make_outcome(), status_code=405)
        return await call_handler(handler, request)

    return serve


async def call_handler(handler: Handler, request: httpx.Request) -> httpx.Response:
    answer = handler(request)
    if inspect.isawaitable(answer):
        return await answer
    return answer
