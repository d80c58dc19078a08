"""EHR client registry and JWT replay store on the database, plus the adapters app.security calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repositories
from app.db.models import EhrClient
from app.db.session import session_scope
from app.hosts import is_loopback_host
from app.security.clients import RegisteredClient

MAX_JTI_LENGTH = 255


class InvalidClient(ValueError):
    """Raised by add_client when a registration is malformed; `message` is safe to print."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientAlreadyRegistered(InvalidClient):
    """Raised by add_client when the issuer is already registered."""


def validate_url(url: str, *, field: str) -> str:
    """Return `url` when it is absolute https (or http to a loopback host) without credentials or fragment."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        raise InvalidClient(f"{field}: not a valid URL") from exc
    if not host:
        raise InvalidClient(f"{field}: URL must be absolute with a host")
    if parts.scheme != "https" and not (
        parts.scheme == "http" and is_loopback_host(host)
    ):
        raise InvalidClient(
            f"{field}: URL must use https (plain http only for loopback hosts)"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidClient(f"{field}: URL must not embed credentials")
    if parts.fragment:
        raise InvalidClient(f"{field}: URL must not have a fragment")
    return url.strip()


async def add_client(
    session: AsyncSession,
    *,
    issuer: str,
    jwks_url: str | None = None,
    jwks: Mapping[str, object] | None = None,
    jku_allowlist: Sequence[str] = (),
    fhir_servers: Sequence[str] = (),
    tenant: str | None = None,
    now: datetime | None = None,
) -> RegisteredClient:
    """Register an EHR (flush only; the caller commits). Raises InvalidClient or ClientAlreadyRegistered."""
    issuer = issuer.strip()
    if not issuer:
        raise InvalidClient("issuer must not be empty")
    if jwks_url is None and jwks is None and not jku_allowlist:
        raise InvalidClient(
            "a client needs jwks_url, jwks or a jku allow-list to verify its JWTs"
        )
    if jwks is not None and not isinstance(jwks.get("keys"), list):
        raise InvalidClient("jwks must be a JSON Web Key Set with a 'keys' array")
    row = EhrClient(
        issuer=issuer,
        jwks_url=validate_url(jwks_url, field="jwks_url")
        if jwks_url is not None
        else None,
        jwks_json=orjson.dumps(dict(jwks)).decode() if jwks is not None else None,
        jku_allowlist=_urls(jku_allowlist, field="jku_allowlist"),
        fhir_servers=_urls(fhir_servers, field="fhir_servers"),
        tenant=tenant or None,
        created_at=now or datetime.now(UTC),
    )
    try:
        # A savepoint keeps the caller's transaction usable when the unique issuer constraint fires.
        async with session.begin_nested():
            await repositories.add_ehr_client(session, client=row)
    except IntegrityError as exc:
        raise ClientAlreadyRegistered(f"issuer {issuer} is already registered") from exc
    return _registered(row)


async def list_clients(session: AsyncSession) -> list[RegisteredClient]:
    return [_registered(row) for row in await repositories.list_ehr_clients(session)]


async def remove_client(session: AsyncSession, *, issuer: str) -> bool:
    """Delete a registration (flush only); False when the issuer was not registered."""
    return await repositories.delete_ehr_client(session, issuer=issuer)


async def get_client_by_issuer(
    session: AsyncSession, *, issuer: str
) -> RegisteredClient | None:
    row = await repositories.get_ehr_client(session, issuer=issuer)
    return _registered(row) if row is not None else None


async def remember_jti(
    session: AsyncSession,
    *,
    issuer: str,
    jti: str,
    expires_at: datetime,
    now: datetime | None = None,
) -> bool:
    """Record a JWT id; False when (issuer, jti) was seen before, i.e. a replay.

    Flush only: call it in a session that commits at once (SqlReplayStore does), because until the commit a
    concurrent insert of the same pair waits on this transaction's row lock.
    """
    if not jti or len(jti) > MAX_JTI_LENGTH:
        raise ValueError(f"jti must have 1 to {MAX_JTI_LENGTH} characters")
    await repositories.purge_expired_jtis(session, now=now or datetime.now(UTC))
    return await repositories.insert_jti(
        session, issuer=issuer, jti=jti, expires_at=expires_at
    )


class SqlClientLookup:
    """app.security.clients.ClientLookup on the ehr_client table, one short session per lookup."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def get_client(self, issuer: str) -> RegisteredClient | None:
        async with self._sessionmaker() as session:
            return await get_client_by_issuer(session, issuer=issuer)


class SqlReplayStore:
    """app.security.replay.ReplayStore on the jwt_replay table, committing its own short transaction."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # The service clock: expiry must be judged on the same clock as the JWT's exp (ILIAC_CDS_NOW).
        self._clock = clock or (lambda: datetime.now(UTC))

    async def remember(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        async with session_scope(self._sessionmaker) as session:
            return await remember_jti(
                session,
                issuer=issuer,
                jti=jti,
                expires_at=expires_at,
                now=self._clock(),
            )


def _urls(urls: Sequence[str], *, field: str) -> list[str]:
    return list(dict.fromkeys(validate_url(url, field=field) for url in urls))


def _registered(row: EhrClient) -> RegisteredClient:
    jwks = orjson.loads(row.jwks_json) if row.jwks_json is not None else None
    return RegisteredClient(
        issuer=row.issuer,
        jwks_url=row.jwks_url,
        jwks=jwks,
        jku_allowlist=tuple(row.jku_allowlist),
        fhir_servers=tuple(row.fhir_servers),
        tenant=row.tenant,
    )
