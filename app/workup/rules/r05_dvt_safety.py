"""R05a-R05d: confirmed DVT safety (anticoagulation, IVC filter, thrombolysis) per clinical-rules.md §4 R05."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from app.workup.derived import ILIAC, PROXIMAL
from app.workup.derived_devices import date_key
from app.workup.facts import LEGS, Fact, Side, Status
from app.workup.fhirread import age_days
from app.workup.rules.base import ORDER_SIGN, Finding, Rule, RuleContext

# Most proximal first: the card names the highest segment involved.
_SEGMENT_NAMES = (
    (frozenset({"ivc"}), "IVC"),
    (frozenset({"iliac", "civ", "eiv", "iiv"}), "iliac"),
    (frozenset({"cfv", "fv"}), "femoral"),
    (frozenset({"popliteal"}), "popliteal"),
)
_LYSIS_KINDS = frozenset({"thrombolysis", "thrombectomy"})
# {Side} of the R05a summary for a DVT recorded without laterality.
UNSIDED_TEXT = "Unspecified-side"
_UNSIDED_NOTE = (
    "The DVT has no laterality on record (see R00a); this advice does not depend on the side. "
    "Record left, right or bilateral for the side-specific workup."
)


def _merge_legs(
    found: dict[Side, tuple[Fact, ...]],
) -> Iterator[tuple[Side, tuple[Fact, ...]]]:
    """One finding per patient side: both legs make one bilateral finding (one card, one suggestion)."""
    if len(found) == 2:
        facts = tuple(dict.fromkeys(f for leg in LEGS for f in found[leg]))
        yield Side.BILATERAL, facts
    else:
        yield from found.items()


def segment_name(ctx: RuleContext, facts: Iterable[Fact]) -> str:
    """The most proximal named segment of the DVT facts ("proximal" when none is stated)."""
    groups: set[str] = set()
    for fact in facts:
        groups |= ctx.derived.groups(fact)
        if fact.segment:
            groups.add(fact.segment)
    for tokens, name in _SEGMENT_NAMES:
        if groups & tokens:
            return name
    return "proximal"


def _onset(fact: Fact) -> datetime | None:
    """Symptom onset of a DVT Condition (a Condition dated only by recordedDate has none)."""
    if fact.resource_type != "Condition" or "no-onset" in fact.tags:
        return None
    return fact.date


def _diagnosed(fact: Fact, imaging: tuple[Fact, ...]) -> datetime | None:
    """Diagnosis date: recordedDate, else the first imaging showing thrombus, else the onset."""
    if fact.resource_type != "Condition":
        return fact.date
    if fact.recorded is not None:
        return fact.recorded
    if "no-onset" in fact.tags:
        return fact.date
    dated = [f.date for f in imaging if f.date is not None]
    return min(dated) if dated else fact.date


def _proximal_dvt(ctx: RuleContext, leg: Side | None) -> tuple[Fact, ...]:
    """DVT_ACTIVE(leg, proximal); leg None = a DVT with no usable laterality (R00a pauses only sided guidance)."""
    d = ctx.derived
    return d.dvt_active(leg, PROXIMAL) if leg else d.dvt_active_unsided(PROXIMAL)


def _needs_anticoagulation(ctx: RuleContext, leg: Side | None) -> tuple[Fact, ...]:
    """Proximal DVT that is acute (< 14 d) or diagnosed <= 30 days ago (R05a window)."""
    windows = ctx.catalog.settings.windows
    active = _proximal_dvt(ctx, leg)
    imaging = tuple(f for f in active if f.resource_type != "Condition")
    found = []
    for fact in active:
        onset, diagnosed = _onset(fact), _diagnosed(fact, imaging)
        if onset is None and diagnosed is None:
            # An undated active proximal DVT cannot be shown to be old: treat it as current.
            found.append(fact)
            continue
        acute = onset is not None and age_days(onset, ctx.now) < windows.acute_dvt_days
        recent = (
            diagnosed is not None
            and age_days(diagnosed, ctx.now) <= windows.dvt_recent_days
        )
        if acute or recent:
            found.append(fact)
    return tuple(found)


def _anticoagulant_drafted(ctx: RuleContext) -> bool:
    return any(
        f.draft and f.status is Status.DRAFT for f in ctx.facts.of("anticoagulant")
    )


def start_anticoagulation(ctx: RuleContext) -> Iterator[Finding]:
    """R05a: recent proximal DVT, no active anticoagulant and no documented contraindication."""
    d = ctx.derived
    if d.anticoag_active or d.anticoag_contraindicated:
        return
    # On order-sign an anticoagulant in the same order set is the treatment being started.
    if ctx.hook == ORDER_SIGN and _anticoagulant_drafted(ctx):
        return
    suggestions = "pregnant" if d.pregnant else "default"
    found = {leg: facts for leg in LEGS if (facts := _needs_anticoagulation(ctx, leg))}
    for side, facts in _merge_legs(found):
        yield Finding(
            "R05a",
            side,
            params={"side": side.value, "segment": segment_name(ctx, facts)},
            evidence=ctx.references(facts),
            reasons=ctx.conditions(facts),
            suggestion_set=suggestions,
            notes=_undated_note(facts),
        )
    # Anticoagulation does not depend on the side: a DVT without laterality still needs it (patient level).
    unsided = () if found else _needs_anticoagulation(ctx, None)
    if unsided:
        yield Finding(
            "R05a",
            None,
            variant="unsided",
            params={"Side": UNSIDED_TEXT, "segment": segment_name(ctx, unsided)},
            evidence=ctx.references(unsided),
            reasons=ctx.conditions(unsided),
            suggestion_set=suggestions,
            notes=(_UNSIDED_NOTE, *_undated_note(unsided)),
        )


def _undated_note(facts: tuple[Fact, ...]) -> tuple[str, ...]:
    if any(_onset(f) is None and _diagnosed(f, ()) is None for f in facts):
        return (
            "The DVT has no onset or diagnosis date on record; confirm it is current.",
        )
    return ()


def filter_without_contraindication(ctx: RuleContext) -> Iterator[Finding]:
    """R05b: an IVC filter is drafted although no contraindication to anticoagulation is documented."""
    if ctx.derived.anticoag_contraindicated:
        return
    drafts = [f for f in ctx.facts.of("ivc-filter") if ctx.under_review(f)]
    if drafts:
        yield Finding("R05b", None, evidence=ctx.references(drafts))


def _filter_in_place(ctx: RuleContext) -> bool:
    """An IVC filter placed (and not retrieved since), ordered, or drafted; placement is never stale."""
    facts = (*ctx.facts.facts, *ctx.facts.stale)
    placed = [
        f
        for f in facts
        if f.kind == "ivc-filter"
        and (f.draft or f.status in (Status.COMPLETED, Status.ORDERED))
    ]
    if not placed:
        return False
    latest = max(placed, key=date_key)
    retrieved = [
        f
        for f in facts
        if f.kind == "ivc-filter-retrieval"
        and f.status is Status.COMPLETED
        and f.date is not None
        and (latest.date is None or f.date >= latest.date)
    ]
    return latest.draft or latest.status is Status.ORDERED or not retrieved


def filter_when_contraindicated(ctx: RuleContext) -> Iterator[Finding]:
    """R05c: proximal DVT, anticoagulation contraindicated and no filter placed or ordered."""
    d = ctx.derived
    if not d.anticoag_contraindicated or _filter_in_place(ctx):
        return
    found = {leg: facts for leg in LEGS if (facts := d.dvt_active(leg, PROXIMAL))}
    contraindications = [
        f for f in ctx.facts.of("anticoagulation-contraindication") if not f.draft
    ]
    for side, facts in _merge_legs(found):
        yield Finding(
            "R05c",
            side,
            params={"side": side.value, "segment": segment_name(ctx, facts)},
            evidence=ctx.references([*facts, *contraindications]),
            reasons=ctx.conditions(facts),
        )
    # A filter protects both legs: a DVT without laterality still qualifies (patient level).
    unsided = () if found else d.dvt_active_unsided(PROXIMAL)
    if unsided:
        yield Finding(
            "R05c",
            None,
            variant="unsided",
            params={"segment": segment_name(ctx, unsided)},
            evidence=ctx.references([*unsided, *contraindications]),
            reasons=ctx.conditions(unsided),
            notes=(_UNSIDED_NOTE,),
        )


def _lysis_drafts(ctx: RuleContext) -> list[Fact]:
    """Drafted catheter lysis / thrombectomy, and systemic thrombolytics given for DVT."""
    drafts = []
    any_dvt = any(ctx.derived.dvt_active(leg) for leg in LEGS)
    for fact in ctx.facts.facts:
        if not ctx.under_review(fact):
            continue
        # A systemic thrombolytic counts when given for DVT (stated, or unstated with a DVT on record).
        for_dvt = fact.kind == "thrombolytic" and (
            "reason:dvt" in fact.tags or ("has-reason" not in fact.tags and any_dvt)
        )
        if fact.kind in _LYSIS_KINDS or for_dvt:
            drafts.append(fact)
    return drafts


def _acute_iliofemoral(ctx: RuleContext, legs: tuple[Side, ...]) -> bool:
    """Acute (< 14 d from symptom onset, or first imaging if onset unknown) iliac/caval DVT on a leg."""
    d = ctx.derived
    limit = ctx.catalog.settings.windows.acute_dvt_days
    for leg in legs:
        facts = d.dvt_active(leg, ILIAC)
        onsets = [o for f in facts if (o := _onset(f)) is not None]
        imaged = [
            f.date
            for f in facts
            if f.resource_type != "Condition" and f.date is not None
        ]
        onset = max(onsets) if onsets else (min(imaged) if imaged else None)
        if onset is not None and age_days(onset, ctx.now) < limit:
            return True
    return False


def thrombolysis_outside_criteria(ctx: RuleContext) -> Iterator[Finding]:
    """R05d: thrombolysis/thrombectomy drafted in pregnancy (critical) or outside the acute iliofemoral criteria."""
    d = ctx.derived
    for draft in _lysis_drafts(ctx):
        legs = draft.side.legs if draft.side is not None else LEGS
        if d.pregnant:
            yield Finding(
                "R05d", draft.side, variant="pregnant", evidence=(draft.source,)
            )
            continue
        problems = []
        if not _acute_iliofemoral(ctx, legs):
            problems.append(
                "no acute (< 14 days) iliofemoral DVT on record for this side"
            )
        if d.anticoag_contraindicated:
            problems.append(
                "a contraindication to anticoagulation or active bleeding is documented"
            )
        if problems:
            yield Finding(
                "R05d",
                draft.side,
                evidence=(draft.source,),
                notes=tuple(f"Not eligible: {p}." for p in problems),
            )


RULES = (
    Rule("R05a", ("SEED-001", "ESVS-VT-2021", "CHEST-2021"), start_anticoagulation),
    Rule("R05b", ("SEED-001",), filter_without_contraindication),
    Rule("R05c", ("SEED-001",), filter_when_contraindicated),
    Rule(
        "R05d",
        ("SEED-001", "SEED-000", "SVS/AVF-ETR", "CHEST-2021"),
        thrombolysis_outside_criteria,
    ),
)
