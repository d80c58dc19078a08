"""Engine factory, UTC timestamps and the sync runner used by the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import JwtReplay
from app.db.session import create_engine, run_in_session
from app.services.clients import add_client, list_clients, remove_client
from tests.fixtures.database import DatabaseTarget


class TestCreateEngine:
    async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(
        self, tmp_path: Path
    ) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragma.db'}")
        try:
            async with engine.connect() as conn:
                journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
                foreign_keys = (
                    await conn.execute(text("PRAGMA foreign_keys"))
                ).scalar_one()
                busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        finally:
            await engine.dispose()

        assert (journal, foreign_keys) == ("wal", 1)
        assert busy > 0

    def test_schema_is_refused_for_sqlite(self) -> None:
        with pytest.raises(ValueError, match="only supported on PostgreSQL"):
            create_engine("sqlite+aiosqlite:///x.db", schema="other")

    def test_unsupported_backend_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unsupported database backend"):
            create_engine("mysql+aiomysql://u@localhost/db")


@pytest.mark.db
class TestUtcDateTime:
    async def test_aware_timestamp_comes_back_as_the_same_instant_in_utc(
        self, db_session: AsyncSession
    ) -> None:
        stored = datetime(2026, 3, 2, 15, 30, tzinfo=timezone(timedelta(hours=5)))
        db_session.add(
            JwtReplay(issuer="https://ehr.example.org", jti="tz-1", expires_at=stored)
        )
        await db_session.flush()
        db_session.expunge_all()

        loaded = await db_session.scalar(
            select(JwtReplay.expires_at).where(JwtReplay.jti == "tz-1")
        )

        assert loaded == stored
        assert loaded is not None
        assert loaded.tzinfo == UTC

    async def test_naive_timestamp_is_refused(self, db_session: AsyncSession) -> None:
        naive = datetime(2026, 3, 2, 15, 30)  # noqa: DTZ001
        db_session.add(
            JwtReplay(issuer="https://ehr.example.org", jti="tz-2", expires_at=naive)
        )

        with pytest.raises(StatementError, match="naive datetimes are refused"):
            await db_session.flush()


@pytest.mark.db
class TestRunInSession:
    def test_commits_work_from_sync_code(self, database_target: DatabaseTarget) -> None:
        issuer = "https://cli-ehr.example.org"

        async def _add(session: AsyncSession) -> None:
            await add_client(
                session, issuer=issuer, jwks_url="https://cli-ehr.example.org/jwks"
            )

        async def _remove(session: AsyncSession) -> bool:
            return await remove_client(session, issuer=issuer)

        url, schema = database_target.url, database_target.schema
        run_in_session(url, _add, schema=schema)
        listed = run_in_session(url, list_clients, schema=schema)
        removed = run_in_session(url, _remove, schema=schema)

        assert [client.issuer for client in listed] == [issuer]
        assert removed is True
        assert run_in_session(url, list_clients, schema=schema) == []
