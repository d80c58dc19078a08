"""R10, R11, R13, R14, R15: checks of a drafted iliac vein stent against IVUS and device rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from app.workup.derived import Ivus, StentDraft, decimal_text
from app.workup.derived_devices import date_key
from app.workup.facts import LEGS, Measure, Side
from app.workup.rules.base import Finding, Rule, RuleContext

_ONE_DECIMAL = Decimal("0.1")
_HUNDRED = Decimal(100)
_NON_INVASIVE = frozenset({"ct", "mr", "us"})
_SEGMENT_TEXT = {
    "civ": "common iliac vein",
    "eiv": "external iliac vein",
    "iiv": "internal iliac vein",
    "iliac": "iliac vein (segment not stated)",
    "ivc": "IVC",
    "cfv": "common femoral vein",
}


def _drafts(ctx: RuleContext, leg: Side) -> list[StentDraft]:
    """STENT_DRAFT(leg) under review (order-select: the selected orders only)."""
    return [s for s in ctx.derived.stent_drafts(leg) if ctx.triggering(s.order)]


@dataclass(frozen=True)
class Stenosis:
    """IVUS %DS as reported, or computed from MLD and the reference EIV diameter (both mm)."""

    value: Decimal
    computed: bool
    note: str


def ivus_stenosis(ivus: Ivus) -> Stenosis | None:
    """The IVUS %DS in %, or `(1 - MLD/ref) x 100` rounded to 1 decimal; None if neither is usable."""
    reported = ivus.stenosis
    if reported is not None and reported.value is not None and reported.unit == "%":
        text = decimal_text(reported.value)
        return Stenosis(reported.value, False, f"IVUS diameter stenosis {text} %.")
    mld, ref = _mm(ivus.mld), _mm(ivus.reference)
    if mld is None or ref is None or ref <= 0:
        return None
    value = ((1 - mld / ref) * _HUNDRED).quantize(_ONE_DECIMAL, ROUND_HALF_UP)
    note = (
        f"Diameter stenosis computed from IVUS: (1 − MLD {decimal_text(mld)} mm / reference EIV "
        f"{decimal_text(ref)} mm) × 100 = {decimal_text(value)} %."
    )
    return Stenosis(value, True, note)


def _mm(measure: Measure | None) -> Decimal | None:
    if measure is None or measure.value is None or measure.unit != "mm":
        return None
    return measure.value


def diameter_stenosis(ctx: RuleContext) -> Iterator[Finding]:
    """R10: stent drafted and IVUS %DS <= 61 % (61.0 fires, 61.5 does not)."""
    d = ctx.derived
    limit = ctx.catalog.param("R10", "max_percent")
    for leg in LEGS:
        drafts = _drafts(ctx, leg)
        ivus = d.ivus(leg)
        if not drafts or ivus is None:
            continue
        stenosis = ivus_stenosis(ivus)
        if stenosis is None or stenosis.value > limit:
            continue
        yield Finding(
            "R10",
            leg,
            params={"x": decimal_text(stenosis.value), "side": leg.value},
            evidence=(*ctx.references(s.order for s in drafts), *ivus.sources),
            notes=(stenosis.note,),
        )


def dynamic_lesion(ctx: RuleContext) -> Iterator[Finding]:
    """R11: stent drafted and the latest IVUS/venography lesion behaviour (within W_IVUS) is dynamic."""
    d = ctx.derived
    days = ctx.catalog.settings.windows.ivus_days
    for leg in LEGS:
        drafts = _drafts(ctx, leg)
        if not drafts:
            continue
        behaviour = [
            f
            for f in ctx.facts.of("lesion-behavior")
            if not f.draft
            and f.is_result
            and f.on(leg)
            and f.value
            and d.within(f, days)
            # Behaviour is judged on IVUS or venography; a CT/MR/US-only statement does not count.
            and not (f.methods and f.methods <= _NON_INVASIVE)
        ]
        if not behaviour:
            continue
        latest = max(behaviour, key=date_key)
        if latest.value != "dynamic":
            continue
        yield Finding(
            "R11",
            leg,
            params={"side": leg.value},
            evidence=(*ctx.references(s.order for s in drafts), latest.source),
        )


@dataclass(frozen=True)
class _Device:
    """One planned stent: a DeviceRequest, or the stent order itself when it carries the dimensions."""

    source: str
    lengths: tuple[Measure | None, ...]
    diameters: tuple[Measure | None, ...]
    extension: bool


def _devices(ctx: RuleContext, draft: StentDraft) -> list[_Device]:
    """Each planned stent of one stent order, so that several stents are evaluated each (R13)."""
    order = draft.order.source
    parts = [order] + [
        f.source
        for f in ctx.facts.of("stent-device")
        if f.draft and f.source != order and order in f.links
    ]
    devices = []
    for part in parts:
        measures = [f for f in ctx.facts.facts if f.part_of == part]
        if part == order and len(parts) > 1 and not measures:
            continue  # the order only groups its DeviceRequests
        devices.append(
            _Device(
                source=part,
                lengths=tuple(f.measure for f in measures if f.kind == "stent-length"),
                diameters=tuple(
                    f.measure for f in measures if f.kind == "stent-diameter"
                ),
                extension=any(
                    f.kind == "stent-extension" and f.value == "true" for f in measures
                ),
            )
        )
    return devices


def _length_mm(device: _Device) -> Decimal | None:
    """The planned length in mm; None when missing or without a usable unit (R00b)."""
    values = [_mm(m) for m in device.lengths]
    if not values or any(v is None for v in values):
        return None
    return min(v for v in values if v is not None)


def stent_length(ctx: RuleContext) -> Iterator[Finding]:
    """R13: each planned stent >= 60 mm; missing/unusable length -> warning; marked extensions exempt."""
    minimum = ctx.catalog.param("R13", "min_length_mm")
    for leg in LEGS:
        drafts = _drafts(ctx, leg)
        devices = [dev for s in drafts for dev in _devices(ctx, s)]
        if not devices:
            continue
        lengths = {dev.source: _length_mm(dev) for dev in devices}
        # An explicitly marked extension overlapping a >= 60 mm stent drafted for the same leg (selected
        # or not) is out of scope.
        anchored = any(
            not dev.extension and (_length_mm(dev) or 0) >= minimum
            for s in ctx.derived.stent_drafts(leg)
            for dev in _devices(ctx, s)
        )
        short: list[tuple[Decimal, str]] = []
        missing: list[str] = []
        for dev in devices:
            if dev.extension and anchored:
                continue
            length = lengths[dev.source]
            if length is None:
                missing.append(dev.source)
            elif length < minimum:
                short.append((length, dev.source))
        if not short and not missing:
            continue
        notes = [f"`{src}`: planned length {decimal_text(n)} mm." for n, src in short]
        notes += [f"`{src}`: no planned length in mm." for src in missing]
        evidence = (
            *ctx.references(s.order for s in drafts),
            *(src for _, src in short),
            *missing,
        )
        if short:
            n = min(length for length, _ in short)
            params = {"n": decimal_text(n), "side": leg.value}
            variant = "default"
        else:
            params = {"side": leg.value}
            variant = "missing"
        yield Finding(
            "R13",
            leg,
            variant,
            params,
            tuple(dict.fromkeys(evidence)),
            notes=tuple(notes),
        )


def external_iliac_landing(ctx: RuleContext) -> Iterator[Finding]:
    """R14: the planned landing segments of the leg's stent drafts do not include the EIV."""
    d = ctx.derived
    for leg in LEGS:
        if not _drafts(ctx, leg):
            continue
        # Segments of every stent drafted for the leg: a second order may carry the EIV segment.
        planned = [s.order for s in d.stent_drafts(leg)]
        sites = frozenset(site for order in planned for site in order.sites)
        if "eiv" in sites:
            continue
        if "iliac" not in sites and sites & {"ivc", "cfv"}:
            continue  # an IVC/CFV-only stent: R14 does not apply
        named = sites & {"civ", "eiv", "iiv", "ivc", "cfv"}
        # `iliac` is also the group of every iliac segment: name it only when no segment is stated.
        shown = named or sites & {"iliac"}
        stated = [text for site, text in _SEGMENT_TEXT.items() if site in shown]
        yield Finding(
            "R14",
            leg,
            params={"side": leg.value},
            evidence=ctx.references(planned),
            notes=(f"Planned landing segments: {', '.join(stated) or 'none stated'}.",),
        )


def oversizing(ctx: RuleContext) -> Iterator[Finding]:
    """R15: planned diameter d vs IVUS reference EIV r (same leg, W_IVUS); fire if d - r outside [1, 4] mm."""
    d = ctx.derived
    low = ctx.catalog.param("R15", "oversize_min_mm")
    high = ctx.catalog.param("R15", "oversize_max_mm")
    for leg in LEGS:
        drafts = _drafts(ctx, leg)
        ivus = d.ivus(leg)
        ref = _mm(ivus.reference) if ivus is not None else None
        if not drafts or ivus is None or ref is None:
            continue
        devices = [dev for s in drafts for dev in _devices(ctx, s)]
        off = [
            (diameter, dev.source)
            for dev in devices
            for diameter in (_mm(m) for m in dev.diameters)
            if diameter is not None and not low <= diameter - ref <= high
        ]
        if not off:
            continue
        diameter, _ = off[0]
        notes = [
            f"`{src}`: {decimal_text(dia)} mm − {decimal_text(ref)} mm = "
            f"{decimal_text(dia - ref)} mm."
            for dia, src in off
        ]
        if ivus_stenosis(ivus) is None:
            notes.append(
                "No quantitative IVUS result: no diameter stenosis and no MLD to compute it, so the "
                "> 61 % check (R10) could not be made."
            )
        yield Finding(
            "R15",
            leg,
            params={"d": decimal_text(diameter), "r": decimal_text(ref)},
            evidence=(
                *ctx.references(s.order for s in drafts),
                *(src for _, src in off),
                *ivus.sources,
            ),
            notes=tuple(notes),
        )


RULES = (
    Rule("R10", ("SEED-001", "VIDIO", "Jayaraj-2021"), diameter_stenosis),
    Rule("R11", ("SEED-001",), dynamic_lesion),
    Rule("R13", ("SEED-001", "Sayed-2022", "Alameddine-2022"), stent_length),
    Rule("R14", ("SEED-001",), external_iliac_landing),
    Rule("R15", ("SEED-001",), oversizing),
)
