"""JWKS handling: inline key sets, and the cached, rate-limited HTTP fetcher."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.security.errors import AuthError
from app.security.jwks import HttpJwksFetcher, keyset_from_jwks
from app.security.jwt import authenticate
from tests.security.helpers import (
    EC_KID,
    ENDPOINT,
    JWKS_URL,
    NOW,
    RSA_KID,
    FakeClients,
    FakeClock,
    JwksServer,
    MemoryReplayStore,
    ec_key,
    make_client,
    make_settings,
    mock_http,
    public_jwks,
    rsa_key,
    sign,
)


def _b64_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def weak_rsa_jwk() -> dict[str, object]:
    numbers = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_numbers()
    )
    return {
        "kty": "RSA",
        "kid": "weak",
        "n": _b64_int(numbers.n),
        "e": _b64_int(numbers.e),
    }


async def reason_of(fetcher: HttpJwksFetcher, *, force_refresh: bool = False) -> str:
    with pytest.raises(AuthError) as caught:
        await fetcher.get_keys(JWKS_URL, force_refresh=force_refresh)
    return caught.value.reason


class TestKeysetFromJwks:
    def test_imports_ec_and_rsa_public_keys(self) -> None:
        keys = keyset_from_jwks(public_jwks(ec_key(), rsa_key()))
        assert sorted(str(key.kid) for key in keys) == [EC_KID, RSA_KID]
        assert not any(key.is_private for key in keys)

    def test_drops_symmetric_and_weak_keys(self) -> None:
        oct_key = {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}
        keys = keyset_from_jwks(
            {"keys": [oct_key, weak_rsa_jwk(), ec_key().as_dict(private=False)]}
        )
        assert [key.kid for key in keys] == [EC_KID]

    @pytest.mark.parametrize(
        "document",
        [
            {},
            {"keys": "not-a-list"},
            {"keys": []},
            {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
            {"keys": [{"kty": "EC", "crv": "P-384", "x": "bad"}]},
            {"keys": ["not-a-key"]},
        ],
    )
    def test_unusable_documents(self, document: dict[str, object]) -> None:
        with pytest.raises(AuthError) as caught:
            keyset_from_jwks(document)
        assert caught.value.reason == "jwks_unavailable"


class TestHttpJwksFetcher:
    async def test_cache_hit(self) -> None:
        server = JwksServer(public_jwks(ec_key()))
        clock = FakeClock()
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, clock=clock)
            first = await fetcher.get_keys(JWKS_URL, force_refresh=False)
            clock.advance(299)
            second = await fetcher.get_keys(JWKS_URL, force_refresh=False)
        assert first is second
        assert server.requests == [JWKS_URL]

    async def test_cache_expires(self) -> None:
        server = JwksServer(public_jwks(ec_key()))
        clock = FakeClock()
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, clock=clock)
            await fetcher.get_keys(JWKS_URL, force_refresh=False)
            clock.advance(301)
            await fetcher.get_keys(JWKS_URL, force_refresh=False)
        assert server.requests == [JWKS_URL, JWKS_URL]

    async def test_forced_refresh_is_rate_limited_per_url(self) -> None:
        server = JwksServer(public_jwks(ec_key()))
        clock = FakeClock()
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(
                http, cache_seconds=300, clock=clock, min_refresh_seconds=10
            )
            await fetcher.get_keys(JWKS_URL, force_refresh=False)
            clock.advance(5)
            await fetcher.get_keys(JWKS_URL, force_refresh=True)
            assert len(server.requests) == 1
            clock.advance(6)
            await fetcher.get_keys(JWKS_URL, force_refresh=True)
            assert len(server.requests) == 2
            await fetcher.get_keys("https://other.example/jwks", force_refresh=True)
        assert len(server.requests) == 3

    @pytest.mark.parametrize("status", [404, 500, 503])
    async def test_server_error(self, status: int) -> None:
        server = JwksServer(public_jwks(ec_key()), status_code=status)
        async with mock_http(server) as http:
            assert (
                await reason_of(HttpJwksFetcher(http, cache_seconds=300))
                == "jwks_unavailable"
            )

    async def test_failure_is_not_retried_within_the_refresh_interval(self) -> None:
        server = JwksServer(public_jwks(ec_key()), status_code=500)
        clock = FakeClock()
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(
                http, cache_seconds=300, clock=clock, min_refresh_seconds=10
            )
            assert await reason_of(fetcher) == "jwks_unavailable"
            assert await reason_of(fetcher, force_refresh=True) == "jwks_unavailable"
            assert len(server.requests) == 1
            server.status_code = 200
            clock.advance(11)
            await fetcher.get_keys(JWKS_URL, force_refresh=False)
        assert len(server.requests) == 2

    async def test_redirect_is_not_followed(self) -> None:
        requests: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(str(request.url))
            return httpx.Response(
                302, headers={"location": "http://169.254.169.254/latest"}
            )

        async with mock_http(handler) as http:
            assert (
                await reason_of(HttpJwksFetcher(http, cache_seconds=300))
                == "jwks_unavailable"
            )
        assert requests == [JWKS_URL]

    async def test_oversized_body(self) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b'{"keys": [' + b" " * 2048 + b"]}")

        async with mock_http(handler) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, max_bytes=1024)
            assert await reason_of(fetcher) == "jwks_unavailable"

    async def test_oversized_streamed_body_without_content_length(self) -> None:
        sent: list[int] = []

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                sent.append(1)
                yield b" " * 512

        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=chunks())

        async with mock_http(handler) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, max_bytes=1024)
            assert await reason_of(fetcher) == "jwks_unavailable"
        # Reading stops at the cap instead of buffering the whole body.
        assert len(sent) < 100

    @pytest.mark.parametrize(
        "body", [b"not json", b"[1, 2]", b"[" * 100_000, b'{"keys": 3}']
    )
    async def test_unparseable_body(self, body: bytes) -> None:
        def handler(_request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body)

        async with mock_http(handler) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, max_bytes=200_000)
            assert await reason_of(fetcher) == "jwks_unavailable"

    async def test_transport_error(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectTimeout("synthetic timeout", request=request)

        async with mock_http(handler) as http:
            assert (
                await reason_of(HttpJwksFetcher(http, cache_seconds=300))
                == "jwks_unavailable"
            )


class TestRefreshOnUnknownKid:
    async def test_rotated_key_is_found_after_one_refresh(self) -> None:
        server = JwksServer(public_jwks(rsa_key()))
        clock = FakeClock()
        client = make_client(jwks=None, jwks_url=JWKS_URL)
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, clock=clock)
            await fetcher.get_keys(JWKS_URL, force_refresh=False)
            server.document = public_jwks(rsa_key(), ec_key())
            clock.advance(30)
            result = await authenticate(
                authorization=f"Bearer {sign(ec_key(), alg='ES384')}",
                endpoint_url=ENDPOINT,
                clients=FakeClients({client.issuer: client}),
                replay=MemoryReplayStore(),
                jwks=fetcher,
                settings=make_settings(),
                now=NOW,
            )
        assert result.jti == "jti-0001"
        assert server.requests == [JWKS_URL, JWKS_URL]

    async def test_unknown_kid_refreshes_at_most_once_per_interval(self) -> None:
        server = JwksServer(public_jwks(rsa_key()))
        client = make_client(jwks=None, jwks_url=JWKS_URL)
        clients = FakeClients({client.issuer: client})
        async with mock_http(server) as http:
            fetcher = HttpJwksFetcher(http, cache_seconds=300, clock=FakeClock())
            for jti in ("jti-a", "jti-b", "jti-c"):
                with pytest.raises(AuthError) as caught:
                    await authenticate(
                        authorization=f"Bearer {sign(ec_key(), alg='ES384', jti=jti)}",
                        endpoint_url=ENDPOINT,
                        clients=clients,
                        replay=MemoryReplayStore(),
                        jwks=fetcher,
                        settings=make_settings(),
                        now=NOW,
                    )
                assert caught.value.reason == "unknown_kid"
        # The first request fetches; its forced refresh and later ones fall in the 10 s window.
        assert server.requests == [JWKS_URL]
