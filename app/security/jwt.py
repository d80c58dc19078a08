"""CDS Hooks 2.0 "Trusting CDS Clients": verify the EHR's bearer JWT and return the client it names."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from joserfc.jws import JWSRegistry

from app.config import Settings
from app.security.clients import ClientLookup, RegisteredClient
from app.security.errors import AuthError
from app.security.jwks import JwksFetcher, keyset_from_jwks
from app.security.replay import ReplayStore

_MAX_TOKEN_CHARS = 16 * 1024
_MAX_ID_CHARS = 256
# The replay store's column holds 255 characters; a longer jti is malformed, not a server error.
_MAX_JTI_CHARS = 255
# Year 9999: larger NumericDates cannot become datetimes and are never legitimate.
_MAX_NUMERIC_DATE = 253402300799
# The signature may be empty so that `alg: none` tokens reach the algorithm check and are
# reported as such rather than as malformed.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

Claims = dict[str, Any]


@dataclass(frozen=True)
class AuthenticatedClient:
    """A registered EHR whose JWT verified; the claims are safe to log (never the token)."""

    client: RegisteredClient
    issuer: str
    jti: str
    expires_at: datetime
    tenant: str | None
    subject: str | None


@dataclass(frozen=True)
class _Header:
    alg: str
    kid: str
    jku: str | None


def parse_bearer(header: str | None) -> str:
    """Return the compact JWT from an `Authorization: Bearer <jwt>` header value."""
    if header is None or not header.strip():
        raise AuthError("missing_token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("malformed_token")
    if len(token) > _MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
        raise AuthError("malformed_token")
    return token


async def authenticate(
    *,
    authorization: str | None,
    endpoint_url: str,
    clients: ClientLookup,
    replay: ReplayStore,
    jwks: JwksFetcher,
    settings: Settings,
    now: datetime,
) -> AuthenticatedClient:
    """Verify a CDS Client's JWT for `endpoint_url` (the exact `aud`); raise AuthError otherwise.

    https://cds-hooks.hl7.org/2.0/#trusting-cds-clients
    """
    if now.tzinfo is None:
        # A naive datetime would be read as local time and shift every exp/iat comparison.
        raise ValueError("now must be timezone-aware")
    token = parse_bearer(authorization)
    raw_header, raw_payload, _ = token.split(".")
    header = _check_header(_decode_segment(raw_header), settings)
    issuer = _decode_segment(raw_payload).get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise AuthError("missing_claim")
    client = await clients.get_client(issuer)
    if client is None:
        raise AuthError("unknown_issuer")
    key = await _find_key(client, header, jwks)
    claims = _verify_signature(token, key, header.alg)
    if claims.get("iss") != client.issuer:
        raise AuthError("unknown_issuer")
    result, replay_until = _check_claims(
        claims, client=client, endpoint_url=endpoint_url, settings=settings, now=now
    )
    # Only a fully verified token may occupy the replay store; forged ones must not burn jtis.
    if not await replay.remember(client.issuer, result.jti, replay_until):
        raise AuthError("replayed_jti")
    return result


def _decode_segment(segment: str) -> Claims:
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(decoded)
    except (binascii.Error, ValueError, RecursionError):
        raise AuthError("malformed_token") from None
    if not isinstance(value, dict):
        raise AuthError("malformed_token")
    return value


def _check_header(header: Claims, settings: Settings) -> _Header:
    alg = header.get("alg")
    if not isinstance(alg, str) or not _is_allowed_alg(alg, settings):
        raise AuthError("alg_not_allowed")
    # We understand no critical extensions, and RFC 7797 `b64` changes what is signed.
    if "crit" in header or "b64" in header:
        raise AuthError("malformed_token")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise AuthError("malformed_token")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > _MAX_ID_CHARS:
        raise AuthError("malformed_token")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise AuthError("jku_not_allowed")
    return _Header(alg=alg, kid=kid, jku=jku)


def _is_allowed_alg(alg: str, settings: Settings) -> bool:
    # Settings already refuses these; repeated here so a hand-built Settings cannot enable them.
    if alg.lower() == "none" or alg.upper().startswith("HS"):
        return False
    return alg in settings.jwt_algorithms


async def _find_key(
    client: RegisteredClient, header: _Header, jwks: JwksFetcher
) -> Key:
    keys, url = await _client_keys(client, header.jku, jwks)
    key = _key_by_kid(keys, header.kid)
    if key is None and url is not None:
        # An unknown kid may mean the EHR rotated keys: refresh once (the fetcher rate-limits).
        key = _key_by_kid(await jwks.get_keys(url, force_refresh=True), header.kid)
    if key is None:
        raise AuthError("unknown_kid")
    return key


async def _client_keys(
    client: RegisteredClient, jku: str | None, jwks: JwksFetcher
) -> tuple[KeySet, str | None]:
    if jku is not None:
        # Exact match only: a jku is attacker-controlled until it is on the client's list.
        if jku not in client.jku_allowlist:
            raise AuthError("jku_not_allowed")
        return await jwks.get_keys(jku, force_refresh=False), jku
    if client.jwks is not None:
        return keyset_from_jwks(client.jwks), None
    if client.jwks_url:
        return await jwks.get_keys(
            client.jwks_url, force_refresh=False
        ), client.jwks_url
    raise AuthError("jwks_unavailable")


def _key_by_kid(keys: KeySet, kid: str) -> Key | None:
    # kid is an opaque string: compared for equality, never used as a path, URL or query.
    return next((key for key in keys.keys if key.kid == kid), None)


def _verify_signature(token: str, key: Key, alg: str) -> Claims:
    # One algorithm, one key: joserfc then refuses an RSA key for ES384 and an EC key for RS384.
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    try:
        claims = jose_jwt.decode(token, key, algorithms=[alg], registry=registry).claims
    except (JoseError, ValueError, TypeError):
        raise AuthError("bad_signature") from None
    return claims


def _check_claims(
    claims: Claims,
    *,
    client: RegisteredClient,
    endpoint_url: str,
    settings: Settings,
    now: datetime,
) -> tuple[AuthenticatedClient, datetime]:
    for name in ("aud", "exp", "iat", "jti"):
        if name not in claims:
            raise AuthError("missing_claim")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise AuthError("missing_claim")
    if len(jti) > _MAX_JTI_CHARS:
        raise AuthError("malformed_token")
    exp, accept_until = _check_times(claims, settings=settings, now=now)
    _check_audience(claims["aud"], endpoint_url)
    tenant = claims.get("tenant")
    if client.tenant is not None and tenant != client.tenant:
        raise AuthError("tenant_mismatch")
    subject = claims.get("sub")
    authenticated = AuthenticatedClient(
        client=client,
        issuer=client.issuer,
        jti=jti,
        expires_at=datetime.fromtimestamp(exp, tz=UTC),
        tenant=tenant if isinstance(tenant, str) else None,
        subject=subject if isinstance(subject, str) else None,
    )
    return authenticated, accept_until


def _check_times(
    claims: Claims, *, settings: Settings, now: datetime
) -> tuple[float, datetime]:
    """Check exp, iat and nbf; return exp and when the token stops being acceptable (replay store)."""
    current = now.timestamp()
    skew = settings.jwt_clock_skew_seconds
    exp = _numeric_date(claims, "exp")
    iat = _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf")
    if exp is None or iat is None:
        raise AuthError("missing_claim")
    if current >= exp + skew:
        raise AuthError("expired")
    if nbf is not None and current + skew < nbf:
        raise AuthError("not_yet_valid")
    if iat > current + skew:
        raise AuthError("iat_invalid")
    oldest_allowed = iat + settings.jwt_max_lifetime_seconds + skew
    if current > oldest_allowed:
        raise AuthError("iat_invalid")
    return exp, datetime.fromtimestamp(min(exp + skew, oldest_allowed), tz=UTC)


def _numeric_date(claims: Claims, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; Python's json accepts NaN and Infinity, which the range test refuses.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError("malformed_token")
    if not 0 <= value <= _MAX_NUMERIC_DATE:
        raise AuthError("malformed_token")
    return float(value)


def _check_audience(aud: object, endpoint_url: str) -> None:
    if isinstance(aud, str):
        matches = aud == endpoint_url
    elif isinstance(aud, list):
        matches = any(isinstance(item, str) and item == endpoint_url for item in aud)
    else:
        matches = False
    if not matches:
        raise AuthError("aud_mismatch")
