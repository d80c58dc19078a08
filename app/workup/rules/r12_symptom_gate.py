"""R12a, R12b: the symptom gate — no stent without qualifying symptoms; incidental compression needs nothing."""

from __future__ import annotations

from collections.abc import Iterator

from app.workup.facts import LEGS, Fact, Side
from app.workup.rules.base import Finding, Rule, RuleContext
from app.workup.rules.r08_xsec_alone import compression_evidence, evidence_note

_VTE_KINDS = frozenset({"dvt", "dvt-chronic"})
# A recorded cause other than NIVL means the compression is not "incidental".
_NOT_INCIDENTAL = frozenset({"post-thrombotic", "acute-thrombus", "extrinsic-mass"})


def no_qualifying_symptoms(ctx: RuleContext) -> Iterator[Finding]:
    """R12a: a stent drafted for a leg with MINIMAL_OR_NO_SYMPTOMS (also during active DVT, §2.5)."""
    d = ctx.derived
    for leg in LEGS:
        drafts = [s for s in d.stent_drafts(leg) if ctx.triggering(s.order)]
        if not drafts or not d.minimal_or_no_symptoms(leg):
            continue
        symptoms = d.symptom_facts(leg)
        if symptoms:
            found = ", ".join(dict.fromkeys(f.label for f in symptoms))
            note = (
                f"Only {found} documented on the {leg.value} leg, without a documented moderate or "
                "severe quality-of-life impact."
            )
        else:
            note = (
                f"No venous symptom, CEAP class C3 or higher, or Villalta score of 5 or more is "
                f"recorded for the {leg.value} leg."
            )
        yield Finding(
            "R12a",
            leg,
            params={"side": leg.value},
            evidence=ctx.references([s.order for s in drafts]),
            notes=(note,),
        )


def _vte_history_on(ctx: RuleContext, leg: Side) -> tuple[Fact, ...]:
    """VTE_HISTORY for one leg; a history with no side (Z86.718, PE) counts for both legs."""
    found = []
    for fact in ctx.facts.facts:
        if fact.draft:
            continue
        on_leg = fact.on(leg) or fact.side is None
        history = fact.resource_type == "Condition" and (
            fact.kind in _VTE_KINDS or "vte-history" in fact.tags
        )
        post_thrombotic = (
            fact.kind == "thrombus-age"
            and fact.value == "chronic-post-thrombotic-change"
        )
        if on_leg and (history or post_thrombotic):
            found.append(fact)
    return tuple(found)


def _other_cause(ctx: RuleContext, leg: Side) -> bool:
    d = ctx.derived
    recorded = any(
        f.kind == "obstruction-etiology" and f.value in _NOT_INCIDENTAL and f.on(leg)
        for f in ctx.facts.facts
        if not f.draft
    )
    return recorded or bool(d.pelvic_mass(leg)) or d.stent_in_situ(leg) is not None


def incidental_compression(ctx: RuleContext) -> Iterator[Finding]:
    """R12b: CT/MR/US compression on a leg with no symptoms and no VTE history (patient-view)."""
    d = ctx.derived
    for leg in LEGS:
        evidence = compression_evidence(ctx, leg)
        if not evidence or d.symptomatic(leg):
            continue
        # A mass, a stent or a thrombotic history makes the finding not incidental: say nothing rather
        # than "no further workup".
        if _vte_history_on(ctx, leg) or _other_cause(ctx, leg):
            continue
        yield Finding(
            "R12b",
            leg,
            params={"side": leg.value},
            evidence=ctx.references(evidence),
            notes=tuple(evidence_note(f) for f in evidence),
        )


RULES = (
    Rule("R12a", ("SEED-001", "SIR-2023", "AVLS-FICV"), no_qualifying_symptoms),
    Rule("R12b", ("SEED-001", "Kibbe-2004"), incidental_compression),
)
