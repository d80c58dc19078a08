"""CDS Hooks feedback: validate each item against the card we issued, then store it once (idempotent)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repositories
from app.db.models import IssuedCard
from app.services.audit import override_reason_key

OUTCOMES = frozenset({"accepted", "overridden"})


class FeedbackRejected(Exception):
    """Raised when a feedback request is invalid; `message` is safe to return to the EHR (the API answers 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FeedbackItem:
    """One entry of a feedback request (https://cds-hooks.org/specification/current/#feedback)."""

    card: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestion_ids: tuple[str, ...] = ()
    override_system: str | None = None
    override_code: str | None = None
    user_comment: str | None = None


@dataclass(frozen=True)
class FeedbackOutcome:
    """How many items of a request were stored, and how many had been stored before (duplicates)."""

    stored: int
    duplicates: int


async def record_feedback(
    session: AsyncSession,
    *,
    service_id: str,
    items: Sequence[FeedbackItem],
    received_at: datetime | None = None,
) -> FeedbackOutcome:
    """Validate every item, then insert them; flush only, so the caller's commit makes the request all-or-nothing.

    Raises FeedbackRejected when any item is invalid; nothing is written in that case.
    """
    cards = await repositories.get_issued_cards_by_uuid(
        session, uuids=[item.card for item in items]
    )
    for item in items:
        _validate(item, cards.get(item.card), service_id)
    now = received_at or datetime.now(UTC)
    # Keyed by dedupe_key so an item repeated inside one request is inserted once and counted as a duplicate.
    rows = {dedupe_key(service_id, item): item for item in items}
    stored = await repositories.insert_feedback_ignoring_duplicates(
        session, rows=[_row(item, service_id, key, now) for key, item in rows.items()]
    )
    return FeedbackOutcome(stored=stored, duplicates=len(items) - stored)


def dedupe_key(service_id: str, item: FeedbackItem) -> str:
    """SHA-256 of the item's canonical JSON: the same feedback posted twice gets the same key."""
    canonical = {
        "service": service_id,
        "card": item.card,
        "outcome": item.outcome,
        "outcomeTimestamp": item.outcome_timestamp.astimezone(UTC).isoformat(),
        "acceptedSuggestions": sorted(item.accepted_suggestion_ids),
        "overrideReason": [item.override_system, item.override_code],
        "userComment": item.user_comment,
    }
    return hashlib.sha256(
        orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def _validate(item: FeedbackItem, card: IssuedCard | None, service_id: str) -> None:
    # One message for "unknown" and "issued by another service" so callers cannot probe other services' cards.
    if card is None or card.service_id != service_id:
        raise FeedbackRejected(f"card {item.card} was not issued by this service")
    if item.outcome not in OUTCOMES:
        raise FeedbackRejected(
            f"card {item.card}: outcome must be 'accepted' or 'overridden'"
        )
    if item.outcome_timestamp.tzinfo is None:
        raise FeedbackRejected(
            f"card {item.card}: outcomeTimestamp must carry a time zone"
        )
    has_reason = item.override_system is not None or item.override_code is not None
    if item.outcome == "accepted":
        _validate_accepted(item, card, has_reason=has_reason)
    else:
        _validate_overridden(item, card, has_reason=has_reason)


def _validate_accepted(
    item: FeedbackItem, card: IssuedCard, *, has_reason: bool
) -> None:
    if has_reason:
        raise FeedbackRejected(
            f"card {item.card}: an accepted outcome cannot carry an overrideReason"
        )
    unknown = set(item.accepted_suggestion_ids) - set(card.suggestion_uuids)
    if unknown:
        raise FeedbackRejected(
            f"card {item.card}: accepted suggestions {sorted(unknown)} are not on this card"
        )


def _validate_overridden(
    item: FeedbackItem, card: IssuedCard, *, has_reason: bool
) -> None:
    if item.accepted_suggestion_ids:
        raise FeedbackRejected(
            f"card {item.card}: an overridden outcome cannot carry acceptedSuggestions"
        )
    if not has_reason:
        return
    if item.override_system is None or item.override_code is None:
        raise FeedbackRejected(
            f"card {item.card}: overrideReason needs both system and code"
        )
    if (
        override_reason_key(item.override_system, item.override_code)
        not in card.override_reason_codes
    ):
        raise FeedbackRejected(
            f"card {item.card}: overrideReason was not offered by this card"
        )


def _row(
    item: FeedbackItem, service_id: str, key: str, received_at: datetime
) -> dict[str, object]:
    return {
        "card_uuid": item.card,
        "service_id": service_id,
        "outcome": item.outcome,
        "accepted_suggestions": list(item.accepted_suggestion_ids),
        "override_system": item.override_system,
        "override_code": item.override_code,
        "user_comment": item.user_comment,
        "outcome_timestamp": item.outcome_timestamp,
        "received_at": received_at,
        "dedupe_key": key,
    }
