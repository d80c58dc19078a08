"""The audit writer: rows are committed before `write` returns, concurrent calls share commits, a refused row
fails only its own call, and closing commits what was queued."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.db import repositories
from app.db.migrate import upgrade_database
from app.db.models import HookInvocation
from app.db.repositories import AuditRows
from app.db.session import create_engine
from app.services import audit_writer
from app.services.audit import audit_rows
from app.services.audit_writer import AuditWriter, WriterFileLock
from tests.db.factories import HMAC_KEY, SERVICE_ID, STARTED_AT, make_card
from tests.fixtures.database import record_threads, run_outside_loop

pytestmark = pytest.mark.db


def call_rows(
    hook_instance: str, cards: list[dict[str, object]] | None = None
) -> AuditRows:
    cards = cards if cards is not None else [make_card(rule_id="R01")]
    return audit_rows(
        hook_instance=hook_instance,
        service_id=SERVICE_ID,
        hook="patient-view",
        patient_id="synthetic-patient-1",
        hmac_key=HMAC_KEY,
        client_iss=None,
        fhir_server=None,
        started_at=STARTED_AT,
        duration_ms=3.0,
        status=200,
        cards=cards,
        card_sides={},
    )


@pytest.fixture
async def writer(db_engine: AsyncEngine) -> AsyncIterator[AuditWriter]:
    writer = AuditWriter(db_engine)
    await writer.start()
    yield writer
    await writer.close()


async def stored(engine: AsyncEngine, prefix: str) -> dict[str, int]:
    """hook_instance -> number of issued_card rows, for invocations whose hook_instance starts with prefix."""
    async with AsyncSession(engine) as session:
        counts: dict[str, int] = {}
        for instance in await _instances(session, prefix):
            [invocation] = await repositories.get_invocations_by_hook_instance(
                session, hook_instance=instance
            )
            cards = await repositories.get_issued_cards(
                session, invocation_id=invocation.id
            )
            counts[instance] = len(cards)
        return counts


async def _instances(session: AsyncSession, prefix: str) -> list[str]:
    result = await session.scalars(
        select(HookInvocation.hook_instance).where(
            HookInvocation.hook_instance.startswith(prefix)
        )
    )
    return list(result)


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spies on the batch sizes the writer commits (both backends' insert functions)."""
    sizes: list[int] = []
    sync_insert = repositories.SqliteAuditInserter.insert
    async_insert = repositories.insert_invocations_async

    def spy_sync(
        self: repositories.SqliteAuditInserter,
        connection: sqlite3.Connection,
        batch: Sequence[AuditRows],
    ) -> None:
        sizes.append(len(batch))
        sync_insert(self, connection, batch)

    async def spy_async(
        connection: AsyncConnection, batch: Sequence[AuditRows]
    ) -> None:
        sizes.append(len(batch))
        await async_insert(connection, batch)

    monkeypatch.setattr(repositories.SqliteAuditInserter, "insert", spy_sync)
    monkeypatch.setattr(repositories, "insert_invocations_async", spy_async)
    return sizes


class TestAuditWriter:
    async def test_rows_are_committed_when_write_returns(
        self, writer: AuditWriter, db_engine: AsyncEngine
    ) -> None:
        prefix = f"aw-one-{uuid.uuid4()}"
        cards = [
            make_card(rule_id="R01"),
            make_card(rule_id="R02", suggestion_ids=()),
        ]
        left = str(cards[0]["uuid"])
        rows = call_rows(prefix, cards)

        await writer.write((rows[0], [{**rows[1][0], "side": "left"}, rows[1][1]]))

        # Read back through the ORM on another connection: committed, and stored as the ORM stores it.
        async with AsyncSession(db_engine) as session:
            [invocation] = await repositories.get_invocations_by_hook_instance(
                session, hook_instance=prefix
            )
            issued = await repositories.get_issued_cards(
                session, invocation_id=invocation.id
            )
        assert invocation.started_at == STARTED_AT
        assert invocation.started_at.tzinfo is not None
        assert invocation.rule_ids == ["R01", "R02"]
        assert (invocation.status, invocation.card_count) == (200, 2)
        assert invocation.patient_hmac == rows[0]["patient_hmac"]
        by_uuid = {card.uuid: card for card in issued}
        assert set(by_uuid) == {str(c["uuid"]) for c in cards}
        assert by_uuid[left].side == "left"
        assert by_uuid[left].suggestion_uuids == rows[1][0]["suggestion_uuids"]
        assert by_uuid[left].suggestion_uuids  # make_card offers suggestions
        assert by_uuid[str(cards[1]["uuid"])].suggestion_uuids == []
        assert (
            by_uuid[left].override_reason_codes == rows[1][0]["override_reason_codes"]
        )

    async def test_concurrent_calls_share_transactions_and_all_are_stored(
        self,
        writer: AuditWriter,
        db_engine: AsyncEngine,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        sizes = record_batches(monkeypatch)
        prefix = f"aw-many-{uuid.uuid4()}"
        instances = [f"{prefix}-{i:03d}" for i in range(60)]

        await asyncio.gather(*(writer.write(call_rows(i)) for i in instances))

        assert await stored(db_engine, prefix) == dict.fromkeys(instances, 1)
        assert sum(sizes) == 60
        assert max(sizes) > 1, f"no group commit: {sizes}"
        assert len(sizes) < 60
        assert max(sizes) <= audit_writer.MAX_BATCH

    async def test_a_refused_row_fails_only_its_own_call(
        self, writer: AuditWriter, db_engine: AsyncEngine
    ) -> None:
        prefix = f"aw-bad-{uuid.uuid4()}"
        taken = make_card(rule_id="R01")
        await writer.write(call_rows(f"{prefix}-first", [taken]))

        results = await asyncio.gather(
            writer.write(call_rows(f"{prefix}-a")),
            writer.write(
                call_rows(f"{prefix}-dup", [taken])
            ),  # card uuid already stored
            writer.write(call_rows(f"{prefix}-b")),
            return_exceptions=True,
        )

        assert results[0] is None
        assert isinstance(results[1], IntegrityError | sqlite3.IntegrityError)
        assert results[2] is None
        assert await stored(db_engine, prefix) == {
            f"{prefix}-first": 1,
            f"{prefix}-a": 1,
            f"{prefix}-b": 1,
        }

    async def test_close_commits_what_was_queued_and_refuses_later_writes(
        self, db_engine: AsyncEngine
    ) -> None:
        writer = AuditWriter(db_engine)
        await writer.start()
        prefix = f"aw-close-{uuid.uuid4()}"
        waiting = [
            asyncio.ensure_future(writer.write(call_rows(f"{prefix}-{i}")))
            for i in range(10)
        ]
        await asyncio.sleep(0)  # every write is queued

        await writer.close()

        await asyncio.gather(*waiting)
        assert len(await stored(db_engine, prefix)) == 10
        with pytest.raises(RuntimeError, match="closed"):
            await writer.write(call_rows(f"{prefix}-late"))

    async def test_a_cancelled_caller_does_not_cancel_its_rows(
        self, writer: AuditWriter, db_engine: AsyncEngine
    ) -> None:
        prefix = f"aw-cancel-{uuid.uuid4()}"
        task = asyncio.ensure_future(writer.write(call_rows(prefix)))
        await asyncio.sleep(0)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.write(
            call_rows(f"{prefix}-after")
        )  # queued behind it: committed after it

        assert await stored(db_engine, prefix) == {prefix: 1, f"{prefix}-after": 1}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite file of this test's own (the writer is a thread only on SQLite)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/workers.db"
    run_outside_loop(lambda: upgrade_database(url))
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_writer(engine: AsyncEngine) -> AsyncIterator[AuditWriter]:
    writer = AuditWriter(engine)
    await writer.start()
    yield writer
    await writer.close()


@pytest.fixture
def other_workers_lock(tmp_path: Path) -> Iterator[WriterFileLock]:
    """The file lock as another worker's writer takes it (`engine`'s database, `<database>-audit.lock`)."""
    lock = WriterFileLock(f"{tmp_path}/workers.db-audit.lock")
    yield lock
    lock.close()


class TestSqliteWorkers:
    """Several workers (one writer each) on one SQLite file queue on a file lock, not on SQLite's polling."""

    async def test_writers_of_two_workers_store_every_row(
        self, engine: AsyncEngine
    ) -> None:
        first, second = AuditWriter(engine), AuditWriter(engine)
        await first.start()
        await second.start()
        try:
            await asyncio.gather(
                *(
                    (first if i % 2 else second).write(call_rows(f"w2-{i:03d}"))
                    for i in range(80)
                )
            )
        finally:
            await first.close()
            await second.close()

        assert len(await stored(engine, "w2-")) == 80

    async def test_a_transaction_waits_for_the_lock_holder(
        self,
        engine: AsyncEngine,
        sqlite_writer: AuditWriter,
        other_workers_lock: WriterFileLock,
    ) -> None:
        with other_workers_lock:  # another worker's transaction
            pending = asyncio.ensure_future(sqlite_writer.write(call_rows("locked-1")))
            await asyncio.sleep(0.3)
            assert not pending.done()
            assert await stored(engine, "locked-") == {}
        await pending
        assert await stored(engine, "locked-") == {"locked-1": 1}

    async def test_calls_queued_while_the_lock_is_held_share_one_commit(
        self,
        engine: AsyncEngine,
        sqlite_writer: AuditWriter,
        other_workers_lock: WriterFileLock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        sizes = record_batches(monkeypatch)
        with other_workers_lock:  # another worker's transaction
            first = asyncio.ensure_future(sqlite_writer.write(call_rows("queued-0")))
            # The writer has the first call and waits for the lock.
            await asyncio.sleep(0.3)
            later = [
                asyncio.ensure_future(sqlite_writer.write(call_rows(f"queued-{i}")))
                for i in range(1, 6)
            ]
            await asyncio.sleep(0.1)
            assert sizes == []
        await asyncio.gather(first, *later)

        assert sizes == [6]
        assert len(await stored(engine, "queued-")) == 6


class TestWriterThreadFailures:
    """On SQLite the writer is a thread: whatever goes wrong in it, no hook call is left waiting."""

    async def test_an_unexpected_error_fails_its_batch_and_the_writer_goes_on(
        self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        writer = AuditWriter(engine)
        await writer.start()
        real_drain = AuditWriter._drain
        calls = {"n": 0}

        def broken_once(self: AuditWriter, first: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyError("bug")
            return real_drain(self, first)

        monkeypatch.setattr(AuditWriter, "_drain", broken_once)
        try:
            with pytest.raises(KeyError):
                await asyncio.wait_for(writer.write(call_rows("broken-1")), 10)
            await asyncio.wait_for(writer.write(call_rows("broken-2")), 10)
        finally:
            await writer.close()

        assert await stored(engine, "broken-") == {"broken-2": 1}

    async def test_a_dead_thread_refuses_new_calls_at_once(
        self, engine: AsyncEngine
    ) -> None:
        writer = AuditWriter(engine)
        await writer.start()
        await writer.write(call_rows("alive-1"))
        writer._thread_queue.put(None)  # the thread ends as if it had died
        assert writer._thread is not None
        await asyncio.to_thread(writer._thread.join, 10)

        with pytest.raises(RuntimeError, match="stopped"):
            await asyncio.wait_for(writer.write(call_rows("alive-2")), 10)
        await writer.close()


@pytest.fixture
async def lone_writer(engine: AsyncEngine) -> AsyncIterator[AuditWriter]:
    """A SQLite writer told that its caller is the only request being served."""
    writer = AuditWriter(engine, requests_in_flight=lambda: 1)
    await writer.start()
    yield writer
    await writer.close()


LOOP = threading.current_thread().name
THREAD = "iliac-cds-audit-writer"


class TestInlineCommit:
    """A call that is the only request being served commits on the event loop; otherwise it queues."""

    async def test_a_lone_call_commits_on_the_loop(
        self,
        engine: AsyncEngine,
        lone_writer: AuditWriter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        threads = record_threads(monkeypatch)

        await lone_writer.write(call_rows("lone-1"))
        await lone_writer.write(call_rows("lone-2"))

        assert threads == [LOOP, LOOP]
        assert await stored(engine, "lone-") == {"lone-1": 1, "lone-2": 1}

    async def test_a_call_among_others_queues_for_the_thread(
        self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        threads = record_threads(monkeypatch)
        writer = AuditWriter(engine, requests_in_flight=lambda: 2)
        await writer.start()
        try:
            await writer.write(call_rows("busy-1"))
        finally:
            await writer.close()

        assert threads == [THREAD]
        assert await stored(engine, "busy-") == {"busy-1": 1}

    async def test_without_a_request_count_every_call_queues(
        self,
        sqlite_writer: AuditWriter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        threads = record_threads(monkeypatch)

        await sqlite_writer.write(call_rows("uncounted-1"))

        assert threads == [THREAD]

    async def test_another_workers_lock_sends_the_call_to_the_thread(
        self,
        engine: AsyncEngine,
        lone_writer: AuditWriter,
        other_workers_lock: WriterFileLock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        threads = record_threads(monkeypatch)
        with other_workers_lock:
            pending = asyncio.ensure_future(lone_writer.write(call_rows("held-1")))
            await asyncio.sleep(0.3)  # the loop is free meanwhile: this test runs on it
            assert not pending.done()
            assert await stored(engine, "held-") == {}
        await asyncio.wait_for(pending, 10)

        assert threads == [THREAD]
        assert await stored(engine, "held-") == {"held-1": 1}

    async def test_sqlites_write_lock_held_elsewhere_does_not_block_the_loop(
        self,
        engine: AsyncEngine,
        lone_writer: AuditWriter,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        threads = record_threads(monkeypatch)
        # Another process's transaction (a CLI command, say): it holds SQLite's write lock, not our file lock.
        other = sqlite3.connect(f"{tmp_path}/workers.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            pending = asyncio.ensure_future(lone_writer.write(call_rows("sqlite-1")))
            await asyncio.sleep(0.3)
            assert not pending.done()
            other.execute("ROLLBACK")
            await asyncio.wait_for(pending, 10)
        finally:
            other.close()

        # The thread waited on SQLite's busy handler; the loop's connection gave up at once instead of waiting
        # up to busy_timeout with the loop held.
        assert threads == [THREAD]
        loop_connection = lone_writer._loop_connection
        assert loop_connection is not None
        assert loop_connection.execute("PRAGMA busy_timeout").fetchone() == (0,)
        assert await stored(engine, "sqlite-") == {"sqlite-1": 1}

    async def test_a_refused_row_fails_its_lone_call(
        self, engine: AsyncEngine, lone_writer: AuditWriter
    ) -> None:
        taken = make_card(rule_id="R01")
        await lone_writer.write(call_rows("refused-first", [taken]))

        with pytest.raises(sqlite3.IntegrityError):
            await lone_writer.write(call_rows("refused-dup", [taken]))
        await lone_writer.write(call_rows("refused-after"))

        assert await stored(engine, "refused-") == {
            "refused-first": 1,
            "refused-after": 1,
        }

    async def test_a_lone_caller_cancelled_before_its_commit_still_has_its_rows(
        self, engine: AsyncEngine, lone_writer: AuditWriter
    ) -> None:
        task = asyncio.ensure_future(lone_writer.write(call_rows("gone-1")))
        await asyncio.sleep(0)  # the call is waiting for its turn of the loop

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await lone_writer.write(call_rows("gone-after"))

        assert await stored(engine, "gone-") == {"gone-1": 1, "gone-after": 1}
