"""EHR client registry and the JWT replay store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import EhrClient, JwtReplay
from app.security.clients import ClientLookup, RegisteredClient
from app.security.replay import ReplayStore
from app.services.clients import (
    ClientAlreadyRegistered,
    InvalidClient,
    SqlClientLookup,
    SqlReplayStore,
    add_client,
    get_client_by_issuer,
    list_clients,
    remember_jti,
    remove_client,
    validate_url,
)

ISSUER = "https://ehr.example.org"
JWKS: dict[str, object] = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-384",
            "x": "synthetic-x",
            "y": "synthetic-y",
            "kid": "k1",
        }
    ]
}
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class TestValidateUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "https://ehr.example.org/jwks.json",
            "http://127.0.0.1:8080/fhir",
            "http://localhost/fhir",
            "http://[::1]:9000/fhir",
        ],
    )
    def test_accepts_https_and_loopback_http(self, url: str) -> None:
        assert validate_url(url, field="fhir_servers") == url

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://ehr.example.org/jwks", "must use https"),
            ("ftp://ehr.example.org/jwks", "must use https"),
            ("/relative/path", "absolute with a host"),
            ("https://user:secret@ehr.example.org/jwks", "must not embed credentials"),
            ("https://ehr.example.org/jwks#frag", "must not have a fragment"),
            ("https://[bad/", "not a valid URL"),
        ],
    )
    def test_refuses_other_urls(self, url: str, message: str) -> None:
        with pytest.raises(InvalidClient, match=message):
            validate_url(url, field="jwks_url")


@pytest.mark.db
class TestClientRegistry:
    async def test_add_get_list_remove(self, db_session: AsyncSession) -> None:
        added = await add_client(
            db_session,
            issuer=ISSUER,
            jwks=JWKS,
            jku_allowlist=["https://ehr.example.org/keys/"],
            fhir_servers=["https://fhir.example.org/r4", "https://fhir.example.org/r4"],
            tenant="tenant-a",
        )
        await add_client(
            db_session,
            issuer="https://another.example.org",
            jwks_url="https://another.example.org/jwks",
        )

        fetched = await get_client_by_issuer(db_session, issuer=ISSUER)
        listed = await list_clients(db_session)
        removed = await remove_client(db_session, issuer=ISSUER)
        removed_again = await remove_client(db_session, issuer=ISSUER)

        assert added == RegisteredClient(
            issuer=ISSUER,
            jwks_url=None,
            jwks=JWKS,
            jku_allowlist=("https://ehr.example.org/keys/",),
            fhir_servers=("https://fhir.example.org/r4",),
            tenant="tenant-a",
        )
        assert fetched == added
        # Other tests commit clients to the same database: look only at the two added here.
        mine = [
            c.issuer
            for c in listed
            if c.issuer in ("https://another.example.org", ISSUER)
        ]
        assert mine == ["https://another.example.org", ISSUER]
        assert (removed, removed_again) == (True, False)
        assert await get_client_by_issuer(db_session, issuer=ISSUER) is None

    async def test_duplicate_issuer_is_refused_and_session_stays_usable(
        self, db_session: AsyncSession
    ) -> None:
        await add_client(db_session, issuer=ISSUER, jwks=JWKS)

        with pytest.raises(ClientAlreadyRegistered):
            await add_client(
                db_session, issuer=f"  {ISSUER} ", jwks_url=f"{ISSUER}/jwks"
            )

        issuers = [client.issuer for client in await list_clients(db_session)]
        assert issuers.count(ISSUER) == 1

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param(
                {"issuer": "  ", "jwks": JWKS},
                "issuer must not be empty",
                id="empty-issuer",
            ),
            pytest.param(
                {"issuer": ISSUER}, "needs jwks_url, jwks or a jku", id="no-keys"
            ),
            pytest.param(
                {"issuer": ISSUER, "jwks": {"kty": "EC"}},
                "'keys' array",
                id="not-a-jwks",
            ),
            pytest.param(
                {"issuer": ISSUER, "jwks_url": "http://ehr.example.org/jwks"},
                "https",
                id="http-jwks",
            ),
            pytest.param(
                {
                    "issuer": ISSUER,
                    "jwks": JWKS,
                    "fhir_servers": ["http://fhir.example.org"],
                },
                "fhir_servers: URL must use https",
                id="http-fhir-server",
            ),
            pytest.param(
                {"issuer": ISSUER, "jku_allowlist": ["https://u:p@ehr.example.org/"]},
                "jku_allowlist: URL must not embed credentials",
                id="jku-credentials",
            ),
        ],
    )
    async def test_invalid_registration_is_refused(
        self, db_session: AsyncSession, kwargs: dict[str, object], message: str
    ) -> None:
        # Other tests may leave clients in this shared database: compare before and after.
        before = await list_clients(db_session)
        with pytest.raises(InvalidClient, match=message):
            await add_client(db_session, **kwargs)  # type: ignore[arg-type]

        assert await list_clients(db_session) == before

    async def test_lookup_adapter_finds_committed_clients(
        self, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        issuer = "https://lookup-ehr.example.org"
        lookup: ClientLookup = SqlClientLookup(db_sessionmaker)
        async with db_sessionmaker() as session:
            await add_client(session, issuer=issuer, jwks=JWKS)
            await session.commit()
        try:
            found = await lookup.get_client(issuer)
            missing = await lookup.get_client("https://unknown.example.org")
        finally:
            async with db_sessionmaker() as session:
                await session.execute(
                    delete(EhrClient).where(EhrClient.issuer == issuer)
                )
                await session.commit()

        assert found is not None
        assert found.jwks == JWKS
        assert missing is None


@pytest.mark.db
class TestRememberJti:
    async def test_second_sighting_is_a_replay(self, db_session: AsyncSession) -> None:
        expires = NOW + timedelta(minutes=5)

        first = await remember_jti(
            db_session, issuer=ISSUER, jti="jti-1", expires_at=expires, now=NOW
        )
        again = await remember_jti(
            db_session, issuer=ISSUER, jti="jti-1", expires_at=expires, now=NOW
        )
        other_issuer = await remember_jti(
            db_session,
            issuer="https://other.example.org",
            jti="jti-1",
            expires_at=expires,
            now=NOW,
        )

        assert (first, again, other_issuer) == (True, False, True)

    async def test_expired_rows_are_purged(self, db_session: AsyncSession) -> None:
        await remember_jti(
            db_session,
            issuer=ISSUER,
            jti="jti-old",
            expires_at=NOW + timedelta(minutes=5),
            now=NOW,
        )

        later = NOW + timedelta(minutes=10)
        reused = await remember_jti(
            db_session,
            issuer=ISSUER,
            jti="jti-old",
            expires_at=later + timedelta(minutes=5),
            now=later,
        )

        assert reused is True

    @pytest.mark.parametrize("jti", ["", "x" * 256])
    async def test_empty_or_oversized_jti_is_refused(
        self, db_session: AsyncSession, jti: str
    ) -> None:
        with pytest.raises(ValueError, match="jti must have"):
            await remember_jti(db_session, issuer=ISSUER, jti=jti, expires_at=NOW)

    async def test_replay_store_commits_its_own_transaction(
        self, db_sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        issuer = "https://replay-store.example.org"
        store: ReplayStore = SqlReplayStore(db_sessionmaker)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        try:
            first = await store.remember(issuer, "jti-store", expires)
            again = await store.remember(issuer, "jti-store", expires)
        finally:
            async with db_sessionmaker() as session:
                await session.execute(
                    delete(JwtReplay).where(JwtReplay.issuer == issuer)
                )
                await session.commit()

        assert (first, again) == (True, False)
