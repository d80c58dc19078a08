"""EHR JWT verification: what authenticate() accepts and the reason it gives for what it refuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from joserfc import jwt

from app.config import Settings
from app.security.clients import RegisteredClient
from app.security.errors import AuthError, AuthReason
from app.security.jwks import HttpJwksFetcher
from app.security.jwt import AuthenticatedClient, authenticate, parse_bearer
from tests.security.helpers import (
    DROP,
    EC_KID,
    ENDPOINT,
    ISSUER,
    JWKS_URL,
    NOW,
    RSA_KID,
    TENANT,
    FakeClients,
    JwksServer,
    MemoryReplayStore,
    RecordingFetcher,
    b64_json,
    claims,
    ec_key,
    hs256_token,
    make_client,
    make_settings,
    mock_http,
    other_ec_key,
    public_jwks,
    rsa_key,
    sign,
    unsigned_token,
)


@dataclass
class Harness:
    """One EHR registry, replay store and fetcher, shared by the calls of a test."""

    client: RegisteredClient = field(default_factory=make_client)
    settings: Settings = field(default_factory=make_settings)
    replay: MemoryReplayStore = field(default_factory=MemoryReplayStore)
    fetcher: RecordingFetcher = field(default_factory=RecordingFetcher)
    clients: FakeClients = field(init=False)

    def __post_init__(self) -> None:
        self.clients = FakeClients({self.client.issuer: self.client})

    async def run(self, authorization: str | None) -> AuthenticatedClient:
        return await authenticate(
            authorization=authorization,
            endpoint_url=ENDPOINT,
            clients=self.clients,
            replay=self.replay,
            jwks=self.fetcher,
            settings=self.settings,
            now=NOW,
        )

    async def reason(self, authorization: str | None) -> AuthReason:
        with pytest.raises(AuthError) as caught:
            await self.run(authorization)
        return caught.value.reason


def bearer(token: str) -> str:
    return f"Bearer {token}"


class TestParseBearer:
    def test_returns_the_token(self) -> None:
        assert parse_bearer("Bearer aaa.bbb.ccc") == "aaa.bbb.ccc"

    def test_scheme_is_case_insensitive(self) -> None:
        assert parse_bearer("bearer aaa.bbb.ccc") == "aaa.bbb.ccc"

    @pytest.mark.parametrize("header", [None, "", "   "])
    def test_missing_header(self, header: str | None) -> None:
        with pytest.raises(AuthError) as caught:
            parse_bearer(header)
        assert caught.value.reason == "missing_token"

    @pytest.mark.parametrize(
        "header",
        [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer not-a-jwt",
            "Bearer a.b",
            "Bearer a.b.c.d",
            "Bearer a b.c.d",
        ],
    )
    def test_malformed_header(self, header: str) -> None:
        with pytest.raises(AuthError) as caught:
            parse_bearer(header)
        assert caught.value.reason == "malformed_token"

    def test_oversized_token_is_malformed(self) -> None:
        with pytest.raises(AuthError) as caught:
            parse_bearer("Bearer " + "a" * 20_000 + ".b.c")
        assert caught.value.reason == "malformed_token"


class TestAccepts:
    async def test_es384_with_inline_jwks(self) -> None:
        harness = Harness()
        result = await harness.run(bearer(sign(ec_key(), alg="ES384")))
        assert result.client == harness.client
        assert (result.issuer, result.jti, result.tenant) == (
            ISSUER,
            "jti-0001",
            TENANT,
        )
        assert result.subject == "synthetic-ehr-user"
        assert result.expires_at == NOW + timedelta(minutes=5)
        assert harness.fetcher.calls == []

    async def test_rs384_with_inline_jwks(self) -> None:
        result = await Harness().run(bearer(sign(rsa_key(), alg="RS384")))
        assert result.jti == "jti-0001"

    async def test_replay_entry_lives_until_the_token_stops_being_acceptable(
        self,
    ) -> None:
        harness = Harness()
        await harness.run(bearer(sign(ec_key(), alg="ES384")))
        # exp (NOW+5 min) plus the 60 s skew comes before iat + max lifetime.
        assert harness.replay.seen == {(ISSUER, "jti-0001"): NOW + timedelta(minutes=6)}

    @pytest.mark.parametrize("alg", ["ES384", "RS384"])
    async def test_keys_from_jwks_url(self, alg: str) -> None:
        key = ec_key() if alg == "ES384" else rsa_key()
        server = JwksServer(public_jwks(ec_key(), rsa_key()))
        client = make_client(jwks=None, jwks_url=JWKS_URL)
        async with mock_http(server) as http:
            harness = Harness(client=client)
            fetcher = HttpJwksFetcher(http, cache_seconds=300)
            result = await authenticate(
                authorization=bearer(sign(key, alg=alg)),
                endpoint_url=ENDPOINT,
                clients=harness.clients,
                replay=harness.replay,
                jwks=fetcher,
                settings=harness.settings,
                now=NOW,
            )
        assert result.issuer == ISSUER
        assert server.requests == [JWKS_URL]

    async def test_jku_on_the_allow_list_is_used(self) -> None:
        jku = "https://keys.ehr.example.org/jwks"
        harness = Harness(client=make_client(jwks=None, jku_allowlist=(jku,)))
        harness.fetcher.documents[jku] = public_jwks(ec_key())
        await harness.run(
            bearer(sign(ec_key(), alg="ES384", extra_header={"jku": jku}))
        )
        assert harness.fetcher.calls == [(jku, False)]

    async def test_aud_may_be_a_list(self) -> None:
        token = sign(ec_key(), alg="ES384", aud=["https://other.example/x", ENDPOINT])
        assert (await Harness().run(bearer(token))).jti == "jti-0001"

    async def test_client_without_tenant_accepts_any_tenant_claim(self) -> None:
        harness = Harness(client=make_client(tenant=None))
        result = await harness.run(
            bearer(sign(ec_key(), alg="ES384", tenant="someone-else"))
        )
        assert result.tenant == "someone-else"

    async def test_expiry_within_clock_skew_is_tolerated(self) -> None:
        token = sign(
            ec_key(), alg="ES384", exp=int((NOW - timedelta(seconds=30)).timestamp())
        )
        assert (await Harness().run(bearer(token))).expires_at == NOW - timedelta(
            seconds=30
        )

    async def test_past_nbf_and_unknown_claims_are_tolerated(self) -> None:
        token = sign(
            ec_key(),
            alg="ES384",
            nbf=int(NOW.timestamp()) - 5,
            fhirUser="Practitioner/x",
        )
        assert (await Harness().run(bearer(token))).jti == "jti-0001"


class TestAlgorithms:
    @pytest.mark.parametrize("alg", ["none", "None", "NONE"])
    @pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
    async def test_alg_none_is_refused_before_any_lookup(
        self, alg: str, signature: str
    ) -> None:
        harness = Harness()
        token = unsigned_token({"alg": alg, "typ": "JWT", "kid": EC_KID}, signature)
        assert await harness.reason(bearer(token)) == "alg_not_allowed"
        assert harness.clients.lookups == 0

    async def test_hs256_with_public_key_pem_as_secret(self) -> None:
        harness = Harness()
        token = hs256_token(rsa_key().as_pem(private=False), RSA_KID)
        assert await harness.reason(bearer(token)) == "alg_not_allowed"
        assert harness.clients.lookups == 0

    async def test_hs256_refused_even_if_settings_were_forced_to_allow_it(self) -> None:
        # model_construct skips the Settings validator, as a careless caller might.
        settings = Settings.model_construct(
            jwt_algorithms=["HS256", "ES384"], jwt_clock_skew_seconds=60
        )
        harness = Harness(settings=settings)
        token = hs256_token(ec_key().as_pem(private=False), EC_KID)
        assert await harness.reason(bearer(token)) == "alg_not_allowed"

    async def test_algorithm_missing_from_settings(self) -> None:
        harness = Harness(settings=make_settings(jwt_algorithms=["RS384"]))
        assert (
            await harness.reason(bearer(sign(ec_key(), alg="ES384")))
            == "alg_not_allowed"
        )

    async def test_rs384_header_cannot_use_an_ec_key(self) -> None:
        token = sign(rsa_key(), alg="RS384", kid=EC_KID)
        assert await Harness().reason(bearer(token)) == "bad_signature"

    async def test_es384_header_cannot_use_an_rsa_key(self) -> None:
        token = sign(ec_key(), alg="ES384", kid=RSA_KID)
        assert await Harness().reason(bearer(token)) == "bad_signature"


class TestSignature:
    async def test_tampered_signature(self) -> None:
        head, payload, signature = sign(ec_key(), alg="ES384").split(".")
        flipped = ("A" if signature[10] != "A" else "B").join(
            (signature[:10], signature[11:])
        )
        harness = Harness()
        assert (
            await harness.reason(bearer(f"{head}.{payload}.{flipped}"))
            == "bad_signature"
        )
        assert harness.replay.calls == 0

    async def test_tampered_payload(self) -> None:
        head, _, signature = sign(rsa_key(), alg="RS384").split(".")
        forged = b64_json(claims(tenant="other-tenant", jti="jti-forged"))
        assert (
            await Harness().reason(bearer(f"{head}.{forged}.{signature}"))
            == "bad_signature"
        )

    async def test_signed_by_an_unpublished_key_with_a_known_kid(self) -> None:
        assert (
            await Harness().reason(bearer(sign(other_ec_key(), alg="ES384")))
            == "bad_signature"
        )

    async def test_oct_key_in_jwks_is_never_used(self) -> None:
        oct_key = {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}
        jwks: dict[str, object] = {"keys": [oct_key, ec_key().as_dict(private=False)]}
        harness = Harness(client=make_client(jwks=jwks))
        token = sign(rsa_key(), alg="RS384", kid="shared")
        assert await harness.reason(bearer(token)) == "unknown_kid"


class TestKeySelection:
    @pytest.mark.parametrize(
        "kid",
        [
            "../../etc/passwd",
            "' OR 1=1 --",
            "file:///etc/passwd",
            "https://evil.example/jwks",
            "ec-key-1 ",
            "EC-KEY-1",
        ],
    )
    async def test_kid_injection_matches_nothing(self, kid: str) -> None:
        harness = Harness()
        assert (
            await harness.reason(bearer(sign(ec_key(), alg="ES384", kid=kid)))
            == "unknown_kid"
        )
        assert harness.fetcher.calls == []

    async def test_missing_kid_is_malformed(self) -> None:
        token = unsigned_token({"alg": "ES384", "typ": "JWT"}, "c2ln")
        assert await Harness().reason(bearer(token)) == "malformed_token"

    async def test_unknown_issuer(self) -> None:
        token = sign(ec_key(), alg="ES384", iss="https://stranger.example/")
        assert await Harness().reason(bearer(token)) == "unknown_issuer"

    async def test_jku_off_the_allow_list_is_never_fetched(self) -> None:
        server = JwksServer(public_jwks(ec_key()))
        async with mock_http(server) as http:
            harness = Harness(
                client=make_client(jku_allowlist=("https://ehr.example.org/jwks",))
            )
            token = sign(
                ec_key(),
                alg="ES384",
                extra_header={"jku": "https://ehr.example.org/jwks/../evil"},
            )
            with pytest.raises(AuthError) as caught:
                await authenticate(
                    authorization=bearer(token),
                    endpoint_url=ENDPOINT,
                    clients=harness.clients,
                    replay=harness.replay,
                    jwks=HttpJwksFetcher(http, cache_seconds=300),
                    settings=harness.settings,
                    now=NOW,
                )
        assert caught.value.reason == "jku_not_allowed"
        assert server.requests == []

    async def test_client_without_any_keys(self) -> None:
        harness = Harness(client=make_client(jwks=None, jwks_url=None))
        assert (
            await harness.reason(bearer(sign(ec_key(), alg="ES384")))
            == "jwks_unavailable"
        )

    async def test_crit_header_is_refused(self) -> None:
        token = sign(ec_key(), alg="ES384", extra_header={"crit": ["kid"]})
        assert await Harness().reason(bearer(token)) == "malformed_token"


class TestClaims:
    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"exp": int((NOW - timedelta(minutes=2)).timestamp())}, "expired"),
            ({"nbf": int((NOW + timedelta(minutes=10)).timestamp())}, "not_yet_valid"),
            ({"iat": int((NOW + timedelta(minutes=10)).timestamp())}, "iat_invalid"),
            ({"iat": int((NOW - timedelta(hours=2)).timestamp())}, "iat_invalid"),
            ({"aud": "https://cds.example.org/cds-services/other"}, "aud_mismatch"),
            ({"aud": ENDPOINT + "/"}, "aud_mismatch"),
            ({"aud": ["https://cds.example.org/cds-services"]}, "aud_mismatch"),
            ({"aud": 42}, "aud_mismatch"),
            ({"tenant": "tenant-0002"}, "tenant_mismatch"),
            ({"tenant": DROP}, "tenant_mismatch"),
            ({"jti": DROP}, "missing_claim"),
            ({"jti": ""}, "missing_claim"),
            ({"exp": DROP}, "missing_claim"),
            ({"iat": DROP}, "missing_claim"),
            ({"aud": DROP}, "missing_claim"),
            ({"iss": DROP}, "missing_claim"),
            ({"exp": "tomorrow"}, "malformed_token"),
            ({"exp": True}, "malformed_token"),
            ({"exp": float("nan")}, "malformed_token"),
            ({"iat": float("nan")}, "malformed_token"),
            ({"exp": 10**30}, "malformed_token"),
        ],
    )
    async def test_refused_claims(
        self, overrides: dict[str, object], reason: AuthReason
    ) -> None:
        harness = Harness()
        header = {"alg": "ES384", "kid": EC_KID}
        token = jwt.encode(header, claims(**overrides), ec_key(), algorithms=["ES384"])
        assert await harness.reason(bearer(token)) == reason
        assert harness.replay.calls == 0

    async def test_replayed_jti(self) -> None:
        harness = Harness()
        token = sign(ec_key(), alg="ES384")
        await harness.run(bearer(token))
        assert await harness.reason(bearer(token)) == "replayed_jti"

    async def test_same_jti_in_a_fresh_token_is_still_a_replay(self) -> None:
        harness = Harness()
        await harness.run(bearer(sign(ec_key(), alg="ES384")))
        assert (
            await harness.reason(bearer(sign(rsa_key(), alg="RS384"))) == "replayed_jti"
        )

    async def test_naive_now_is_a_programming_error(self) -> None:
        harness = Harness()
        with pytest.raises(ValueError, match="timezone-aware"):
            await authenticate(
                authorization=bearer(sign(ec_key(), alg="ES384")),
                endpoint_url=ENDPOINT,
                clients=harness.clients,
                replay=harness.replay,
                jwks=harness.fetcher,
                settings=harness.settings,
                now=NOW.replace(tzinfo=None),
            )
        assert harness.replay.calls == 0
