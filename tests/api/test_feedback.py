"""Feedback endpoint over HTTP: validation against issued cards, idempotency, concurrency, durability."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import CardFeedback
from app.services.audit import record_invocation

pytestmark = pytest.mark.db
SERVICE = "iliac-workup-order-sign"
URL = f"/cds-services/{SERVICE}/feedback"
REASON_SYSTEM = "http://example.org/fhir/CodeSystem/iliofemoral-cds/override-reason"


async def issue_cards(
    sessionmaker: async_sessionmaker[AsyncSession], count: int = 1
) -> list[dict[str, Any]]:
    cards = [
        {
            "uuid": str(uuid.uuid4()),
            "summary": "IVUS required before iliac vein stenting",
            "indicator": "critical",
            "detail": "d",
            "source": {"label": "R09", "topic": {"code": "R09", "display": "R09"}},
            "selectionBehavior": "any",
            "suggestions": [
                {"uuid": str(uuid.uuid4()), "label": "Add IVUS", "actions": []}
            ],
            "overrideReasons": [
                {
                    "system": REASON_SYSTEM,
                    "code": "clinical-judgement",
                    "display": "Clinical judgement",
                }
            ],
        }
        for _ in range(count)
    ]
    async with sessionmaker() as session:
        await record_invocation(
            session,
            hook_instance=str(uuid.uuid4()),
            service_id=SERVICE,
            hook="order-sign",
            patient_id="pat-fb",
            hmac_key="k",
            client_iss=None,
            fhir_server=None,
            started_at=datetime.now(UTC),
            duration_ms=1.0,
            status=200,
            cards=cards,
            card_sides={},
        )
        await session.commit()
    return cards


def accepted(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": "2026-03-02T10:05:00Z",
    }


async def feedback_rows(
    sessionmaker: async_sessionmaker[AsyncSession], card_uuids: list[str]
) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(CardFeedback)
            .where(CardFeedback.card_uuid.in_(card_uuids))
        )
    return int(count or 0)


class TestFeedback:
    async def test_accepted_feedback_is_stored(
        self, api: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [card] = await issue_cards(db_sessionmaker)
        response = await api.post(URL, json={"feedback": [accepted(card)]})
        assert response.status_code == 200, response.text
        assert response.json() == {"stored": 1, "duplicates": 0}
        assert await feedback_rows(db_sessionmaker, [card["uuid"]]) == 1

    async def test_overridden_with_offered_reason_and_comment(
        self, api: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [card] = await issue_cards(db_sessionmaker)
        item = {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {
                "reason": {
                    "system": REASON_SYSTEM,
                    "code": "clinical-judgement",
                    "display": "Clinical judgement",
                },
                "userComment": "IVUS done at the referring hospital",
            },
            "outcomeTimestamp": "2026-03-02T10:05:00Z",
        }
        response = await api.post(URL, json={"feedback": [item]})
        assert response.status_code == 200, response.text

    async def test_same_feedback_twice_is_stored_once(
        self, api: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [card] = await issue_cards(db_sessionmaker)
        first = await api.post(URL, json={"feedback": [accepted(card)]})
        second = await api.post(URL, json={"feedback": [accepted(card)]})
        assert first.status_code == second.status_code == 200
        assert second.json() == {"stored": 0, "duplicates": 1}
        assert await feedback_rows(db_sessionmaker, [card["uuid"]]) == 1

    async def test_card_never_issued_is_400(self, api: httpx.AsyncClient) -> None:
        ghost = str(uuid.uuid4())
        item = {
            "card": ghost,
            "outcome": "accepted",
            "outcomeTimestamp": "2026-03-02T10:05:00Z",
        }
        response = await api.post(URL, json={"feedback": [item]})
        assert response.status_code == 400
        assert ghost in response.json()["detail"]

    async def test_reason_not_offered_by_the_card_is_400_and_nothing_is_stored(
        self, api: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [card, other] = await issue_cards(db_sessionmaker, 2)
        bad = {
            "card": other["uuid"],
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"system": REASON_SYSTEM, "code": "made-up", "display": "x"}
            },
            "outcomeTimestamp": "2026-03-02T10:05:00Z",
        }
        response = await api.post(URL, json={"feedback": [accepted(card), bad]})
        assert response.status_code == 400
        assert await feedback_rows(db_sessionmaker, [card["uuid"], other["uuid"]]) == 0

    @pytest.mark.parametrize(
        "item",
        [
            {"outcome": "accepted", "outcomeTimestamp": "2026-03-02T10:05:00Z"},
            {
                "card": "x",
                "outcome": "liked",
                "outcomeTimestamp": "2026-03-02T10:05:00Z",
            },
            {"card": "x", "outcome": "accepted", "outcomeTimestamp": "yesterday"},
            {
                "card": "x",
                "outcome": "accepted",
                "outcomeTimestamp": "0001-01-01T00:00:00+14:00",
            },
            {
                "card": "x",
                "outcome": "accepted",
                "overrideReason": {"userComment": "an accepted card has no override"},
                "outcomeTimestamp": "2026-03-02T10:05:00Z",
            },
        ],
    )
    async def test_malformed_items_are_422(
        self, api: httpx.AsyncClient, item: dict[str, Any]
    ) -> None:
        response = await api.post(URL, json={"feedback": [item]})
        assert response.status_code == 422

    async def test_concurrent_posts_all_stored(
        self,
        api: httpx.AsyncClient,
        db_sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
    ) -> None:
        # 1,000 on PostgreSQL as the issue asks; SQLite serialises writers, so a smaller burst proves the same.
        count = 1000 if database_url.startswith("postgresql") else 200
        cards = await issue_cards(db_sessionmaker, count)
        responses = await asyncio.gather(
            *(api.post(URL, json={"feedback": [accepted(c)]}) for c in cards)
        )
        assert [r.status_code for r in responses] == [200] * count
        assert await feedback_rows(db_sessionmaker, [c["uuid"] for c in cards]) == count
