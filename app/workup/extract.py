"""Raw FHIR JSON -> facts: select by mapped code, validate with fhir.resources R4B, then read."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.devicerequest import DeviceRequest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ValidationError

from app.catalog.index import Catalog, CodeIndex, ConceptMatch
from app.workup.facts import Fact, FactSet, Side, Status
from app.workup.fhirread import (
    age_days,
    date_of,
    modifier_sides,
    parse_date,
    resolve_side,
    sides_of_concept,
    sites_of,
    status_of,
)
from app.workup.jsontypes import JsonObject, child, children, codings, objs, string
from app.workup.readers import make_fact, read_values

_MODELS: dict[str, type[BaseModel]] = {
    "Condition": Condition,
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "ImagingStudy": ImagingStudy,
    "Procedure": Procedure,
    "ServiceRequest": ServiceRequest,
    "DeviceRequest": DeviceRequest,
    "MedicationRequest": MedicationRequest,
    "MedicationStatement": MedicationStatement,
}
_CODE_FIELD = {
    "Condition": "code",
    "Observation": "code",
    "DiagnosticReport": "code",
    "Procedure": "code",
    "ServiceRequest": "code",
    "DeviceRequest": "codeCodeableConcept",
    "MedicationRequest": "medicationCodeableConcept",
    "MedicationStatement": "medicationCodeableConcept",
}
_RESULT_TYPES = frozenset(
    {"Observation", "DiagnosticReport", "Procedure", "ImagingStudy"}
)


def primary_codings(resource: JsonObject) -> list[tuple[str, str]]:
    """The codings that decide whether a resource is relevant (cheap; no validation)."""
    rtype = string(resource, "resourceType") or ""
    if rtype == "ImagingStudy":
        found = [p for cc in children(resource, "procedureCode") for p in _pairs(cc)]
        found += [p for m in children(resource, "modality") for p in _pairs(m)]
        for series in children(resource, "series"):
            found += _pairs(series.get("modality"))
        return found
    field = _CODE_FIELD.get(rtype)
    if field is None:
        return []
    found = _pairs(resource.get(field))
    if rtype == "Observation":
        found += [
            p
            for comp in children(resource, "component")
            for p in _pairs(comp.get("code"))
        ]
    elif rtype == "DiagnosticReport":
        found += [p for cc in children(resource, "conclusionCode") for p in _pairs(cc)]
    return found


def _pairs(concept: object) -> list[tuple[str, str]]:
    """jsontypes.codings(obj(concept)) inlined: this runs for every resource of the record (2,000 in a
    long-followed patient's prefetch), where the helper calls cost more than the reading."""
    if not isinstance(concept, dict):
        return []
    listed = concept.get("coding")
    if isinstance(listed, list):
        items = [c for c in listed if isinstance(c, dict)]
    else:
        items = [listed] if isinstance(listed, dict) else []
    if not items and "code" in concept:
        items = [concept]
    pairs: list[tuple[str, str]] = []
    for coding in items:
        code = coding.get("code")
        if isinstance(code, str):
            system = coding.get("system")
            pairs.append((system if isinstance(system, str) else "", code))
    return pairs


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    source: str
    status: Status
    draft: bool
    selected: bool


def extract_facts(
    *,
    resources: Iterable[JsonObject],
    draft_orders: Iterable[JsonObject],
    selections: Iterable[str],
    catalog: Catalog,
    now: datetime,
) -> FactSet:
    """Facts of the record and of the draft orders; stale results are split off (R00c).

    Args:
        resources: raw FHIR R4 JSON of the patient record.
        draft_orders: raw FHIR JSON from `context.draftOrders`.
        selections: `context.selections` references, e.g. "ServiceRequest/abc".
        catalog: the loaded catalogue (code index, units, laterality sources).
        now: the service clock; results older than the stale window are split off.
    """
    chosen = set(selections)
    facts: list[Fact] = []
    invalid = 0
    seen_anonymous = 0
    for draft, batch in ((False, resources), (True, draft_orders)):
        for resource in batch:
            if not _relevant(resource, catalog):
                continue
            known = _READ.entry(resource, catalog)
            if not known.valid:
                invalid += 1
                continue
            status = status_of(resource, draft=draft)
            if status is None:
                continue
            source = _reference(resource)
            if source is None:
                seen_anonymous += 1
                source = f"{resource['resourceType']}/#{seen_anonymous}"
            ctx = _Context(catalog, source, status, draft, source in chosen)
            facts.extend(known.read(resource, ctx))
    facts = _link(facts)
    stale_days = catalog.settings.windows.stale_days
    fresh = [f for f in facts if not _is_stale(f, now, stale_days)]
    stale = [f for f in facts if _is_stale(f, now, stale_days)]
    return FactSet(tuple(fresh), invalid, tuple(stale))


class _ReadMemo:
    """Validation (fhir.resources R4B) and reading of the selected resources, remembered by content.

    Validation costs ~9 µs per element (0.15-0.4 ms for a typical selected resource) and reading a valid one into
    facts about as much again; both are pure functions of the resource JSON, the way it is read (draft order or
    record, selected, its reference) and the catalogue. An EHR re-sends the same resources on every hook of a chart
    session (patient-view, order-select, order-sign). The key is the resource type and a 128-bit BLAKE2b digest of
    the resource's bytes, so an edited resource is validated and read afresh. An entry holds the validity and the
    frozen facts read from the resource (no FHIR JSON); the least recently used entry beyond `maxsize` is
    forgotten, and everything is forgotten when another catalogue is used.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[tuple[str, bytes], _Read] = OrderedDict()
        self._catalog: Catalog | None = None

    def entry(self, resource: JsonObject, catalog: Catalog) -> _Read:
        """What is known of `resource`: whether it validates, and the facts read from it so far."""
        rtype = string(resource, "resourceType") or ""
        try:
            digest = hashlib.blake2b(orjson.dumps(resource), digest_size=16).digest()
        except (orjson.JSONEncodeError, TypeError):
            # Not representable by orjson (an integer over 64 bits from a FHIR server): not remembered.
            return _Read(_validates(rtype, resource))
        if catalog is not self._catalog:
            self._entries.clear()
            self._catalog = catalog
        key = (rtype, digest)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Read(_validates(rtype, resource))
            if len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._catalog = None


@dataclass
class _Read:
    valid: bool
    # (source, status, draft, selected) -> facts; a resource is nearly always read one way.
    _facts: dict[tuple[str, Status, bool, bool], tuple[Fact, ...]] = field(
        default_factory=dict
    )

    def read(self, resource: JsonObject, ctx: _Context) -> tuple[Fact, ...]:
        """The facts of this (valid) resource read in `ctx`, read once per way of reading it."""
        how = (ctx.source, ctx.status, ctx.draft, ctx.selected)
        facts = self._facts.get(how)
        if facts is None:
            facts = self._facts[how] = tuple(_read(resource, ctx))
        return facts


def _validates(rtype: str, resource: JsonObject) -> bool:
    try:
        _MODELS[rtype].model_validate(resource)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


# 8,192 resources: the selected resources of a few thousand recent hook calls, a few MB of frozen facts.
_READ = _ReadMemo(maxsize=8192)


def _without_onset(resource: JsonObject) -> bool:
    """A Condition dated only by recordedDate: that date is not a symptom onset."""
    if string(resource, "resourceType") != "Condition":
        return False
    return not any(key.startswith("onset") for key in resource)


def _relevant(resource: JsonObject, catalog: Catalog) -> bool:
    """Whether any of primary_codings(resource) is a mapped code.

    The same answer as `any(index.knows(*p) for p in primary_codings(resource))`, read without building the
    lists: this runs for every resource of the record (tests/workup/test_extract_selection.py checks both agree).
    """
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in _MODELS:
        return False
    index = catalog.index
    concepts: list[object]
    if rtype == "ImagingStudy":
        concepts = [
            *objs(resource.get("procedureCode")),
            *objs(resource.get("modality")),
        ]
        concepts += [series.get("modality") for series in children(resource, "series")]
    else:
        concepts = [resource.get(_CODE_FIELD[rtype])]
        if rtype == "Observation" and "component" in resource:
            concepts += [comp.get("code") for comp in children(resource, "component")]
        elif rtype == "DiagnosticReport" and "conclusionCode" in resource:
            concepts += objs(resource.get("conclusionCode"))
    if len(concepts) == 1:  # most resources: no generator for one concept
        return _concept_known(concepts[0], index)
    return any(_concept_known(concept, index) for concept in concepts)


def _concept_known(concept: object, index: CodeIndex) -> bool:
    # Whether any coding `_pairs(concept)` reads is known to the index.
    if not isinstance(concept, dict):
        return False
    listed = concept.get("coding")
    items: list[object] | tuple[object, ...]
    if isinstance(listed, list):
        items = listed
    else:
        items = (listed,) if isinstance(listed, dict) else ()
    codings_seen = False
    for coding in items:
        if isinstance(coding, dict):
            codings_seen = True
            if _coding_known(coding, index):
                return True
    # A concept without Coding objects is read as a bare Coding (as `_pairs` does).
    return not codings_seen and "code" in concept and _coding_known(concept, index)


def _coding_known(coding: dict[str, object], index: CodeIndex) -> bool:
    code = coding.get("code")
    if not isinstance(code, str):
        return False
    system = coding.get("system")
    return index.knows(system if isinstance(system, str) else "", code)


def _reference(resource: JsonObject) -> str | None:
    rid = string(resource, "id")
    return f"{resource['resourceType']}/{rid}" if rid else None


def _is_stale(fact: Fact, now: datetime, stale_days: int) -> bool:
    if fact.draft or fact.resource_type not in _RESULT_TYPES or fact.date is None:
        return False
    return age_days(fact.date, now) > stale_days


def _matches(pairs: list[tuple[str, str]], catalog: Catalog) -> list[ConceptMatch]:
    found: dict[str, ConceptMatch] = {}
    for system, code in pairs:
        for match in catalog.index.lookup(system, code):
            prior = found.get(match.kind)
            # Several codings of one concept: the first fixes side/segment, all contribute tags
            # (e.g. CPT 72198 + LOINC 24873-2 "W contrast IV", RxNorm + SNOMED for a DOAC).
            found[match.kind] = (
                match if prior is None else replace(prior, tags=prior.tags | match.tags)
            )
    return list(found.values())


def _read(resource: JsonObject, ctx: _Context) -> list[Fact]:
    rtype = string(resource, "resourceType") or ""
    catalog = ctx.catalog
    if rtype == "ImagingStudy":
        return _read_imaging(resource, ctx)
    code = child(resource, _CODE_FIELD[rtype])
    body_sites = children(resource, "bodySite")
    sites = sites_of(body_sites, catalog)
    stated: set[Side] = modifier_sides(code, catalog)
    for site in body_sites:
        stated |= sides_of_concept(site, catalog)
    base = _base(resource, ctx, sites)
    facts = [
        make_fact(base, match, stated, sites)
        for match in _matches(codings(code), catalog)
        if match.requires_site is None or match.requires_site in sites
    ]
    return read_values(resource, facts, base, stated, catalog)


def _base(resource: JsonObject, ctx: _Context, sites: frozenset[str]) -> Fact:
    links = [
        string(ref, "reference") or ""
        for key in ("basedOn", "reasonReference", "derivedFrom", "partOf")
        for ref in children(resource, key)
    ]
    links += [
        f"result:{string(ref, 'reference')}" for ref in children(resource, "result")
    ]
    reasons = {
        f"reason:{m.kind}"
        for cc in children(resource, "reasonCode")
        for m in _matches(codings(cc), ctx.catalog)
    }
    if children(resource, "reasonCode"):
        reasons.add("has-reason")
    if _without_onset(resource):
        reasons.add("no-onset")
    if string(resource, "resourceType") == "ServiceRequest":
        reasons |= _contrast_tags(resource)
    methods = {
        tag
        for s, c in codings(child(resource, "method"))
        if (tag := ctx.catalog.index.method(s, c)) is not None
    }
    return Fact(
        kind="",
        label="",
        source=ctx.source,
        resource_type=string(resource, "resourceType") or "",
        status=ctx.status,
        sites=sites,
        date=date_of(resource),
        tags=frozenset(reasons),
        methods=frozenset(methods),
        draft=ctx.draft,
        selected=ctx.selected,
        links=tuple(link for link in links if link),
        recorded=parse_date(resource.get("recordedDate")),
    )


_WITH_CONTRAST = re.compile(
    r"\b(with|w)\s+(iv\s+)?(gadolinium|contrast)|\bgadolinium\b", re.IGNORECASE
)
_WITHOUT_CONTRAST = re.compile(
    r"\b(without|wo|w/o|non-?)\s*(iv\s+)?(gadolinium\s+)?contrast\b", re.IGNORECASE
)


def _contrast_tags(resource: JsonObject) -> set[str]:
    """Contrast stated on an imaging order (terminology.md §4.3: "without contrast" in orderDetail/text)."""
    texts = [string(child(resource, "code"), "text") or ""]
    for detail in children(resource, "orderDetail"):
        texts.append(string(detail, "text") or "")
        texts += [string(c, "display") or "" for c in children(detail, "coding")]
    text = " ".join(texts)
    if _WITH_CONTRAST.search(text):
        return {"contrast-stated"}
    return {"no-contrast"} if _WITHOUT_CONTRAST.search(text) else set()


def _read_imaging(resource: JsonObject, ctx: _Context) -> list[Fact]:
    catalog = ctx.catalog
    series = children(resource, "series")
    sites = sites_of(
        [s for item in series for s in children(item, "bodySite")], catalog
    )
    # Series of one study on both legs make a bilateral study, not a conflict.
    series_sides: set[Side] = set()
    for item in series:
        series_sides |= sides_of_concept(child(item, "laterality"), catalog)
    if {Side.LEFT, Side.RIGHT} <= series_sides:
        series_sides = {Side.BILATERAL}
    base = _base(resource, ctx, sites)
    pairs = primary_codings(resource)
    methods = {tag for s, c in pairs if (tag := catalog.index.method(s, c)) is not None}
    base = replace(base, methods=base.methods | methods)
    return [
        make_fact(base, match, series_sides, sites)
        for match in _matches(pairs, catalog)
        if match.requires_site is None or match.requires_site in sites
    ]


def _link(facts: list[Fact]) -> list[Fact]:
    """Cross-resource context from explicit references, never from text.

    A DeviceRequest takes the side of the ServiceRequest it is basedOn (terminology.md §2.2 item 4); an
    Observation listed in a DiagnosticReport's `result` takes the report's side when it states none; a result
    inherits the modality of what it is derivedFrom (an IVUS study makes its measurements IVUS measurements).
    """
    heads: dict[str, Fact] = {}
    for fact in facts:
        if fact.part_of is None:
            heads.setdefault(fact.source, fact)
    report_side: dict[str, Side] = {}
    for fact in facts:
        for link in fact.links:
            if link.startswith("result:") and fact.side is not None:
                report_side.setdefault(link.removeprefix("result:"), fact.side)
    resolved = [_resolve(fact, heads, report_side) for fact in facts]
    heads = {f.source: f for f in resolved if f.part_of is None}
    return [_inherit(fact, heads) for fact in resolved]


def _resolve(fact: Fact, heads: dict[str, Fact], report_side: dict[str, Side]) -> Fact:
    parents = [heads[r] for r in fact.links if r in heads]
    if fact.side is None and not fact.laterality_conflict and fact.part_of is None:
        if fact.resource_type == "DeviceRequest":
            sides = {p.side for p in parents if p.resource_type == "ServiceRequest"}
            side, conflict = resolve_side({s for s in sides if s is not None})
            fact = replace(fact, side=side, laterality_conflict=conflict)
        elif fact.source in report_side:
            fact = replace(fact, side=report_side[fact.source])
    methods = {m for p in parents for m in p.methods}
    if methods - fact.methods:
        fact = replace(fact, methods=fact.methods | methods)
    return fact


def _inherit(fact: Fact, heads: dict[str, Fact]) -> Fact:
    parent = heads.get(fact.part_of or "")
    if parent is None:
        return fact
    side, conflict = fact.side, fact.laterality_conflict
    if side is None and not conflict:
        side, conflict = parent.side, parent.laterality_conflict
    return replace(
        fact,
        side=side,
        laterality_conflict=conflict,
        methods=fact.methods | parent.methods,
    )
