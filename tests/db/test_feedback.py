"""Feedback: validation against the issued card, idempotency and all-or-nothing requests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repositories
from app.services.feedback import (
    FeedbackItem,
    FeedbackOutcome,
    FeedbackRejected,
    record_feedback,
)
from tests.db.factories import (
    OTHER_SERVICE_ID,
    REASON_SYSTEM,
    SERVICE_ID,
    issue_cards,
    make_card,
)

pytestmark = pytest.mark.db

OUTCOME_AT = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
RECEIVED_AT = datetime(2026, 3, 2, 10, 6, tzinfo=UTC)


@pytest.fixture
async def card_uuid(db_session: AsyncSession) -> str:
    card = make_card()
    await issue_cards(db_session, cards=[card])
    return str(card["uuid"])


def accepted(card: str, *suggestions: str) -> FeedbackItem:
    return FeedbackItem(
        card=card,
        outcome="accepted",
        outcome_timestamp=OUTCOME_AT,
        accepted_suggestion_ids=suggestions,
    )


def overridden(
    card: str, code: str | None = None, comment: str | None = None
) -> FeedbackItem:
    return FeedbackItem(
        card=card,
        outcome="overridden",
        outcome_timestamp=OUTCOME_AT,
        override_system=REASON_SYSTEM if code is not None else None,
        override_code=code,
        user_comment=comment,
    )


class TestRecordFeedback:
    async def test_stores_accepted_feedback(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        outcome = await record_feedback(
            db_session,
            service_id=SERVICE_ID,
            items=[accepted(card_uuid, "sugg-2")],
            received_at=RECEIVED_AT,
        )

        [row] = await repositories.get_feedback_for_card(
            db_session, card_uuid=card_uuid
        )
        assert outcome == FeedbackOutcome(stored=1, duplicates=0)
        assert (row.outcome, row.accepted_suggestions, row.service_id) == (
            "accepted",
            ["sugg-2"],
            SERVICE_ID,
        )
        assert (row.override_system, row.override_code) == (None, None)
        assert (row.outcome_timestamp, row.received_at) == (OUTCOME_AT, RECEIVED_AT)
        assert len(row.dedupe_key) == 64

    async def test_stores_overridden_feedback_with_offered_reason(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        item = overridden(card_uuid, "not-indicated", comment="synthetic comment")

        outcome = await record_feedback(db_session, service_id=SERVICE_ID, items=[item])

        [row] = await repositories.get_feedback_for_card(
            db_session, card_uuid=card_uuid
        )
        assert outcome.stored == 1
        assert (row.override_system, row.override_code, row.user_comment) == (
            REASON_SYSTEM,
            "not-indicated",
            "synthetic comment",
        )

    async def test_overridden_without_reason_is_accepted(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        outcome = await record_feedback(
            db_session, service_id=SERVICE_ID, items=[overridden(card_uuid)]
        )

        assert outcome == FeedbackOutcome(stored=1, duplicates=0)

    async def test_same_feedback_posted_twice_is_stored_once(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        item = accepted(card_uuid, "sugg-1")

        first = await record_feedback(db_session, service_id=SERVICE_ID, items=[item])
        second = await record_feedback(db_session, service_id=SERVICE_ID, items=[item])

        rows = await repositories.get_feedback_for_card(db_session, card_uuid=card_uuid)
        assert (first, second) == (FeedbackOutcome(1, 0), FeedbackOutcome(0, 1))
        assert len(rows) == 1

    async def test_item_repeated_within_one_request_counts_as_duplicate(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        item = overridden(card_uuid, "already-done")
        later = replace(item, outcome_timestamp=datetime(2026, 3, 2, 11, 0, tzinfo=UTC))

        outcome = await record_feedback(
            db_session, service_id=SERVICE_ID, items=[item, item, later]
        )

        rows = await repositories.get_feedback_for_card(db_session, card_uuid=card_uuid)
        assert outcome == FeedbackOutcome(stored=2, duplicates=1)
        assert len(rows) == 2

    async def test_rejected_request_stores_nothing(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        items = [accepted(card_uuid, "sugg-1"), accepted("no-such-card")]

        with pytest.raises(FeedbackRejected):
            await record_feedback(db_session, service_id=SERVICE_ID, items=items)

        assert (
            await repositories.get_feedback_for_card(db_session, card_uuid=card_uuid)
            == []
        )


class TestFeedbackValidation:
    async def test_unknown_card_is_rejected(self, db_session: AsyncSession) -> None:
        with pytest.raises(FeedbackRejected) as caught:
            await record_feedback(
                db_session, service_id=SERVICE_ID, items=[accepted("card-never-issued")]
            )

        assert (
            caught.value.message
            == "card card-never-issued was not issued by this service"
        )

    async def test_card_of_another_service_is_rejected(
        self, db_session: AsyncSession, card_uuid: str
    ) -> None:
        with pytest.raises(FeedbackRejected, match="was not issued by this service"):
            await record_feedback(
                db_session, service_id=OTHER_SERVICE_ID, items=[accepted(card_uuid)]
            )

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            pytest.param(
                {"accepted_suggestion_ids": ("sugg-9",)},
                "are not on this card",
                id="unknown-suggestion",
            ),
            pytest.param(
                {"override_system": REASON_SYSTEM, "override_code": "not-indicated"},
                "accepted outcome cannot carry an overrideReason",
                id="accepted-with-reason",
            ),
            pytest.param({"outcome": "ignored"}, "outcome must be", id="bad-outcome"),
            pytest.param(
                {"outcome_timestamp": datetime(2026, 3, 2, 10, 5)},  # noqa: DTZ001
                "must carry a time zone",
                id="naive-timestamp",
            ),
        ],
    )
    async def test_invalid_accepted_item_is_rejected(
        self,
        db_session: AsyncSession,
        card_uuid: str,
        change: dict[str, object],
        message: str,
    ) -> None:
        item = replace(accepted(card_uuid, "sugg-1"), **change)  # type: ignore[arg-type]

        with pytest.raises(FeedbackRejected, match=message):
            await record_feedback(db_session, service_id=SERVICE_ID, items=[item])

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            pytest.param(
                {"override_code": "made-up"},
                "was not offered by this card",
                id="reason-not-offered",
            ),
            pytest.param(
                {"override_system": "http://example.org/other"},
                "was not offered by this card",
                id="reason-other-system",
            ),
            pytest.param(
                {"override_system": None},
                "needs both system and code",
                id="reason-without-system",
            ),
            pytest.param(
                {"accepted_suggestion_ids": ("sugg-1",)},
                "overridden outcome cannot carry acceptedSuggestions",
                id="overridden-with-suggestions",
            ),
        ],
    )
    async def test_invalid_overridden_item_is_rejected(
        self,
        db_session: AsyncSession,
        card_uuid: str,
        change: dict[str, object],
        message: str,
    ) -> None:
        item = replace(overridden(card_uuid, "not-indicated"), **change)  # type: ignore[arg-type]

        with pytest.raises(FeedbackRejected, match=message):
            await record_feedback(db_session, service_id=SERVICE_ID, items=[item])
