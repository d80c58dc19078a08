"""Per-leg workup state: pathway stage, supporting facts, what is missing and the next steps."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.workup.derived import Derived
from app.workup.facts import LEGS, Fact, Side
from app.workup.jsontypes import JsonObject, JsonValue
from app.workup.rules.base import Finding


class Stage(StrEnum):
    """Pathway stage, from first symptoms to post-stent follow-up (furthest reached wins)."""

    NONE = "none"
    SYMPTOMS = "symptoms"
    DVT_EXCLUDED = "dvt-excluded"
    DVT_CONFIRMED = "dvt-confirmed"
    PELVIC_IMAGING = "pelvic-imaging"
    VENOGRAPHY_IVUS = "venography-ivus"
    TREATMENT_DECISION = "treatment-decision"
    POST_STENT = "post-stent"


STAGE_TEXT = {
    Stage.NONE: "no findings",
    Stage.SYMPTOMS: "symptoms, DVT not excluded",
    Stage.DVT_EXCLUDED: "DVT excluded",
    Stage.DVT_CONFIRMED: "DVT confirmed",
    Stage.PELVIC_IMAGING: "pelvic imaging done",
    Stage.VENOGRAPHY_IVUS: "IVUS done",
    Stage.TREATMENT_DECISION: "stent drafted",
    Stage.POST_STENT: "stent in situ",
}


@dataclass(frozen=True)
class FactRef:
    """A fact as shown in the state: what, where from, when."""

    kind: str
    label: str
    source: str
    status: str
    date: str | None
    value: str | None

    @classmethod
    def of(cls, fact: Fact) -> FactRef:
        value = fact.value
        if fact.measure is not None and fact.measure.value is not None:
            value = f"{fact.measure.value.normalize():f} {fact.measure.unit}"
        elif fact.number is not None:
            value = f"{fact.number:f}"
        return cls(
            fact.kind,
            fact.label,
            fact.source,
            fact.status.value,
            fact.date.isoformat() if fact.date else None,
            value,
        )

    def to_json(self) -> JsonObject:
        return {
            "kind": self.kind,
            "label": self.label,
            "source": self.source,
            "status": self.status,
            "date": self.date,
            "value": self.value,
        }


@dataclass(frozen=True)
class LegState:
    """The workup of one leg."""

    side: Side
    stage: Stage
    symptomatic: bool
    dvt_active: bool
    dvt_excluded: bool
    pelvic_imaging: bool
    ivus: bool
    stent_drafted: bool
    stent_in_situ: bool
    facts: tuple[FactRef, ...]
    missing: tuple[str, ...]
    next_steps: tuple[str, ...]

    @property
    def affected(self) -> bool:
        return self.symptomatic or bool(self.facts)

    def to_json(self) -> JsonObject:
        return {
            "side": self.side.value,
            "stage": self.stage.value,
            "symptomatic": self.symptomatic,
            "dvtActive": self.dvt_active,
            "dvtExcluded": self.dvt_excluded,
            "pelvicImaging": self.pelvic_imaging,
            "ivus": self.ivus,
            "stentDrafted": self.stent_drafted,
            "stentInSitu": self.stent_in_situ,
            "facts": [f.to_json() for f in self.facts],
            "missing": list(self.missing),
            "nextSteps": list(self.next_steps),
        }


@dataclass(frozen=True)
class WorkupState:
    """Both legs plus the patient-level facts every leg depends on."""

    legs: tuple[LegState, ...]
    pregnant: bool
    systemic_edema_causes: tuple[str, ...]
    anticoagulated: bool
    anticoagulation_contraindicated: bool
    vte_history: bool
    unlateralised: tuple[str, ...]
    stale: tuple[FactRef, ...]
    invalid_resources: int

    @property
    def under_way(self) -> bool:
        """An iliac workup is under way when any leg has symptoms or findings."""
        return any(leg.affected for leg in self.legs)

    def leg(self, side: Side) -> LegState:
        return next(leg for leg in self.legs if leg.side is side)

    def to_json(self) -> JsonObject:
        legs: list[JsonValue] = [leg.to_json() for leg in self.legs]
        return {
            "underWay": self.under_way,
            "legs": legs,
            "pregnant": self.pregnant,
            "systemicEdemaCauses": list(self.systemic_edema_causes),
            "anticoagulated": self.anticoagulated,
            "anticoagulationContraindicated": self.anticoagulation_contraindicated,
            "vteHistory": self.vte_history,
            "unlateralised": list(self.unlateralised),
            "stale": [f.to_json() for f in self.stale],
            "invalidResources": self.invalid_resources,
        }


def build_state(
    d: Derived, findings: list[Finding], titles: dict[str, str]
) -> WorkupState:
    """Summarise the derived facts and the surviving findings per leg."""
    facts = d.facts
    return WorkupState(
        legs=tuple(_leg(d, leg, findings, titles) for leg in LEGS),
        pregnant=d.pregnant,
        systemic_edema_causes=tuple(c.label for c in d.systemic_edema_causes),
        anticoagulated=d.anticoag_active,
        anticoagulation_contraindicated=d.anticoag_contraindicated,
        vte_history=d.vte_history,
        unlateralised=tuple(
            dict.fromkeys(
                f.source for f in facts.facts if f.side_specific and f.side is None
            )
        ),
        stale=tuple(FactRef.of(f) for f in facts.stale),
        invalid_resources=facts.invalid_resources,
    )


def _leg(
    d: Derived, leg: Side, findings: list[Finding], titles: dict[str, str]
) -> LegState:
    dvt_active = bool(d.dvt_active(leg))
    excluded = (
        d.dvt_excluded_fempop(leg) is not None or d.dvt_excluding_xsec(leg) is not None
    )
    pelvic = bool(d.pelvic_xsec(leg)) or d.iliac_us_adequate_negative(leg) is not None
    ivus = d.ivus(leg) is not None
    drafted = bool(d.stent_drafts(leg))
    in_situ = d.stent_in_situ(leg) is not None
    symptomatic = d.symptomatic(leg)
    flags = [
        (in_situ, Stage.POST_STENT),
        (drafted, Stage.TREATMENT_DECISION),
        (dvt_active, Stage.DVT_CONFIRMED),
        (ivus, Stage.VENOGRAPHY_IVUS),
        (pelvic, Stage.PELVIC_IMAGING),
        (excluded, Stage.DVT_EXCLUDED),
        (symptomatic, Stage.SYMPTOMS),
    ]
    stage = next((s for on, s in flags if on), Stage.NONE)
    missing = []
    if symptomatic and not (excluded or dvt_active):
        missing.append("DVT-excluding duplex within 30 days")
    if drafted and not ivus:
        missing.append("IVUS of this leg within 90 days")
    steps = tuple(
        f"{f.rule_id}: {titles[f.rule_id]}"
        for f in findings
        if f.side is not None and leg in f.side.legs
    )
    refs = tuple(
        FactRef.of(f) for f in d.facts.facts if f.on(leg) and f.part_of is None
    )
    return LegState(
        leg,
        stage,
        symptomatic,
        dvt_active,
        excluded,
        pelvic,
        ivus,
        drafted,
        in_situ,
        refs,
        tuple(missing),
        tuple(dict.fromkeys(steps)),
    )
