"""Reading cards back (rule, side, codes), checking expectations, and running one scenario."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from app.sandbox.client import hook_request, json_object
from app.sandbox.scenarios import (
    LATERALITY_CODES,
    Expectation,
    JsonDict,
    Scenario,
)


def card_rule(card: Mapping[str, Any]) -> str | None:
    """The rule a card comes from: `source.topic.code`."""
    topic = (card.get("source") or {}).get("topic") or {}
    code = topic.get("code")
    return str(code) if code is not None else None


def card_side(card: Mapping[str, Any]) -> str | None:
    """The leg a card concerns as far as its JSON tells: None when it does not say.

    Read from a `side` member of the card's `extension`, else the laterality codes of its suggested resources,
    else the words left / right / bilateral in its summary. A card for the pelvis (CT venography) names no leg.
    """
    extension = card.get("extension")
    if isinstance(extension, dict):
        for key, value in extension.items():
            if key.lower().endswith("side") and isinstance(value, str):
                return value
    coded = {
        LATERALITY_CODES[code]
        for code in suggestion_codes(card)
        if code in LATERALITY_CODES
    }
    if coded:
        return coded.pop() if len(coded) == 1 else "bilateral"
    summary = str(card.get("summary", "")).lower()
    words = {
        w for w in ("left", "right", "bilateral") if re.search(rf"\b{w}\b", summary)
    }
    if "bilateral" in words or {"left", "right"} <= words:
        return "bilateral"
    return words.pop() if words else None


def suggestion_codes(card: Mapping[str, Any]) -> list[str]:
    """Every `code` inside the card's suggested resources, in order (order codes, body sites, laterality)."""
    codes: list[str] = []
    for suggestion in card.get("suggestions") or []:
        for action in suggestion.get("actions") or []:
            _collect_codes(action.get("resource"), codes)
    return codes


def _collect_codes(node: object, codes: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_codes(item, codes)
    elif isinstance(node, dict):
        code = node.get("code")
        if isinstance(code, str) and "system" in node:
            codes.append(code)
        for value in node.values():
            _collect_codes(value, codes)


def card_matches(
    card: Mapping[str, Any], expectation: Expectation, *, unknown_side_matches: bool
) -> bool:
    """True when the card meets the expectation (rule, indicator, side, suggestion codes).

    A card whose JSON names no side (see card_side) meets an expected side only if unknown_side_matches.
    """
    if card_rule(card) != expectation.rule:
        return False
    if expectation.indicator and card.get("indicator") != expectation.indicator:
        return False
    if expectation.side:
        side = card_side(card)
        if side is None and not unknown_side_matches:
            return False
        if side is not None and side != expectation.side:
            return False
    codes = set(suggestion_codes(card))
    return all(code in codes for code in expectation.suggestion_codes)


def missing_expectations(
    cards: Sequence[Mapping[str, Any]], expectations: Iterable[Expectation]
) -> list[Expectation]:
    """The expectations that no card meets; a card that names no side may meet an expected side."""
    return [
        e
        for e in expectations
        if not any(card_matches(c, e, unknown_side_matches=True) for c in cards)
    ]


@dataclass(frozen=True)
class RunResult:
    scenario: Scenario
    status_code: int | None
    cards: tuple[JsonDict, ...]
    error: str | None
    missing: tuple[Expectation, ...]
    unexpected: tuple[Expectation, ...]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


def run_scenario(
    client: httpx.Client,
    *,
    service_url: str,
    service_id: str,
    scenario: Scenario,
    fhir_server: str,
    token: str | None,
) -> RunResult:
    """Call the service for one scenario without prefetch and check its expected cards."""
    url = f"{service_url.rstrip('/')}/cds-services/{service_id}"
    body = hook_request(scenario, fhir_server=fhir_server, token=token)
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return RunResult(
            scenario,
            None,
            (),
            f"service unreachable ({type(exc).__name__})",
            scenario.must,
            (),
        )
    payload = json_object(response)
    if response.status_code != 200 or not isinstance(payload.get("cards"), list):
        detail = payload.get("detail") or payload.get("error") or ""
        return RunResult(
            scenario,
            response.status_code,
            (),
            f"HTTP {response.status_code} {detail}".strip(),
            scenario.must,
            (),
        )
    cards = tuple(c for c in payload["cards"] if isinstance(c, dict))
    missing = tuple(missing_expectations(cards, scenario.must))
    unexpected = tuple(
        e
        for e in scenario.must_not
        if any(card_matches(c, e, unknown_side_matches=False) for c in cards)
    )
    return RunResult(scenario, 200, cards, None, missing, unexpected)
