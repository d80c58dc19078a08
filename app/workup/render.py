"""Finding + card template -> CDS Hooks 2.0 card JSON (https://cds-hooks.org/specification/current/#card-attributes)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ValidationError

from app.catalog.index import Catalog
from app.catalog.models import (
    CardTemplate,
    Coding,
    OrderTemplate,
    SuggestionTemplate,
    placeholders,
)
from app.workup.facts import Side
from app.workup.jsontypes import JsonObject, JsonValue
from app.workup.rules.base import Finding

MCODE_LATERALITY = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier"
)
_LATERALITY_DISPLAY = {"left": "Left", "right": "Right", "bilateral": "Right and left"}
_ELLIPSIS = "…"


@dataclass(frozen=True)
class LinkConfig:
    """Base URLs for card links: the rules catalogue and (optionally) the SMART app launch."""

    rules_url: str
    smart_launch_url: str | None = None


@dataclass(frozen=True)
class RenderContext:
    catalog: Catalog
    patient_id: str
    links: LinkConfig
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4())


def fill_summary(template: str, params: Mapping[str, str], limit: int) -> str:
    """Fill `{placeholders}`; when too long, shorten the longest placeholder value, never the verb."""
    values = {name: params.get(name, "") for name in placeholders(template)}
    if "Side" in values and not values["Side"]:
        values["Side"] = params.get("side", "").capitalize()
    while True:
        text = re.sub(r" {2,}", " ", template.format_map(values)).strip()
        overflow = len(text) - limit
        if overflow <= 0:
            return text
        name = max(values, key=lambda k: len(values[k]), default=None)
        if name is None or len(values[name]) <= 1:
            return text[:limit]
        keep = max(len(values[name]) - overflow - 1, 0)
        values[name] = values[name][:keep].rstrip() + _ELLIPSIS


def render_card(finding: Finding, ctx: RenderContext) -> JsonObject:
    """The CDS Hooks card of one finding; optional attributes are omitted, never empty."""
    catalog = ctx.catalog
    template = catalog.card(finding.rule_id)
    variant = template.variants[finding.variant]
    card: JsonObject = {
        "uuid": ctx.new_uuid(),
        "summary": fill_summary(
            variant.summary, finding.params, catalog.settings.summary_max_chars
        ),
        "indicator": variant.indicator,
        "detail": _detail(template, finding, catalog),
        "source": {
            "label": f"{template.id} · {', '.join(template.label_sources)}",
            "topic": {
                "system": catalog.settings.rules_system,
                "code": template.id,
                "display": template.title,
            },
        },
    }
    suggestions = _suggestions(template, finding, ctx)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = template.selection_behavior
    if template.override_reasons:
        card["overrideReasons"] = [
            {"code": r.code, "system": catalog.local_system, "display": r.display}
            for r in template.override_reasons
        ]
    card["links"] = _links(template, finding, ctx.links)
    return card


def _detail(template: CardTemplate, finding: Finding, catalog: Catalog) -> str:
    parts = [template.detail.strip()]
    if finding.notes:
        parts.append("\n".join(f"- {note}" for note in finding.notes))
    cited = "\n".join(
        f"- **{key}**: {catalog.sources[key]}" for key in template.sources
    )
    parts.append(f"**Sources**\n\n{cited}")
    return "\n\n".join(parts)


def _links(
    template: CardTemplate, finding: Finding, links: LinkConfig
) -> list[JsonValue]:
    out: list[JsonValue] = [
        {
            "label": f"Rule {template.id}: {template.title}",
            "url": f"{links.rules_url}#{template.id}",
            "type": "absolute",
        }
    ]
    if links.smart_launch_url and template.leg_specific and finding.side is not None:
        context = {"leg": finding.side.value, "rule": template.id}
        out.append(
            {
                "label": "Open the iliac venous workup",
                "url": links.smart_launch_url,
                "type": "smart",
                "appContext": json.dumps(context, separators=(",", ":")),
            }
        )
    return out


def _suggestions(
    template: CardTemplate, finding: Finding, ctx: RenderContext
) -> list[JsonValue]:
    if finding.suggestion_set == "none":
        # The rule found nothing worth suggesting (e.g. R06: the labs are already recent).
        return []
    chosen = template.suggestion_sets.get(
        finding.suggestion_set
    ) or template.suggestion_sets.get("default", ())
    out: list[JsonValue] = []
    for suggestion in chosen:
        actions = _actions(suggestion, finding, ctx)
        if actions:
            out.append(
                {"uuid": ctx.new_uuid(), "label": suggestion.label, "actions": actions}
            )
    return out


def _actions(
    suggestion: SuggestionTemplate, finding: Finding, ctx: RenderContext
) -> list[JsonValue] | None:
    """All actions of a suggestion, or None when one cannot be built (never a partial suggestion)."""
    actions: list[JsonValue] = []
    for action in suggestion.actions:
        if action.type == "delete":
            if not finding.targets:
                return None
            actions.extend(
                {
                    "type": "delete",
                    "description": action.description,
                    "resourceId": target,
                }
                for target in finding.targets
            )
            continue
        order = ctx.catalog.orders[action.order or ""]
        resource = (
            build_medication_request(order, finding, ctx)
            if order.resource_type == "MedicationRequest"
            else build_service_request(order, finding, ctx)
        )
        if resource is None:
            return None
        actions.append(
            {"type": "create", "description": action.description, "resource": resource}
        )
    return actions


def build_service_request(
    order: OrderTemplate, finding: Finding, ctx: RenderContext
) -> JsonObject | None:
    """A draft ServiceRequest (intent proposal), validated with fhir.resources R4B; None if invalid."""
    resource = _draft_request("ServiceRequest", "code", order, finding, ctx)
    if resource is None:
        return None
    if order.body_sites:
        side = finding.side if order.lateralise else None
        resource["bodySite"] = [
            _body_site(c, side, ctx.catalog) for c in order.body_sites
        ]
    if order.note:
        resource["note"] = [{"text": order.note}]
    return _validated(ServiceRequest, resource)


def build_medication_request(
    order: OrderTemplate, finding: Finding, ctx: RenderContext
) -> JsonObject | None:
    """A draft MedicationRequest (intent proposal), validated with fhir.resources R4B; None if invalid.

    The medication is a class concept plus text (no product code is invented); the prescriber picks the product.
    """
    resource = _draft_request(
        "MedicationRequest", "medicationCodeableConcept", order, finding, ctx
    )
    if resource is None:
        return None
    if order.note:
        resource["dosageInstruction"] = [{"text": order.note}]
    return _validated(MedicationRequest, resource)


def _draft_request(
    resource_type: str,
    code_element: str,
    order: OrderTemplate,
    finding: Finding,
    ctx: RenderContext,
) -> JsonObject | None:
    """The parts every suggested draft order shares: status, intent, subject, codes for the side, reasons."""
    side = finding.side
    codes = order.codes.get(side.value if side else "any") or order.codes.get("any")
    if not codes:
        return None
    resource: JsonObject = {
        "resourceType": resource_type,
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        code_element: {
            "coding": [_coding(c, ctx.catalog) for c in codes],
            "text": order.text,
        },
    }
    if order.category is not None:
        resource["category"] = [{"coding": [_coding(order.category, ctx.catalog)]}]
    if finding.reasons:
        resource["reasonReference"] = [{"reference": ref} for ref in finding.reasons]
    return resource


def _validated(model: type[BaseModel], resource: JsonObject) -> JsonObject | None:
    # The EHR must receive valid FHIR: a suggestion that does not validate is dropped, never sent.
    shape = _shape(resource)
    if shape is not None:
        key = (model.__name__, shape)
        known = _VALID_SHAPES.get(key)
        if known is None:
            known = _validates(model, resource)
            if len(_VALID_SHAPES) >= _MAX_SHAPES:
                _VALID_SHAPES.clear()
            _VALID_SHAPES[key] = known
        return resource if known else None
    return resource if _validates(model, resource) else None


def _validates(model: type[BaseModel], resource: JsonObject) -> bool:
    try:
        model.model_validate(resource)
    except (ValidationError, ValueError):
        return False
    return True


# Validating a draft order with fhir.resources costs ~0.3 ms, and a card's drafts differ between patients only in
# their references (subject, reasonReference); everything else comes from the catalogue. FHIR asks a
# Reference.reference only to be a non-empty string, so a draft's validity is that of its shape with each
# non-empty reference replaced by a placeholder: validated once per shape, remembered (bounded).
_VALID_SHAPES: dict[tuple[str, bytes], bool] = {}
_MAX_SHAPES = 1024
_PLACEHOLDER: JsonObject = {"reference": "Resource/placeholder"}


def _shape(resource: JsonObject) -> bytes | None:
    """The resource with its references replaced by a placeholder, serialised; None when a reference is unusual."""
    reasons = resource.get("reasonReference", [])
    if not isinstance(reasons, list):
        return None
    if not all(_plain_reference(r) for r in [resource.get("subject"), *reasons]):
        return None
    shaped: JsonObject = {**resource, "subject": dict(_PLACEHOLDER)}
    if reasons:
        shaped["reasonReference"] = [dict(_PLACEHOLDER) for _ in reasons]
    return orjson.dumps(shaped, option=orjson.OPT_SORT_KEYS)


def _plain_reference(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(ref := value.get("reference"), str)
        and ref != ""
    )


def _coding(coding: Coding, catalog: Catalog) -> JsonObject:
    return {
        "system": catalog.system(coding.system),
        "code": coding.code,
        "display": coding.display,
    }


def _body_site(coding: Coding, side: Side | None, catalog: Catalog) -> JsonObject:
    site: JsonObject = {"coding": [_coding(coding, catalog)]}
    code = _laterality_code(side, catalog) if side is not None else None
    if side is not None and code is not None:
        site["extension"] = [
            {
                "url": MCODE_LATERALITY,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": code[0],
                            "code": code[1],
                            "display": _LATERALITY_DISPLAY[side.value],
                        }
                    ]
                },
            }
        ]
    return site


def _laterality_code(side: Side, catalog: Catalog) -> tuple[str, str] | None:
    for key, value in catalog.index.laterality.items():
        if value == side.value:
            return key
    return None
