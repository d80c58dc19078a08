"""R19a, R19b: pregnancy overlays (duplex then non-contrast MRV; LMWH; defer elective NIVL workup)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from app.workup.facts import LEGS, Fact
from app.workup.rules.base import Finding, Rule, RuleContext

_CT_KINDS = {
    "ct-venography": "CT venography",
    "ct-angiography-leg": "CT venography",
    "ct-contrast-pelvis": "contrast CT of the pelvis",
}
_MR_KINDS = frozenset({"mr-venography", "mr-venography-leg", "mri-pelvis"})
_MRV_KINDS = frozenset({"mr-venography", "mr-venography-leg"})
_NIVL_KINDS = {
    "venography": "venography",
    "ivus": "IVUS",
    "stent": "iliac vein stenting",
    "stent-device": "iliac vein stenting",
    "venoplasty": "venoplasty",
}


@dataclass(frozen=True)
class _OrderClass:
    """One of the four order classes of R19b and the alternative the card names."""

    key: str
    alternative: str


_CT = _OrderClass("ct", "non-contrast MR venography")
_MR = _OrderClass("mr", "non-contrast MRV")
_ANTICOAG = _OrderClass("anticoagulant", "weight-adjusted LMWH twice daily")
_NIVL = _OrderClass(
    "nivl", "defer NIVL workup until after delivery unless limb-threatening"
)


def pregnant_leg_symptoms(ctx: RuleContext) -> Iterator[Finding]:
    """R19a (patient-view): pregnant with current leg swelling or pain on that leg."""
    d = ctx.derived
    if not d.pregnant:
        return
    pregnancy = [f for f in ctx.facts.tagged("pregnancy") if f.is_active]
    for leg in LEGS:
        symptoms = [f for f in d.current_symptoms(leg) if f.tags & {"edema", "pain"}]
        if symptoms:
            yield Finding(
                "R19a",
                leg,
                params={"side": leg.value},
                evidence=ctx.references([*pregnancy, *symptoms]),
            )


def _mr_name(fact: Fact) -> str | None:
    """Gadolinium MR drafts (and MRV drafts that do not state "without contrast"); None = acceptable."""
    if "no-contrast" in fact.tags:
        return None
    if fact.tags & {"contrast", "contrast-stated"}:
        return "gadolinium MRV" if fact.kind in _MRV_KINDS else "gadolinium MRI"
    # CPT 72198 covers MRA with or without contrast: unless "without contrast" is stated, flag it.
    return "MRV with unstated contrast" if fact.kind in _MRV_KINDS else None


def _anticoagulant_name(fact: Fact) -> str | None:
    """DOAC or warfarin drafted for VTE (another stated indication alone is left to the prescriber)."""
    if not fact.tags & {"doac", "vka"}:
        return None
    other = "reason:other-anticoagulation-indication" in fact.tags
    vte = fact.tags & {"reason:dvt", "reason:vte-history", "reason:dvt-chronic"}
    if other and not vte:
        return None
    return "warfarin" if "vka" in fact.tags else "a DOAC"


def _classify(fact: Fact) -> tuple[_OrderClass, str] | None:
    if fact.kind in _CT_KINDS:
        return _CT, _CT_KINDS[fact.kind]
    if fact.kind in _MR_KINDS:
        name = _mr_name(fact)
        return (_MR, name) if name else None
    if fact.kind == "anticoagulant":
        name = _anticoagulant_name(fact)
        return (_ANTICOAG, name) if name else None
    if fact.kind in _NIVL_KINDS:
        return _NIVL, _NIVL_KINDS[fact.kind]
    return None


def pregnancy_order_check(ctx: RuleContext) -> Iterator[Finding]:
    """R19b (order hooks): CT/contrast imaging, gadolinium MRV, DOAC/warfarin or elective NIVL workup in pregnancy."""
    if not ctx.derived.pregnant:
        return
    grouped: dict[str, tuple[_OrderClass, list[str], list[Fact]]] = {}
    for fact in ctx.facts.facts:
        if not ctx.under_review(fact):
            continue
        found = _classify(fact)
        if found is None:
            continue
        cls, name = found
        _, names, drafts = grouped.setdefault(cls.key, (cls, [], []))
        if name not in names:
            names.append(name)
        drafts.append(fact)
    for key, (cls, names, drafts) in grouped.items():
        yield Finding(
            "R19b",
            None,
            params={"order": " and ".join(names), "alternative": cls.alternative},
            evidence=ctx.references(drafts),
            key=key,
        )


RULES = (
    Rule("R19a", ("SEED-001", "SEED-002", "ACR-DVT"), pregnant_leg_symptoms),
    Rule("R19b", ("SEED-001", "SEED-002", "ACR-DVT"), pregnancy_order_check),
)
