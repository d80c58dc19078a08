"""Database faults: hooks keep answering with cards (the audit gap is logged and counted), feedback and JWT
calls fail closed with 503 + Retry-After and store nothing, and everything recovers when the database returns.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.metrics import REGISTRY
from app.config import AuthMode
from app.db.models import CardFeedback
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.services.audit_writer import AuditWriter
from app.services.clients import add_client
from tests.api.requests import hook_request, left_whole_leg_swelling_negative_duplex
from tests.fixtures.app import BASE_URL, SettingsFactory, app_state
from tests.fixtures.database import DatabaseTarget
from tests.reliability.support import TcpProxy, closed_loopback_port
from tests.reliability.test_phi import REASON_SYSTEM, issue_card
from tests.security.helpers import ec_key, public_jwks, sign

pytestmark = pytest.mark.db
PV_ID = "iliac-workup-patient-view"
PV = f"/cds-services/{PV_ID}"
FEEDBACK = "/cds-services/iliac-workup-order-sign/feedback"
Running = tuple[FastAPI, httpx.AsyncClient]
AppRunner = Callable[..., Awaitable[Running]]


@pytest.fixture
async def run_app(settings_factory: SettingsFactory) -> AsyncIterator[AppRunner]:
    """Like app_factory, but also hands back the app so a test can swap its database."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Running:
            app = create_app(settings_factory(**overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE_URL
            )
            return app, await stack.enter_async_context(client)

        yield make


def unreachable_url(target: DatabaseTarget, tmp_path: Path) -> str:
    """A URL of the target's backend where no database answers."""
    if target.backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/no-such-dir/iliac.db"
    return f"postgresql+asyncpg://postgres@127.0.0.1:{closed_loopback_port()}/test"


class Outage:
    """Points a running app at an unreachable database, and back."""

    def __init__(self, app: FastAPI, target: DatabaseTarget, tmp_path: Path) -> None:
        self.state = app_state(app)
        self.saved = (self.state.engine, self.state.sessionmaker, self.state.audit)
        self.target = target
        self.tmp_path = tmp_path

    async def begin(self) -> None:
        schema = self.target.schema if self.target.backend == "postgresql" else None
        broken = create_engine(
            unreachable_url(self.target, self.tmp_path), schema=schema
        )
        audit = AuditWriter(broken)
        await audit.start()
        self.state.engine, self.state.sessionmaker = broken, create_sessionmaker(broken)
        self.state.audit = audit

    async def end(self) -> None:
        await self.state.audit.close()
        await self.state.engine.dispose()
        self.state.engine, self.state.sessionmaker, self.state.audit = self.saved


def hook_with_cards() -> dict[str, Any]:
    return hook_request(prefetch=left_whole_leg_swelling_negative_duplex())


def feedback_for(card: dict[str, Any], comment: str) -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"system": REASON_SYSTEM, "code": "clinical-judgement"},
                    "userComment": comment,
                },
                "outcomeTimestamp": "2026-03-02T10:05:00Z",
            },
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-02T10:06:00Z",
            },
        ]
    }


async def feedback_rows(
    sessionmaker: async_sessionmaker[AsyncSession], card: str
) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(CardFeedback)
            .where(CardFeedback.card_uuid == card)
        )
    return int(count or 0)


def audit_gaps() -> float:
    return (
        REGISTRY.get_sample_value(
            "iliac_cds_audit_write_failures_total", {"service_id": PV_ID}
        )
        or 0.0
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "service_unavailable"


class TestDatabaseDown:
    async def test_app_started_without_a_database_answers_hooks_and_refuses_feedback(
        self,
        run_app: AppRunner,
        database_target: DatabaseTarget,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        _, api = await run_app(
            database_url=unreachable_url(database_target, tmp_path),
            database_schema=None,
        )
        gaps = audit_gaps()

        hook = await api.post(PV, json=hook_with_cards())
        assert hook.status_code == 200, hook.text
        assert hook.json()["cards"], (
            "decision support must not depend on the audit store"
        )
        assert "audit_write_failed" in [r.getMessage() for r in caplog.records]
        assert audit_gaps() == gaps + 1

        feedback = await api.post(
            FEEDBACK, json=feedback_for({"uuid": str(uuid.uuid4())}, "c")
        )
        assert_unavailable(feedback)
        assert (await api.get("/readyz")).status_code == 503
        assert (await api.get("/healthz")).status_code == 200

    async def test_outage_then_recovery(
        self,
        run_app: AppRunner,
        database_target: DatabaseTarget,
        db_sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
    ) -> None:
        app, api = await run_app()
        card = await issue_card(db_sessionmaker)
        outage = Outage(app, database_target, tmp_path)

        await outage.begin()
        assert_unavailable(await api.post(FEEDBACK, json=feedback_for(card, "during")))
        hook = await api.post(PV, json=hook_with_cards())
        assert hook.status_code == 200
        assert hook.json()["cards"]
        await outage.end()

        assert await feedback_rows(db_sessionmaker, card["uuid"]) == 0, (
            "nothing partial"
        )
        retried = await api.post(FEEDBACK, json=feedback_for(card, "during"))
        assert retried.status_code == 200, retried.text
        assert retried.json() == {"stored": 2, "duplicates": 0}
        assert await feedback_rows(db_sessionmaker, card["uuid"]) == 2

    async def test_jwt_call_fails_closed_while_the_store_is_down(
        self,
        run_app: AppRunner,
        database_target: DatabaseTarget,
        db_sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
    ) -> None:
        issuer = f"https://ehr-{uuid.uuid4().hex[:8]}.example.org"
        async with db_sessionmaker() as session:
            await add_client(session, issuer=issuer, jwks=public_jwks(ec_key()))
            await session.commit()
        app, api = await run_app(auth_mode=AuthMode.JWT)

        def bearer() -> dict[str, str]:
            token = sign(
                ec_key(),
                alg="ES384",
                iss=issuer,
                aud=f"{BASE_URL}{PV}",
                jti=uuid.uuid4().hex,
            )
            return {"authorization": f"Bearer {token}"}

        outage = Outage(app, database_target, tmp_path)
        await outage.begin()
        # Without the jti store a replay cannot be refused: 503, never a 200 and never a 500.
        assert_unavailable(await api.post(PV, json=hook_with_cards(), headers=bearer()))
        await outage.end()
        assert (
            await api.post(PV, json=hook_with_cards(), headers=bearer())
        ).status_code == 200


@pytest.mark.parametrize("database_target", ["postgresql"], indirect=True)
class TestPostgresConnectionLoss:
    async def test_pooled_connections_recover_after_the_server_comes_back(
        self,
        run_app: AppRunner,
        database_target: DatabaseTarget,
        db_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        url = make_url(database_target.url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()
        try:
            _, api = await run_app(
                database_url=url.set(
                    host="127.0.0.1", port=proxy.port
                ).render_as_string(hide_password=False)
            )
            first = await issue_card(db_sessionmaker)
            card = await issue_card(db_sessionmaker)
            # Fill the pool: these connections die in the outage and must be replaced afterwards.
            assert (
                await api.post(FEEDBACK, json=feedback_for(first, "a"))
            ).status_code == 200

            await proxy.stop()
            assert_unavailable(await api.post(FEEDBACK, json=feedback_for(card, "b")))
            hook = await api.post(PV, json=hook_with_cards())
            assert hook.status_code == 200
            assert hook.json()["cards"]
            assert (await api.get("/readyz")).status_code == 503

            await proxy.start()
            recovered = await api.post(FEEDBACK, json=feedback_for(card, "b"))
            assert recovered.status_code == 200, recovered.text
            assert await feedback_rows(db_sessionmaker, card["uuid"]) == 2
            assert (await api.get("/readyz")).status_code == 200
        finally:
            await proxy.stop()
