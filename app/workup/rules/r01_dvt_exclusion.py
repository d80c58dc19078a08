"""R01: exclude DVT with a complete leg duplex before any iliac vein workup."""

from __future__ import annotations

from collections.abc import Iterator

from app.workup.facts import LEGS, Fact, Side
from app.workup.rules.base import PATIENT_VIEW, Finding, Rule, RuleContext

# Drafts that start the iliac workup; CTV/MRV are pelvis-level and concern the symptomatic legs.
_TRIGGER_KINDS = frozenset(
    {
        "ct-venography",
        "mr-venography",
        "venography",
        "ivus",
        "stent",
        "stent-device",
        "venoplasty",
    }
)


def _needs_exclusion(ctx: RuleContext, leg: Side) -> tuple[Fact, ...]:
    """Current symptoms of a leg with no DVT exclusion and no known DVT (empty: no card)."""
    d = ctx.derived
    symptoms = d.current_symptoms(leg)
    if not symptoms or d.dvt_active(leg):
        return ()
    if d.dvt_excluded_fempop(leg) or d.dvt_excluding_xsec(leg):
        return ()
    return symptoms


def exclude_dvt_first(ctx: RuleContext) -> Iterator[Finding]:
    """R01 on patient-view (symptoms) and on order hooks (a workup order is drafted)."""
    legs: dict[Side, tuple[str, ...]] = {}
    if ctx.hook == PATIENT_VIEW:
        legs = dict.fromkeys(LEGS, ())
    else:
        for draft in ctx.facts.facts:
            if (
                not draft.draft
                or draft.kind not in _TRIGGER_KINDS
                or not ctx.triggering(draft)
            ):
                continue
            if draft.side is not None:
                targets = draft.side.legs
            elif not draft.side_specific:
                targets = LEGS
            else:
                continue
            for leg in targets:
                legs[leg] = (*legs.get(leg, ()), draft.source)
    for leg, drafts in legs.items():
        symptoms = _needs_exclusion(ctx, leg)
        if symptoms:
            yield Finding(
                "R01",
                leg,
                params={"side": leg.value},
                evidence=ctx.references(symptoms) + drafts,
                reasons=ctx.conditions(symptoms),
            )


RULES = (Rule("R01", ("SEED-001", "SRU-2018", "ESVS-VT-2021"), exclude_dvt_first),)
