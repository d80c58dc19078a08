"""Every SQL statement of the service: plain async functions, keyword-only arguments after the session."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert

from app.db.models import CardFeedback, EhrClient, HookInvocation, IssuedCard, JwtReplay


def _insert_ignoring_conflicts(session: AsyncSession, table: Any) -> Insert:
    """INSERT .. ON CONFLICT DO NOTHING in the session's dialect (the unique constraint arbitrates races)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported dialect {dialect!r}")


# Core statements on the mapped tables: one INSERT ... RETURNING and one executemany, without the ORM's
# unit of work (identity map, per-object flush bookkeeping), which cost more than the SQL on every hook call.
_INVOCATIONS = cast(Table, HookInvocation.__table__)
_ISSUED_CARDS = cast(Table, IssuedCard.__table__)
_INSERT_INVOCATION = insert(_INVOCATIONS).returning(_INVOCATIONS.c.id)
_INSERT_CARDS = insert(_ISSUED_CARDS)


async def insert_invocation(
    session: AsyncSession,
    *,
    invocation: Mapping[str, object],
    cards: Sequence[Mapping[str, object]],
) -> int:
    """Insert one hook_invocation row and its issued_card rows (`invocation_id` is filled in); returns the id."""
    invocation_id = int(
        (await session.execute(_INSERT_INVOCATION, dict(invocation))).scalar_one()
    )
    if cards:
        await session.execute(_INSERT_CARDS, _with_invocation(cards, invocation_id))
    return invocation_id


AuditRows = tuple[Mapping[str, object], Sequence[Mapping[str, object]]]


async def insert_invocations_async(
    connection: AsyncConnection, batch: Sequence[AuditRows]
) -> None:
    """Insert several (invocation row, issued_card rows) pairs in the connection's transaction (the audit writer
    on PostgreSQL; asyncpg needs no thread)."""
    cards: list[dict[str, object]] = []
    for invocation, issued in batch:
        result = await connection.execute(_INSERT_INVOCATION, dict(invocation))
        cards.extend(_with_invocation(issued, int(result.scalar_one())))
    if cards:
        await connection.execute(_INSERT_CARDS, cards)


class SqliteAuditInserter:
    """insert_invocations_async for a plain sqlite3 connection (the audit writer's thread on SQLite).

    SQLAlchemy's execution layer costs ~0.5 ms of CPU per call here, several times the SQL itself; the statements
    are the same INSERTs, and every value goes through the column type's own bind processor (JSON, UTC
    timestamps), so the stored rows are exactly what the ORM writes and reads back.
    """

    def __init__(self) -> None:
        self._invocation = _RawInsert(_INVOCATIONS, skip=("id",))
        self._card = _RawInsert(_ISSUED_CARDS)

    def insert(
        self, connection: sqlite3.Connection, batch: Sequence[AuditRows]
    ) -> None:
        cards: list[tuple[object, ...]] = []
        for invocation, issued in batch:
            invocation_id = connection.execute(
                self._invocation.sql, self._invocation.values(invocation)
            ).lastrowid
            cards.extend(
                self._card.values({**card, "invocation_id": invocation_id})
                for card in issued
            )
        if cards:
            connection.executemany(self._card.sql, cards)


class _RawInsert:
    def __init__(self, table: Table, skip: tuple[str, ...] = ()) -> None:
        dialect = sqlite.dialect()
        columns = [c for c in table.columns if c.name not in skip]
        self.names = tuple(c.name for c in columns)
        # The dialect's own processors, as the ORM's statements use them: for a TypeDecorator (UTCDateTime) the
        # decorator's step and then SQLite's DATETIME text, not the driver's default adapter ("... +00:00").
        self.processors = tuple(
            c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns
        )
        self.sql = (
            f"INSERT INTO {table.name} ({', '.join(self.names)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )

    def values(self, row: Mapping[str, object]) -> tuple[object, ...]:
        missing = set(self.names) - row.keys()
        if missing:
            raise ValueError(f"audit row lacks {sorted(missing)}")
        return tuple(
            process(row[name]) if process is not None else row[name]
            for name, process in zip(self.names, self.processors, strict=True)
        )


def _with_invocation(
    cards: Sequence[Mapping[str, object]], invocation_id: int
) -> list[dict[str, object]]:
    return [{**card, "invocation_id": invocation_id} for card in cards]


async def get_invocations_by_hook_instance(
    session: AsyncSession, *, hook_instance: str
) -> list[HookInvocation]:
    result = await session.scalars(
        select(HookInvocation)
        .where(HookInvocation.hook_instance == hook_instance)
        .order_by(HookInvocation.id)
    )
    return list(result)


async def get_issued_cards(
    session: AsyncSession, *, invocation_id: int
) -> list[IssuedCard]:
    result = await session.scalars(
        select(IssuedCard)
        .where(IssuedCard.invocation_id == invocation_id)
        .order_by(IssuedCard.uuid)
    )
    return list(result)


async def get_issued_cards_by_uuid(
    session: AsyncSession, *, uuids: Sequence[str]
) -> dict[str, IssuedCard]:
    if not uuids:
        return {}
    result = await session.scalars(
        select(IssuedCard).where(IssuedCard.uuid.in_(set(uuids)))
    )
    return {card.uuid: card for card in result}


async def insert_feedback_ignoring_duplicates(
    session: AsyncSession, *, rows: Sequence[Mapping[str, object]]
) -> int:
    """Insert feedback rows; a row whose dedupe_key is already stored is skipped. Returns how many were inserted."""
    if not rows:
        return 0
    stmt = _insert_ignoring_conflicts(session, CardFeedback.__table__).returning(
        CardFeedback.__table__.c.id
    )
    result = await session.execute(stmt, [dict(row) for row in rows])
    return len(result.all())


async def get_feedback_for_card(
    session: AsyncSession, *, card_uuid: str
) -> list[CardFeedback]:
    result = await session.scalars(
        select(CardFeedback)
        .where(CardFeedback.card_uuid == card_uuid)
        .order_by(CardFeedback.id)
    )
    return list(result)


async def add_ehr_client(session: AsyncSession, *, client: EhrClient) -> None:
    session.add(client)
    await session.flush()


async def get_ehr_client(session: AsyncSession, *, issuer: str) -> EhrClient | None:
    result = await session.scalars(select(EhrClient).where(EhrClient.issuer == issuer))
    return result.one_or_none()


async def list_ehr_clients(session: AsyncSession) -> list[EhrClient]:
    result = await session.scalars(select(EhrClient).order_by(EhrClient.issuer))
    return list(result)


async def delete_ehr_client(session: AsyncSession, *, issuer: str) -> bool:
    result = await session.execute(
        delete(EhrClient)
        .where(EhrClient.issuer == issuer)
        .returning(EhrClient.__table__.c.id)
    )
    return len(result.all()) > 0


async def insert_jti(
    session: AsyncSession, *, issuer: str, jti: str, expires_at: datetime
) -> bool:
    """Insert (issuer, jti); False when the pair is already stored. Atomic across workers via the primary key."""
    stmt = (
        _insert_ignoring_conflicts(session, JwtReplay.__table__)
        .values(issuer=issuer, jti=jti, expires_at=expires_at)
        .returning(JwtReplay.__table__.c.jti)
    )
    result = await session.execute(stmt)
    return result.first() is not None


async def purge_expired_jtis(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(delete(JwtReplay).where(JwtReplay.expires_at < now))
