"""Derived facts of clinical-rules.md §2.4: one definition of each predicate, shared by every rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from app.catalog.index import Catalog
from app.workup.derived_devices import DevicePredicates, Ivus, StentDraft, date_key
from app.workup.facts import Fact, FactSet, Side, Status
from app.workup.fhirread import age_days
from app.workup.memo import per_call

THROMBUS = frozenset({"thrombus"})
NEGATIVE = "no-thrombus"
LEG_US_KINDS = frozenset({"duplex-leg"})
US_KINDS = frozenset({"duplex-leg", "duplex-iliac"})
PROXIMAL = frozenset({"iliac", "ivc", "fempop", "proximal"})
ILIAC = frozenset({"iliac", "ivc"})
FEMPOP_OR_LEG = frozenset({"fempop", "calf", "leg"})
CFV_ABNORMAL_VALUES = frozenset({"non-phasic-continuous", "asymmetric"})
CHRONIC = "chronic-post-thrombotic-change"
# Venous segments a result can speak about (R00d).
SEGMENTS = frozenset({"iliac", "ivc", "fempop", "calf"})
_BEYOND_C2 = frozenset({"ulcer", "skin-change"})
_CEAP = re.compile(r"^C(?P<cls>[0-6])(?P<sub>[abcr]?)(?P<sym>[sa]?)$", re.IGNORECASE)
_EDEMA_CAUSE_ORDER = (
    "heart-failure",
    "chronic-kidney-disease",
    "nephrotic-syndrome",
    "liver-disease",
    "hypoalbuminemia",
    "edema-drug",
    "lymphedema",
)


def ceap_class(value: str | None) -> int | None:
    """Clinical class number of a CEAP C token such as `C4a`, `C2r`, `C3s`."""
    match = _CEAP.match(value or "")
    return int(match.group("cls")) if match else None


@dataclass(frozen=True)
class Cause:
    """A systemic cause of edema (SYSTEMIC_EDEMA_CAUSE) with the fact that shows it."""

    kind: str
    label: str
    fact: Fact


class Derived(DevicePredicates):
    """Predicates over one request's facts, evaluated at `now` with the catalogue's windows."""

    def __init__(self, facts: FactSet, catalog: Catalog, now: datetime) -> None:
        self.facts = facts
        self.catalog = catalog
        self.now = now
        self.windows = catalog.settings.windows
        self.thresholds = catalog.settings.thresholds
        self._answers: dict[tuple[object, ...], object] = {}

    # -- helpers -------------------------------------------------------------------------------
    def age(self, fact: Fact) -> int | None:
        return age_days(fact.date, self.now) if fact.date is not None else None

    def within(self, fact: Fact, days: int) -> bool:
        age = self.age(fact)
        return age is not None and age <= days

    def groups(self, fact: Fact) -> frozenset[str]:
        """Site tokens of a fact expanded to their groups (civ -> iliac, pelvic-region ...)."""
        found: set[str] = set()
        for token in fact.sites:
            found |= self.catalog.index.site_groups(token)
        return frozenset(found)

    def _on(self, fact: Fact, leg: Side, *, unsided: bool = False) -> bool:
        return fact.on(leg) or (
            unsided and fact.side is None and not fact.laterality_conflict
        )

    @per_call
    def _record(self, *kinds: str) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts.of(*kinds) if not f.draft)

    # -- symptoms ------------------------------------------------------------------------------
    @per_call
    def symptom_facts(self, leg: Side) -> tuple[Fact, ...]:
        """Facts that make SYMPTOMATIC(leg) true."""
        return tuple(
            f
            for f in self.facts.facts
            if not f.draft and f.on(leg) and self._is_symptom(f)
        )

    def _is_symptom(self, fact: Fact) -> bool:
        if "symptom" in fact.tags:
            return fact.status in (Status.ACTIVE, Status.FINAL)
        if fact.status is not Status.FINAL:
            return False
        if fact.kind == "ceap-c":
            cls = ceap_class(fact.value)
            return cls is not None and cls >= self.thresholds.ceap_symptomatic_class
        if fact.kind == "villalta-total":
            return (
                fact.number is not None
                and fact.number >= self.thresholds.villalta_symptomatic
            )
        return False

    def symptomatic(self, leg: Side) -> bool:
        return bool(self.symptom_facts(leg))

    @per_call
    def current_symptoms(self, leg: Side) -> tuple[Fact, ...]:
        """Symptoms still active, or documented within the symptom window (R01: onset <= 6 months)."""
        return tuple(
            f
            for f in self.symptom_facts(leg)
            if f.is_active or self.within(f, self.windows.symptom_recent_days)
        )

    @per_call
    def symptom_onset(self, leg: Side) -> datetime | None:
        """Current symptom onset: the latest onset of an active symptom or a symptom-onset record."""
        # Only a Condition's onset dates a symptom; an Observation's date is when it was documented.
        dates = [
            f.date
            for f in self.current_symptoms(leg)
            if f.date is not None
            and f.resource_type == "Condition"
            and "no-onset" not in f.tags
        ]
        dates += [
            f.value_date
            for f in self._record("symptom-onset")
            if f.on(leg) and f.value_date
        ]
        return max(dates) if dates else None

    def bilateral_symptoms(self) -> bool:
        return self.symptomatic(Side.LEFT) and self.symptomatic(Side.RIGHT)

    @per_call
    def minimal_or_no_symptoms(self, leg: Side) -> bool:
        """No symptoms, or only CEAP C0-C2-level disease without documented QoL impact."""
        symptoms = self.symptom_facts(leg)
        if not symptoms:
            return not self._genital_edema(leg)
        # Varicose veins with ulcer or skin changes are C4-C6 disease, not "C0-C2 only".
        low = all(
            f.kind == "varicose-veins" and not f.tags & _BEYOND_C2 for f in symptoms
        )
        return low and not self._qol_impact(leg)

    def _genital_edema(self, leg: Side) -> bool:
        return any(
            self._on(f, leg, unsided=True) and f.is_active
            for f in self._record("genital-edema")
        )

    def _qol_impact(self, leg: Side) -> bool:
        return any(
            self._on(f, leg, unsided=True) and f.value in ("moderate", "severe")
            for f in self._record("qol-impact")
        )

    @per_call
    def whole_leg_swelling(self, leg: Side) -> tuple[Fact, ...]:
        """WHOLE_LEG_SWELLING(leg): extent = whole leg, or swelling recorded at thigh level."""
        return tuple(
            f
            for f in self.symptom_facts(leg)
            if "edema" in f.tags
            and (f.value == "whole-leg" or "thigh-level" in self.groups(f))
        )

    # -- DVT -----------------------------------------------------------------------------------
    @per_call
    def thrombus_results(self, leg: Side | None) -> tuple[Fact, ...]:
        """Final imaging results on `leg` (None: with no usable side) that state thrombus present or absent."""
        return tuple(
            f
            for f in self.facts.facts
            if f.is_result
            and self._placed(f, leg)
            and f.value in (NEGATIVE, "thrombus")
            and not f.draft
        )

    @staticmethod
    def _placed(fact: Fact, leg: Side | None) -> bool:
        return fact.on(leg) if leg is not None else fact.side is None

    def dvt_active(
        self, leg: Side, segment: frozenset[str] | None = None
    ) -> tuple[Fact, ...]:
        """DVT_ACTIVE(leg, segment): active DVT condition or final imaging showing acute thrombus."""
        return self._dvt(leg, segment)

    def dvt_active_unsided(
        self, segment: frozenset[str] | None = None
    ) -> tuple[Fact, ...]:
        """DVT_ACTIVE with no usable side (R00a): still a DVT for side-independent safety rules (R05a/R05c)."""
        return self._dvt(None, segment)

    @per_call
    def _dvt(
        self, leg: Side | None, segment: frozenset[str] | None
    ) -> tuple[Fact, ...]:
        found = [
            f
            for f in self._record("dvt")
            if f.is_active and self._placed(f, leg) and self._in_segment(f, segment)
        ]
        results = self.thrombus_results(leg)
        found += [
            f
            for f in results
            if f.value == "thrombus"
            and self._in_segment(f, segment)
            and not self._chronic(f)
            and not self._superseded(f, results)
        ]
        return tuple(found)

    def _chronic(self, positive: Fact) -> bool:
        """The thrombus of this study was aged as chronic post-thrombotic change (not an acute DVT).

        Only a thrombus-age result of the same study (same resource, linked, or same day and side) counts, and only
        when none of them says acute/subacute: an older "chronic" never hides a newer thrombus finding.
        """
        ages = [
            f
            for f in self._record("thrombus-age")
            if f.value and f.is_result and self._same_study(f, positive)
        ]
        return bool(ages) and all(f.value == CHRONIC for f in ages)

    @staticmethod
    def _same_study(age: Fact, result: Fact) -> bool:
        if age.source == result.source or age.part_of == result.source:
            return True
        if result.source in age.links or f"result:{age.source}" in result.links:
            return True
        if age.date is None or result.date is None:
            return False
        same_day = age.date.date() == result.date.date()
        return same_day and (age.side is None or age.side is result.side)

    def _in_segment(self, fact: Fact, segment: frozenset[str] | None) -> bool:
        if segment is None:
            return True
        groups = self.groups(fact)
        # A DVT with no stated segment may be proximal; treat it as proximal rather than dismiss it.
        return bool(groups & segment) or (segment == PROXIMAL and not groups & {"calf"})

    def coverage(self, fact: Fact) -> frozenset[str]:
        """Venous segments a result speaks about: its stated sites, else what the study covers (R00d)."""
        stated = self.groups(fact) & SEGMENTS
        if stated:
            return stated
        if fact.kind == "duplex-leg":
            return frozenset({"fempop", "calf"})
        if fact.kind == "venography":
            return frozenset({"iliac", "fempop"})
        if fact.kind == "duplex-iliac" or "pelvic-xsec" in fact.tags:
            return ILIAC
        return frozenset()

    def _superseded(self, positive: Fact, results: tuple[Fact, ...]) -> bool:
        """Every segment of the thrombus was re-imaged negative later, beyond the conflict window (R00d).

        A study only clears the segments it covers (a leg duplex: femoropopliteal and calf), and only where its
        modality ranks: duplex never clears an iliac/IVC thrombus seen on CT/MR/venography, CT/MR never clears a
        femoropopliteal thrombus seen on duplex. A thrombus of unknown extent is never cleared this way.
        """
        if positive.date is None:
            return False
        segments = self.coverage(positive)
        if not segments:
            return False
        cleared: set[str] = set()
        for other in results:
            if other.value != NEGATIVE or other.date is None:
                continue
            if (other.date - positive.date).days <= self.windows.conflict_days:
                continue
            cleared |= {
                s
                for s in self.coverage(other) & segments
                if _outranks(other, positive, s)
            }
        return segments <= cleared

    def in_duplex_window(self, fact: Fact, leg: Side) -> bool:
        """W_DUPLEX: on/after the current symptom onset and <= 30 days before now."""
        if not self.within(fact, self.windows.duplex_days) or fact.date is None:
            return False
        onset = self.symptom_onset(leg)
        return onset is None or age_days(fact.date, self.now) <= age_days(
            onset, self.now
        )

    @per_call
    def dvt_excluded_fempop(self, leg: Side, *, unsided: bool = False) -> Fact | None:
        """DVT_EXCLUDED_FEMPOP(leg): the latest final negative leg duplex within W_DUPLEX."""
        negatives = [
            f
            for f in self.facts.facts
            if f.kind in LEG_US_KINDS
            and f.is_result
            and f.value == NEGATIVE
            and self._on(f, leg, unsided=unsided)
            and self.in_duplex_window(f, leg)
            and (not f.sites or self.groups(f) & FEMPOP_OR_LEG)
        ]
        return max(negatives, key=date_key) if negatives else None

    @per_call
    def pelvic_xsec(
        self, leg: Side | None, days: int | None = None
    ) -> tuple[Fact, ...]:
        """CTV/MRV/contrast CT or MRI of the pelvis within W_XSEC (any result)."""
        window = self.windows.xsec_days if days is None else days
        return tuple(
            f
            for f in self.facts.tagged("pelvic-xsec")
            if f.is_result
            and not f.draft
            and (leg is None or f.side is None or f.on(leg))
            and self.within(f, window)
        )

    @per_call
    def dvt_excluding_xsec(self, leg: Side) -> Fact | None:
        """A negative CT/MR venography (pelvis, or leg runoff) within W_XSEC excludes DVT for R01."""
        runoff = [
            f
            for f in self.facts.tagged("leg-xsec")
            if f.is_result
            and not f.draft
            and (f.side is None or f.on(leg))
            and self.within(f, self.windows.xsec_days)
        ]
        found = [f for f in (*self.pelvic_xsec(leg), *runoff) if f.value == NEGATIVE]
        return max(found, key=date_key) if found else None

    @per_call
    def cfv_abnormal(self, leg: Side, *, unsided: bool = False) -> Fact | None:
        """CFV_ABNORMAL(leg): continuous/non-phasic/asymmetric CFV flow on a final duplex in W_DUPLEX."""
        for fact in sorted(self._record("cfv-waveform"), key=date_key, reverse=True):
            if fact.status is not Status.FINAL or not self._on(
                fact, leg, unsided=unsided
            ):
                continue
            if not self.in_duplex_window(fact, leg):
                continue
            if fact.value in CFV_ABNORMAL_VALUES:
                return fact
            # Absent flow with a thrombus already reported is DVT_ACTIVE, not CFV_ABNORMAL.
            if fact.value == "absent-flow" and not self.dvt_active(leg):
                return fact
        return None

    @per_call
    def iliac_us_adequate_negative(self, leg: Side) -> Fact | None:
        """ILIAC_US_ADEQUATE_NEGATIVE(leg): iliac veins adequately seen and negative (returns the study)."""
        seen = [
            f
            for f in self._record("iliac-visualization")
            if f.status is Status.FINAL and f.on(leg) and self.in_duplex_window(f, leg)
        ]
        if not seen or max(seen, key=date_key).value != "adequate":
            return None
        studies = [
            f
            for f in self.facts.facts
            if f.kind in US_KINDS
            and f.is_result
            and f.on(leg)
            and self.in_duplex_window(f, leg)
        ]
        if any(
            f.value in ("thrombus", "possible-thrombus", "stenosis", "compression")
            for f in studies
        ):
            return None
        negatives = [f for f in studies if f.value == NEGATIVE]
        return max(negatives, key=date_key) if negatives else None

    # -- patient level -------------------------------------------------------------------------
    @cached_property
    def anticoag_active(self) -> bool:
        return any(f.is_active for f in self._record("anticoagulant"))

    @cached_property
    def anticoag_contraindicated(self) -> bool:
        # A Condition counts while active; the clinician-asserted flag Observation when valueBoolean is true.
        flagged = any(
            f.is_active or (f.status is Status.FINAL and f.value == "true")
            for f in self._record("anticoagulation-contraindication")
        )
        refused = any(
            f.status is Status.DO_NOT_PERFORM and "has-reason" in f.tags
            for f in self._record("anticoagulant")
        )
        return flagged or refused

    @cached_property
    def systemic_edema_causes(self) -> tuple[Cause, ...]:
        """SYSTEMIC_EDEMA_CAUSE, in the order R06 names them."""
        found: dict[str, Cause] = {}
        for fact in self.facts.tagged("systemic-edema-cause"):
            if not fact.draft and fact.is_active:
                found.setdefault(fact.kind, Cause(fact.kind, fact.label, fact))
        low = self.thresholds.albumin_low_g_dl
        for fact in self._record("albumin"):
            value = fact.measure.value if fact.measure else None
            if fact.status is Status.FINAL and value is not None and value < low:
                found.setdefault(
                    "hypoalbuminemia", Cause("hypoalbuminemia", "low albumin", fact)
                )
        return tuple(found[k] for k in _EDEMA_CAUSE_ORDER if k in found)

    @cached_property
    def vte_history(self) -> bool:
        return any(
            not f.draft and ("vte-history" in f.tags or f.kind == "dvt")
            for f in self.facts.facts
            if f.resource_type == "Condition"
        )

    @cached_property
    def pregnant(self) -> bool:
        return any(f.is_active and not f.draft for f in self.facts.tagged("pregnancy"))

    @per_call
    def pelvic_mass(self, leg: Side) -> tuple[Fact, ...]:
        """PELVIC_MASS(leg): mass, pelvic lymphadenopathy or extrinsic compression on that side."""
        masses = [
            f
            for f in self.facts.tagged("mass")
            if f.is_active and self._on(f, leg, unsided=True)
        ]
        masses += [
            f
            for f in self._record("obstruction-etiology")
            if f.value == "extrinsic-mass" and f.on(leg)
        ]
        return tuple(masses)

    @per_call
    def stent_etiology(self, leg: Side) -> str:
        """NIVL vs post-thrombotic for a stented leg (recorded etiology first, else VTE_HISTORY)."""
        recorded = [
            f for f in self._record("obstruction-etiology") if f.on(leg) and f.value
        ]
        if recorded:
            return max(recorded, key=date_key).value or "nivl"
        return "post-thrombotic" if self.vte_history else "nivl"


def _is_duplex(fact: Fact) -> bool:
    return fact.kind in US_KINDS or "us" in fact.methods


def _is_ct_or_mr(fact: Fact) -> bool:
    return bool(fact.tags & {"pelvic-xsec", "leg-xsec"} or fact.methods & {"ct", "mr"})


def _outranks(negative: Fact, positive: Fact, segment: str) -> bool:
    """Whether a negative study may overrule a positive one for `segment` (R00d ranking).

    Cross-sectional imaging or venography outranks duplex for iliac/IVC segments; duplex outranks CT/MR for
    femoropopliteal (and calf) segments.
    """
    if segment in ILIAC:
        better = _is_ct_or_mr(positive) or positive.kind == "venography"
        return not (_is_duplex(negative) and better)
    return not (_is_ct_or_mr(negative) and _is_duplex(positive))


def decimal_text(value: Decimal) -> str:
    """A measurement for card text: no exponent, no trailing zeros (55.0 -> 55)."""
    return format(value.normalize(), "f")


__all__ = ["Cause", "Derived", "Ivus", "StentDraft", "ceap_class", "decimal_text"]
