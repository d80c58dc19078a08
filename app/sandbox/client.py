"""Talking to a FHIR server (upload) and to the CDS service (hook requests, discovery)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx

from app.sandbox.scenarios import (
    FHIR_JSON,
    JsonDict,
    SandboxError,
    Scenario,
    transaction_bundle,
)


def fhir_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class UploadResult:
    scenario: Scenario
    created: int
    updated: int


def upload_scenario(
    client: httpx.Client, fhir_server: str, scenario: Scenario, token: str | None
) -> UploadResult:
    """POST the scenario's transaction Bundle to the server base.

    Raises:
        SandboxError: the server refused the transaction (status and, for an OperationOutcome, its first issue).
    """
    try:
        response = client.post(
            fhir_server.rstrip("/"),
            content=json.dumps(transaction_bundle(scenario)),
            headers=fhir_headers(token),
        )
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"{scenario.id}: FHIR server unreachable ({type(exc).__name__})"
        ) from None
    if not response.is_success:
        raise SandboxError(
            f"{scenario.id}: FHIR server answered HTTP {response.status_code}{_outcome_text(response)}"
        )
    created = updated = 0
    for entry in json_object(response).get("entry") or []:
        status = str((entry.get("response") or {}).get("status", ""))
        if status.startswith("201"):
            created += 1
        elif status.startswith("200"):
            updated += 1
    return UploadResult(scenario=scenario, created=created, updated=updated)


def json_object(response: httpx.Response) -> JsonDict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _outcome_text(response: httpx.Response) -> str:
    body = json_object(response)
    issues = (
        body.get("issue") if body.get("resourceType") == "OperationOutcome" else None
    )
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        diagnostics = issues[0].get("diagnostics") or issues[0].get("code")
        if diagnostics:
            return f": {str(diagnostics)[:300]}"
    detail = body.get("detail")
    return f": {str(detail)[:300]}" if detail else ""


def hook_request(
    scenario: Scenario, *, fhir_server: str, token: str | None
) -> JsonDict:
    """The request an EHR that sends only fhirServer (no prefetch) would make for this scenario."""
    request: JsonDict = {
        "hook": scenario.hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server.rstrip("/"),
        "context": scenario.context,
    }
    if token:
        request["fhirAuthorization"] = fhir_authorization(token, scenario.patient_id)
    return request


def fhir_authorization(token: str, patient_id: str) -> JsonDict:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "iliac-cds-sandbox",
        "patient": patient_id,
    }


def discover_services(client: httpx.Client, service_url: str) -> dict[str, str]:
    """Map each hook to the id of the service answering it, from the service's discovery endpoint.

    Raises:
        SandboxError: discovery failed.
    """
    url = f"{service_url.rstrip('/')}/cds-services"
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"CDS service unreachable at {url} ({type(exc).__name__})"
        ) from None
    services = json_object(response).get("services")
    if not response.is_success or not isinstance(services, list):
        raise SandboxError(
            f"CDS discovery at {url} answered HTTP {response.status_code}"
        )
    return {
        str(s["hook"]): str(s["id"])
        for s in services
        if isinstance(s, dict) and "hook" in s and "id" in s
    }
