"""Synthetic FHIR JSON builders for workup tests (plain functions with keyword overrides)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast

from app.catalog.index import Catalog
from app.catalog.loader import load_catalog
from app.config import LOCAL_CODE_SYSTEM
from app.workup.engine import LinkConfig, WorkupInput, WorkupResult, run_workup
from app.workup.jsontypes import JsonObject, JsonValue

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PATIENT = "synthetic-patient-1"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOCAL = LOCAL_CODE_SYSTEM
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier"
SIDE_CODE = {"left": "7771000", "right": "24028007", "bilateral": "51440002"}
LINKS = LinkConfig(
    rules_url="https://cds.example.org/rules",
    smart_launch_url="https://app.example.org/launch",
)
_ids = itertools.count(1)
Card = dict[str, Any]


@cache
def catalog() -> Catalog:
    return load_catalog(
        cards_dir=REPO / "cards",
        mappings_dir=REPO / "fhir_mappings",
        local_system=LOCAL,
    )


def day(days_ago: int) -> str:
    """A FHIR date `days_ago` calendar days before NOW."""
    return (NOW - timedelta(days=days_ago)).date().isoformat()


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def cc(system: str, code: str) -> JsonObject:
    return {"coding": [{"system": system, "code": code}]}


def body_site(code: str | None = None, side: str | None = None) -> JsonObject:
    site: JsonObject = cc(SCT, code) if code else {"text": "site"}
    if side is not None:
        site["extension"] = [
            {"url": MCODE, "valueCodeableConcept": cc(SCT, SIDE_CODE[side])}
        ]
    return site


def _sites(site: str | None, side: str | None) -> list[JsonValue]:
    return [body_site(site, side)] if site or side else []


def condition(
    code: str,
    *,
    system: str = ICD,
    side: str | None = None,
    site: str | None = None,
    onset: str | None = None,
    clinical: str = "active",
    verification: str | None = None,
    id: str | None = None,
) -> JsonObject:
    res: JsonObject = {
        "resourceType": "Condition",
        "id": id or _id("cond"),
        "clinicalStatus": cc(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", clinical
        ),
        "code": cc(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    if verification:
        res["verificationStatus"] = cc(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", verification
        )
    if site or side:
        res["bodySite"] = _sites(site, side)
    if onset:
        res["onsetDateTime"] = onset
    return res


def observation(
    code: str,
    *,
    system: str = LOCAL,
    value: str | None = None,
    value_system: str = LOCAL,
    quantity: tuple[float, str] | None = None,
    number: int | None = None,
    side: str | None = None,
    site: str | None = None,
    date: str | None = None,
    status: str = "final",
    method: tuple[str, str] | None = None,
    components: list[JsonValue] | None = None,
    derived_from: str | None = None,
    id: str | None = None,
) -> JsonObject:
    res: JsonObject = {
        "resourceType": "Observation",
        "id": id or _id("obs"),
        "status": status,
        "code": cc(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": date or day(1),
    }
    if value is not None:
        res["valueCodeableConcept"] = cc(value_system, value)
    if quantity is not None:
        res["valueQuantity"] = quantity_json(*quantity)
    if number is not None:
        res["valueInteger"] = number
    if site or side:
        res["bodySite"] = body_site(site, side)
    if method:
        res["method"] = cc(*method)
    if components:
        res["component"] = components
    if derived_from:
        res["derivedFrom"] = [{"reference": derived_from}]
    return res


def quantity_json(value: float, unit: str) -> JsonObject:
    q: JsonObject = {"value": value}
    if unit:
        q |= {"unit": unit, "system": UCUM, "code": unit}
    return q


def component(
    code: str, *, system: str = SCT, quantity: tuple[float, str]
) -> JsonObject:
    return {"code": cc(system, code), "valueQuantity": quantity_json(*quantity)}


def report(
    code: str,
    *,
    system: str = LOINC,
    conclusion: list[tuple[str, str]] | None = None,
    date: str | None = None,
    status: str = "final",
    results: list[str] | None = None,
    id: str | None = None,
) -> JsonObject:
    res: JsonObject = {
        "resourceType": "DiagnosticReport",
        "id": id or _id("dr"),
        "status": status,
        "code": cc(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": date or day(1),
    }
    if conclusion:
        res["conclusionCode"] = [cc(s, c) for s, c in conclusion]
    if results:
        res["result"] = [{"reference": r} for r in results]
    return res


def negative_duplex(
    side: str = "left", *, days_ago: int = 5, status: str = "final"
) -> JsonObject:
    code = {"left": "39432-0", "right": "39443-7", "bilateral": "39420-5"}[side]
    return report(
        code, conclusion=[(SCT, "373140001")], date=day(days_ago), status=status
    )


def imaging_study(
    modality: str,
    *,
    laterality: str | None = None,
    site: str | None = None,
    started: str | None = None,
    status: str = "available",
    id: str | None = None,
) -> JsonObject:
    series: JsonObject = {"uid": "1.2.3", "modality": {"system": DCM, "code": modality}}
    if laterality:
        series["laterality"] = {"system": SCT, "code": SIDE_CODE[laterality]}
    if site:
        series["bodySite"] = {"system": SCT, "code": site}
    return {
        "resourceType": "ImagingStudy",
        "id": id or _id("img"),
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "started": started or day(1),
        "modality": [{"system": DCM, "code": modality}],
        "series": [series],
    }


def procedure(
    code: str,
    *,
    system: str = CPT,
    side: str | None = None,
    site: str | None = None,
    date: str | None = None,
    status: str = "completed",
    id: str | None = None,
) -> JsonObject:
    res: JsonObject = {
        "resourceType": "Procedure",
        "id": id or _id("proc"),
        "status": status,
        "code": cc(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "performedDateTime": date or day(1),
    }
    if site or side:
        res["bodySite"] = _sites(site, side)
    return res


def service_request(
    code: str,
    *,
    system: str = CPT,
    side: str | None = None,
    sites: tuple[str, ...] = (),
    status: str = "draft",
    extra_codes: tuple[tuple[str, str], ...] = (),
    id: str | None = None,
) -> JsonObject:
    coding: list[JsonValue] = [{"system": system, "code": code}]
    coding += [{"system": s, "code": c} for s, c in extra_codes]
    res: JsonObject = {
        "resourceType": "ServiceRequest",
        "id": id or _id("sr"),
        "status": status,
        "intent": "order",
        "code": {"coding": coding},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": day(0),
    }
    if sites:
        res["bodySite"] = [body_site(s, side) for s in sites]
    elif side:
        res["bodySite"] = [body_site("244411005", side)]
    return res


def stent_order(side: str | None = "left", *, id: str | None = None) -> JsonObject:
    return service_request("37238", side=side, sites=("46027005", "63507001"), id=id)


def device_request(
    based_on: str,
    *,
    length: tuple[float, str] | None = (90, "mm"),
    diameter: tuple[float, str] | None = (16, "mm"),
    id: str | None = None,
) -> JsonObject:
    params: list[JsonValue] = []
    if length is not None:
        params.append(
            {"code": cc(SCT, "408703009"), "valueQuantity": quantity_json(*length)}
        )
    if diameter is not None:
        params.append(
            {"code": cc(SCT, "408706001"), "valueQuantity": quantity_json(*diameter)}
        )
    return {
        "resourceType": "DeviceRequest",
        "id": id or _id("dev"),
        "status": "draft",
        "intent": "proposal",
        "codeCodeableConcept": cc(SCT, "65818007"),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "basedOn": [{"reference": based_on}],
        "parameter": params,
    }


def medication_request(
    code: str,
    *,
    system: str = "http://www.nlm.nih.gov/research/umls/rxnorm",
    status: str = "active",
) -> JsonObject:
    return {
        "resourceType": "MedicationRequest",
        "id": _id("med"),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": cc(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def lab(
    code: str, *, quantity: tuple[float, str], date: str | None = None
) -> JsonObject:
    return observation(code, system=LOINC, quantity=quantity, date=date)


def run(
    *resources: JsonObject,
    hook: str = "patient-view",
    drafts: tuple[JsonObject, ...] = (),
    selections: tuple[str, ...] = (),
    links: LinkConfig = LINKS,
) -> WorkupResult:
    inp = WorkupInput(
        hook=hook,
        now=NOW,
        patient_id=PATIENT,
        resources=tuple(resources),
        draft_orders=drafts,
        selections=selections,
        links=links,
    )
    return run_workup(inp, catalog())


def all_cards(result: WorkupResult) -> list[Card]:
    """Every card of a result, loosely typed for concise assertions."""
    return cast(list[Card], result.cards)


def cards_of(result: WorkupResult, rule_id: str) -> list[Card]:
    """Cards of one rule (by source.topic.code), loosely typed for concise assertions."""
    cards = cast(list[Card], result.cards)
    return [card for card in cards if card["source"]["topic"]["code"] == rule_id]


def side_of(result: WorkupResult, card: Card) -> str | None:
    return result.card_sides[str(card["uuid"])]
