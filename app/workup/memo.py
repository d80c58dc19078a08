"""Per-request memory for the derived predicates (`Derived`, `DevicePredicates`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

_Method = TypeVar("_Method", bound=Callable[..., object])


class Answers(Protocol):
    _answers: dict[tuple[object, ...], object]


def per_call(method: _Method) -> _Method:
    """Remembers a predicate's answer for this request: the facts never change after extraction, and rules ask
    the same questions many times (several rules ask DVT_ACTIVE(leg), for one). Arguments must be hashable and
    answers immutable (tuples, facts, dates)."""
    name = method.__name__

    @functools.wraps(method)
    def remembered(self: Answers, *args: object, **kwargs: object) -> object:
        key = (name, args, tuple(sorted(kwargs.items())) if kwargs else ())
        try:
            return self._answers[key]
        except KeyError:
            answer = self._answers[key] = method(self, *args, **kwargs)
            return answer

    return cast(_Method, remembered)
