"""Values of facts: Observation value[x] and components, report conclusions, order parameters."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, InvalidOperation

from app.catalog.index import Catalog, ConceptMatch
from app.workup.facts import Fact, Side
from app.workup.fhirread import measure_of, parse_date, resolve_side
from app.workup.jsontypes import JsonObject, child, children, codings, string

_THROMBUS_KINDS = {"dvt": "thrombus", "dvt-chronic": "chronic-thrombus"}
MODALITY_TAGS = frozenset({"ivus", "ct", "mr", "us", "venography"})


def make_fact(
    base: Fact, match: ConceptMatch, stated: set[Side], sites: frozenset[str]
) -> Fact:
    """A fact of one concept, its side resolved from every place that states one."""
    sides = set(stated)
    if match.side is not None:
        sides.add(Side(match.side))
    side, conflict = resolve_side(sides)
    segment_sites = frozenset({match.segment}) if match.segment else frozenset()
    return replace(
        base,
        kind=match.kind,
        label=match.label,
        side=side,
        laterality_conflict=conflict,
        side_specific=match.side_specific,
        segment=match.segment,
        sites=sites | segment_sites,
        tags=base.tags | match.tags,
        methods=base.methods | (match.tags & MODALITY_TAGS),
    )


def read_values(
    resource: JsonObject,
    facts: list[Fact],
    base: Fact,
    stated: set[Side],
    catalog: Catalog,
) -> list[Fact]:
    """Attach values to the code facts and add facts for components, conclusions and parameters."""
    rtype = string(resource, "resourceType")
    if rtype == "Observation":
        out = [with_value(f, resource, stated, catalog) for f in facts]
        methods = frozenset(m for f in facts for m in f.methods)
        part = replace(base, part_of=base.source, methods=base.methods | methods)
        for comp in children(resource, "component"):
            for match in _matches(codings(child(comp, "code")), catalog):
                fact = make_fact(part, match, stated, part.sites)
                out.append(with_value(fact, comp, stated, catalog))
        return out
    if rtype == "DiagnosticReport":
        return _conclusions(resource, facts, base, stated, catalog)
    if rtype == "ServiceRequest":
        return facts + _stent_extensions(resource, base, catalog)
    if rtype == "DeviceRequest":
        return facts + _parameters(resource, base, catalog)
    return facts


def _matches(pairs: list[tuple[str, str]], catalog: Catalog) -> list[ConceptMatch]:
    found: dict[str, ConceptMatch] = {}
    for system, code in pairs:
        for match in catalog.index.lookup(system, code):
            found.setdefault(match.kind, match)
    return list(found.values())


def with_value(
    fact: Fact, holder: JsonObject, stated: set[Side], catalog: Catalog
) -> Fact:
    """The fact with the value[x] of `holder` (an Observation or one of its components)."""
    concept = child(holder, "valueCodeableConcept")
    if concept is not None:
        return _coded_value(fact, codings(concept), stated, catalog)
    unit = catalog.concepts[fact.kind].unit
    quantity = child(holder, "valueQuantity")
    if quantity is not None and unit is not None:
        return replace(fact, measure=measure_of(quantity, unit, catalog))
    number = holder.get("valueInteger")
    if quantity is not None:
        number = quantity.get("value")
    if isinstance(number, int | float) and not isinstance(number, bool):
        try:
            return replace(fact, number=Decimal(str(number)))
        except InvalidOperation:
            return fact
    if isinstance(holder.get("valueBoolean"), bool):
        return replace(fact, value=str(holder["valueBoolean"]).lower())
    when = parse_date(holder.get("valueDateTime"))
    return replace(fact, value_date=when) if when is not None else fact


def _coded_value(
    fact: Fact, pairs: list[tuple[str, str]], stated: set[Side], catalog: Catalog
) -> Fact:
    for system, code in pairs:
        token = catalog.index.value(system, code)
        if token is not None:
            return replace(fact, value=token)
    for match in _matches(pairs, catalog):
        token = _THROMBUS_KINDS.get(match.kind)
        if token is None:
            continue
        # A DVT code as the result value locates the thrombus; its side must agree with the study's.
        sides = set(stated) | ({fact.side} if fact.side else set())
        if match.side is not None:
            sides.add(Side(match.side))
        side, conflict = resolve_side(sides)
        extra = frozenset({match.segment}) if match.segment else frozenset()
        return replace(
            fact,
            value=token,
            side=side,
            laterality_conflict=conflict or fact.laterality_conflict,
            segment=match.segment or fact.segment,
            sites=fact.sites | extra,
        )
    return fact


def _conclusions(
    resource: JsonObject,
    facts: list[Fact],
    base: Fact,
    stated: set[Side],
    catalog: Catalog,
) -> list[Fact]:
    conclusions = [codings(cc) for cc in children(resource, "conclusionCode")]
    if not facts:
        # A report of an unmapped study whose conclusion is a DVT code still shows thrombus.
        concept = catalog.concepts["thrombus"]
        facts = [
            replace(base, kind=concept.kind, label=concept.label, side_specific=True)
        ]
    if not conclusions:
        return facts
    out: list[Fact] = []
    for fact in facts:
        for pairs in conclusions:
            valued = _coded_value(fact, pairs, stated, catalog)
            if valued.value is not None:
                out.append(valued)
    return out or facts


def _stent_extensions(resource: JsonObject, base: Fact, catalog: Catalog) -> list[Fact]:
    urls = {catalog.extensions.get(k): k for k in ("stent-length", "stent-diameter")}
    out: list[Fact] = []
    for ext in children(resource, "extension"):
        kind = urls.get(string(ext, "url"))
        if kind is None:
            continue
        concept = catalog.concepts[kind]
        measure = measure_of(
            child(ext, "valueQuantity"), concept.unit or "length", catalog
        )
        out.append(
            replace(
                base,
                kind=kind,
                label=concept.label,
                measure=measure,
                part_of=base.source,
            )
        )
    return out


def _parameters(resource: JsonObject, base: Fact, catalog: Catalog) -> list[Fact]:
    out: list[Fact] = []
    part = replace(base, part_of=base.source)
    for param in children(resource, "parameter"):
        for match in _matches(codings(child(param, "code")), catalog):
            fact = make_fact(part, match, set(), part.sites)
            out.append(with_value(fact, param, set(), catalog))
    return out
