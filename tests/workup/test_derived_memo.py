"""Derived predicates answer each question once per request, keyed by every argument."""

from __future__ import annotations

from app.workup.derived import Derived
from app.workup.facts import FactSet, Side
from app.workup.memo import per_call
from tests.workup.factories import NOW, catalog


class Counting(Derived):
    calls: list[tuple[object, ...]]

    @per_call
    def probe(self, leg: Side, *, unsided: bool = False) -> tuple[str, bool]:
        self.calls.append((leg, unsided))
        return (leg.value, unsided)


def test_same_question_is_answered_once_and_arguments_are_told_apart() -> None:
    derived = Counting(FactSet((), 0), catalog(), NOW)
    derived.calls = []

    answers = [
        derived.probe(Side.LEFT),
        derived.probe(Side.LEFT),
        derived.probe(Side.RIGHT),
        derived.probe(Side.LEFT, unsided=True),
        derived.probe(Side.LEFT, unsided=True),
    ]

    assert answers == [
        ("left", False),
        ("left", False),
        ("right", False),
        ("left", True),
        ("left", True),
    ]
    assert derived.calls == [
        (Side.LEFT, False),
        (Side.RIGHT, False),
        (Side.LEFT, True),
    ]


def test_answers_are_per_request() -> None:
    first = Counting(FactSet((), 0), catalog(), NOW)
    second = Counting(FactSet((), 0), catalog(), NOW)
    first.calls, second.calls = [], []

    first.probe(Side.LEFT)
    second.probe(Side.LEFT)

    assert len(first.calls) == len(second.calls) == 1
