"""What a rule is: an id, its source keys and a pure function from context to findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.catalog.index import Catalog
from app.workup.derived import Derived
from app.workup.facts import Fact, FactSet, Side, Status

PATIENT_VIEW = "patient-view"
ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"


@dataclass(frozen=True)
class Finding:
    """A rule that fired for one side (None = patient level); rendered into one card.

    Attributes:
        rule_id: the card id, e.g. "R09".
        side: the leg the card concerns; None for patient-level cards.
        variant: the card variant (indicator + summary) to use.
        params: values for the summary placeholders.
        evidence: references of the facts that made the rule fire.
        reasons: references for the suggested orders' reasonReference.
        targets: draft-order references a delete action removes.
        suggestion_set: which suggestion set of the card to offer.
        notes: extra detail lines (markdown), e.g. "computed".
        key: tells apart several cards of one rule on one side (R00a: one per resource).
    """

    rule_id: str
    side: Side | None
    variant: str = "default"
    params: Mapping[str, str] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    suggestion_set: str = "default"
    notes: tuple[str, ...] = ()
    key: str | None = None


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read; rules never see raw FHIR."""

    hook: str
    now: datetime
    facts: FactSet
    derived: Derived
    catalog: Catalog
    selections: frozenset[str]
    findings: tuple[Finding, ...] = ()

    @property
    def order_hook(self) -> bool:
        return self.hook in (ORDER_SELECT, ORDER_SIGN)

    def triggering(self, fact: Fact) -> bool:
        """Whether a draft order is under review: order-select checks only the selected orders."""
        if self.hook != ORDER_SELECT or not self.selections:
            return True
        if fact.selected:
            return True
        # Selecting the DeviceRequest of a stent selects the stent order it belongs to.
        return any(
            f.selected and fact.source in f.links for f in self.facts.facts if f.draft
        )

    def under_review(self, fact: Fact) -> bool:
        """A draft order still in draft status that this hook call is checking (see `triggering`)."""
        return fact.draft and fact.status is Status.DRAFT and self.triggering(fact)

    def references(self, facts: Iterable[Fact]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.source for f in facts))

    def conditions(self, facts: Iterable[Fact]) -> tuple[str, ...]:
        """References usable as reasonReference (Conditions and Observations)."""
        return self.references(
            f
            for f in facts
            if f.resource_type in ("Condition", "Observation") and "#" not in f.source
        )


Evaluate = Callable[[RuleContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A registered rule. `after_others` rules (R00c) also receive the other rules' findings."""

    id: str
    sources: tuple[str, ...]
    evaluate: Evaluate
    after_others: bool = False
