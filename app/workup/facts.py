"""Frozen facts extracted from FHIR resources: the only input the rules see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    """Laterality of a fact or card; bilateral findings count for both legs."""

    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"

    def covers(self, leg: Side) -> bool:
        """True when a fact on this side concerns `leg` (a bilateral fact concerns both)."""
        return self is leg or self is Side.BILATERAL

    @property
    def legs(self) -> tuple[Side, ...]:
        return (Side.LEFT, Side.RIGHT) if self is Side.BILATERAL else (self,)


LEGS = (Side.LEFT, Side.RIGHT)


class Status(StrEnum):
    """Normalised resource status; entered-in-error, refuted and cancelled resources never become facts."""

    FINAL = "final"
    PRELIMINARY = "preliminary"
    ACTIVE = "active"
    INACTIVE = "inactive"
    COMPLETED = "completed"
    DRAFT = "draft"
    ORDERED = "ordered"
    DO_NOT_PERFORM = "do-not-perform"


@dataclass(frozen=True)
class Measure:
    """A quantity normalised to the canonical unit of its family (mm, %, g/dL) per R00b."""

    family: str
    raw_value: Decimal
    raw_unit: str
    value: Decimal | None
    unit: str | None

    @property
    def usable(self) -> bool:
        return self.value is not None

    @property
    def converted(self) -> bool:
        return self.usable and self.raw_unit != self.unit


@dataclass(frozen=True)
class Fact:
    """One clinically meaningful statement from one resource (or one component of it)."""

    kind: str
    label: str
    source: str
    resource_type: str
    status: Status
    side: Side | None = None
    side_specific: bool = False
    laterality_conflict: bool = False
    sites: frozenset[str] = frozenset()
    segment: str | None = None
    value: str | None = None
    measure: Measure | None = None
    number: Decimal | None = None
    value_date: datetime | None = None
    date: datetime | None = None
    tags: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset()
    draft: bool = False
    selected: bool = False
    links: tuple[str, ...] = ()
    part_of: str | None = None
    # Condition.recordedDate: when the diagnosis was made (R05a "diagnosed <= 30 days").
    recorded: datetime | None = None

    def on(self, leg: Side) -> bool:
        """True when this fact has a side that covers `leg`."""
        return self.side is not None and self.side.covers(leg)

    @property
    def is_result(self) -> bool:
        return self.status in (Status.FINAL, Status.COMPLETED)

    @property
    def is_active(self) -> bool:
        return self.status is Status.ACTIVE


@dataclass(frozen=True)
class FactSet:
    """All facts of one request plus what extraction had to drop."""

    facts: tuple[Fact, ...]
    invalid_resources: int = 0
    stale: tuple[Fact, ...] = field(default=())

    def of(self, *kinds: str) -> tuple[Fact, ...]:
        wanted = set(kinds)
        return tuple(f for f in self.facts if f.kind in wanted)

    def tagged(self, tag: str) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if tag in f.tags)
