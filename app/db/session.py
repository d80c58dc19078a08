"""Async engine and session factories, the commit-at-end session scope and a runner for sync callers (CLI)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """Build the async engine for a `sqlite+aiosqlite` or `postgresql+asyncpg` URL.

    `schema` (PostgreSQL only) becomes the connection's search_path, so every table, including Alembic's
    version table, lives in that schema; tests use it for isolation.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        # hide_parameters: bound values (feedback comments) stay out of exception messages and logs.
        engine = create_async_engine(url, hide_parameters=True)
        _configure_sqlite(engine.sync_engine)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        return create_async_engine(
            url,
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=True,
            # Recycle before typical load-balancer / server idle timeouts cut the socket.
            pool_recycle=1800,
            # Under a burst, requests queue for a pooled connection rather than fail.
            pool_timeout=30,
            hide_parameters=True,
            # Fail fast when the database host is unreachable (asyncpg waits 60 s by default).
            connect_args={"timeout": 5, **connect_args},
        )
    raise ValueError(
        f"unsupported database backend {backend!r}; use sqlite+aiosqlite or postgresql+asyncpg"
    )


def connect_sqlite(engine: AsyncEngine) -> sqlite3.Connection:
    """A plain stdlib sqlite3 connection to `engine`'s database file, configured like the engine's connections.

    For the audit writer's thread: aiosqlite hands every statement to its own thread and back, which costs more
    than the SQL. The connection is in autocommit mode: the caller emits BEGIN IMMEDIATE and COMMIT itself.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        raise ValueError("connect_sqlite needs a SQLite engine")
    if url.database in (None, "", ":memory:"):
        raise ValueError(
            "an in-memory SQLite database cannot be shared with a second connection"
        )
    connection = sqlite3.connect(url.database, isolation_level=None)
    try:
        for pragma in SQLITE_PRAGMAS:
            connection.execute(pragma)
    except BaseException:
        connection.close()
        raise
    return connection


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take over transaction control from the driver so that "begin" below decides how BEGIN is emitted.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when another
        # writer committed in between (busy_timeout does not apply); taking the write lock up front makes
        # concurrent writers queue on busy_timeout instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after the commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


def run_in_session(
    database_url: str,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    schema: str | None = None,
) -> T:
    """Run `work` in one committed session from sync code with no running event loop (the CLI)."""

    async def _run() -> T:
        engine = create_engine(database_url, schema=schema)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(_run())
