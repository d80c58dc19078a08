"""Builders for CDS Hooks request bodies used by the API tests (synthetic data only)."""

from __future__ import annotations

import uuid
from typing import Any

from app.fhir.prefetch import PREFETCH_TEMPLATES

PATIENT_ID = "pat-api-001"
LOCAL = "http://example.org/fhir/CodeSystem/iliofemoral-cds"


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def empty_prefetch(patient_id: str = PATIENT_ID) -> dict[str, Any]:
    prefetch: dict[str, Any] = {key: bundle() for key in PREFETCH_TEMPLATES}
    prefetch["patient"] = {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": "female",
    }
    return prefetch


def hook_request(
    hook: str = "patient-view",
    *,
    prefetch: dict[str, Any] | None = None,
    patient_id: str = PATIENT_ID,
    draft_orders: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/prac-1", "patientId": patient_id}
    if hook in ("order-select", "order-sign"):
        orders = draft_orders or [
            {
                "resourceType": "ServiceRequest",
                "id": "sr-unrelated",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": f"Patient/{patient_id}"},
                "code": {"text": "physiotherapy referral"},
            }
        ]
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in orders],
        }
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in orders]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch if prefetch is not None else empty_prefetch(patient_id),
    }
    body.update(extra)
    return body


def laterality(side_code: str) -> dict[str, Any]:
    return {
        "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier",
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": side_code}]
        },
    }


LEFT = "7771000"


def left_whole_leg_swelling_negative_duplex(
    patient_id: str = PATIENT_ID,
) -> dict[str, Any]:
    """Swollen whole left leg (R22.42 + whole-leg extent), negative left fem-pop duplex 5 days ago: R02."""
    subject = {"reference": f"Patient/{patient_id}"}
    swelling = {
        "resourceType": "Condition",
        "id": "cond-swelling-left",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R22.42"}
            ]
        },
        "subject": subject,
        "onsetDateTime": "2026-02-10",
    }
    extent = {
        "resourceType": "Observation",
        "id": "obs-extent-left",
        "status": "final",
        "code": {"coding": [{"system": LOCAL, "code": "swelling-extent"}]},
        "subject": subject,
        "effectiveDateTime": "2026-02-25",
        "bodySite": {
            "coding": [{"system": "http://snomed.info/sct", "code": "61685007"}],
            "extension": [laterality(LEFT)],
        },
        "valueCodeableConcept": {"coding": [{"system": LOCAL, "code": "whole-leg"}]},
    }
    duplex = {
        "resourceType": "DiagnosticReport",
        "id": "dr-duplex-left",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "39432-0"}]},
        "subject": subject,
        "effectiveDateTime": "2026-02-25",
        "conclusionCode": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "373140001"}]}
        ],
    }
    prefetch = empty_prefetch(patient_id)
    prefetch["conditions"] = bundle(swelling)
    prefetch["observations"] = bundle(extent)
    prefetch["diagnosticReports"] = bundle(duplex)
    return prefetch
