"""The read memo: a resource seen again is neither validated nor read again, and nothing stale is served."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app.catalog.index import Catalog
from app.workup import extract as extract_module
from app.workup.extract import extract_facts
from app.workup.facts import FactSet, Side
from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    NOW,
    catalog,
    condition,
    lab,
    stent_order,
)

CATALOG = catalog()


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    extract_module._READ.clear()
    yield
    extract_module._READ.clear()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the validations and the reads done behind the memo."""
    calls = {"validate": 0, "read": 0}
    validates, read = extract_module._validates, extract_module._read

    def counting_validates(*args: Any) -> bool:
        calls["validate"] += 1
        return validates(*args)

    def counting_read(*args: Any) -> Any:
        calls["read"] += 1
        return read(*args)

    monkeypatch.setattr(extract_module, "_validates", counting_validates)
    monkeypatch.setattr(extract_module, "_read", counting_read)
    return calls


def run(
    *resources: JsonObject,
    drafts: tuple[JsonObject, ...] = (),
    selections: tuple[str, ...] = (),
    cat: Catalog = CATALOG,
) -> FactSet:
    return extract_facts(
        resources=copy.deepcopy(resources),  # a new request decodes new objects
        draft_orders=copy.deepcopy(drafts),
        selections=selections,
        catalog=cat,
        now=NOW,
    )


def test_a_resource_seen_again_is_not_validated_or_read_again(
    counted: dict[str, int],
) -> None:
    swelling = condition("R22.42", id="c1")
    first = run(swelling)
    assert counted == {"validate": 1, "read": 1}
    second = run(swelling)
    assert counted == {"validate": 1, "read": 1}
    assert second == first
    assert [f.side for f in second.facts] == [Side.LEFT]


def test_an_edited_resource_is_validated_and_read_afresh(
    counted: dict[str, int],
) -> None:
    creatinine = lab("2160-0", quantity=(1.1, "mg/dL"))
    before = run(creatinine)
    edited = lab("2160-0", quantity=(2.4, "mg/dL")) | {"id": creatinine["id"]}
    after = run(edited)
    assert counted == {"validate": 2, "read": 2}
    (old,) = before.facts
    (new,) = after.facts
    assert (old.number, new.number) == (Decimal("1.1"), Decimal("2.4"))


def test_an_invalid_resource_stays_invalid_and_is_validated_once(
    counted: dict[str, int],
) -> None:
    bad = condition("R22.42", id="c1") | {"bogusField": 1}
    assert run(bad).invalid_resources == 1
    again = run(bad)
    assert again.invalid_resources == 1
    assert again.facts == ()
    assert counted == {"validate": 1, "read": 0}


def test_the_same_resource_read_as_a_draft_or_selected_is_read_that_way(
    counted: dict[str, int],
) -> None:
    stent = stent_order("left", id="sr1")
    as_record = run(stent)
    as_draft = run(drafts=(stent,))
    as_selected = run(drafts=(stent,), selections=("ServiceRequest/sr1",))
    assert counted == {"validate": 1, "read": 3}
    assert {f.draft for f in as_record.facts} == {False}
    assert {f.draft for f in as_draft.facts} == {True}
    assert {f.selected for f in as_draft.facts} == {False}
    assert {f.selected for f in as_selected.facts} == {True}
    assert run(drafts=(stent,)) == as_draft
    assert counted["read"] == 3


def test_another_catalogue_forgets_what_was_read(counted: dict[str, int]) -> None:
    swelling = condition("R22.42", id="c1")
    run(swelling)
    run(swelling, cat=dataclasses.replace(CATALOG))  # another Catalog object
    assert counted == {"validate": 2, "read": 2}


def test_resources_without_id_are_remembered_under_their_place(
    counted: dict[str, int],
) -> None:
    left = condition("R22.42")
    right = condition("R22.41")
    del left["id"], right["id"]
    first = run(left, right)
    assert [f.source for f in first.facts] == ["Condition/#1", "Condition/#2"]
    swapped = run(right, left)
    assert [(f.source, f.side) for f in swapped.facts] == [
        ("Condition/#1", Side.RIGHT),
        ("Condition/#2", Side.LEFT),
    ]
    assert counted["validate"] == 2


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    small = extract_module._ReadMemo(maxsize=2)
    monkeypatch.setattr(extract_module, "_READ", small)
    for n in range(5):
        run(condition("R22.42", id=f"c{n}"))
    assert len(small._entries) == 2
