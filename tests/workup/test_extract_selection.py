"""Selection of relevant resources: the inlined coding reader and the memo of known codes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.catalog import index as catalog_index
from app.workup import extract
from app.workup.jsontypes import JsonObject, codings
from bench.workloads import large, order_sign, patient_view
from tests.workup.factories import REPO
from tests.workup.factories import catalog as load_test_catalog

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(["", "x", "8867-4"])
)
_coding = st.dictionaries(
    st.sampled_from(["system", "code", "display"]),
    st.one_of(_scalars, st.sampled_from(["http://loinc.org", "72275-4"])),
)
_concept = st.one_of(
    _scalars,
    _coding,
    st.lists(_coding, max_size=3),
    st.fixed_dictionaries(
        {},
        optional={
            "coding": st.one_of(
                _scalars, _coding, st.lists(st.one_of(_coding, _scalars), max_size=4)
            ),
            "code": st.one_of(_scalars, st.just("I82.4")),
            "system": _scalars,
            "text": st.just("t"),
        },
    ),
)


@given(_concept)
def test_pairs_reads_like_jsontypes_codings(concept: Any) -> None:
    expected = codings(concept if isinstance(concept, dict) else None)
    assert extract._pairs(concept) == expected


def test_known_code_memo_gives_the_index_answers() -> None:
    catalog = load_test_catalog()
    resources: list[JsonObject] = [
        {
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": c}]},
        }
        for c in ("718-7", "39432-0", "718-7", "39432-0")
    ]
    catalog.index._known.clear()
    first = [extract._relevant(r, catalog) for r in resources]
    again = [extract._relevant(r, catalog) for r in resources]
    direct = [_direct(r) for r in resources]
    assert first == again == direct
    assert set(catalog.index._known) == {
        ("http://loinc.org", "718-7"),
        ("http://loinc.org", "39432-0"),
    }


def test_known_code_memo_is_bounded(monkeypatch: Any) -> None:
    catalog = load_test_catalog()
    monkeypatch.setattr(catalog_index, "KNOWN_CODES_MAX", 3)
    catalog.index._known.clear()
    for i in range(10):
        extract._relevant(
            {
                "resourceType": "Observation",
                "code": {"coding": [{"system": "s", "code": str(i)}]},
            },
            catalog,
        )
    assert len(catalog.index._known) <= 3


def _direct(resource: JsonObject) -> bool:
    # The plain definition, without the index's memo.
    index = load_test_catalog().index
    return any(index._lookup_known(s, c) for s, c in extract.primary_codings(resource))


# Mapped codes (duplex LOINC, leg swelling ICD-10) and near misses, so that both answers are drawn often.
_known_coding = st.sampled_from(
    [
        ("http://loinc.org", "39432-0"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "R22.42"),
        ("http://loinc.org", "718-7"),
        ("http://loinc.org", "R22.42"),
        ("x", "39432-0"),
    ]
).map(lambda pair: {"system": pair[0], "code": pair[1]})
_any_concept = st.one_of(
    _concept,
    _known_coding,  # a bare Coding where a CodeableConcept belongs
    st.fixed_dictionaries(
        {
            "coding": st.one_of(
                _known_coding, st.lists(st.one_of(_known_coding, _scalars), max_size=3)
            )
        },
        optional={"code": st.sampled_from(["R22.42", "x"]), "system": _scalars},
    ),
)
_resource = st.fixed_dictionaries(
    {
        "resourceType": st.one_of(
            st.sampled_from([*extract._MODELS, "ImagingStudy", "Patient", "Bundle"]),
            _scalars,
        )
    },
    optional={
        "code": _any_concept,
        "medicationCodeableConcept": _any_concept,
        "codeCodeableConcept": _any_concept,
        "component": st.one_of(
            _scalars,
            st.lists(
                st.one_of(st.fixed_dictionaries({"code": _any_concept}), _scalars),
                max_size=3,
            ),
        ),
        "conclusionCode": st.one_of(_any_concept, st.lists(_any_concept, max_size=2)),
        "procedureCode": st.one_of(_any_concept, st.lists(_any_concept, max_size=2)),
        "modality": st.one_of(_any_concept, st.lists(_any_concept, max_size=2)),
        "series": st.one_of(
            _scalars,
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({}, optional={"modality": _any_concept}),
                    _scalars,
                ),
                max_size=3,
            ),
        ),
    },
)


@settings(max_examples=400)
@given(_resource)
def test_relevance_is_any_known_primary_coding(resource: Any) -> None:
    assert extract._relevant(resource, load_test_catalog()) == _direct(resource)


def test_relevance_on_every_scenario_and_bench_resource() -> None:
    resources: list[JsonObject] = []
    for body in (patient_view().body, order_sign().body, large(500).body):
        for bundle in body["prefetch"].values():
            if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
                resources += [e["resource"] for e in bundle.get("entry", [])]
            elif isinstance(bundle, dict):
                resources.append(bundle)
    for path in sorted((REPO / "tests" / "scenarios").glob("*.json")):
        resources += _resources_in(json.loads(path.read_text()))
    assert len(resources) > 1000
    catalog = load_test_catalog()
    relevant = [extract._relevant(r, catalog) for r in resources]
    assert relevant == [_direct(r) for r in resources]
    assert any(relevant)
    assert not all(relevant)


def _resources_in(value: Any) -> list[JsonObject]:
    # Every JSON object carrying a resourceType, wherever it sits in a scenario file.
    if isinstance(value, list):
        return [r for item in value for r in _resources_in(item)]
    if not isinstance(value, dict):
        return []
    found = [value] if isinstance(value.get("resourceType"), str) else []
    return found + [r for item in value.values() for r in _resources_in(item)]
