"""ORM models: hook audit rows, issued cards, card feedback, registered EHR clients and seen JWT ids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT ids fall back to INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")

URL_LENGTH = 2048
SHA256_HEX_LENGTH = 64


class HookInvocation(Base):
    """One answered CDS Hooks call; the patient appears only as a keyed HMAC."""

    __tablename__ = "hook_invocation"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_instance: Mapped[str] = mapped_column(String(255), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    hook: Mapped[str] = mapped_column(String(64))
    patient_hmac: Mapped[str | None] = mapped_column(
        String(SHA256_HEX_LENGTH), index=True
    )
    client_iss: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    fhir_server_host: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    rule_ids: Mapped[list[str]] = mapped_column(JSON)
    card_count: Mapped[int] = mapped_column(Integer)

    cards: Mapped[list[IssuedCard]] = relationship(
        back_populates="invocation", lazy="raise"
    )


class IssuedCard(Base):
    """A card we returned; feedback is only accepted for cards recorded here."""

    __tablename__ = "issued_card"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    invocation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("hook_invocation.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(128))
    rule_id: Mapped[str] = mapped_column(String(128), index=True)
    side: Mapped[str | None] = mapped_column(String(16))
    indicator: Mapped[str] = mapped_column(String(16))
    suggestion_uuids: Mapped[list[str]] = mapped_column(JSON)
    override_reason_codes: Mapped[list[str]] = mapped_column(JSON)

    invocation: Mapped[HookInvocation] = relationship(
        back_populates="cards", lazy="raise"
    )
    feedback: Mapped[list[CardFeedback]] = relationship(
        back_populates="card", lazy="raise"
    )


class CardFeedback(Base):
    """One CDS Hooks feedback item; dedupe_key makes a re-posted item a no-op."""

    __tablename__ = "card_feedback"
    __table_args__ = (
        CheckConstraint("outcome IN ('accepted', 'overridden')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_uuid: Mapped[str] = mapped_column(
        String(64), ForeignKey("issued_card.uuid", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON)
    override_system: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    override_code: Mapped[str | None] = mapped_column(String(255))
    user_comment: Mapped[str | None] = mapped_column(Text)
    outcome_timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    dedupe_key: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)

    card: Mapped[IssuedCard] = relationship(back_populates="feedback", lazy="raise")


class EhrClient(Base):
    """A registered EHR (JWT issuer), its key material and the FHIR servers it may name."""

    __tablename__ = "ehr_client"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(URL_LENGTH), unique=True)
    jwks_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    jwks_json: Mapped[str | None] = mapped_column(Text)
    jku_allowlist: Mapped[list[str]] = mapped_column(JSON)
    fhir_servers: Mapped[list[str]] = mapped_column(JSON)
    tenant: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JwtReplay(Base):
    """A JWT id seen from an issuer; the primary key makes a second insert of the same pair a replay."""

    __tablename__ = "jwt_replay"
    __table_args__ = (Index("ix_jwt_replay_expires_at", "expires_at"),)

    issuer: Mapped[str] = mapped_column(String(URL_LENGTH), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
