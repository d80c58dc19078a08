"""The four ways an EHR can hand a patient's record to the service, and a path-independent view of the cards."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from app.api.cds.services import SERVICES
from app.fhir.prefetch import PREFETCH_TEMPLATES
from app.sandbox import (
    Scenario,
    card_rule,
    card_side,
    fhir_authorization,
    suggestion_codes,
)

SERVICE_PATHS = {s.hook: f"/cds-services/{s.id}" for s in SERVICES}
DATA_PATHS = ("full-prefetch", "no-prefetch", "partial-prefetch", "null-prefetch")
CardSignature = tuple[str | None, str | None, str | None, str | None, tuple[str, ...]]


def service_path(scenario: Scenario) -> str:
    return SERVICE_PATHS[scenario.hook]


def request_for(
    scenario: Scenario,
    data_path: str,
    *,
    fhir_server: str,
    token: str | None,
) -> dict[str, Any]:
    """The scenario's request with its record given one way; fhirServer and fhirAuthorization always go along.

    full-prefetch: every key as the scenario has it. no-prefetch: no prefetch at all. partial-prefetch: every
    other key omitted (fetched). null-prefetch: keys with data as sent, keys without data as `null`.
    """
    prefetch = copy.deepcopy(scenario.prefetch)
    body: dict[str, Any] = {
        "hook": scenario.hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "context": copy.deepcopy(scenario.context),
    }
    if token is not None:
        body["fhirAuthorization"] = fhir_authorization(token, scenario.patient_id)
    if data_path == "full-prefetch":
        body["prefetch"] = prefetch
    elif data_path == "partial-prefetch":
        kept = list(PREFETCH_TEMPLATES)[::2]
        body["prefetch"] = {k: v for k, v in prefetch.items() if k in kept}
    elif data_path == "null-prefetch":
        by_key = scenario.resources_by_key()
        body["prefetch"] = {
            k: (v if by_key.get(k) else None) for k, v in prefetch.items()
        }
    elif data_path != "no-prefetch":
        raise ValueError(f"unknown data path {data_path!r}")
    return body


def card_signature(card: Mapping[str, Any]) -> CardSignature:
    """What must not depend on how the record arrived: rule, indicator, side, summary, suggested codes."""
    return (
        card_rule(card),
        _text(card.get("indicator")),
        card_side(card),
        _text(card.get("summary")),
        tuple(sorted(suggestion_codes(card))),
    )


def signatures(cards: list[Mapping[str, Any]]) -> list[CardSignature]:
    return sorted(
        (card_signature(c) for c in cards),
        key=lambda s: tuple("" if part is None else str(part) for part in s),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
