"""Alembic migrations: they apply and revert cleanly and match the ORM models on both backends."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.base import Base
from app.db.migrate import downgrade_database, upgrade_database
from tests.fixtures.database import DatabaseTarget

pytestmark = pytest.mark.db

TABLES = {"hook_invocation", "issued_card", "card_feedback", "ehr_client", "jwt_replay"}


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


class TestMigrations:
    async def test_downgrade_to_base_then_upgrade_again(
        self, database_target: DatabaseTarget, db_engine: AsyncEngine
    ) -> None:
        url, schema = database_target.url, database_target.schema

        await asyncio.to_thread(downgrade_database, url, "base", schema=schema)
        async with db_engine.connect() as conn:
            after_downgrade = await conn.run_sync(_table_names)
        await asyncio.to_thread(upgrade_database, url, schema=schema)
        async with db_engine.connect() as conn:
            after_upgrade = await conn.run_sync(_table_names)

        assert after_downgrade & TABLES == set()
        assert after_upgrade >= TABLES | {"alembic_version"}

    async def test_models_and_migrations_agree(self, db_engine: AsyncEngine) -> None:
        async with db_engine.connect() as conn:
            diff = await conn.run_sync(_diff)

        assert diff == []
