"""R08: iliac compression seen only on CT/MR/duplex never drives treatment; confirm with venography + IVUS."""

from __future__ import annotations

from collections.abc import Iterator

from app.workup.derived import decimal_text
from app.workup.facts import LEGS, Fact, Side
from app.workup.rules.base import PATIENT_VIEW, Finding, Rule, RuleContext

# Venography and IVUS are the confirmation itself, never "cross-sectional imaging alone".
_INVASIVE = frozenset({"ivus", "venography"})
_NARROWING = frozenset({"stenosis", "compression"})
_CENTRAL_VEINS = frozenset({"iliac", "ivc"})
_MODALITY = {"ct": "CT", "mr": "MR", "us": "Ultrasound"}
# Drafts that act on the lesion (R08 order-hook trigger); stents also get R09, which then suppresses R08.
_TREATMENT_KINDS = frozenset({"stent", "stent-device", "venoplasty"})


def compression_evidence(ctx: RuleContext, leg: Side) -> tuple[Fact, ...]:
    """Final CT/MR/ultrasound results reporting iliac vein (or IVC) compression or stenosis on `leg`.

    CT/MR % compression (SNOMED 408715008 with a CT/MR method) is imaging evidence here and is never IVUS
    (terminology.md §5); results from IVUS or venography are excluded.
    """
    d = ctx.derived
    pelvic = {f.source for f in ctx.facts.tagged("pelvic-xsec")}
    found = []
    for fact in ctx.facts.facts:
        if fact.draft or not fact.is_result or not fact.on(leg):
            continue
        if fact.methods & _INVASIVE or fact.kind in _INVASIVE:
            continue
        central = bool(d.groups(fact) & _CENTRAL_VEINS) or any(
            link in pelvic for link in fact.links
        )
        if not fact.sites and (
            "pelvic-xsec" in fact.tags or fact.kind == "duplex-iliac"
        ):
            central = True
        if central and _narrowing(fact):
            found.append(fact)
    return tuple(found)


def _narrowing(fact: Fact) -> bool:
    if fact.kind == "diameter-stenosis":
        value = fact.measure.value if fact.measure else None
        return value is None or value > 0
    return fact.value in _NARROWING


def evidence_note(fact: Fact) -> str:
    """Neutral wording: CT % compression is reported, never called significant (SEED-001)."""
    modality = next(
        (_MODALITY[m] for m in ("ct", "mr", "us") if m in fact.methods), None
    )
    what = fact.label
    measure = fact.measure
    if fact.kind == "diameter-stenosis" and measure is not None:
        raw = f"{decimal_text(measure.raw_value)} {measure.raw_unit}".strip()
        what = f"{raw} diameter reduction"
    elif fact.value:
        what = f"{fact.label}: {fact.value}"
    when = fact.date.date().isoformat() if fact.date else "undated"
    prefix = f"{modality} " if modality else ""
    return f"{prefix}{what} ({when}, `{fact.source}`)."


def _confirmed(ctx: RuleContext, leg: Side) -> bool:
    """Venography + IVUS done within W_IVUS, or IVUS drafted in this order set."""
    d = ctx.derived
    return d.ivus(leg) is not None or bool(d.ivus_ordered(leg))


def confirm_with_ivus(ctx: RuleContext) -> Iterator[Finding]:
    """R08 (patient-view: symptomatic leg; order hooks: lesion treatment drafted), no IVUS yet."""
    d = ctx.derived
    for leg in LEGS:
        evidence = compression_evidence(ctx, leg)
        if not evidence or d.pelvic_mass(leg) or _confirmed(ctx, leg):
            continue
        symptoms = d.symptom_facts(leg)
        drafts: tuple[str, ...] = ()
        if ctx.hook == PATIENT_VIEW:
            if not symptoms:
                continue  # asymptomatic compression belongs to R12b
        else:
            drafts = tuple(
                f.source
                for f in ctx.facts.facts
                if f.draft
                and f.kind in _TREATMENT_KINDS
                and f.on(leg)
                and ctx.triggering(f)
            )
            if not drafts:
                continue
        yield Finding(
            "R08",
            leg,
            params={"side": leg.value},
            evidence=ctx.references([*evidence, *symptoms]) + drafts,
            reasons=ctx.conditions(symptoms),
            # Only IVUS is missing when a venogram of that leg was done within W_IVUS.
            suggestion_set="ivus-only" if d.venogram(leg) else "default",
            notes=tuple(evidence_note(f) for f in evidence),
        )


RULES = (Rule("R08", ("SEED-001", "SIR-2023", "ACR-CVD"), confirm_with_ivus),)
