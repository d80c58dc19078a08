"""Audit rows for answered hook calls: what is stored, and that the patient id never is."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repositories
from app.services.audit import patient_hmac, record_invocation
from tests.db.factories import (
    HMAC_KEY,
    REASON_SYSTEM,
    SERVICE_ID,
    STARTED_AT,
    make_card,
)

PATIENT_ID = "synthetic-patient-SENTINEL-7731"


class TestPatientHmac:
    def test_is_hex_sha256_keyed_and_deterministic(self) -> None:
        digest = patient_hmac(PATIENT_ID, "key-a")

        assert len(digest) == 64
        assert int(digest, 16) >= 0
        assert digest == patient_hmac(PATIENT_ID, "key-a")
        assert digest != patient_hmac(PATIENT_ID, "key-b")
        assert PATIENT_ID not in digest


@pytest.mark.db
class TestRecordInvocation:
    async def _record(
        self, session: AsyncSession, cards: list[dict[str, object]]
    ) -> None:
        left = str(cards[0]["uuid"])
        await record_invocation(
            session,
            hook_instance="hook-instance-audit-1",
            service_id=SERVICE_ID,
            hook="patient-view",
            patient_id=PATIENT_ID,
            hmac_key=HMAC_KEY,
            client_iss="https://ehr.example.org",
            fhir_server=f"https://fhir.example.org/r4/Patient/{PATIENT_ID}",
            started_at=STARTED_AT,
            duration_ms=42.0,
            status=200,
            cards=cards,
            card_sides={left: "left"},
        )

    async def test_writes_invocation_and_card_rows(
        self, db_session: AsyncSession
    ) -> None:
        cards = [
            make_card(rule_id="duplex-first"),
            make_card(rule_id="ivus", suggestion_ids=()),
        ]
        cards.append(make_card(rule_id="duplex-first"))

        await self._record(db_session, cards)

        [invocation] = await repositories.get_invocations_by_hook_instance(
            db_session, hook_instance="hook-instance-audit-1"
        )
        issued = await repositories.get_issued_cards(
            db_session, invocation_id=invocation.id
        )
        by_uuid = {card.uuid: card for card in issued}
        first = by_uuid[str(cards[0]["uuid"])]
        assert invocation.patient_hmac == patient_hmac(PATIENT_ID, HMAC_KEY)
        assert invocation.fhir_server_host == "fhir.example.org"
        assert (invocation.status, invocation.card_count, invocation.duration_ms) == (
            200,
            3,
            42.0,
        )
        assert invocation.rule_ids == ["duplex-first", "ivus"]
        assert invocation.started_at == STARTED_AT
        assert set(by_uuid) == {str(card["uuid"]) for card in cards}
        assert (first.rule_id, first.side, first.indicator) == (
            "duplex-first",
            "left",
            "warning",
        )
        assert first.suggestion_uuids == ["sugg-1", "sugg-2"]
        assert first.override_reason_codes == [
            f"{REASON_SYSTEM}|already-done",
            f"{REASON_SYSTEM}|not-indicated",
        ]
        assert by_uuid[str(cards[1]["uuid"])].side is None

    async def test_patient_id_is_stored_nowhere_in_clear(
        self, db_session: AsyncSession
    ) -> None:
        await self._record(db_session, [make_card()])

        [invocation] = await repositories.get_invocations_by_hook_instance(
            db_session, hook_instance="hook-instance-audit-1"
        )
        issued = await repositories.get_issued_cards(
            db_session, invocation_id=invocation.id
        )
        values = [
            str(getattr(row, column.key))
            for row in [invocation, *issued]
            for column in type(row).__table__.columns
        ]
        assert values
        assert not [value for value in values if "SENTINEL" in value]

    async def test_card_without_uuid_is_counted_but_not_stored(
        self, db_session: AsyncSession
    ) -> None:
        anonymous = make_card()
        del anonymous["uuid"]

        await self._record(db_session, [make_card(), anonymous])

        [invocation] = await repositories.get_invocations_by_hook_instance(
            db_session, hook_instance="hook-instance-audit-1"
        )
        issued = await repositories.get_issued_cards(
            db_session, invocation_id=invocation.id
        )
        assert invocation.card_count == 2
        assert len(issued) == 1

    async def test_missing_patient_and_fhir_server_are_stored_as_null(
        self, db_session: AsyncSession
    ) -> None:
        await record_invocation(
            db_session,
            hook_instance="hook-instance-audit-2",
            service_id=SERVICE_ID,
            hook="patient-view",
            patient_id=None,
            hmac_key=HMAC_KEY,
            client_iss=None,
            fhir_server=None,
            started_at=STARTED_AT,
            duration_ms=1.0,
            status=412,
            cards=[],
            card_sides={},
        )

        [invocation] = await repositories.get_invocations_by_hook_instance(
            db_session, hook_instance="hook-instance-audit-2"
        )
        assert (
            invocation.patient_hmac,
            invocation.client_iss,
            invocation.fhir_server_host,
        ) == (
            None,
            None,
            None,
        )
        assert (invocation.status, invocation.card_count, invocation.rule_ids) == (
            412,
            0,
            [],
        )
