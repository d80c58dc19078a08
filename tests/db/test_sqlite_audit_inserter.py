"""The SQLite audit writer's raw inserts store what the ORM's statements store, and each card names its own call.

These tests read the stored values back with plain sqlite3 (no SQLAlchemy result processing) and compare them with
rows the ORM's `insert_invocation` wrote on the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repositories
from app.db.migrate import upgrade_database
from app.db.repositories import AuditRows, SqliteAuditInserter
from app.db.session import create_engine
from app.services.audit import audit_rows
from tests.db.factories import HMAC_KEY, SERVICE_ID, STARTED_AT, make_card
from tests.fixtures.database import run_outside_loop

pytestmark = pytest.mark.db

# SQLAlchemy's SQLite DATETIME text for STARTED_AT + 0.123456 s (UTC, no offset; the driver's own adapter would
# have written "... +00:00", which sorts differently from the ORM's values).
EXPECTED_STARTED_AT = (STARTED_AT + timedelta(seconds=0.123456)).strftime(
    "%Y-%m-%d %H:%M:%S.%f"
)

INVOCATION_COLUMNS = (
    "hook_instance, service_id, hook, patient_hmac, client_iss, fhir_server_host, started_at, duration_ms, "
    "status, rule_ids, card_count"
)
CARD_COLUMNS = ", ".join(
    f"issued_card.{name}"
    for name in (
        "uuid",
        "service_id",
        "rule_id",
        "side",
        "indicator",
        "suggestion_uuids",
        "override_reason_codes",
    )
)


def call(
    instance: str,
    cards: int,
    *,
    started_offset_s: float = 0.0,
    duration_ms: float = 3.25,
) -> AuditRows:
    issued = [
        make_card(rule_id=f"R0{i + 1}", suggestion_ids=() if i % 2 else ("s-1",))
        for i in range(cards)
    ]
    invocation, card_rows = audit_rows(
        hook_instance=instance,
        service_id=SERVICE_ID,
        hook="order-sign",
        patient_id=f"synthetic-{instance}",
        hmac_key=HMAC_KEY,
        client_iss="https://ehr.example.org",
        fhir_server="https://fhir.example.org/r4",
        started_at=STARTED_AT + timedelta(seconds=started_offset_s),
        duration_ms=duration_ms,
        status=200,
        cards=issued,
        card_sides={str(issued[0]["uuid"]): "left"} if issued else {},
    )
    return invocation, card_rows


@pytest.fixture
def database(tmp_path: Path) -> str:
    path = tmp_path / "audit.db"
    run_outside_loop(lambda: upgrade_database(f"sqlite+aiosqlite:///{path}"))
    return str(path)


@pytest.fixture
def connection(database: str) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(database, isolation_level=None)
    yield connection
    connection.close()


def write(connection: sqlite3.Connection, batch: Sequence[AuditRows]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        SqliteAuditInserter().insert(connection, batch)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def invocation_rows(
    connection: sqlite3.Connection, instance: str
) -> list[tuple[object, ...]]:
    return connection.execute(
        f"SELECT {INVOCATION_COLUMNS} FROM hook_invocation WHERE hook_instance = ?",
        (instance,),
    ).fetchall()


def cards_of(connection: sqlite3.Connection, instance: str) -> list[tuple[object, ...]]:
    return connection.execute(
        f"SELECT {CARD_COLUMNS} FROM issued_card JOIN hook_invocation ON hook_invocation.id = invocation_id "
        "WHERE hook_instance = ? ORDER BY uuid",
        (instance,),
    ).fetchall()


def without_instance(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [row[1:] for row in rows]


class TestStoredValues:
    async def test_rows_are_stored_exactly_as_the_orm_stores_them(
        self, database: str, connection: sqlite3.Connection
    ) -> None:
        orm_call = call("orm-1", 3, started_offset_s=0.123456)
        raw_call = (
            {**orm_call[0], "hook_instance": "raw-1"},
            [dict(card) for card in orm_call[1]],
        )
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        try:
            async with AsyncSession(engine) as session, session.begin():
                await repositories.insert_invocation(
                    session, invocation=orm_call[0], cards=orm_call[1]
                )
            # Same card uuids cannot be stored twice: the ORM's rows go, the raw ones take their place.
            orm_invocations = invocation_rows(connection, "orm-1")
            orm_cards = cards_of(connection, "orm-1")
            connection.execute("DELETE FROM issued_card")
            connection.execute("DELETE FROM hook_invocation")
            write(connection, [raw_call])
        finally:
            await engine.dispose()

        assert without_instance(
            invocation_rows(connection, "raw-1")
        ) == without_instance(orm_invocations)
        assert cards_of(connection, "raw-1") == orm_cards
        # The stored text itself, not only what SQLAlchemy parses back: the ORM's DATETIME format.
        [[started_at]] = connection.execute(
            "SELECT started_at FROM hook_invocation WHERE hook_instance = 'raw-1'"
        ).fetchall()
        assert started_at == orm_invocations[0][6] == EXPECTED_STARTED_AT
        assert len(orm_cards) == 3

    def test_types_survive_the_json_round_trip(
        self, connection: sqlite3.Connection
    ) -> None:
        write(connection, [call("types-1", 1, duration_ms=2.0)])

        [row] = connection.execute(
            "SELECT typeof(duration_ms), typeof(status), typeof(card_count), typeof(rule_ids), "
            "typeof(patient_hmac), duration_ms FROM hook_invocation"
        ).fetchall()
        assert row == ("real", "integer", "integer", "text", "text", 2.0)
        [[side_type, suggestions]] = connection.execute(
            "SELECT typeof(side), suggestion_uuids FROM issued_card"
        ).fetchall()
        assert side_type == "text"
        assert suggestions == '["s-1"]'

    def test_a_missing_value_is_stored_as_null(
        self, connection: sqlite3.Connection
    ) -> None:
        invocation, cards = call("nulls-1", 2)
        write(connection, [({**invocation, "client_iss": None}, cards)])

        [[iss, iss_type]] = connection.execute(
            "SELECT client_iss, typeof(client_iss) FROM hook_invocation"
        ).fetchall()
        assert (iss, iss_type) == (None, "null")
        sides = connection.execute(
            "SELECT side FROM issued_card ORDER BY side IS NULL"
        ).fetchall()
        assert sides == [("left",), (None,)]


class TestIds:
    def test_each_card_names_its_own_call_in_a_batch(
        self, connection: sqlite3.Connection
    ) -> None:
        batch = [call(f"batch-{i}", cards) for i, cards in enumerate([2, 0, 3, 1])]

        write(connection, batch)

        for (invocation, issued), instance in zip(
            batch, [f"batch-{i}" for i in range(4)], strict=True
        ):
            stored = {row[0] for row in cards_of(connection, instance)}
            assert stored == {card["uuid"] for card in issued}
            [[count]] = connection.execute(
                "SELECT card_count FROM hook_invocation WHERE hook_instance = ?",
                (instance,),
            ).fetchall()
            assert count == invocation["card_count"] == len(issued)

    def test_ids_continue_after_the_largest_in_batch_order(
        self, connection: sqlite3.Connection
    ) -> None:
        write(connection, [call("first-0", 1), call("first-1", 1)])
        write(connection, [call("second-0", 1), call("second-1", 2)])
        connection.execute(
            "DELETE FROM hook_invocation WHERE hook_instance = 'second-1'"
        )  # the largest id is free again, as SQLite itself would reuse it
        write(connection, [call("third-0", 1), call("third-1", 1)])

        ids = connection.execute(
            "SELECT hook_instance, id FROM hook_invocation ORDER BY id"
        ).fetchall()
        assert ids == [
            ("first-0", 1),
            ("first-1", 2),
            ("second-0", 3),
            ("third-0", 4),
            ("third-1", 5),
        ]
        orphans = connection.execute(
            "SELECT count(*) FROM issued_card WHERE invocation_id NOT IN (SELECT id FROM hook_invocation)"
        ).fetchone()
        assert orphans == (0,)

    def test_a_batch_of_calls_without_cards_stores_the_calls(
        self, connection: sqlite3.Connection
    ) -> None:
        write(connection, [call("empty-0", 0), call("empty-1", 0)])

        assert connection.execute(
            "SELECT count(*) FROM hook_invocation"
        ).fetchone() == (2,)
        assert connection.execute("SELECT count(*) FROM issued_card").fetchone() == (0,)

    def test_an_empty_batch_writes_nothing(
        self, connection: sqlite3.Connection
    ) -> None:
        write(connection, [])

        assert connection.execute(
            "SELECT count(*) FROM hook_invocation"
        ).fetchone() == (0,)


class TestRefusedValues:
    def test_a_duplicate_card_fails_the_whole_batch(
        self, connection: sqlite3.Connection
    ) -> None:
        invocation, issued = call("dup-0", 1)
        twin = ({**invocation, "hook_instance": "dup-1"}, [dict(issued[0])])

        with pytest.raises(sqlite3.IntegrityError):
            write(connection, [(invocation, issued), twin])

        assert connection.execute(
            "SELECT count(*) FROM hook_invocation"
        ).fetchone() == (0,)
