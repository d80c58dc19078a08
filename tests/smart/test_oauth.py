"""SMART client pieces without a browser: PKCE, discovery (httpx.MockTransport), token responses, appContext."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.smart import oauth
from app.smart.oauth import AccessDenied, AppContext, AuthServerError, SessionExpired
from app.smart.sessions import CookieSigner, PendingLaunch, SessionStore
from app.smart.settings import SmartSettings

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ISS = "https://ehr.test/fhir"
CONFIG = oauth.SmartConfiguration(
    "https://ehr.test/auth/authorize", "https://ehr.test/auth/token"
)


def client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


def discovery(body: object, status: int = 200) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url == f"{ISS}/.well-known/smart-configuration"
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


class TestPkce:
    def test_challenge_is_the_rfc7636_s256_of_the_verifier(self) -> None:
        pkce = oauth.Pkce.new()
        digest = hashlib.sha256(pkce.verifier.encode()).digest()
        assert pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert 43 <= len(pkce.verifier) <= 128

    def test_rfc7636_appendix_b_example(self) -> None:
        assert oauth.s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        )

    def test_each_launch_gets_a_new_verifier(self) -> None:
        assert oauth.Pkce.new().verifier != oauth.Pkce.new().verifier

    def test_authorization_url_carries_s256_state_and_aud(self) -> None:
        url = httpx.URL(
            oauth.authorization_url(
                CONFIG,
                client_id="iliac-cds",
                redirect_uri="https://cds.test/smart/callback",
                scope="openid launch",
                state="st",
                challenge="ch",
                aud=ISS,
                launch="L1",
            )
        )
        params = dict(url.params)
        assert params == {
            "response_type": "code",
            "client_id": "iliac-cds",
            "redirect_uri": "https://cds.test/smart/callback",
            "scope": "openid launch",
            "state": "st",
            "aud": ISS,
            "code_challenge": "ch",
            "code_challenge_method": "S256",
            "launch": "L1",
        }


class TestDiscovery:
    async def test_reads_the_endpoints(self) -> None:
        body = {
            "authorization_endpoint": CONFIG.authorization_endpoint,
            "token_endpoint": CONFIG.token_endpoint,
            "code_challenge_methods_supported": ["S256"],
        }
        async with client(discovery(body)) as http:
            assert await oauth.discover(http, ISS) == CONFIG

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (
                {
                    "token_endpoint": "https://ehr.test/t",
                    "code_challenge_methods_supported": ["S256"],
                },
                "discovery_incomplete",
            ),
            (
                {
                    "authorization_endpoint": "http://ehr.test/a",
                    "token_endpoint": "https://ehr.test/t",
                    "code_challenge_methods_supported": ["S256"],
                },
                "discovery_unsafe_endpoint",
            ),
            (
                {
                    "authorization_endpoint": "https://ehr.test/a",
                    "token_endpoint": "https://ehr.test/t",
                    "code_challenge_methods_supported": ["plain"],
                },
                "discovery_no_pkce",
            ),
            (["not", "an", "object"], "discovery_invalid"),
        ],
    )
    async def test_refuses_an_unusable_configuration(
        self, body: object, code: str
    ) -> None:
        async with client(discovery(body)) as http:
            with pytest.raises(AuthServerError) as raised:
                await oauth.discover(http, ISS)
        assert raised.value.code == code

    async def test_unreachable_server_is_an_auth_server_error(self) -> None:
        def handle(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        async with client(httpx.MockTransport(handle)) as http:
            with pytest.raises(AuthServerError):
                await oauth.discover(http, ISS)


def token_endpoint(
    answer: httpx.Response, seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return httpx.MockTransport(handle)


class TestTokenExchange:
    async def test_public_client_sends_verifier_and_client_id(self) -> None:
        seen: list[httpx.Request] = []
        answer = httpx.Response(
            200,
            json={
                "access_token": "at-1",
                "token_type": "bearer",
                "expires_in": 300,
                "refresh_token": "rt-1",
                "scope": "patient/*.rs",
                "patient": "p1",
                "appContext": '{"leg":"right","rule":"R08"}',
            },
        )
        async with client(token_endpoint(answer, seen)) as http:
            grant = await oauth.exchange_code(
                http,
                CONFIG,
                code="c1",
                redirect_uri="https://cds.test/cb",
                verifier="v1",
                client_id="iliac-cds",
                client_secret=None,
                now=NOW,
            )
        form = dict(httpx.QueryParams(seen[0].content.decode()))
        assert form == {
            "grant_type": "authorization_code",
            "code": "c1",
            "redirect_uri": "https://cds.test/cb",
            "code_verifier": "v1",
            "client_id": "iliac-cds",
        }
        assert "authorization" not in seen[0].headers
        assert grant.patient == "p1"
        assert grant.expires_at == NOW + timedelta(seconds=300)
        assert grant.app_context == AppContext("right", "R08")
        assert "at-1" not in repr(grant)
        assert "rt-1" not in repr(grant)

    async def test_confidential_client_uses_basic_auth(self) -> None:
        seen: list[httpx.Request] = []
        answer = httpx.Response(
            200, json={"access_token": "a", "token_type": "Bearer", "patient": "p"}
        )
        async with client(token_endpoint(answer, seen)) as http:
            await oauth.exchange_code(
                http,
                CONFIG,
                code="c",
                redirect_uri="https://cds.test/cb",
                verifier="v",
                client_id="iliac-cds",
                client_secret="s3cret",
                now=NOW,
            )
        expected = base64.b64encode(b"iliac-cds:s3cret").decode()
        assert seen[0].headers["authorization"] == f"Basic {expected}"
        assert "client_id" not in dict(httpx.QueryParams(seen[0].content.decode()))

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            (httpx.Response(400, json={"error": "invalid_grant"}), AccessDenied),
            (httpx.Response(500, text="boom"), AuthServerError),
            (
                httpx.Response(200, json={"access_token": "a", "token_type": "mac"}),
                AuthServerError,
            ),
            (httpx.Response(200, text="<html>"), AuthServerError),
        ],
    )
    async def test_bad_answers_raise(
        self, answer: httpx.Response, error: type[Exception]
    ) -> None:
        async with client(token_endpoint(answer, [])) as http:
            with pytest.raises(error):
                await oauth.exchange_code(
                    http,
                    CONFIG,
                    code="c",
                    redirect_uri="r",
                    verifier="v",
                    client_id="iliac-cds",
                    client_secret=None,
                    now=NOW,
                )


class TestRefresh:
    def grant(self, refresh_token: str | None) -> oauth.TokenGrant:
        return oauth.TokenGrant(
            "old", refresh_token, NOW, "s", "p1", AppContext("left", "R02")
        )

    async def test_keeps_patient_and_context_and_rotated_refresh_token(self) -> None:
        seen: list[httpx.Request] = []
        answer = httpx.Response(
            200, json={"access_token": "new", "token_type": "Bearer", "expires_in": 60}
        )
        async with client(token_endpoint(answer, seen)) as http:
            grant = await oauth.refresh(
                http,
                CONFIG.token_endpoint,
                self.grant("rt"),
                client_id="iliac-cds",
                client_secret=None,
                now=NOW,
            )
        assert (
            dict(httpx.QueryParams(seen[0].content.decode()))["grant_type"]
            == "refresh_token"
        )
        assert (grant.access_token, grant.refresh_token, grant.patient) == (
            "new",
            "rt",
            "p1",
        )
        assert grant.app_context == AppContext("left", "R02")

    async def test_without_refresh_token_the_session_has_expired(self) -> None:
        async with client(token_endpoint(httpx.Response(500), [])) as http:
            with pytest.raises(SessionExpired):
                await oauth.refresh(
                    http,
                    CONFIG.token_endpoint,
                    self.grant(None),
                    client_id="c",
                    client_secret=None,
                    now=NOW,
                )

    async def test_refused_refresh_means_launch_again(self) -> None:
        answer = httpx.Response(400, json={"error": "invalid_grant"})
        async with client(token_endpoint(answer, [])) as http:
            with pytest.raises(SessionExpired) as raised:
                await oauth.refresh(
                    http,
                    CONFIG.token_endpoint,
                    self.grant("rt"),
                    client_id="c",
                    client_secret=None,
                    now=NOW,
                )
        assert "launch" in raised.value.message


class TestAppContext:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ('{"leg":"left","rule":"R02"}', AppContext("left", "R02")),
            ({"leg": "bilateral", "rule": "R09a"}, AppContext("bilateral", "R09a")),
            ('{"leg":"middle","rule":"<script>"}', AppContext()),
            ("not json", AppContext()),
            (None, AppContext()),
        ],
    )
    def test_parses_our_card_links_and_ignores_junk(
        self, value: object, expected: AppContext
    ) -> None:
        assert oauth.parse_app_context(value) == expected


class TestSessions:
    def test_cookie_signature_is_checked(self) -> None:
        signer = CookieSigner(b"k1")
        signed = signer.sign("abc")
        assert signer.unsign(signed) == "abc"
        assert signer.unsign("abc.forged") is None
        assert CookieSigner(b"k2").unsign(signed) is None

    def test_pending_launch_is_single_use_and_bound_to_state(self) -> None:
        now = [NOW]
        store = SessionStore(
            clock=lambda: now[0],
            max_age=timedelta(hours=1),
            launch_max_age=timedelta(minutes=10),
            max_sessions=10,
        )
        session = store.create()
        session.pending = PendingLaunch("good", ISS, CONFIG, "v", NOW)
        assert store.take_pending(session, "bad") is None
        assert (
            store.take_pending(session, "good") is None
        )  # consumed by the failed attempt
        session.pending = PendingLaunch("good", ISS, CONFIG, "v", NOW)
        now[0] = NOW + timedelta(minutes=11)
        assert store.take_pending(session, "good") is None

    def test_old_sessions_expire_and_the_store_is_bounded(self) -> None:
        now = [NOW]
        store = SessionStore(
            clock=lambda: now[0],
            max_age=timedelta(hours=1),
            launch_max_age=timedelta(minutes=10),
            max_sessions=2,
        )
        first, second, third = store.create(), store.create(), store.create()
        assert store.get(first.id) is None
        assert len(store) == 2
        now[0] = NOW + timedelta(hours=2)
        assert store.get(second.id) is None
        assert store.get(third.id) is None


class TestSettings:
    def test_allow_list_is_normalised(self) -> None:
        settings = SmartSettings(
            _env_file=None, allowed_issuers=["HTTPS://EHR.test/fhir/"]
        )
        assert settings.issuer_allowed("https://ehr.test/fhir")
        assert not settings.issuer_allowed("https://ehr.test/fhir2")
        assert not settings.issuer_allowed("https://evil.test/fhir")

    @pytest.mark.parametrize(
        "issuer",
        ["http://ehr.example.org/fhir", "ftp://x/fhir", "https://u:p@ehr.test/fhir"],
    )
    def test_refuses_unsafe_issuers(self, issuer: str) -> None:
        with pytest.raises(ValueError, match="issuer"):
            SmartSettings(_env_file=None, allowed_issuers=[issuer])

    def test_samesite_none_needs_secure(self) -> None:
        with pytest.raises(ValueError, match="Secure"):
            SmartSettings(_env_file=None, cookie_secure=False)
