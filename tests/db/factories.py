"""Builders for synthetic cards and issued-card rows used by the persistence tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import HookInvocation
from app.services.audit import record_invocation

SERVICE_ID = "iliac-workup-patient-view"
OTHER_SERVICE_ID = "iliac-workup-order-sign"
REASON_SYSTEM = "http://example.org/fhir/CodeSystem/override-reason"
HMAC_KEY = "test-hmac-key"
STARTED_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def make_card(
    *,
    rule_id: str = "duplex-first",
    suggestion_ids: Sequence[str] = ("sugg-1", "sugg-2"),
    override_codes: Sequence[str] = ("already-done", "not-indicated"),
    indicator: str = "warning",
) -> dict[str, object]:
    """A CDS Hooks card as run_workup emits it, with a fresh uuid."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "Synthetic summary",
        "indicator": indicator,
        "source": {
            "label": "iliac-cds",
            "topic": {"system": "http://example.org/rules", "code": rule_id},
        },
        "suggestions": [
            {"label": f"Order {sid}", "uuid": sid} for sid in suggestion_ids
        ],
        "overrideReasons": [
            {"system": REASON_SYSTEM, "code": code, "display": code}
            for code in override_codes
        ],
    }


async def issue_cards(
    session: AsyncSession,
    *,
    cards: Sequence[dict[str, object]],
    service_id: str = SERVICE_ID,
    hook_instance: str | None = None,
    patient_id: str = "synthetic-patient-1",
) -> str:
    """Record a hook invocation that issued `cards`; returns its hook_instance."""
    instance = hook_instance or str(uuid.uuid4())
    await record_invocation(
        session,
        hook_instance=instance,
        service_id=service_id,
        hook="patient-view",
        patient_id=patient_id,
        hmac_key=HMAC_KEY,
        client_iss="https://ehr.example.org",
        fhir_server="https://fhir.example.org/r4/tenant-a",
        started_at=STARTED_AT,
        duration_ms=12.5,
        status=200,
        cards=cards,
        card_sides={},
    )
    return instance


async def delete_invocation(session: AsyncSession, *, hook_instance: str) -> None:
    """Remove an invocation with its cards and feedback (foreign keys cascade)."""
    await session.execute(
        delete(HookInvocation).where(HookInvocation.hook_instance == hook_instance)
    )
