"""Audit trail of answered CDS Hooks calls: one invocation row plus one row per issued card, no PHI."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypedDict, Unpack
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repositories
from app.db.repositories import AuditRows


def patient_hmac(patient_id: str, key: str) -> str:
    """Keyed HMAC-SHA256 (hex) of a patient id: correlates calls without storing or logging the id."""
    return hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


class AuditCall(TypedDict):
    """What the audit keeps of one hook call (see `audit_rows`)."""

    hook_instance: str
    service_id: str
    hook: str
    patient_id: str | None
    hmac_key: str
    client_iss: str | None
    fhir_server: str | None
    started_at: datetime
    duration_ms: float
    status: int
    cards: Sequence[Mapping[str, object]]
    card_sides: Mapping[str, str]


async def record_invocation(session: AsyncSession, **call: Unpack[AuditCall]) -> None:
    """Write the audit rows for one hook call in the session's transaction (the caller commits)."""
    invocation, issued = audit_rows(**call)
    await repositories.insert_invocation(session, invocation=invocation, cards=issued)


def audit_rows(**call: Unpack[AuditCall]) -> AuditRows:
    """The hook_invocation row and the issued_card rows (without invocation_id) for one hook call.

    `cards` are CDS Hooks card JSON objects; cards without a uuid are counted but cannot receive feedback,
    so no issued_card row is written for them. `card_sides` maps card uuid to the leg it concerns. The patient id
    is stored only as a keyed HMAC.
    """
    cards = call["cards"]
    service_id = call["service_id"]
    patient_id = call["patient_id"]
    row = {
        "hook_instance": call["hook_instance"],
        "service_id": service_id,
        "hook": call["hook"],
        "patient_hmac": patient_hmac(patient_id, call["hmac_key"])
        if patient_id is not None
        else None,
        "client_iss": call["client_iss"],
        "fhir_server_host": _host(call["fhir_server"]),
        "started_at": call["started_at"],
        "duration_ms": call["duration_ms"],
        "status": call["status"],
        "rule_ids": list(
            dict.fromkeys(rule for card in cards if (rule := _rule_id(card)))
        ),
        "card_count": len(cards),
    }
    issued = [
        card_row
        for card in cards
        if (card_row := _issued_card(card, service_id, call["card_sides"])) is not None
    ]
    return row, issued


def _host(url: str | None) -> str | None:
    # The host is enough to tell servers apart; paths can carry tenant or patient identifiers.
    if url is None:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:  # a malformed fhirServer was refused with 403; its audit row must still be written
        return None


def _issued_card(
    card: Mapping[str, object],
    service_id: str,
    card_sides: Mapping[str, str],
) -> dict[str, object] | None:
    uuid = card.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        return None
    indicator = card.get("indicator")
    return {
        "uuid": uuid,
        "service_id": service_id,
        "rule_id": _rule_id(card),
        "side": card_sides.get(uuid),
        "indicator": indicator if isinstance(indicator, str) else "info",
        "suggestion_uuids": [
            uid
            for s in _objects(card.get("suggestions"))
            if isinstance(uid := s.get("uuid"), str)
        ],
        "override_reason_codes": [
            override_reason_key(system, code)
            for reason in _objects(card.get("overrideReasons"))
            if isinstance(system := reason.get("system"), str)
            and isinstance(code := reason.get("code"), str)
        ],
    }


def override_reason_key(system: str, code: str) -> str:
    """How an offered override reason Coding is stored and matched: "system|code"."""
    return f"{system}|{code}"


def _rule_id(card: Mapping[str, object]) -> str:
    source = card.get("source")
    topic = source.get("topic") if isinstance(source, Mapping) else None
    code = topic.get("code") if isinstance(topic, Mapping) else None
    return code if isinstance(code, str) else ""


def _objects(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]
