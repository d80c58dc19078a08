"""Synthetic keys, token builders and protocol fakes for the security tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from app.config import Settings
from app.security.clients import RegisteredClient
from app.security.errors import AuthError
from app.security.jwks import keyset_from_jwks

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ENDPOINT = "https://cds.example.org/cds-services/iliac-workup-patient-view"
ISSUER = "https://ehr.example.org/"
TENANT = "tenant-0001"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
EC_KID = "ec-key-1"
RSA_KID = "rsa-key-1"


@cache
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": EC_KID, "use": "sig"})


@cache
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": RSA_KID, "use": "sig"})


@cache
def other_ec_key() -> ECKey:
    """A key the EHR does not publish, under the same kid: for forged signatures."""
    return ECKey.generate_key("P-384", parameters={"kid": EC_KID})


def public_jwks(*keys: Key) -> dict[str, object]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "jwt_algorithms": ["ES384", "RS384"],
        "jwt_clock_skew_seconds": 60,
        "jwt_max_lifetime_seconds": 3600,
        "jwks_cache_seconds": 300,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def make_client(**overrides: object) -> RegisteredClient:
    client = RegisteredClient(
        issuer=ISSUER,
        jwks_url=None,
        jwks=public_jwks(ec_key(), rsa_key()),
        jku_allowlist=(),
        fhir_servers=("https://ehr.example.org/fhir",),
        tenant=TENANT,
    )
    return replace(client, **overrides)  # type: ignore[arg-type]


def claims(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "iss": ISSUER,
        "aud": ENDPOINT,
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "iat": int((NOW - timedelta(seconds=10)).timestamp()),
        "jti": "jti-0001",
        "tenant": TENANT,
        "sub": "synthetic-ehr-user",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


DROP = object()


def sign(
    key: Key,
    *,
    alg: str,
    kid: str | None = None,
    extra_header: dict[str, object] | None = None,
    **claim_overrides: object,
) -> str:
    header: dict[str, object] = {"alg": alg, "kid": kid if kid is not None else key.kid}
    header.update(extra_header or {})
    return jwt.encode(header, claims(**claim_overrides), key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: dict[str, object]) -> str:
    return b64(json.dumps(value).encode())


def unsigned_token(header: dict[str, object], signature: str = "") -> str:
    return f"{b64_json(header)}.{b64_json(claims())}.{signature}"


def hs256_token(secret: bytes, kid: str) -> str:
    """A token MACed with `secret`, built by hand so no library guards get in the way."""
    signing_input = (
        f"{b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64_json(claims())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@dataclass
class FakeClients:
    """ClientLookup over a dict."""

    by_issuer: dict[str, RegisteredClient]
    lookups: int = 0

    async def get_client(self, issuer: str) -> RegisteredClient | None:
        self.lookups += 1
        return self.by_issuer.get(issuer)


@dataclass
class MemoryReplayStore:
    """ReplayStore in memory; records every call so tests can see when it was consulted."""

    seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    calls: int = 0

    async def remember(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        self.calls += 1
        if (issuer, jti) in self.seen:
            return False
        self.seen[(issuer, jti)] = expires_at
        return True


@dataclass
class JwksServer:
    """An httpx MockTransport handler serving a JWKS document and counting requests."""

    document: dict[str, object]
    status_code: int = 200
    requests: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        return httpx.Response(self.status_code, json=self.document)


@dataclass
class FakeClock:
    """Monotonic clock the tests move by hand."""

    value: float = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


def mock_http(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@dataclass
class RecordingFetcher:
    """JwksFetcher serving fixed key sets by URL and recording every call."""

    documents: dict[str, dict[str, object]] = field(default_factory=dict)
    calls: list[tuple[str, bool]] = field(default_factory=list)

    async def get_keys(self, url: str, *, force_refresh: bool) -> KeySet:
        self.calls.append((url, force_refresh))
        if url not in self.documents:
            raise AuthError("jwks_unavailable")
        return keyset_from_jwks(self.documents[url])
