"""EHR JWT authentication over HTTP (CDS Hooks 2.0 "Trusting CDS Clients") and the startup rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from joserfc import jwt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import AuthMode
from app.db.migrate import upgrade_database
from app.main import StartupError
from app.services.clients import add_client, remove_client
from tests.api.requests import empty_prefetch, hook_request
from tests.fixtures.app import BASE_URL, AppFactory
from tests.security.helpers import (
    claims,
    ec_key,
    hs256_token,
    public_jwks,
    rsa_key,
    sign,
    unsigned_token,
)

pytestmark = pytest.mark.db
SERVICE = "iliac-workup-patient-view"
PATH = f"/cds-services/{SERVICE}"
AUD = f"{BASE_URL}{PATH}"


async def register(
    sessionmaker: async_sessionmaker[AsyncSession], **kwargs: object
) -> str:
    issuer = f"https://ehr-{uuid.uuid4().hex[:8]}.example.org"
    async with sessionmaker() as session:
        await add_client(
            session,
            issuer=issuer,
            jwks=public_jwks(ec_key(), rsa_key()),
            fhir_servers=["https://ehr.example.org/fhir"],
            **kwargs,  # type: ignore[arg-type]
        )
        await session.commit()
    return issuer


def token(issuer: str, *, alg: str = "ES384", **overrides: object) -> str:
    key = ec_key() if alg.startswith("ES") else rsa_key()
    values: dict[str, object] = {"iss": issuer, "aud": AUD, "jti": uuid.uuid4().hex}
    values.update(overrides)
    payload = claims(**values)
    return jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])


@pytest.fixture
async def jwt_api(
    app_factory: AppFactory, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    issuer = await register(db_sessionmaker)
    yield await app_factory(auth_mode=AuthMode.JWT), issuer
    # The registry is shared by every test on this database: leave it as found.
    async with db_sessionmaker() as session:
        await remove_client(session, issuer=issuer)
        await session.commit()


async def call(
    api: httpx.AsyncClient, bearer: str | None, **body: object
) -> httpx.Response:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return await api.post(PATH, json=hook_request(**body), headers=headers)  # type: ignore[arg-type]


class TestJwt:
    @pytest.mark.parametrize("alg", ["ES384", "RS384"])
    async def test_registered_client_passes(
        self, jwt_api: tuple[httpx.AsyncClient, str], alg: str
    ) -> None:
        api, issuer = jwt_api
        response = await call(api, token(issuer, alg=alg))
        assert response.status_code == 200, response.text

    async def test_replayed_jti_is_401(
        self, jwt_api: tuple[httpx.AsyncClient, str]
    ) -> None:
        api, issuer = jwt_api
        once = token(issuer)
        assert (await call(api, once)).status_code == 200
        replay = await call(api, once)
        assert replay.status_code == 401

    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(lambda _iss: None, id="missing"),
            pytest.param(
                lambda _iss: unsigned_token({"alg": "none", "typ": "JWT"}),
                id="alg-none",
            ),
            pytest.param(
                lambda _iss: hs256_token(b"guessable", "ec-key-1"), id="hs256"
            ),
            pytest.param(
                lambda _iss: hs256_token(ec_key().as_pem(private=False), "ec-key-1"),
                id="hs256-public-key",
            ),
            pytest.param(lambda iss: token(iss, exp=1_000), id="expired"),
            pytest.param(
                lambda iss: token(iss, aud="https://elsewhere.example/cds-services/x"),
                id="wrong-aud",
            ),
            pytest.param(
                lambda _iss: token("https://unknown.example.org"), id="unknown-iss"
            ),
            pytest.param(
                lambda iss: sign(
                    ec_key(),
                    alg="ES384",
                    extra_header={"jku": "https://attacker.example/jwks.json"},
                    iss=iss,
                    aud=AUD,
                    jti=uuid.uuid4().hex,
                ),
                id="jku-off-allow-list",
            ),
        ],
    )
    async def test_rejected_tokens_get_a_bare_401(
        self, jwt_api: tuple[httpx.AsyncClient, str], make: object
    ) -> None:
        api, issuer = jwt_api
        response = await call(api, make(issuer))  # type: ignore[operator]
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "detail": "unauthorized"}

    async def test_fhir_server_not_on_the_clients_list_is_403(
        self, jwt_api: tuple[httpx.AsyncClient, str]
    ) -> None:
        api, issuer = jwt_api
        prefetch = empty_prefetch()
        del prefetch["observations"]
        response = await call(
            api,
            token(issuer),
            prefetch=prefetch,
            fhirServer="https://other.example.org/fhir",
        )
        assert response.status_code == 403


class TestStartup:
    async def test_jwt_mode_refuses_to_start_without_clients(
        self, app_factory: AppFactory, tmp_path: object
    ) -> None:
        empty_db = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
        await asyncio.to_thread(upgrade_database, empty_db)
        with pytest.raises(StartupError, match="no EHR client"):
            await app_factory(
                auth_mode=AuthMode.JWT, database_url=empty_db, database_schema=None
            )

    async def test_disabled_auth_refuses_a_public_bind(
        self, app_factory: AppFactory
    ) -> None:
        with pytest.raises(StartupError, match="loopback"):
            await app_factory(auth_mode=AuthMode.DISABLED, bind_host="0.0.0.0")


class TestReviewedTokens:
    async def test_a_jti_too_long_for_the_replay_store_is_401(
        self, jwt_api: tuple[httpx.AsyncClient, str]
    ) -> None:
        api, issuer = jwt_api
        assert (await call(api, token(issuer, jti="j" * 256))).status_code == 401

    async def test_feedback_refuses_a_token_minted_for_the_service_url(
        self, jwt_api: tuple[httpx.AsyncClient, str]
    ) -> None:
        api, issuer = jwt_api
        body = {
            "feedback": [
                {
                    "card": str(uuid.uuid4()),
                    "outcome": "accepted",
                    "outcomeTimestamp": "2026-03-02T10:05:00Z",
                }
            ]
        }
        wrong_aud = token(issuer)  # aud = the service URL, not .../feedback
        response = await api.post(
            f"{PATH}/feedback",
            json=body,
            headers={"authorization": f"Bearer {wrong_aud}"},
        )
        assert response.status_code == 401
        right_aud = token(issuer, aud=f"{AUD}/feedback")
        response = await api.post(
            f"{PATH}/feedback",
            json=body,
            headers={"authorization": f"Bearer {right_aud}"},
        )
        assert response.status_code == 400  # authenticated; the card was never issued

    async def test_jwt_mode_refuses_the_default_hmac_key(
        self, app_factory: AppFactory
    ) -> None:
        with pytest.raises(StartupError, match="ILIAC_CDS_HMAC_KEY"):
            await app_factory(auth_mode=AuthMode.JWT, hmac_key="change-me-dev-only")
