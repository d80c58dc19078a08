"""Selection of relevant resources: the inlined coding reader and the memo of known codes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.workup import extract
from app.workup.jsontypes import JsonObject, codings
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
    extract._known_memo.clear()
    first = [extract._relevant(r, catalog) for r in resources]
    again = [extract._relevant(r, catalog) for r in resources]
    direct = [
        any(catalog.index.knows(s, c) for s, c in extract.primary_codings(r))
        for r in resources
    ]
    assert first == again == direct
    memo = extract._known_codes(catalog.index)
    assert set(memo) == {("http://loinc.org", "718-7"), ("http://loinc.org", "39432-0")}


def test_known_code_memo_is_bounded(monkeypatch: Any) -> None:
    catalog = load_test_catalog()
    monkeypatch.setattr(extract, "_KNOWN_CODES_MAX", 3)
    extract._known_memo.clear()
    for i in range(10):
        extract._relevant(
            {
                "resourceType": "Observation",
                "code": {"coding": [{"system": "s", "code": str(i)}]},
            },
            catalog,
        )
    assert len(extract._known_codes(catalog.index)) <= 3
