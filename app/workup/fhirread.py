"""Reading single FHIR elements: status, dates, laterality, body sites and quantities."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from app.catalog.index import Catalog
from app.workup.facts import Measure, Side, Status
from app.workup.jsontypes import JsonObject, JsonValue, child, children, codings, string

UCUM = "http://unitsofmeasure.org"

_RESULT_STATUS = {
    "final": Status.FINAL,
    "amended": Status.FINAL,
    "corrected": Status.FINAL,
    "appended": Status.FINAL,
    "preliminary": Status.PRELIMINARY,
    "registered": Status.PRELIMINARY,
    "partial": Status.PRELIMINARY,
}
_IMAGING_STATUS = {"available": Status.FINAL, "registered": Status.PRELIMINARY}
_PROCEDURE_STATUS = {
    "completed": Status.COMPLETED,
    "in-progress": Status.PRELIMINARY,
    "preparation": Status.PRELIMINARY,
    "on-hold": Status.PRELIMINARY,
}
_REQUEST_STATUS = {
    "draft": Status.DRAFT,
    "active": Status.ORDERED,
    "on-hold": Status.ORDERED,
    "completed": Status.COMPLETED,
}
_MEDICATION_STATUS = {
    "active": Status.ACTIVE,
    "on-hold": Status.INACTIVE,
    "intended": Status.INACTIVE,
    "draft": Status.DRAFT,
    "completed": Status.INACTIVE,
    "stopped": Status.INACTIVE,
}
_CONDITION_INACTIVE = {"inactive", "remission", "resolved"}
_CONDITION_IGNORED = {"refuted", "entered-in-error"}


def status_of(resource: JsonObject, *, draft: bool) -> Status | None:
    """Normalised status; None means the resource must be ignored (entered-in-error, refuted, cancelled ...)."""
    rtype = string(resource, "resourceType")
    raw = string(resource, "status") or ""
    if rtype == "Condition":
        return _condition_status(resource)
    if resource.get("doNotPerform") is True:
        return Status.DO_NOT_PERFORM
    if draft:
        return Status.DRAFT if raw in ("draft", "") else None
    table = {
        "Observation": _RESULT_STATUS,
        "DiagnosticReport": _RESULT_STATUS,
        "ImagingStudy": _IMAGING_STATUS,
        "Procedure": _PROCEDURE_STATUS,
        "ServiceRequest": _REQUEST_STATUS,
        "DeviceRequest": _REQUEST_STATUS,
        "MedicationRequest": _MEDICATION_STATUS,
        "MedicationStatement": _MEDICATION_STATUS,
    }.get(rtype or "", {})
    return table.get(raw)


def _condition_status(resource: JsonObject) -> Status | None:
    verification = {c for _, c in codings(child(resource, "verificationStatus"))}
    if verification & _CONDITION_IGNORED:
        return None
    clinical = {c for _, c in codings(child(resource, "clinicalStatus"))}
    if clinical & _CONDITION_INACTIVE:
        return Status.INACTIVE
    if not clinical and any(k.startswith("abatement") for k in resource):
        return Status.INACTIVE
    return Status.ACTIVE


def parse_date(value: JsonValue) -> datetime | None:
    """FHIR date/dateTime/instant as an aware datetime; partial dates start at their first day (UTC)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    padded = {4: value + "-01-01", 7: value + "-01"}.get(len(value), value)
    try:
        parsed = datetime.fromisoformat(padded)
    except ValueError:
        return None
    # Date-only values carry no zone; read them as that calendar day in UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_DATE_FIELDS = {
    "Observation": (
        "effectiveDateTime",
        "effectivePeriod.start",
        "effectiveInstant",
        "issued",
    ),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "ImagingStudy": ("started",),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "ServiceRequest": ("authoredOn", "occurrenceDateTime"),
    "DeviceRequest": ("authoredOn", "occurrenceDateTime"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": (
        "effectiveDateTime",
        "effectivePeriod.start",
        "dateAsserted",
    ),
}


def date_of(resource: JsonObject) -> datetime | None:
    """The clinically relevant date (effective / onset / started / authoredOn / performed)."""
    for path in _DATE_FIELDS.get(string(resource, "resourceType") or "", ()):
        head, _, tail = path.partition(".")
        value = resource.get(head)
        if tail:
            period = child(resource, head)
            value = period.get(tail) if period is not None else None
        parsed = parse_date(value)
        if parsed is not None:
            return parsed
    return None


def age_days(when: datetime, now: datetime) -> int:
    """Whole calendar days (UTC) between `when` and `now`; windows compare these."""
    return (now.astimezone(UTC).date() - when.astimezone(UTC).date()).days


def sides_of_concept(concept: JsonObject | None, catalog: Catalog) -> set[Side]:
    """Sides stated on a CodeableConcept: laterality qualifier extensions and laterality codings."""
    found: set[Side] = set()
    if concept is None:
        return found
    for ext in children(concept, "extension"):
        if string(ext, "url") in catalog.laterality_extensions:
            for system, code in codings(child(ext, "valueCodeableConcept")):
                side = catalog.index.side(system, code)
                if side is not None:
                    found.add(Side(side))
    for system, code in codings(concept):
        side = catalog.index.side(system, code)
        if side is not None:
            found.add(Side(side))
    return found


def modifier_sides(concept: JsonObject | None, catalog: Catalog) -> set[Side]:
    """CPT modifiers LT/RT/50 sent as extra codings of the order or study code."""
    return {
        Side(catalog.modifiers[c])
        for _, c in codings(concept)
        if c in catalog.modifiers
    }


def resolve_side(sides: set[Side]) -> tuple[Side | None, bool]:
    """One side from all the places that state one; (None, True) when they disagree."""
    if not sides:
        return None, False
    if len(sides) == 1:
        return next(iter(sides)), False
    return None, True


def sites_of(concepts: list[JsonObject], catalog: Catalog) -> frozenset[str]:
    """Site tokens and site groups named by body-site CodeableConcepts (or Codings)."""
    found: set[str] = set()
    for concept in concepts:
        for system, code in codings(concept):
            info = catalog.index.site(system, code)
            if info is not None:
                found |= info.groups
    return frozenset(found)


def measure_of(
    quantity: JsonObject | None, family: str, catalog: Catalog
) -> Measure | None:
    """A valueQuantity normalised per R00b; an unknown or missing unit gives an unusable Measure."""
    if quantity is None:
        return None
    raw = quantity.get("value")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    system = string(quantity, "system")
    unit = string(quantity, "code") if system in (None, UCUM) else None
    unit = unit or string(quantity, "unit") or ""
    units = catalog.units[family]
    factor = units.factors.get(unit)
    if factor is None:
        return Measure(family, value, unit, None, None)
    return Measure(family, value, unit, value * factor, units.canonical)
