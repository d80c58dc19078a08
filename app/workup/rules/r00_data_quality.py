"""R00a-R00d: data quality (laterality, units, stale results, conflicting results); run first."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

from app.workup.derived import NEGATIVE, decimal_text
from app.workup.facts import LEGS, Fact, Side, Status
from app.workup.rules.base import Finding, Rule, RuleContext

_R00_IDS = frozenset({"R00a", "R00b", "R00c", "R00d"})
_SHORT = {
    "duplex-leg": "duplex",
    "duplex-iliac": "iliac duplex",
    "ct-venography": "CT venography",
    "ct-contrast-pelvis": "contrast CT",
    "mr-venography": "MR venography",
    "mri-pelvis": "MRI",
    "venography": "venography",
    "thrombus": "imaging",
}
_SEGMENT_TEXT = {
    "iliac": "iliac",
    "ivc": "IVC",
    "fempop": "femoropopliteal",
    "calf": "calf",
}
_MEASURE_FAMILIES = frozenset({"length", "percent"})


def missing_laterality(ctx: RuleContext) -> Iterator[Finding]:
    """R00a: one card per resource whose side-specific fact has no usable laterality."""
    seen: set[str] = set()
    for fact in ctx.facts.facts:
        if not fact.side_specific or fact.side is not None or fact.part_of is not None:
            continue
        if fact.status is Status.INACTIVE or fact.source in seen:
            continue
        if fact.draft and not ctx.triggering(fact):
            continue
        seen.add(fact.source)
        why = "conflicting laterality" if fact.laterality_conflict else "no laterality"
        yield Finding(
            "R00a",
            None,
            params={"resource": f"{fact.label} ({fact.resource_type})"},
            evidence=(fact.source,),
            notes=(f"`{fact.source}`: {why}.",),
            key=fact.source,
        )


def units(ctx: RuleContext) -> Iterator[Finding]:
    """R00b: lengths converted to mm (info) or unusable units (warning), one card per side."""
    by_side: dict[Side | None, list[Fact]] = {}
    for fact in ctx.facts.facts:
        measure = fact.measure
        if measure is None or measure.family not in _MEASURE_FAMILIES:
            continue
        if measure.converted or not measure.usable:
            by_side.setdefault(fact.side, []).append(fact)
    for side, facts in by_side.items():
        unusable = [f for f in facts if f.measure is not None and not f.measure.usable]
        notes = tuple(_unit_note(f) for f in facts)
        evidence = ctx.references(facts)
        if unusable:
            params = {"measure": unusable[0].label.capitalize()}
            yield Finding("R00b", side, "unusable", params, evidence, notes=notes)
            continue
        first = facts[0]
        measure = first.measure
        if measure is None or measure.value is None:
            continue
        params = {
            "value": decimal_text(measure.raw_value),
            "unit": measure.raw_unit,
            "mm": decimal_text(measure.value),
            "measure": first.label,
        }
        yield Finding("R00b", side, "default", params, evidence, notes=notes)


def _unit_note(fact: Fact) -> str:
    measure = fact.measure
    if measure is None:
        return fact.label
    raw = f"{decimal_text(measure.raw_value)} {measure.raw_unit or '(no unit)'}"
    if measure.value is None:
        return f"{fact.label}: {raw} is not a usable unit; the threshold check was skipped."
    return f"{fact.label}: {raw} = {decimal_text(measure.value)} {measure.unit}."


def stale(ctx: RuleContext) -> Iterator[Finding]:
    """R00c: stale results that a fired rule would otherwise have used (one card per call)."""
    used: dict[str, Fact] = {}
    for finding in ctx.findings:
        if finding.rule_id in _R00_IDS:
            continue
        kinds = set(ctx.catalog.card(finding.rule_id).stale_facts)
        for fact in ctx.facts.stale:
            if fact.kind in kinds and _concerns(fact, finding.side):
                used.setdefault(fact.source, fact)
    if not used:
        return
    items = sorted(used.values(), key=lambda f: (f.date is None, f.date), reverse=True)
    latest = items[0]
    notes = tuple(f"{f.label} from {_day(f)} (`{f.source}`)" for f in items)
    yield Finding(
        "R00c",
        None,
        params={"study": latest.label.capitalize(), "date": _day(latest)},
        evidence=tuple(f.source for f in items),
        notes=notes,
    )


def _concerns(fact: Fact, side: Side | None) -> bool:
    if side is None or fact.side is None:
        return True
    return any(fact.on(leg) for leg in side.legs)


def _day(fact: Fact) -> str:
    return fact.date.date().isoformat() if fact.date is not None else "an unknown date"


def conflicts(ctx: RuleContext) -> Iterator[Finding]:
    """R00d: final results within 14 days disagreeing on thrombus in one segment of one leg."""
    d = ctx.derived
    window = ctx.catalog.settings.windows.conflict_days
    for leg in LEGS:
        results = d.thrombus_results(leg)
        positives = [f for f in results if f.value == "thrombus"]
        negatives = [f for f in results if f.value == NEGATIVE]
        found = []
        for pos, neg in product(positives, negatives):
            if (
                pos.date is None
                or neg.date is None
                or abs((pos.date - neg.date).days) > window
            ):
                continue
            shared = _coverage(ctx, pos) & _coverage(ctx, neg)
            if shared:
                found.append((sorted(shared)[0], pos, neg))
        if not found:
            continue
        segment, pos, neg = found[0]
        params = {"segment": _SEGMENT_TEXT[segment], "a": _short(pos), "b": _short(neg)}
        evidence = tuple(
            dict.fromkeys(s for _, p, n in found for s in (p.source, n.source))
        )
        note = f"Thrombus reported by {_short(pos)} on {_day(pos)}; none by {_short(neg)} on {_day(neg)}."
        yield Finding("R00d", leg, params=params, evidence=evidence, notes=(note,))


def _coverage(ctx: RuleContext, fact: Fact) -> frozenset[str]:
    """Venous segments a result speaks about (shared with DVT_ACTIVE's supersession)."""
    return ctx.derived.coverage(fact)


def _short(fact: Fact) -> str:
    return _SHORT.get(fact.kind, fact.label)


RULES = (
    Rule("R00a", ("DESIGN",), missing_laterality),
    Rule("R00b", ("DESIGN",), units),
    Rule("R00c", ("DESIGN",), stale, after_others=True),
    Rule("R00d", ("DESIGN",), conflicts),
)
