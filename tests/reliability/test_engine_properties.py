"""Property tests of the clinical engine on arbitrary, well-shaped FHIR: it never crashes, it emits only
spec-valid cards, and resources whose codes the mappings do not know never change its advice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.cds.schemas import CdsResponse
from app.catalog.index import Catalog
from app.catalog.loader import load_catalog
from app.config import Settings
from app.workup.engine import LinkConfig, WorkupInput, run_workup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PATIENT = "pat-prop-001"
UNKNOWN_SYSTEM = "http://example.org/fhir/CodeSystem/not-mapped"
SIDES = {"left": "7771000", "right": "24028007", "bilateral": "51440002"}
LATERALITY_URL = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier"
)
SETTINGS = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _load() -> Catalog:
    s = Settings(_env_file=None)
    return load_catalog(
        cards_dir=s.cards_dir,
        mappings_dir=s.mappings_dir,
        local_system=s.local_code_system,
    )


CATALOG = _load()
KNOWN_CODES = sorted(CATALOG.index.exact)


def codings(known: bool) -> st.SearchStrategy[dict[str, str]]:
    unknown = st.builds(
        lambda code: {"system": UNKNOWN_SYSTEM, "code": code},
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12),
    )
    if not known:
        return unknown
    mapped = st.sampled_from(KNOWN_CODES).map(
        lambda sc: {"system": sc[0], "code": sc[1]}
    )
    return st.one_of(mapped, unknown)


dates = st.dates(min_value=date(2015, 1, 1), max_value=date(2026, 3, 1)).map(
    lambda d: d.isoformat()
)
side_ext = st.sampled_from([None, *SIDES.values()]).map(
    lambda code: (
        []
        if code is None
        else [
            {
                "url": LATERALITY_URL,
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": code}]
                },
            }
        ]
    )
)
quantity = st.one_of(
    st.none(),
    st.builds(
        lambda value, unit: {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        st.decimals(min_value=-5, max_value=500, places=1, allow_nan=False).map(float),
        st.sampled_from(["mm", "cm", "%", "g/dL", "mm[Hg]", "1", "furlong"]),
    ),
)


@st.composite
def resources(draw: st.DrawFn, *, known: bool = True) -> dict[str, Any]:
    n = draw(st.integers(min_value=0, max_value=10**6))
    code = {"coding": draw(st.lists(codings(known), min_size=1, max_size=2))}
    body_site: dict[str, Any] = {
        "coding": [draw(codings(known))],
        "extension": draw(side_ext),
    }
    if draw(st.booleans()):
        return {
            "resourceType": "Condition",
            "id": f"cond-{n}",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": draw(
                            st.sampled_from(["active", "resolved", "inactive"])
                        ),
                    }
                ]
            },
            "code": code,
            "bodySite": [body_site],
            "subject": {"reference": f"Patient/{PATIENT}"},
            "onsetDateTime": draw(dates),
        }
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": draw(
            st.sampled_from(["final", "preliminary", "amended", "entered-in-error"])
        ),
        "code": code,
        "bodySite": body_site,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": draw(dates),
    }
    value = draw(quantity)
    if value is not None:
        observation["valueQuantity"] = value
    elif draw(st.booleans()):
        observation["valueCodeableConcept"] = {"coding": [draw(codings(known))]}
    return observation


def run(hook: str, record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = run_workup(
        WorkupInput(
            hook=hook,
            now=NOW,
            patient_id=PATIENT,
            resources=tuple(record),
            draft_orders=(),
            selections=(),
            links=LinkConfig(rules_url="http://cds.test/rules"),
        ),
        CATALOG,
    )
    return list(result.cards)


def advice(cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"]) for c in cards)


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
class TestEngineProperties:
    @SETTINGS
    @given(record=st.lists(resources(), max_size=12))
    def test_never_crashes_and_emits_spec_valid_cards(
        self, hook: str, record: list[dict[str, Any]]
    ) -> None:
        cards = run(hook, record)
        CdsResponse.model_validate({"cards": cards})
        for card in cards:
            assert len(card["summary"]) <= 140

    @SETTINGS
    @given(
        record=st.lists(resources(), max_size=10),
        noise=st.lists(resources(known=False), min_size=1, max_size=3),
    )
    def test_unmapped_codes_never_change_the_advice(
        self, hook: str, record: list[dict[str, Any]], noise: list[dict[str, Any]]
    ) -> None:
        for i, resource in enumerate(noise):
            resource["id"] = f"noise-{i}"
        assert advice(run(hook, record + noise)) == advice(run(hook, record))
