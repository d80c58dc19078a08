"""Initial schema: hook audit, issued cards, card feedback, EHR client registry, JWT replay store.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 04:10:01.588237
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments an INTEGER PRIMARY KEY; app.db.models.BigId makes the same choice.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# app.db.base.UTCDateTime stores through this type; migrations must not import application types.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ehr_client",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("jwks_url", sa.String(length=2048), nullable=True),
        sa.Column("jwks_json", sa.Text(), nullable=True),
        sa.Column("jku_allowlist", sa.JSON(), nullable=False),
        sa.Column("fhir_servers", sa.JSON(), nullable=False),
        sa.Column("tenant", sa.String(length=255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_client")),
        sa.UniqueConstraint("issuer", name=op.f("uq_ehr_client_issuer")),
    )
    op.create_table(
        "hook_invocation",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("hook_instance", sa.String(length=255), nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("hook", sa.String(length=64), nullable=False),
        sa.Column("patient_hmac", sa.String(length=64), nullable=True),
        sa.Column("client_iss", sa.String(length=2048), nullable=True),
        sa.Column("fhir_server_host", sa.String(length=255), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=False),
        sa.Column("card_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_invocation")),
    )
    op.create_index(
        op.f("ix_hook_invocation_hook_instance"), "hook_invocation", ["hook_instance"]
    )
    op.create_index(
        op.f("ix_hook_invocation_patient_hmac"), "hook_invocation", ["patient_hmac"]
    )
    op.create_index(
        op.f("ix_hook_invocation_started_at"), "hook_invocation", ["started_at"]
    )
    op.create_table(
        "jwt_replay",
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_jwt_replay")),
    )
    op.create_index("ix_jwt_replay_expires_at", "jwt_replay", ["expires_at"])
    op.create_table(
        "issued_card",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("invocation_id", BIG_ID, nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=True),
        sa.Column("indicator", sa.String(length=16), nullable=False),
        sa.Column("suggestion_uuids", sa.JSON(), nullable=False),
        sa.Column("override_reason_codes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invocation_id"],
            ["hook_invocation.id"],
            name=op.f("fk_issued_card_invocation_id_hook_invocation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_issued_card")),
    )
    op.create_index(
        op.f("ix_issued_card_invocation_id"), "issued_card", ["invocation_id"]
    )
    op.create_index(op.f("ix_issued_card_rule_id"), "issued_card", ["rule_id"])
    op.create_table(
        "card_feedback",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("card_uuid", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_system", sa.String(length=2048), nullable=True),
        sa.Column("override_code", sa.String(length=255), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", TIMESTAMP, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'overridden')",
            name=op.f("ck_card_feedback_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["card_uuid"],
            ["issued_card.uuid"],
            name=op.f("fk_card_feedback_card_uuid_issued_card"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_feedback")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_card_feedback_dedupe_key")),
    )
    op.create_index(op.f("ix_card_feedback_card_uuid"), "card_feedback", ["card_uuid"])


def downgrade() -> None:
    op.drop_table("card_feedback")
    op.drop_table("issued_card")
    op.drop_table("jwt_replay")
    op.drop_table("hook_invocation")
    op.drop_table("ehr_client")
