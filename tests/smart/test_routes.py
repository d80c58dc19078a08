"""The SMART routes over httpx (no browser): the fake EHR answers through ASGI, errors end on HTML pages."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from app.smart.service import SmartState
from tests.smart.conftest import (
    LEFT_LEG_SCENARIO,
    HarnessFactory,
    SmartHarness,
    app_state,
    scenario,
    smart_settings,
    smart_state,
)

PATIENT = scenario(LEFT_LEG_SCENARIO).patient_id
CONTEXT = '{"leg":"left","rule":"R02"}'


def assert_error_page(response: httpx.Response, status: int, title: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{title}</h1>" in response.text
    assert "Traceback" not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


class TestLaunch:
    async def test_ehr_launch_redirects_with_pkce_state_and_a_signed_httponly_cookie(
        self, harness: SmartHarness
    ) -> None:
        launch = harness.ehr.new_launch(PATIENT)
        response = await harness.launch(launch)
        assert response.status_code == 302
        target = httpx.URL(response.headers["location"])
        assert str(target).startswith("https://ehr.test/auth/authorize?")
        params = dict(target.params)
        assert params["code_challenge_method"] == "S256"
        assert params["launch"] == launch
        assert params["aud"] == harness.ehr.iss
        assert "launch" in params["scope"].split()
        assert len(params["state"]) >= 32
        cookie = response.headers["set-cookie"]
        for attribute in (
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Partitioned",
            "Path=/smart",
        ):
            assert attribute in cookie
        assert params["state"] not in cookie

    async def test_standalone_launch_asks_for_launch_patient(
        self, harness: SmartHarness
    ) -> None:
        harness.ehr.standalone_patient = PATIENT
        response = await harness.launch(None)
        params = dict(httpx.URL(response.headers["location"]).params)
        assert "launch" not in params
        assert "launch/patient" in params["scope"].split()
        back = await harness.follow_to_app(
            await harness.consent(response.headers["location"])
        )
        assert back.headers["location"] == "/smart/app"
        page = await harness.browser.get("/smart/app")
        assert page.status_code == 200
        assert PATIENT in page.text

    async def test_issuer_off_the_allow_list_is_refused_without_contacting_it(
        self, harness_factory: HarnessFactory
    ) -> None:
        contacted: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            contacted.append(request)
            return httpx.Response(500)

        harness = await harness_factory()
        harness_http_replace(
            harness, httpx.AsyncClient(transport=httpx.MockTransport(record))
        )
        response = await harness.launch("x", iss="https://evil.test/fhir")
        assert_error_page(response, 403, "This EHR is not registered")
        assert contacted == []
        assert "set-cookie" not in response.headers

    async def test_missing_iss(self, harness: SmartHarness) -> None:
        response = await harness.browser.get("/smart/launch", params={"launch": "x"})
        assert_error_page(response, 400, "The launch could not be completed")

    async def test_discovery_failure_is_a_page(self, harness: SmartHarness) -> None:
        harness_http_replace(
            harness,
            httpx.AsyncClient(
                transport=httpx.MockTransport(lambda _: httpx.Response(404))
            ),
        )
        response = await harness.launch("x")
        assert_error_page(
            response, 502, "The EHR&#39;s sign-in service did not answer as expected"
        )

    async def test_disabled_without_allow_list(
        self, harness_factory: HarnessFactory
    ) -> None:
        harness = await harness_factory(smart=smart_settings(allowed_issuers=[]))
        response = await harness.launch("x")
        assert_error_page(response, 404, "The SMART app is not enabled")


def harness_http_replace(harness: SmartHarness, client: httpx.AsyncClient) -> None:
    """Point the app's outgoing HTTP (discovery, tokens, FHIR) at another transport."""
    app_state(harness.app).http = client


class TestCallback:
    async def test_wrong_state_is_refused_and_the_code_never_exchanged(
        self, harness: SmartHarness
    ) -> None:
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT))
        answer = await harness.consent(redirect.headers["location"])
        code = dict(httpx.URL(answer.headers["location"]).params)["code"]
        response = await harness.browser.get(
            "/smart/callback", params={"code": code, "state": "forged"}
        )
        assert_error_page(response, 400, "The launch could not be completed")
        assert harness.ehr.token_requests == []

    async def test_state_from_another_browser_is_refused(
        self, harness: SmartHarness
    ) -> None:
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT))
        answer = await harness.consent(redirect.headers["location"])
        harness.browser.cookies.clear()
        response = await harness.follow_to_app(answer)
        assert_error_page(response, 400, "The launch could not be completed")

    async def test_callback_is_single_use(self, harness: SmartHarness) -> None:
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT))
        answer = await harness.consent(redirect.headers["location"])
        assert (await harness.follow_to_app(answer)).status_code == 303
        again = await harness.follow_to_app(answer)
        assert_error_page(again, 400, "The launch could not be completed")

    async def test_denied_consent(self, harness: SmartHarness) -> None:
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT))
        response = await harness.follow_to_app(
            await harness.consent(redirect.headers["location"], "deny")
        )
        assert_error_page(response, 403, "Access was not granted")

    async def test_pkce_verifier_reaches_the_token_endpoint(
        self, harness: SmartHarness
    ) -> None:
        await harness.full_launch(PATIENT)
        (request,) = harness.ehr.token_requests
        assert request["grant_type"] == "authorization_code"
        assert request["client_id"] == "iliac-cds"
        assert len(request["code_verifier"]) >= 43

    async def test_confidential_client(self, harness_factory: HarnessFactory) -> None:
        harness = await harness_factory(ehr_config={"client_secret": "top-secret"})
        back = await harness.full_launch(PATIENT)
        assert back.status_code == 303
        assert harness.ehr.token_requests[0]["authorization"].startswith("Basic ")

    async def test_session_id_changes_after_sign_in(
        self, harness: SmartHarness
    ) -> None:
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT))
        before = harness.browser.cookies["iliac_smart"]
        back = await harness.follow_to_app(
            await harness.consent(redirect.headers["location"])
        )
        assert harness.browser.cookies["iliac_smart"] != before
        assert back.headers["location"] == "/smart/app"


class TestPathwayPage:
    async def test_focuses_the_leg_and_rule_from_app_context(
        self, harness: SmartHarness
    ) -> None:
        back = await harness.full_launch(PATIENT, CONTEXT)
        assert back.headers["location"] == "/smart/app#leg-left"
        page = await harness.browser.get("/smart/app")
        assert page.status_code == 200
        assert 'class="leg focused"' in page.text
        assert 'data-stage="pelvic-imaging" data-status="current"' in page.text
        assert "Opened from this card" in page.text
        assert '<svg class="timeline-svg"' in page.text
        assert "style=" not in page.text
        assert "<script" not in page.text

    async def test_tokens_are_not_in_pages_cookies_or_logs(
        self, harness: SmartHarness, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        redirect = await harness.launch(harness.ehr.new_launch(PATIENT, CONTEXT))
        answer = await harness.consent(redirect.headers["location"])
        back = await harness.follow_to_app(answer)
        page = await harness.browser.get("/smart/app")
        api = await harness.browser.get("/smart/api/workup")
        code = dict(httpx.URL(answer.headers["location"]).params)["code"]
        secrets = [*harness.ehr.access_tokens, *harness.ehr.refresh_tokens, code]
        visible = (
            page.text
            + api.text
            + str(back.headers)
            + str(harness.browser.cookies)
            + caplog.text
        )
        assert [s for s in secrets if s in visible] == []
        assert scenario(LEFT_LEG_SCENARIO).patient_id not in caplog.text

    async def test_no_session_asks_to_launch_again(self, harness: SmartHarness) -> None:
        response = await harness.browser.get("/smart/app")
        assert_error_page(response, 401, "Your session has ended")

    async def test_forged_cookie_is_no_session(self, harness: SmartHarness) -> None:
        await harness.full_launch(PATIENT)
        session_id = harness.browser.cookies["iliac_smart"].rpartition(".")[0]
        harness.browser.cookies.set(
            "iliac_smart", f"{session_id}.forged", domain="cds.test"
        )
        response = await harness.browser.get("/smart/app")
        assert_error_page(response, 401, "Your session has ended")

    async def test_rejected_token_is_refreshed_once(
        self, harness: SmartHarness
    ) -> None:
        await harness.full_launch(PATIENT)
        harness.ehr.expire_access_tokens()
        assert (await harness.browser.get("/smart/app")).status_code == 200
        grants = [r["grant_type"] for r in harness.ehr.token_requests]
        assert grants == ["authorization_code", "refresh_token"]

    async def test_token_due_to_expire_is_refreshed_before_use(
        self, harness: SmartHarness
    ) -> None:
        await harness.full_launch(PATIENT)
        smart = smart_state(harness.app)
        later = smart.clock() + timedelta(hours=2)
        shifted = SmartState(smart.settings, smart.store, smart.signer, lambda: later)
        harness.app.state.smart = shifted
        assert (await harness.browser.get("/smart/app")).status_code == 200
        assert harness.ehr.token_requests[-1]["grant_type"] == "refresh_token"

    async def test_expired_token_without_refresh_token(
        self, harness_factory: HarnessFactory
    ) -> None:
        harness = await harness_factory(ehr_config={"issue_refresh_tokens": False})
        await harness.full_launch(PATIENT)
        harness.ehr.expire_access_tokens()
        response = await harness.browser.get("/smart/app")
        assert_error_page(response, 401, "Your session has ended")
        assert "launch the iliac venous workup again" in response.text

    async def test_refused_refresh_ends_the_session(
        self, harness: SmartHarness
    ) -> None:
        await harness.full_launch(PATIENT)
        harness.ehr.revoke_everything()
        assert_error_page(
            await harness.browser.get("/smart/app"), 401, "Your session has ended"
        )
        # The session is gone: even a working EHR does not bring it back without a new launch.
        harness.ehr.refuse_refresh = False
        assert_error_page(
            await harness.browser.get("/smart/app"), 401, "Your session has ended"
        )

    async def test_fhir_server_down_is_a_page(self, harness: SmartHarness) -> None:
        await harness.full_launch(PATIENT)
        harness_http_replace(
            harness,
            httpx.AsyncClient(
                transport=httpx.MockTransport(lambda _: httpx.Response(503))
            ),
        )
        response = await harness.browser.get("/smart/app")
        assert_error_page(response, 502, "The patient&#39;s record could not be read")


class TestJsonAndCatalogue:
    async def test_workup_json(self, harness: SmartHarness) -> None:
        await harness.full_launch(PATIENT, CONTEXT)
        response = await harness.browser.get("/smart/api/workup")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["patient"] == PATIENT
        assert body["focus"] == {"leg": "left", "rule": "R02"}
        assert body["state"]["legs"][0]["stage"] == "dvt-excluded"
        assert "R02" in [c["source"]["topic"]["code"] for c in body["cards"]]

    async def test_workup_json_without_session_is_401_json(
        self, harness: SmartHarness
    ) -> None:
        response = await harness.browser.get("/smart/api/workup")
        assert response.status_code == 401
        assert response.json()["error"] == "no_session"

    async def test_rules_catalogue_has_an_anchor_per_rule(
        self, harness: SmartHarness
    ) -> None:
        response = await harness.browser.get("/rules")
        assert response.status_code == 200
        assert 'id="R02"' in response.text
        assert 'id="R16"' in response.text

    async def test_static_css_is_served(self, harness: SmartHarness) -> None:
        response = await harness.browser.get("/smart/static/smart.css")
        assert response.status_code == 200
        assert "@media print" in response.text


async def test_confidential_settings_secret_is_not_in_repr() -> None:
    settings = smart_settings(client_secret=SecretStr("very-secret"))
    assert "very-secret" not in repr(settings)
