"""R06 (systemic causes of edema), R07a (uncharacterised pelvic mass), R07b (compression by a characterised mass)."""

from __future__ import annotations

from collections.abc import Iterator

from app.workup.derived import Cause, decimal_text
from app.workup.derived_devices import date_key
from app.workup.facts import LEGS, Fact, Side, Status
from app.workup.rules.base import PATIENT_VIEW, Finding, Rule, RuleContext

# Invasive workup or treatment drafts that R06 checks on the order hooks.
_INVASIVE_KINDS = frozenset(
    {"venography", "ivus", "stent", "stent-device", "venoplasty"}
)
_LAB_KINDS = ("albumin", "creatinine")
_MASS_NAMES = (
    ("lymphoma", "lymphoma"),
    ("bursitis", "iliopsoas bursitis"),
    ("disc", "degenerative disc disease"),
)
_COMPRESSION_VALUES = frozenset({"compression", "stenosis"})


# -- R06 --------------------------------------------------------------------------------------
def _edema_side(ctx: RuleContext) -> tuple[Side | None, tuple[Fact, ...]]:
    """Where the current edema is: both legs (or generalized) = bilateral; None = edema with no side."""
    d = ctx.derived
    per_leg = {
        leg: tuple(f for f in d.current_symptoms(leg) if "edema" in f.tags)
        for leg in LEGS
    }
    unsided = tuple(
        f
        for f in ctx.facts.tagged("edema")
        if not f.draft
        and f.side is None
        and (
            f.is_active
            or (f.status is Status.FINAL and d.within(f, d.windows.symptom_recent_days))
        )
    )
    facts = tuple(dict.fromkeys((*per_leg[Side.LEFT], *per_leg[Side.RIGHT], *unsided)))
    if (per_leg[Side.LEFT] and per_leg[Side.RIGHT]) or any(
        "generalized" in f.tags for f in unsided
    ):
        return Side.BILATERAL, facts
    for leg in LEGS:
        if per_leg[leg]:
            return leg, facts
    return None, facts


def cause_text(cause: Cause) -> str:
    """`{cause}` of the R06 summary: the cause's name, with the value for low albumin."""
    measure = cause.fact.measure
    if (
        cause.kind == "hypoalbuminemia"
        and measure is not None
        and measure.value is not None
    ):
        return f"low albumin {decimal_text(measure.value)} g/dL"
    return cause.label


def _lab_set(ctx: RuleContext) -> str:
    """Suggest only the labs not resulted within W_XSEC (90 days)."""
    d = ctx.derived
    missing = [
        kind
        for kind in _LAB_KINDS
        if not any(
            f.is_result and not f.draft and d.within(f, d.windows.xsec_days)
            for f in ctx.facts.of(kind)
        )
    ]
    if len(missing) == len(_LAB_KINDS):
        return "default"
    return missing[0] if missing else "none"


def systemic_edema(ctx: RuleContext) -> Iterator[Finding]:
    """R06: edema with a systemic cause; warning when bilateral, info when unilateral (order hooks: bilateral only)."""
    d = ctx.derived
    causes = d.systemic_edema_causes
    if not causes:
        return
    side, edema = _edema_side(ctx)
    if not edema:
        return
    bilateral = side is Side.BILATERAL
    drafts: list[Fact] = []
    if ctx.hook != PATIENT_VIEW:
        drafts = [
            f
            for f in ctx.facts.facts
            if f.draft and f.kind in _INVASIVE_KINDS and ctx.triggering(f)
        ]
        if not (bilateral and drafts):
            return
    notes = tuple(f"Systemic cause on record: {cause_text(c)}." for c in causes)
    yield Finding(
        "R06",
        side,
        variant="bilateral" if bilateral else "default",
        params={"cause": cause_text(causes[0])},
        evidence=ctx.references([*edema, *(c.fact for c in causes), *drafts]),
        reasons=ctx.conditions([*edema, *(c.fact for c in causes)]),
        suggestion_set=_lab_set(ctx),
        notes=notes,
    )


# -- R07 --------------------------------------------------------------------------------------
def _tissue(ctx: RuleContext, leg: Side | None) -> tuple[Fact, ...]:
    """Characterised masses (tissue diagnosis) on that leg; `None` = those recorded without a side."""
    return tuple(
        f
        for f in ctx.facts.tagged("characterised-mass")
        if not f.draft
        and f.is_active
        and (f.side is None if leg is None else f.on(leg))
    )


def _contrast_xsec(ctx: RuleContext, leg: Side | None) -> tuple[Fact, ...]:
    """Contrast-enhanced CT or MRI of the abdomen/pelvis within W_XSEC."""
    return tuple(f for f in ctx.derived.pelvic_xsec(leg) if "contrast" in f.tags)


def _excluded_or_known(ctx: RuleContext, leg: Side) -> bool:
    d = ctx.derived
    return bool(
        d.dvt_active(leg) or d.dvt_excluded_fempop(leg) or d.dvt_excluding_xsec(leg)
    )


def uncharacterised_mass(ctx: RuleContext) -> Iterator[Finding]:
    """R07a: pelvic mass with no contrast CT/MRI within W_XSEC and no tissue diagnosis."""
    d = ctx.derived
    if _tissue(ctx, None):
        return
    sided = False
    unsided: list[Fact] = []
    for leg in LEGS:
        masses = [f for f in d.pelvic_mass(leg) if "characterised-mass" not in f.tags]
        unsided += [f for f in masses if f.side is None]
        masses = [f for f in masses if f.side is not None]
        if not masses or _tissue(ctx, leg) or _contrast_xsec(ctx, leg):
            continue
        sided = True
        yield Finding(
            "R07a",
            leg,
            params={"side": leg.value},
            evidence=ctx.references(masses),
            reasons=ctx.conditions(masses),
            suggestion_set="default" if _excluded_or_known(ctx, leg) else "with-duplex",
        )
    unsided = list(dict.fromkeys(unsided))
    if unsided and not sided and not _contrast_xsec(ctx, None):
        # Never infer a side: name no side and suggest the pelvis-level imaging only.
        yield Finding(
            "R07a",
            None,
            params={"side": ""},
            evidence=ctx.references(unsided),
            reasons=ctx.conditions(unsided),
        )


def _etiology(ctx: RuleContext, leg: Side) -> Fact | None:
    """The latest recorded obstruction etiology on that leg."""
    recorded = [
        f
        for f in ctx.facts.of("obstruction-etiology")
        if not f.draft and f.is_result and f.on(leg) and f.value
    ]
    return max(recorded, key=date_key) if recorded else None


def _compressed(ctx: RuleContext, leg: Side) -> tuple[Fact, ...]:
    """Iliac compression/stenosis recorded on that leg (condition or imaging result)."""
    return tuple(
        f
        for f in ctx.facts.facts
        if not f.draft
        and f.on(leg)
        and (
            (f.kind == "iliac-compression" and f.is_active)
            or (f.is_result and f.value in _COMPRESSION_VALUES)
        )
    )


def mass_name(masses: tuple[Fact, ...]) -> str:
    """`{mass}` of the R07b summary, from the tissue diagnosis when there is one."""
    tags = {t for f in masses for t in f.tags}
    for tag, name in _MASS_NAMES:
        if tag in tags:
            return name
    return "a characterised mass" if masses else "an extrinsic mass"


def compressed_by_mass(ctx: RuleContext) -> Iterator[Finding]:
    """R07b: obstruction attributed to a characterised extrinsic mass (warning when a stent is drafted)."""
    d = ctx.derived
    for leg in LEGS:
        etiology = _etiology(ctx, leg)
        sided, unsided = _tissue(ctx, leg), _tissue(ctx, None)
        by_mass = etiology is not None and etiology.value == "extrinsic-mass"
        attributed = by_mass or bool(sided and _compressed(ctx, leg))
        masses = sided or (unsided if attributed else ())
        evidence = [*masses, *([etiology] if by_mass and etiology else [])]
        if ctx.hook == PATIENT_VIEW:
            if not attributed or not (masses or _contrast_xsec(ctx, leg)):
                continue
            variant = "default"
        else:
            stents = [s.order for s in d.stent_drafts(leg) if ctx.triggering(s.order)]
            if not stents or not (attributed or sided):
                continue
            evidence += stents
            variant = "order"
        yield Finding(
            "R07b",
            leg,
            variant=variant,
            params={"side": leg.value, "mass": mass_name(masses)},
            evidence=ctx.references(evidence),
            notes=(
                "Label this extrinsic compression, not May-Thurner syndrome / NIVL.",
            ),
        )


RULES = (
    Rule("R06", ("SEED-001",), systemic_edema),
    Rule("R07a", ("SEED-001",), uncharacterised_mass),
    Rule("R07b", ("SEED-001",), compressed_by_mass),
)
