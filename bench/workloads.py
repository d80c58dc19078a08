"""Synthetic, deterministic CDS Hooks request bodies for the benchmark workloads.

Most of each record is noise a real EHR sends along (labs, vitals, unrelated problems and imaging); a few
resources carry codes from fhir_mappings/ so that the workup has something to say.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

JsonObject = dict[str, Any]

PATIENT_ID = "bench-pat-0001"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
LOCAL = "http://example.org/fhir/CodeSystem/iliofemoral-cds"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LATERALITY_EXT = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier"
)
LEFT = "7771000"
PREFETCH_KEYS = (
    "patient",
    "conditions",
    "observations",
    "imagingStudies",
    "diagnosticReports",
    "procedures",
    "serviceRequests",
    "medicationRequests",
    "medicationStatements",
)
# The workloads' dates are relative to this; the service under test runs with its clock fixed here.
EPOCH = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# (LOINC, display, UCUM unit, low, high): a routine chemistry / haematology / lipid panel.
LABS: tuple[tuple[str, str, str, float, float], ...] = (
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 16.0),
    (
        "4544-3",
        "Hematocrit [Volume Fraction] of Blood by Automated count",
        "%",
        36.0,
        46.0,
    ),
    (
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        4.5,
        11.0,
    ),
    (
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        "10*3/uL",
        150.0,
        400.0,
    ),
    (
        "789-8",
        "Erythrocytes [#/volume] in Blood by Automated count",
        "10*6/uL",
        4.0,
        5.2,
    ),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 80.0, 100.0),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135.0, 145.0),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 98.0, 107.0),
    (
        "2028-9",
        "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
        "mmol/L",
        22.0,
        29.0,
    ),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7.0, 20.0),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70.0, 99.0),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.6, 10.3),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 125.0, 200.0),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 40.0, 150.0),
    (
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        "mg/dL",
        40.0,
        60.0,
    ),
    (
        "13457-7",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        "mg/dL",
        50.0,
        100.0,
    ),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6),
    (
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        7.0,
        56.0,
    ),
    (
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        10.0,
        40.0,
    ),
    (
        "6768-6",
        "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        44.0,
        147.0,
    ),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.1, 1.2),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 4.0),
    ("5902-2", "Prothrombin time (PT)", "s", 11.0, 13.5),
    ("6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}", 0.8, 1.1),
)
VITALS: tuple[tuple[str, str, str, float, float], ...] = (
    ("8867-4", "Heart rate", "/min", 60.0, 100.0),
    ("9279-1", "Respiratory rate", "/min", 12.0, 20.0),
    ("8310-5", "Body temperature", "Cel", 36.1, 37.2),
    ("29463-7", "Body weight", "kg", 70.0, 95.0),
    ("8302-2", "Body height", "cm", 160.0, 175.0),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 24.0, 32.0),
    (
        "59408-5",
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        "%",
        94.0,
        100.0,
    ),
)
# Problems that do not matter to this workup (ICD-10-CM, display).
OTHER_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("E03.9", "Hypothyroidism, unspecified"),
    ("F32.A", "Depression, unspecified"),
    ("E66.9", "Obesity, unspecified"),
    ("G47.33", "Obstructive sleep apnea (adult) (pediatric)"),
    ("M54.50", "Low back pain, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
)
# Imaging that does not matter (LOINC, display, DICOM modality, body site SNOMED, body site display).
OTHER_IMAGING: tuple[tuple[str, str, str, str, str], ...] = (
    ("36643-5", "XR Chest 2 Views", "CR", "51185008", "Thoracic structure"),
    ("24725-4", "CT Head", "CT", "69536005", "Head structure"),
    ("24590-2", "MR Knee", "MR", "72696002", "Knee region structure"),
    ("24531-6", "US Abdomen", "US", "113345001", "Abdominal structure"),
    ("37362-5", "XR Lumbar spine", "DX", "122496007", "Lumbar spine structure"),
)


def _coding(system: str, code: str, display: str | None = None) -> JsonObject:
    coding: JsonObject = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def _laterality(side_code: str) -> JsonObject:
    return {"url": LATERALITY_EXT, "valueCodeableConcept": _coding(SCT, side_code)}


def _when(days_ago: float) -> str:
    return (EPOCH - timedelta(days=days_ago)).isoformat()


def _meta(rng: random.Random) -> JsonObject:
    return {
        "versionId": str(rng.randint(1, 9)),
        "lastUpdated": _when(rng.uniform(0, 30)),
        "source": "#bench-ehr",
    }


def _narrative(summary: str) -> JsonObject:
    rows = "".join(
        f"<tr><th>{k}</th><td>{v}</td></tr>"
        for k, v in (("Summary", summary), ("Source", "Bench EHR"), ("Status", "final"))
    )
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{summary}</b></p><table>{rows}</table></div>',
    }


class _Builder:
    """Builds resources with unique ids and EHR-like envelope fields (meta, identifier, narrative)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counter = 0
        self.subject = {
            "reference": f"Patient/{PATIENT_ID}",
            "display": "Bench Patient",
        }

    def envelope(self, resource_type: str, summary: str) -> JsonObject:
        self.counter += 1
        rid = f"{resource_type.lower()}-{self.counter:05d}"
        return {
            "resourceType": resource_type,
            "id": rid,
            "meta": _meta(self.rng),
            "text": _narrative(summary),
            "identifier": [
                {
                    "use": "official",
                    "system": "urn:oid:2.16.840.1.113883.3.9999.1",
                    "value": f"{rid}-{self.rng.randrange(10**9):09d}",
                }
            ],
        }

    def quantity_obs(
        self, spec: tuple[str, str, str, float, float], category: str, days_ago: float
    ) -> JsonObject:
        code, display, unit, low, high = spec
        spread = high - low
        value = round(self.rng.uniform(low - spread * 0.15, high + spread * 0.15), 2)
        flag = "H" if value > high else "L" if value < low else "N"
        obs = self.envelope("Observation", f"{display}: {value} {unit}")
        obs.update(
            {
                "status": "final",
                "category": [
                    _coding(OBS_CATEGORY, category, category.replace("-", " ").title())
                ],
                "code": {
                    "coding": [
                        {"system": LOINC, "code": code, "display": display},
                        {
                            "system": "urn:oid:2.16.840.1.113883.3.9999.2",
                            "code": f"LAB{code.replace('-', '')}",
                            "display": display,
                        },
                    ],
                    "text": display,
                },
                "subject": self.subject,
                "encounter": {"reference": f"Encounter/enc-{int(days_ago) // 30:04d}"},
                "effectiveDateTime": _when(days_ago),
                "issued": _when(days_ago - 0.1),
                "performer": [
                    {
                        "reference": "Organization/bench-lab",
                        "display": "Bench Laboratory",
                    }
                ],
                "basedOn": [
                    {"reference": f"ServiceRequest/lab-order-{int(days_ago):05d}"}
                ],
                "specimen": {
                    "reference": f"Specimen/spec-{self.counter:05d}",
                    "display": "Blood specimen",
                },
                "extension": [
                    {
                        "url": "http://example.org/fhir/StructureDefinition/bench-ehr-result-source",
                        "valueString": f"LIS-{self.rng.randrange(10**6):06d} instrument run {self.rng.randrange(10**4):04d}",
                    }
                ],
                "device": {"display": "Bench automated analyzer, module 2"},
                "note": [
                    {
                        "authorString": "Bench Laboratory",
                        "text": "Specimen received and processed within the stability window. Result verified "
                        "by the laboratory information system; no delta-check or critical-value flags.",
                    }
                ],
                "valueQuantity": {
                    "value": value,
                    "unit": unit,
                    "system": UCUM,
                    "code": unit,
                },
                "interpretation": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        flag,
                    )
                ],
                "referenceRange": [
                    {
                        "low": {
                            "value": low,
                            "unit": unit,
                            "system": UCUM,
                            "code": unit,
                        },
                        "high": {
                            "value": high,
                            "unit": unit,
                            "system": UCUM,
                            "code": unit,
                        },
                    }
                ],
            }
        )
        return obs

    def blood_pressure(self, days_ago: float) -> JsonObject:
        systolic = self.rng.randint(105, 165)
        diastolic = self.rng.randint(60, 100)
        obs = self.envelope(
            "Observation", f"Blood pressure {systolic}/{diastolic} mmHg"
        )
        obs.update(
            {
                "status": "final",
                "category": [_coding(OBS_CATEGORY, "vital-signs", "Vital Signs")],
                "code": _coding(
                    LOINC, "85354-9", "Blood pressure panel with all children optional"
                ),
                "subject": self.subject,
                "effectiveDateTime": _when(days_ago),
                "component": [
                    {
                        "code": _coding(LOINC, "8480-6", "Systolic blood pressure"),
                        "valueQuantity": {
                            "value": systolic,
                            "unit": "mmHg",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                    {
                        "code": _coding(LOINC, "8462-4", "Diastolic blood pressure"),
                        "valueQuantity": {
                            "value": diastolic,
                            "unit": "mmHg",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                ],
            }
        )
        return obs

    def noise_observation(self, i: int) -> JsonObject:
        days_ago = 3 + i * 1.7 + self.rng.uniform(0, 1)
        if i % 3 == 2:
            if i % 6 == 5:
                return self.blood_pressure(days_ago)
            return self.quantity_obs(VITALS[i % len(VITALS)], "vital-signs", days_ago)
        return self.quantity_obs(LABS[i % len(LABS)], "laboratory", days_ago)

    def condition(
        self, system: str, code: str, display: str, onset_days: float
    ) -> JsonObject:
        cond = self.envelope("Condition", display)
        cond.update(
            {
                "clinicalStatus": _coding(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "active",
                    "Active",
                ),
                "verificationStatus": _coding(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "confirmed",
                    "Confirmed",
                ),
                "category": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "problem-list-item",
                        "Problem List Item",
                    )
                ],
                "code": _coding(system, code, display),
                "subject": self.subject,
                "onsetDateTime": _when(onset_days),
                "recordedDate": _when(onset_days - 1),
                "recorder": {
                    "reference": "Practitioner/bench-prac",
                    "display": "Bench Clinician",
                },
                "note": [
                    {"text": "Reviewed at the annual visit; management unchanged."}
                ],
            }
        )
        return cond

    def imaging_study(
        self,
        spec: tuple[str, str, str, str, str],
        days_ago: float,
        laterality: str | None = None,
    ) -> JsonObject:
        code, display, modality, site, site_display = spec
        study = self.envelope("ImagingStudy", display)
        body_site: JsonObject = {"system": SCT, "code": site, "display": site_display}
        series: JsonObject = {
            "uid": f"2.25.{self.rng.randrange(10**30)}",
            "number": 1,
            "modality": {"system": DCM, "code": modality},
            "numberOfInstances": self.rng.randint(20, 400),
            "bodySite": body_site,
        }
        if laterality:
            series["laterality"] = {"system": SCT, "code": laterality}
        study.update(
            {
                "status": "available",
                "modality": [{"system": DCM, "code": modality}],
                "subject": self.subject,
                "started": _when(days_ago),
                "procedureCode": [_coding(LOINC, code, display)],
                "numberOfSeries": 1,
                "numberOfInstances": series["numberOfInstances"],
                "series": [series],
            }
        )
        return study


@dataclass(frozen=True)
class Record:
    """A patient's record split by prefetch key."""

    by_key: dict[str, list[JsonObject]]

    @property
    def resource_count(self) -> int:
        return sum(len(v) for v in self.by_key.values())

    def prefetch(self) -> JsonObject:
        prefetch: JsonObject = {}
        for key in PREFETCH_KEYS:
            resources = self.by_key.get(key, [])
            if key == "patient":
                prefetch[key] = resources[0]
            else:
                prefetch[key] = {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(resources),
                    "entry": [
                        {
                            "fullUrl": f"urn:uuid:{r['id']}",
                            "resource": r,
                            "search": {"mode": "match"},
                        }
                        for r in resources
                    ],
                }
        return prefetch


def _patient(b: _Builder) -> JsonObject:
    patient = b.envelope("Patient", "Bench Patient, female, born 1968-04-12")
    patient.update(
        {
            "id": PATIENT_ID,
            "active": True,
            "name": [{"use": "official", "family": "Patient", "given": ["Bench"]}],
            "gender": "female",
            "birthDate": "1968-04-12",
            "address": [
                {
                    "line": ["1 Synthetic Way"],
                    "city": "Testville",
                    "postalCode": "00000",
                }
            ],
            "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
        }
    )
    return patient


def _relevant_swelling(b: _Builder) -> dict[str, list[JsonObject]]:
    """Swollen whole left leg, negative left fem-pop duplex 5 days ago: the engine should advise."""
    swelling = b.condition(
        ICD10, "R22.42", "Localized swelling, mass and lump, left lower limb", 19
    )
    extent = b.envelope("Observation", "Swelling extent: whole leg")
    extent.update(
        {
            "status": "final",
            "code": _coding(LOCAL, "swelling-extent"),
            "subject": b.subject,
            "effectiveDateTime": _when(4),
            "bodySite": {**_coding(SCT, "61685007"), "extension": [_laterality(LEFT)]},
            "valueCodeableConcept": _coding(LOCAL, "whole-leg"),
        }
    )
    duplex = b.envelope("DiagnosticReport", "US venous duplex left leg: no thrombus")
    duplex.update(
        {
            "status": "final",
            "code": _coding(LOINC, "39432-0", "US Lower extremity vein - left"),
            "subject": b.subject,
            "effectiveDateTime": _when(5),
            "conclusionCode": [_coding(SCT, "373140001", "No thrombus")],
        }
    )
    duplex_study = b.imaging_study(
        (
            "39432-0",
            "US Lower extremity vein - left",
            "US",
            "61685007",
            "Lower limb structure",
        ),
        5,
        LEFT,
    )
    creatinine = b.quantity_obs(
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.1),
        "laboratory",
        6,
    )
    albumin = b.quantity_obs(
        ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.5, 5.0),
        "laboratory",
        6,
    )
    return {
        "conditions": [swelling],
        "observations": [extent, creatinine, albumin],
        "diagnosticReports": [duplex],
        "imagingStudies": [duplex_study],
    }


def patient_record(
    *, observations: int, conditions: int, imaging: int, seed: int = 1
) -> Record:
    """A record with `observations` labs/vitals, `conditions` problems and `imaging` studies in total,
    of which a few (see `_relevant_swelling`) are workup-relevant."""
    b = _Builder(seed)
    relevant = _relevant_swelling(b)
    by_key: dict[str, list[JsonObject]] = {key: [] for key in PREFETCH_KEYS}
    by_key["patient"] = [_patient(b)]
    for key, resources in relevant.items():
        by_key[key].extend(resources)
    n_obs = observations - len(relevant["observations"])
    by_key["observations"].extend(b.noise_observation(i) for i in range(n_obs))
    for i in range(conditions - len(relevant["conditions"])):
        code, display = OTHER_CONDITIONS[i % len(OTHER_CONDITIONS)]
        by_key["conditions"].append(b.condition(ICD10, code, display, 200 + i * 37))
    for i in range(imaging - len(relevant["imagingStudies"])):
        by_key["imagingStudies"].append(
            b.imaging_study(OTHER_IMAGING[i % len(OTHER_IMAGING)], 60 + i * 45)
        )
    return Record(by_key)


def typical_record() -> Record:
    """Workload 1: Patient + 50 Observations, 5 ImagingStudies, 10 Conditions, a DiagnosticReport."""
    return patient_record(observations=50, conditions=10, imaging=5)


def large_record(resources: int) -> Record:
    """Workload 3: `resources` resources in the proportions of a long-followed patient (85 % labs/vitals)."""
    conditions = max(10, resources * 6 // 100)
    imaging = max(5, resources * 3 // 100)
    # 1 Patient + 1 DiagnosticReport are fixed; the rest are observations.
    observations = resources - conditions - imaging - 2
    return patient_record(
        observations=observations, conditions=conditions, imaging=imaging
    )


def _stent_and_ivus(b: _Builder) -> tuple[JsonObject, dict[str, list[JsonObject]]]:
    """A left iliac stent drafted after IVUS showing a fixed 70 % non-thrombotic lesion."""
    ivus = b.envelope("Procedure", "IVUS of the left iliac veins")
    ivus.update(
        {
            "status": "completed",
            "code": _coding(CPT, "37252", "Intravascular ultrasound, initial vessel"),
            "subject": b.subject,
            "performedDateTime": _when(2),
            "bodySite": [
                {
                    **_coding(SCT, "46027005", "Common iliac vein"),
                    "extension": [_laterality(LEFT)],
                }
            ],
        }
    )
    results: list[JsonObject] = []
    measured: tuple[tuple[str, str, JsonObject], ...] = (
        (
            SCT,
            "408715008",
            {"valueQuantity": {"value": 70, "unit": "%", "system": UCUM, "code": "%"}},
        ),
        (LOCAL, "lesion-behavior", {"valueCodeableConcept": _coding(LOCAL, "fixed")}),
        (
            LOCAL,
            "obstruction-etiology",
            {"valueCodeableConcept": _coding(LOCAL, "nivl")},
        ),
        (
            LOCAL,
            "minimal-lumen-diameter",
            {
                "valueQuantity": {
                    "value": 4.1,
                    "unit": "mm",
                    "system": UCUM,
                    "code": "mm",
                }
            },
        ),
        (
            LOCAL,
            "reference-eiv-diameter",
            {
                "valueQuantity": {
                    "value": 13.5,
                    "unit": "mm",
                    "system": UCUM,
                    "code": "mm",
                }
            },
        ),
    )
    for code_system, code, value in measured:
        obs = b.envelope("Observation", f"IVUS {code}")
        obs.update(
            {
                "status": "final",
                "code": _coding(code_system, code),
                "subject": b.subject,
                "effectiveDateTime": _when(2),
                "partOf": [{"reference": f"Procedure/{ivus['id']}"}],
                "bodySite": {
                    **_coding(SCT, "46027005"),
                    "extension": [_laterality(LEFT)],
                },
                "method": _coding(DCM, "IVUS"),
                **value,
            }
        )
        results.append(obs)
    draft = b.envelope("ServiceRequest", "Left iliac vein stent")
    draft.update(
        {
            "status": "draft",
            "intent": "order",
            "code": _coding(
                CPT,
                "37238",
                "Transcatheter placement of intravascular stent, open or percutaneous, initial vein",
            ),
            "subject": b.subject,
            "authoredOn": _when(0),
            "bodySite": [
                {
                    **_coding(SCT, "46027005", "Common iliac vein"),
                    "extension": [_laterality(LEFT)],
                }
            ],
        }
    )
    return draft, {"procedures": [ivus], "observations": results}


@dataclass(frozen=True)
class Body:
    """A request body and what it was built from."""

    name: str
    service_id: str
    body: JsonObject
    record: Record


def _hook_body(hook: str, prefetch: JsonObject | None, **extra: Any) -> JsonObject:
    context: JsonObject = {"userId": "Practitioner/bench-prac", "patientId": PATIENT_ID}
    context.update(extra.pop("context", {}))
    body: JsonObject = {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def patient_view() -> Body:
    """Workload 1."""
    record = typical_record()
    return Body(
        "patient-view-150k",
        "iliac-workup-patient-view",
        _hook_body("patient-view", record.prefetch()),
        record,
    )


def order_sign() -> Body:
    """Workload 2: the workload-1 record plus IVUS results and a drafted left iliac stent."""
    record = typical_record()
    b = _Builder(seed=2)
    draft, extra = _stent_and_ivus(b)
    by_key = {key: list(values) for key, values in record.by_key.items()}
    for key, resources in extra.items():
        by_key[key].extend(resources)
    merged = Record(by_key)
    draft_orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": draft}],
    }
    body = _hook_body(
        "order-sign", merged.prefetch(), context={"draftOrders": draft_orders}
    )
    return Body("order-sign-stent-ivus", "iliac-workup-order-sign", body, merged)


def large(resources: int) -> Body:
    """Workload 3."""
    record = large_record(resources)
    return Body(
        f"patient-view-{resources}",
        "iliac-workup-patient-view",
        _hook_body("patient-view", record.prefetch()),
        record,
    )


def no_prefetch(fhir_server: str) -> Body:
    """Workload 4: nothing prefetched; the service fetches the workload-1 record from `fhir_server`."""
    record = typical_record()
    body = _hook_body("patient-view", None, fhirServer=fhir_server)
    return Body("patient-view-fhir-server", "iliac-workup-patient-view", body, record)
