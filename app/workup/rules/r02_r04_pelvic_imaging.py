"""R02, R03, R04a, R04b: when and how to image the pelvic veins after leg ultrasound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from app.workup.derived import US_KINDS
from app.workup.facts import LEGS, Side
from app.workup.rules.base import Finding, Rule, RuleContext


def _other(leg: Side) -> Side:
    return Side.RIGHT if leg is Side.LEFT else Side.LEFT


def _swollen(ctx: RuleContext, leg: Side) -> bool:
    return any("edema" in f.tags for f in ctx.derived.symptom_facts(leg))


def _suggestions(ctx: RuleContext) -> str:
    # In pregnancy non-contrast MRV is offered first and CTV second (R19a).
    return "pregnant" if ctx.derived.pregnant else "default"


def negative_duplex_whole_leg(ctx: RuleContext) -> Iterator[Finding]:
    """R02: unilateral whole-leg swelling persisting after a negative femoropopliteal duplex."""
    d = ctx.derived
    for leg in LEGS:
        # Bilateral presentations (both legs swollen) belong to R04a; a symptom other than swelling on the
        # other leg (e.g. pain) does not make a unilateral whole-leg swelling bilateral.
        if _swollen(ctx, _other(leg)) or d.dvt_active(leg) or d.pelvic_xsec(leg):
            continue
        swelling = d.whole_leg_swelling(leg)
        # R00a exception: an unlateralised duplex may still prompt pelvis-level imaging for a sided symptom.
        duplex = d.dvt_excluded_fempop(leg) or d.dvt_excluded_fempop(leg, unsided=True)
        if not swelling or duplex is None or duplex.date is None:
            continue
        persisting = [
            f
            for f in swelling
            if f.is_active or (f.date is not None and f.date >= duplex.date)
        ]
        if persisting:
            yield Finding(
                "R02",
                leg,
                params={"side": leg.value},
                evidence=ctx.references([*persisting, duplex]),
                reasons=ctx.conditions(persisting),
                suggestion_set=_suggestions(ctx),
            )


def non_phasic_cfv(ctx: RuleContext) -> Iterator[Finding]:
    """R03: abnormal CFV Doppler within W_DUPLEX and no pelvic cross-sectional imaging."""
    d = ctx.derived
    for leg in LEGS:
        if d.pelvic_xsec(leg):
            continue
        waveform = d.cfv_abnormal(leg)
        side_text = leg.value
        if waveform is None and d.symptomatic(leg):
            # R00a exception: the CFV study has no side but the symptom does; do not name a side in text.
            waveform = d.cfv_abnormal(leg, unsided=True)
            side_text = ""
        if waveform is None:
            continue
        yield Finding(
            "R03",
            leg,
            params={"side": side_text},
            evidence=(waveform.source,),
            reasons=ctx.conditions(d.symptom_facts(leg)),
            suggestion_set=_suggestions(ctx),
        )


def bilateral_negative_iliac_us(ctx: RuleContext) -> Iterator[Finding]:
    """R04a: bilateral symptoms and an adequate negative iliac ultrasound on both sides."""
    d = ctx.derived
    if not d.bilateral_symptoms() or d.pelvic_xsec(None):
        return
    studies = [d.iliac_us_adequate_negative(leg) for leg in LEGS]
    if any(s is None or s.date is None for s in studies):
        return
    for leg, study in zip(LEGS, studies, strict=True):
        if study is None or study.date is None:
            return
        if not any(
            f.is_active or (f.date is not None and f.date >= study.date)
            for f in d.symptom_facts(leg)
        ):
            return
    cfv = any(d.cfv_abnormal(leg) for leg in LEGS)
    if d.systemic_edema_causes and not cfv:
        return
    symptoms = [*d.symptom_facts(Side.LEFT), *d.symptom_facts(Side.RIGHT)]
    yield Finding(
        "R04a",
        Side.BILATERAL,
        params={"side": "bilateral"},
        evidence=ctx.references([*symptoms, *(s for s in studies if s is not None)]),
        reasons=ctx.conditions(symptoms),
    )


def repeat_ultrasound(ctx: RuleContext) -> Iterator[Finding]:
    """R04b: a repeat venous duplex drafted after an adequate negative iliac study <= 30 days old."""
    d = ctx.derived
    days = ctx.catalog.settings.windows.repeat_us_days
    for draft in ctx.facts.facts:
        if not draft.draft or draft.kind not in US_KINDS or draft.side is None:
            continue
        if not ctx.triggering(draft):
            continue
        priors = [d.iliac_us_adequate_negative(leg) for leg in draft.side.legs]
        if any(p is None or p.date is None or not d.within(p, days) for p in priors):
            continue
        dated = [p for p in priors if p is not None and p.date is not None]
        since = min(p.date for p in dated if p.date is not None)
        if _new_event(ctx, draft.side, since):
            continue
        yield Finding(
            "R04b",
            draft.side,
            params={"date": since.date().isoformat()},
            evidence=ctx.references([draft, *dated]),
            targets=(draft.source,),
        )


def _new_event(ctx: RuleContext, side: Side, since: datetime) -> bool:
    """New swelling or a new DVT recorded after the prior study (R04b exception)."""
    d = ctx.derived
    return any(
        fact.date is not None and fact.date > since
        for leg in side.legs
        for fact in (*d.symptom_facts(leg), *d.dvt_active(leg))
    )


RULES = (
    Rule(
        "R02",
        ("SEED-001", "SEED-002", "SRU-2018", "ACR-DVT"),
        negative_duplex_whole_leg,
    ),
    Rule("R03", ("SEED-001", "SEED-002", "Lin-2007"), non_phasic_cfv),
    Rule("R04a", ("SEED-002", "ACR-DVT"), bilateral_negative_iliac_us),
    Rule("R04b", ("SEED-002",), repeat_ultrasound),
)
