"""R16, R17: follow-up after iliac vein stenting (surveillance imaging; no routine antithrombotics for NIVL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from app.workup.derived_devices import date_key
from app.workup.facts import LEGS, Fact, Side, Status
from app.workup.fhirread import age_days
from app.workup.rules.base import Finding, Rule, RuleContext

# Venous imaging that looks at the stented segment: duplex, CT/MR venography, catheter venography, IVUS.
_SURVEILLANCE_TAG = "venous-imaging"
_SURVEILLANCE_KINDS = frozenset({"ivus"})

# Reasons that say an antithrombotic is "for the stent" (R17); ICD Z95.820/Z95.828, Z98.62 or the procedure itself.
_STENT_REASONS = frozenset(
    {"stent-status", "angioplasty-status", "stent", "stent-device", "venoplasty"}
)
# Reasons or Conditions that are an indication for anticoagulation of their own (R17 must stay silent).
_OTHER_INDICATIONS = frozenset(
    {
        "other-anticoagulation-indication",
        "dvt",
        "dvt-chronic",
        "vte-history",
        "post-thrombotic-syndrome",
        # T82.868A thrombosis due to a vascular device is grouped with migration/stenosis in one kind; any
        # device complication keeps R17 silent rather than discourage anticoagulation of a stent thrombosis.
        "stent-complication",
    }
)
_THROMBOTIC_ETIOLOGIES = frozenset({"post-thrombotic", "acute-thrombus"})
_THROMBUS_VALUES = frozenset({"thrombus", "chronic-thrombus", "possible-thrombus"})


@dataclass(frozen=True)
class _Stent:
    """A stent in situ on one leg: the fact that shows it and the date of the latest placement."""

    fact: Fact
    placed: datetime | None


def _stent(ctx: RuleContext, leg: Side) -> _Stent | None:
    """STENT_IN_SITU(leg), dated by the latest completed stent Procedure (stale ones included), else Z95.8x."""
    d = ctx.derived
    in_situ = d.stent_in_situ(leg)
    if in_situ is None:
        return None
    procedures = [
        f
        for f in (*ctx.facts.facts, *ctx.facts.stale)
        if f.kind == "stent"
        and not f.draft
        and f.status is Status.COMPLETED
        and f.on(leg)
        and f.date is not None
    ]
    if procedures:
        latest = max(procedures, key=date_key)
        return _Stent(latest, latest.date)
    # Z95.8x dated only by recordedDate: the stent may be much older than the record, so its date is unknown.
    return _Stent(in_situ, None if "no-onset" in in_situ.tags else in_situ.date)


def _surveillance_imaging(ctx: RuleContext, leg: Side) -> tuple[Fact, ...]:
    """Final venous imaging of `leg` (pelvis-level CTV/MRV with no side count for both legs)."""
    return tuple(
        f
        for f in ctx.facts.facts
        if not f.draft
        and f.is_result
        and f.date is not None
        and (_SURVEILLANCE_TAG in f.tags or f.kind in _SURVEILLANCE_KINDS)
        and (f.on(leg) or (f.side is None and not f.side_specific))
    )


def surveillance_due(ctx: RuleContext) -> Iterator[Finding]:
    """R16: stent in situ and no venous imaging since stenting (stent > 6 weeks) or in the last 12 months.

    The stenting procedure itself includes venography, so a stent younger than 6 weeks is never due. Imaging on
    the day of stenting is the procedure's own venogram and does not count as "since stenting".
    """
    d = ctx.derived
    windows = ctx.catalog.settings.windows
    for leg in LEGS:
        stent = _stent(ctx, leg)
        if stent is None:
            continue
        placed = stent.placed
        if (
            placed is not None
            and age_days(placed, ctx.now) <= windows.surveil_stent_min_days
        ):
            continue
        recent = [
            f
            for f in _surveillance_imaging(ctx, leg)
            if d.within(f, windows.surveil_days)
            and (placed is None or _after_day(f, placed))
        ]
        if recent:
            continue
        last = max(_surveillance_imaging(ctx, leg), key=date_key, default=None)
        notes = [
            "No venous imaging of this leg since stenting or in the last 12 months."
            if last is None or last.date is None
            else f"Last venous imaging of this leg: {last.label} on {last.date.date().isoformat()}."
        ]
        yield Finding(
            "R16",
            leg,
            params={"date": placed.date().isoformat() if placed else "date unknown"},
            evidence=ctx.references([stent.fact]),
            reasons=ctx.conditions(
                f for f in ctx.facts.of("stent-status") if f.on(leg) and not f.draft
            ),
            notes=tuple(notes),
        )


def _after_day(fact: Fact, placed: datetime) -> bool:
    return fact.date is not None and fact.date.date() > placed.date()


def _indicated_otherwise(ctx: RuleContext) -> bool:
    """VTE_HISTORY or another indication, widened for safety: any thrombus ever reported (stale results too),
    a thrombotic etiology, a device complication, AF / mechanical valve, or pregnancy."""
    d = ctx.derived
    if d.vte_history or d.pregnant or any(d.dvt_active(leg) for leg in LEGS):
        return True
    for fact in (*ctx.facts.facts, *ctx.facts.stale):
        if fact.draft:
            continue
        if fact.kind in _OTHER_INDICATIONS or "vte-history" in fact.tags:
            return True
        if fact.kind == "obstruction-etiology" and fact.value in _THROMBOTIC_ETIOLOGIES:
            return True
        if fact.kind == "thrombus-age":
            return True
        if fact.is_result and fact.value in _THROMBUS_VALUES:
            return True
    return False


def _nivl(ctx: RuleContext, leg: Side) -> bool:
    """Stent etiology NIVL: the latest recorded etiology (stale included), else no VTE history; never a mass."""
    if ctx.derived.pelvic_mass(leg):
        return False
    recorded = [
        f
        for f in (*ctx.facts.facts, *ctx.facts.stale)
        if f.kind == "obstruction-etiology" and not f.draft and f.on(leg) and f.value
    ]
    if recorded:
        return max(recorded, key=date_key).value == "nivl"
    return not ctx.derived.vte_history


def _reason_kinds(ctx: RuleContext, draft: Fact) -> frozenset[str]:
    """Fact kinds a draft's reasonCode / reasonReference point to."""
    kinds = {t.removeprefix("reason:") for t in draft.tags if t.startswith("reason:")}
    kinds |= {f.kind for f in ctx.facts.facts if f.source in draft.links}
    return frozenset(kinds)


def routine_antithrombotic(ctx: RuleContext) -> Iterator[Finding]:
    """R17: anticoagulant/antiplatelet drafted "for the stent" after NIVL stenting, no VTE, no other indication.

    Info only; never fires with any VTE history, a post-thrombotic (or any thrombotic) stent, another recorded
    indication (AF, mechanical valve), pregnancy, or when the draft states no stent/post-procedure reason.
    Offers no suggestion: the service never proposes adding antithrombotic therapy after NIVL stenting.
    """
    drafts = [
        f for f in ctx.facts.of("anticoagulant", "antiplatelet") if ctx.under_review(f)
    ]
    post_stent = []
    for draft in drafts:
        reasons = _reason_kinds(ctx, draft)
        if reasons & _OTHER_INDICATIONS or not reasons & _STENT_REASONS:
            continue
        post_stent.append(draft)
    if not post_stent or _indicated_otherwise(ctx):
        return
    stents = {leg: _stent(ctx, leg) for leg in LEGS}
    if any(s is not None and not _nivl(ctx, leg) for leg, s in stents.items()):
        return
    legs = [leg for leg, s in stents.items() if s is not None]
    if not legs:
        return
    side = legs[0] if len(legs) == 1 else Side.BILATERAL
    yield Finding(
        "R17",
        side,
        evidence=ctx.references(
            [*post_stent, *(s.fact for s in stents.values() if s is not None)]
        ),
    )


RULES = (
    Rule("R16", ("SEED-001", "SIR-2023"), surveillance_due),
    Rule("R17", ("SEED-001", "SIR-2023"), routine_antithrombotic),
)
