"""Races between workers: concurrent feedback posts and concurrent uses of one JWT id, with real commits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import CardFeedback, JwtReplay
from app.db.session import session_scope
from app.services.clients import SqlReplayStore
from app.services.feedback import FeedbackItem, FeedbackOutcome, record_feedback
from tests.db.factories import SERVICE_ID, delete_invocation, issue_cards, make_card
from tests.fixtures.database import DatabaseTarget

pytestmark = pytest.mark.db

# PostgreSQL must absorb the full load; SQLite serialises writers, so a smaller burst proves the same point.
POSTS = {"postgresql": 1000, "sqlite": 100}
BASE_TIME = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def _post(
    sessionmaker: async_sessionmaker[AsyncSession], item: FeedbackItem
) -> FeedbackOutcome:
    async with session_scope(sessionmaker) as session:
        return await record_feedback(session, service_id=SERVICE_ID, items=[item])


async def test_concurrent_feedback_posts_are_all_stored_exactly_once(
    database_target: DatabaseTarget, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    posts = POSTS[database_target.backend]
    card = make_card()
    card_uuid = str(card["uuid"])
    async with session_scope(db_sessionmaker) as session:
        hook_instance = await issue_cards(session, cards=[card])
    items = [
        FeedbackItem(
            card=card_uuid,
            outcome="overridden",
            outcome_timestamp=BASE_TIME + timedelta(seconds=n),
        )
        for n in range(posts)
    ]
    # Every fifth item is posted a second time, concurrently with the first.
    repeats = items[::5]
    try:
        outcomes = await asyncio.gather(
            *(_post(db_sessionmaker, item) for item in items + repeats)
        )
        async with db_sessionmaker() as session:
            rows = await session.scalar(
                select(func.count())
                .select_from(CardFeedback)
                .where(CardFeedback.card_uuid == card_uuid)
            )
    finally:
        async with session_scope(db_sessionmaker) as session:
            await delete_invocation(session, hook_instance=hook_instance)

    assert rows == posts
    assert sum(outcome.stored for outcome in outcomes) == posts
    assert sum(outcome.duplicates for outcome in outcomes) == len(repeats)


async def test_concurrent_uses_of_one_jti_let_exactly_one_through(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    issuer = "https://race.example.org"
    store = SqlReplayStore(db_sessionmaker)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    try:
        results = await asyncio.gather(
            *(store.remember(issuer, "jti-race", expires) for _ in range(50))
        )
    finally:
        async with session_scope(db_sessionmaker) as session:
            await session.execute(delete(JwtReplay).where(JwtReplay.issuer == issuer))

    assert results.count(True) == 1
    assert results.count(False) == 49
