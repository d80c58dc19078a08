"""R18: SEED-003 IVUS-candidate patterns, routed through non-invasive pelvic imaging (CTV or MRV) first."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from app.workup.derived_devices import date_key
from app.workup.facts import LEGS, Fact, Side, Status
from app.workup.rules.base import Finding, Rule, RuleContext

_CEAP = re.compile(r"^C(?P<cls>[0-6])(?P<sub>[abcr]?)(?P<sym>[sa]?)$", re.IGNORECASE)
# A documented iliac compression/stenosis already answers "consider iliac outflow obstruction" (R08/R12b own it).
_OBSTRUCTION_VALUES = frozenset({"stenosis", "compression"})


@dataclass(frozen=True)
class _Pattern:
    """One SEED-003 pattern found on a leg: its card text and the facts that show it."""

    label: str
    facts: tuple[Fact, ...]


def _ceap(fact: Fact) -> tuple[int, str] | None:
    match = _CEAP.match(fact.value or "")
    if match is None:
        return None
    return int(match.group("cls")), match.group("sub").lower()


def _on(fact: Fact, leg: Side) -> bool:
    """On the leg, or a patient-level result with no side (ABI, arterial study, reflux study)."""
    return fact.on(leg) or (fact.side is None and not fact.side_specific)


def _latest(facts: list[Fact]) -> Fact | None:
    return max(facts, key=date_key) if facts else None


def _latest_ceap(ctx: RuleContext, leg: Side) -> tuple[Fact, int, str] | None:
    found = [
        f
        for f in ctx.facts.of("ceap-c")
        if not f.draft and f.status is Status.FINAL and f.on(leg) and _ceap(f)
    ]
    latest = _latest(found)
    parsed = _ceap(latest) if latest is not None else None
    return (latest, *parsed) if latest is not None and parsed is not None else None


def _active(
    ctx: RuleContext, leg: Side, *kinds: str, tag: str | None = None
) -> list[Fact]:
    return [
        f
        for f in ctx.facts.facts
        if not f.draft
        and f.is_active
        and f.on(leg)
        and (f.kind in kinds or (tag is not None and tag in f.tags))
    ]


def _no_reflux(ctx: RuleContext, leg: Side) -> Fact | None:
    """The latest final reflux result of the leg, when it says no superficial or deep reflux."""
    latest = _latest(
        [
            f
            for f in ctx.facts.of("venous-reflux")
            if not f.draft and f.status is Status.FINAL and _on(f, leg) and f.value
        ]
    )
    return latest if latest is not None and latest.value == "absent" else None


def _normal_arterial(ctx: RuleContext, leg: Side) -> Fact | None:
    """The latest arterial study or ABI of the leg, when normal (ABI within the card's range, inclusive)."""
    low = ctx.catalog.param("R18", "abi_normal_min")
    high = ctx.catalog.param("R18", "abi_normal_max")

    def normal(fact: Fact) -> bool | None:
        if fact.kind == "arterial-study":
            return None if fact.value is None else fact.value == "normal"
        value: Decimal | None = fact.number
        return None if value is None else low <= value <= high

    results = [
        f
        for f in ctx.facts.of("arterial-study", "ankle-brachial-index")
        if not f.draft
        and f.status is Status.FINAL
        and _on(f, leg)
        and normal(f) is not None
    ]
    if not results:
        return None
    latest_day = max(date_key(f)[0] for f in results)
    # On the latest day, one abnormal result (e.g. ABI 0.7 beside a "normal" duplex) wins.
    last = [f for f in results if date_key(f)[0] == latest_day]
    return last[0] if all(normal(f) for f in last) else None


def _unexplained_swelling(ctx: RuleContext, leg: Side) -> _Pattern | None:
    """Pattern 1: unilateral swelling persisting after a negative duplex, no systemic cause, no DVT."""
    d = ctx.derived
    other = Side.RIGHT if leg is Side.LEFT else Side.LEFT
    if any("edema" in f.tags for f in d.symptom_facts(other)):
        return None
    if d.systemic_edema_causes or d.dvt_active(leg) or _pulsatile_cfv(ctx, leg):
        return None
    duplex = d.dvt_excluded_fempop(leg)
    if duplex is None or duplex.date is None:
        return None
    swelling = [
        f
        for f in d.symptom_facts(leg)
        if "edema" in f.tags
        and (f.is_active or (f.date is not None and f.date >= duplex.date))
    ]
    if not swelling:
        return None
    return _Pattern(f"Unexplained {leg.value} leg swelling", (*swelling, duplex))


def _pulsatile_cfv(ctx: RuleContext, leg: Side) -> bool:
    """Latest CFV waveform in W_DUPLEX is pulsatile: raised right-heart pressure (towards R06), a cause found."""
    d = ctx.derived
    waveforms = [
        f
        for f in ctx.facts.of("cfv-waveform")
        if not f.draft
        and f.status is Status.FINAL
        and f.on(leg)
        and d.in_duplex_window(f, leg)
    ]
    latest = _latest(waveforms)
    return latest is not None and latest.value == "pulsatile"


def _claudication(ctx: RuleContext, leg: Side) -> _Pattern | None:
    """Pattern 2: venous claudication with a normal arterial study."""
    pain = _active(ctx, leg, "venous-claudication")
    arterial = _normal_arterial(ctx, leg) if pain else None
    if arterial is None:
        return None
    return _Pattern(
        f"{leg.value.capitalize()} venous claudication, normal arterial study",
        (*pain, arterial),
    )


def _skin_or_ulcer(
    ctx: RuleContext, leg: Side, classes: frozenset[int], tag: str, label: str
) -> _Pattern | None:
    """Patterns 3 and 4: CEAP skin changes (C4) or ulcer (C5/C6) with a duplex showing no reflux."""
    ceap = _latest_ceap(ctx, leg)
    found = [ceap[0]] if ceap is not None and ceap[1] in classes else []
    found += _active(ctx, leg, tag=tag)
    reflux = _no_reflux(ctx, leg) if found else None
    if reflux is None:
        return None
    return _Pattern(
        f"{leg.value.capitalize()} {label} without venous reflux", (*found, reflux)
    )


def _skin_changes(ctx: RuleContext, leg: Side) -> _Pattern | None:
    return _skin_or_ulcer(ctx, leg, frozenset({4}), "skin-change", "ankle skin changes")


def _ulcer(ctx: RuleContext, leg: Side) -> _Pattern | None:
    return _skin_or_ulcer(ctx, leg, frozenset({5, 6}), "ulcer", "venous ulcer")


def _recurrent_varices(ctx: RuleContext, leg: Side) -> _Pattern | None:
    """Pattern 5: CEAP C2r, or varicose veins after a prior ablation/stripping (any age)."""
    ceap = _latest_ceap(ctx, leg)
    if ceap is not None and ceap[1] == 2 and ceap[2] == "r":
        found: tuple[Fact, ...] = (ceap[0],)
    else:
        varices = _active(ctx, leg, "varicose-veins")
        treated = [
            f
            for f in (*ctx.facts.facts, *ctx.facts.stale)
            if f.kind == "vein-ablation" and not f.draft and f.is_result and _on(f, leg)
        ]
        if not varices or not treated:
            return None
        found = (*varices, *treated)
    return _Pattern(f"Recurrent {leg.value} varicose veins after treatment", found)


def _suprapubic_varices(ctx: RuleContext, leg: Side) -> _Pattern | None:
    """Pattern 6 with a side: suprapubic / abdominal-wall collaterals recorded for this leg."""
    varices = _active(ctx, leg, "pelvic-varices")
    if not varices:
        return None
    return _Pattern("Suprapubic or pelvic varices", tuple(varices))


_PATTERNS: tuple[Callable[[RuleContext, Side], _Pattern | None], ...] = (
    _unexplained_swelling,
    _claudication,
    _skin_changes,
    _ulcer,
    _recurrent_varices,
    _suprapubic_varices,
)


def _eligible(ctx: RuleContext, leg: Side) -> bool:
    """No pelvic CT/MR within W_XSEC and the iliac question not already answered or owned by another rule."""
    d = ctx.derived
    if d.pelvic_xsec(leg) or d.dvt_active(leg) or d.pelvic_mass(leg):
        return False
    if d.stent_in_situ(leg) or d.ivus(leg) or d.venogram(leg):
        return False
    return not any(
        f.on(leg)
        and not f.draft
        and (
            f.kind == "iliac-compression"
            or (f.is_result and f.value in _OBSTRUCTION_VALUES)
        )
        for f in ctx.facts.facts
    )


def _finding(ctx: RuleContext, side: Side | None, patterns: list[_Pattern]) -> Finding:
    facts = [f for p in patterns for f in p.facts]
    return Finding(
        "R18",
        side,
        params={"pattern": patterns[0].label},
        evidence=ctx.references(facts),
        reasons=ctx.conditions(facts),
        # In pregnancy non-contrast MRV is offered first and CTV second (R19a), as for R02/R03.
        suggestion_set="pregnant" if ctx.derived.pregnant else "default",
        notes=tuple(f"SEED-003 pattern: {p.label}." for p in patterns),
    )


def ivus_candidate(ctx: RuleContext) -> Iterator[Finding]:
    """R18: one info card per leg showing any SEED-003 pattern and no pelvic cross-sectional imaging.

    Suppressed centrally (cards/R18.yaml) during active DVT, for bilateral symptoms with a systemic cause
    (R06 warning) unless the CFV waveform is abnormal, and where R02, R03 or R12b fires on that leg.
    Suprapubic varices with no side give one patient-level card (pelvic imaging covers both legs).
    """
    found: dict[Side, list[_Pattern]] = {}
    for leg in LEGS:
        if not _eligible(ctx, leg):
            continue
        patterns = [p for check in _PATTERNS if (p := check(ctx, leg)) is not None]
        if patterns:
            found[leg] = patterns
    unsided = _unsided_varices(ctx)
    if unsided is not None and found:
        found = {leg: [*p, unsided] for leg, p in found.items()}
    elif unsided is not None:
        yield _finding(ctx, None, [unsided])
    for leg, patterns in found.items():
        yield _finding(ctx, leg, patterns)


def _unsided_varices(ctx: RuleContext) -> _Pattern | None:
    d = ctx.derived
    varices = [
        f
        for f in ctx.facts.of("pelvic-varices")
        if not f.draft and f.is_active and f.side is None
    ]
    if not varices or d.pelvic_xsec(None):
        return None
    if any(not _eligible(ctx, leg) for leg in LEGS):
        return None
    return _Pattern("Suprapubic or pelvic varices", tuple(varices))


RULES = (Rule("R18", ("SEED-003", "ACR-CVD", "AETNA-0382"), ivus_candidate),)
