"""Production shape: `iliac-cds serve --workers 2` on PostgreSQL, driven by concurrent clients over TCP.

- No lost feedback: 10,000 feedback posts from 50 concurrent clients -> exactly 10,000 rows.
- A JWT's `jti` is remembered in the database, so a replay is refused whichever worker receives it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from sqlalchemy import func, select

from app.db.models import CardFeedback
from app.db.session import create_engine, create_sessionmaker
from app.services.audit import record_invocation
from app.services.clients import add_client
from tests.fixtures.database import DatabaseTarget
from tests.security.helpers import claims, ec_key, public_jwks

pytestmark = pytest.mark.db
REPO = Path(__file__).resolve().parents[2]
SERVICE = "iliac-workup-order-sign"
POSTS = 10_000
CLIENTS = 50
ISSUER = "https://ehr-workers.example.org"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("service not ready within 60 s")


@pytest.fixture(scope="module")
def service(postgres_target: DatabaseTarget) -> Iterator[str]:
    """Two uvicorn workers on the test schema, JWT auth on, one registered client."""

    async def register() -> None:
        engine = create_engine(postgres_target.url, schema=postgres_target.schema)
        async with create_sessionmaker(engine)() as session:
            await add_client(
                session, issuer=ISSUER, jwks=public_jwks(ec_key()), fhir_servers=[]
            )
            await session.commit()
        await engine.dispose()

    asyncio.run(register())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ILIAC_CDS_DATABASE_URL": postgres_target.url,
        "ILIAC_CDS_DATABASE_SCHEMA": postgres_target.schema or "",
        "ILIAC_CDS_AUTH_MODE": "jwt",
        "ILIAC_CDS_HMAC_KEY": "workers-test-hmac-key-0123456789",
        "ILIAC_CDS_PUBLIC_BASE_URL": base,
        "ILIAC_CDS_NOW": NOW.isoformat(),
        "ILIAC_CDS_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--skip-migrate",
    ]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def token(base: str, path: str, jti: str) -> str:
    key = ec_key()
    payload = claims(iss=ISSUER, aud=f"{base}{path}", jti=jti, tenant=None)
    return jwt.encode(
        {"alg": "ES384", "kid": key.kid}, payload, key, algorithms=["ES384"]
    )


@pytest.fixture
async def issued_cards(postgres_target: DatabaseTarget) -> AsyncIterator[list[str]]:
    uuids = [str(uuid.uuid4()) for _ in range(POSTS)]
    cards: list[dict[str, Any]] = [
        {
            "uuid": u,
            "indicator": "info",
            "source": {"label": "R16", "topic": {"code": "R16"}},
        }
        for u in uuids
    ]
    engine = create_engine(postgres_target.url, schema=postgres_target.schema)
    async with create_sessionmaker(engine)() as session:
        await record_invocation(
            session,
            hook_instance=str(uuid.uuid4()),
            service_id=SERVICE,
            hook="order-sign",
            patient_id="pat-load",
            hmac_key="k",
            client_iss=ISSUER,
            fhir_server=None,
            started_at=NOW,
            duration_ms=1.0,
            status=200,
            cards=cards,
            card_sides={},
        )
        await session.commit()
    yield uuids
    await engine.dispose()


async def count_feedback(target: DatabaseTarget, uuids: list[str]) -> int:
    engine = create_engine(target.url, schema=target.schema)
    try:
        async with create_sessionmaker(engine)() as session:
            total = 0
            for start in range(0, len(uuids), 1000):
                chunk = uuids[start : start + 1000]
                total += int(
                    await session.scalar(
                        select(func.count())
                        .select_from(CardFeedback)
                        .where(CardFeedback.card_uuid.in_(chunk))
                    )
                    or 0
                )
            return total
    finally:
        await engine.dispose()


async def test_ten_thousand_feedback_posts_from_fifty_clients_are_all_stored(
    service: str, issued_cards: list[str], postgres_target: DatabaseTarget
) -> None:
    path = f"/cds-services/{SERVICE}/feedback"
    queue: asyncio.Queue[str] = asyncio.Queue()
    for card in issued_cards:
        queue.put_nowait(card)
    statuses: list[int] = []

    async def client() -> None:
        # Each simulated EHR keeps its own connection pool, as separate EHR instances would.
        async with httpx.AsyncClient(base_url=service, timeout=60) as http:
            while not queue.empty():
                card = queue.get_nowait()
                body = {
                    "feedback": [
                        {
                            "card": card,
                            "outcome": "accepted",
                            "outcomeTimestamp": "2026-03-02T10:05:00Z",
                        }
                    ]
                }
                headers = {
                    "authorization": f"Bearer {token(service, path, uuid.uuid4().hex)}"
                }
                response = await http.post(path, json=body, headers=headers)
                statuses.append(response.status_code)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert statuses.count(200) == POSTS, {s: statuses.count(s) for s in set(statuses)}
    assert await count_feedback(postgres_target, issued_cards) == POSTS


async def test_a_replayed_jti_is_refused_whichever_worker_receives_it(
    service: str,
) -> None:
    path = "/cds-services/iliac-workup-patient-view"
    once = token(service, path, uuid.uuid4().hex)
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/p", "patientId": "pat-replay"},
        "prefetch": {},
    }

    async def post() -> int:
        # A fresh connection per call, so the calls spread over both workers.
        async with httpx.AsyncClient(base_url=service, timeout=30) as http:
            response = await http.post(
                path, json=body, headers={"authorization": f"Bearer {once}"}
            )
            return response.status_code

    statuses = await asyncio.gather(*(post() for _ in range(20)))
    # The first accepted call answers 412 (this body omits every prefetch key); every replay is a bare 401.
    assert sorted(statuses) == [401] * 19 + [412]
