"""The SMART EHR launch driven in headless Chromium against real servers on loopback.

sekmet-fhir (tests/integration/conftest.py) holds the synthetic records; tests/smart/ehr.py is the EHR's
authorization server and FHIR gateway in front of it; the app runs under uvicorn. Screenshots of the
pathway page at 1024x768 go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from pydantic import SecretStr

from app.catalog.loader import load_catalog
from app.config import AuthMode, Settings
from app.main import create_app
from app.sandbox import upload_scenario
from app.smart.routes import install_smart_app
from app.smart.settings import SmartSettings
from app.workup.engine import LinkConfig, WorkupInput, run_workup
from tests.fixtures.app import FIXED_NOW
from tests.fixtures.database import DatabaseTarget
from tests.integration.conftest import FhirServer, fhir_server, free_port
from tests.smart.browser import CHROMIUM_ARGS, artifact, ensure_chromium
from tests.smart.conftest import LEFT_LEG_SCENARIO, STENT_SCENARIO, scenario
from tests.smart.ehr import EhrConfig, FakeEhr, create_ehr_app
from tests.smart.servers import ServerThread, serving

__all__ = ["fhir_server"]  # the session fixture, re-exported for this module

VIEWPORT = {"width": 1024, "height": 768}


@dataclass
class Stack:
    app: ServerThread
    ehr_server: ServerThread
    ehr: FakeEhr

    def launch_url(self, launch: str, *, base: str | None = None) -> str:
        return f"{base or self.app.url + '/smart/launch'}?{urlencode({'iss': self.ehr.iss, 'launch': launch})}"


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    executable = ensure_chromium()
    browser = playwright.chromium.launch(
        executable_path=str(executable), args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def stack(fhir_server: FhirServer, database_target: DatabaseTarget) -> Iterator[Stack]:
    with fhir_server.client() as client:
        for name in (LEFT_LEG_SCENARIO, STENT_SCENARIO):
            upload_scenario(
                client, fhir_server.base_url, scenario(name), fhir_server.token
            )
    app_port, ehr_port = free_port(), free_port()
    app_url, ehr_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{ehr_port}"
    ehr = FakeEhr(
        EhrConfig(
            base_url=ehr_url,
            redirect_uri=f"{app_url}/smart/callback",
            upstream_fhir=fhir_server.base_url,
            upstream_token=fhir_server.token,
        )
    )
    smart = SmartSettings(_env_file=None, allowed_issuers=[ehr.iss])
    settings = Settings(
        _env_file=None,
        database_url=database_target.url,
        auth_mode=AuthMode.DISABLED,
        now=FIXED_NOW,
        hmac_key=SecretStr("test-hmac-key"),
        public_base_url=app_url,
        frame_ancestors=[ehr_url],
        smart=smart,
    )
    app = create_app(settings)
    install_smart_app(app, smart)
    with (
        serving(create_ehr_app(ehr), ehr_port) as ehr_server,
        serving(app, app_port) as app_server,
    ):
        yield Stack(app_server, ehr_server, ehr)


@pytest.fixture
def context(chromium: Browser, stack: Stack) -> Iterator[BrowserContext]:
    stack.ehr.refuse_refresh = False
    ctx = chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def card_smart_link(name: str, launch_url: str, rule: str) -> dict[str, Any]:
    """The `smart` link the CDS service puts on the card of `rule` for this scenario."""
    s = scenario(name)
    settings = Settings(_env_file=None)
    catalog = load_catalog(
        cards_dir=settings.cards_dir,
        mappings_dir=settings.mappings_dir,
        local_system=settings.local_code_system,
    )
    result = run_workup(
        WorkupInput(
            "patient-view",
            FIXED_NOW,
            s.patient_id,
            tuple(s.resources()),
            (),
            (),
            LinkConfig(
                rules_url="http://cds.invalid/rules", smart_launch_url=launch_url
            ),
        ),
        catalog,
    )
    for card in result.cards:
        if card["source"]["topic"]["code"] == rule:  # type: ignore[index,call-overload]
            links = card["links"]
            assert isinstance(links, list)
            smart = [
                link
                for link in links
                if isinstance(link, dict) and link["type"] == "smart"
            ]
            assert len(smart) == 1
            return smart[0]
    raise AssertionError(f"no card {rule} for {name}")


def ehr_launch(page: Page, stack: Stack, name: str, rule: str) -> dict[str, Any]:
    """What the EHR does when the user clicks the card's link: create a launch with its appContext, open it."""
    link = card_smart_link(name, f"{stack.app.url}/smart/launch", rule)
    launch = stack.ehr.new_launch(scenario(name).patient_id, str(link["appContext"]))
    page.goto(stack.launch_url(launch, base=str(link["url"])))
    expect(
        page.get_by_role(
            "heading", name=re.compile("Allow the iliac venous workup app")
        )
    ).to_be_visible()
    return link


class TestEhrLaunch:
    def test_card_link_opens_the_pathway_focused_on_its_leg_and_rule(
        self, page: Page, stack: Stack
    ) -> None:
        messages: list[str] = []
        page.on("console", lambda m: messages.append(m.text))
        link = ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        assert json.loads(str(link["appContext"])) == {"leg": "left", "rule": "R02"}
        page.get_by_role("button", name="Allow").click()

        page.wait_for_url(re.compile(r"/smart/app#leg-left$"))
        expect(page.get_by_test_id("patient-name")).to_have_text(re.compile(r"\S"))
        left = page.locator("#leg-left")
        expect(left).to_have_class(re.compile(r"\bfocused\b"))
        expect(left.locator('[data-stage="symptoms"]')).to_have_attribute(
            "data-status", "done"
        )
        expect(left.locator('[data-stage="dvt"]')).to_have_attribute(
            "data-status", "done"
        )
        expect(left.locator('[data-stage="pelvic-imaging"]')).to_have_attribute(
            "data-status", "current"
        )
        expect(left.locator('[data-stage="post-stent"]')).to_have_attribute(
            "data-status", "upcoming"
        )
        expect(left.get_by_text("Observation/syn-pt-011-obs-3")).to_be_visible()
        focused_card = page.locator("article.card.focused")
        expect(focused_card).to_have_count(1)
        expect(focused_card).to_contain_text("Rule R02")
        expect(page.locator("svg.timeline-svg .tl-marker").first).to_be_attached()
        # The stylesheet loaded under the CSP (no inline styles): the banner has its colour.
        banner_bg = page.locator("header.banner").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert banner_bg == "rgb(18, 53, 91)"
        assert not [m for m in messages if "Content Security Policy" in m]

        page.screenshot(path=str(artifact("smart-pathway-left-1024x768.png")))
        page.screenshot(
            path=str(artifact("smart-pathway-left-full.png")), full_page=True
        )

    def test_tokens_stay_on_the_server(
        self, page: Page, context: BrowserContext, stack: Stack
    ) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        tokens = [*stack.ehr.access_tokens, *stack.ehr.refresh_tokens]
        assert tokens
        cookies = context.cookies()
        cookie = next(c for c in cookies if c["name"] == "iliac_smart")
        assert cookie["httpOnly"]
        assert cookie["secure"]
        assert cookie["sameSite"] == "None"
        visible = (
            page.content()
            + json.dumps(cookies)
            + page.evaluate("() => document.cookie")
        )
        assert not [t for t in tokens if t in visible]

    def test_json_endpoint_answers_for_the_session(
        self, page: Page, stack: Stack
    ) -> None:
        ehr_launch(page, stack, STENT_SCENARIO, "R16")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        expect(page.locator('#leg-left [data-stage="post-stent"]')).to_have_attribute(
            "data-status", "done"
        )
        page.screenshot(path=str(artifact("smart-pathway-stent-1024x768.png")))
        answer = page.request.get(f"{stack.app.url}/smart/api/workup")
        assert answer.status == 200
        body = answer.json()
        assert body["patient"] == scenario(STENT_SCENARIO).patient_id
        assert body["focus"] == {"leg": "left", "rule": "R16"}
        assert body["state"]["legs"][0]["stage"] == "post-stent"

    def test_keyboard_reaches_the_content_and_every_section(
        self, page: Page, stack: Stack
    ) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        page.goto(
            f"{stack.app.url}/smart/app"
        )  # from the top, without the leg fragment
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        page.get_by_role("link", name=re.compile("Advice now")).focus()
        page.keyboard.press("Enter")
        expect(page.locator("section#cards")).to_be_focused()
        card = page.locator("article.card:not(.focused)").first
        expect(card.locator("details")).not_to_have_attribute("open", "")
        card.locator("summary").focus()
        page.keyboard.press("Enter")
        expect(card.locator("details")).to_have_attribute("open", "")

    def test_prints_without_navigation(self, page: Page, stack: Stack) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        page.emulate_media(media="print")
        expect(page.locator("nav.sections")).to_be_hidden()
        expect(
            page.locator("article.card").first.locator("details p").first
        ).to_be_visible()
        page.pdf(path=str(artifact("smart-pathway-left.pdf")), format="A4")
        page.screenshot(
            path=str(artifact("smart-pathway-left-print.png")), full_page=True
        )

    def test_works_inside_the_ehr_iframe(self, page: Page, stack: Stack) -> None:
        link = card_smart_link(
            LEFT_LEG_SCENARIO, f"{stack.app.url}/smart/launch", "R02"
        )
        launch = stack.ehr.new_launch(
            scenario(LEFT_LEG_SCENARIO).patient_id, str(link["appContext"])
        )
        page.goto(
            f"{stack.ehr_server.url}/ehr/frame?{urlencode({'src': stack.launch_url(launch)})}"
        )
        frame = page.frame_locator("iframe#smart-app")
        frame.get_by_role("button", name="Allow").click()
        expect(frame.locator("#leg-left")).to_have_class(re.compile(r"\bfocused\b"))
        page.screenshot(path=str(artifact("smart-pathway-in-ehr-iframe.png")))


class TestErrorPages:
    def test_denied_consent(self, page: Page, stack: Stack) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        with page.expect_response(re.compile(r"/smart/callback")) as answer:
            page.get_by_role("button", name="Deny").click()
        assert answer.value.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Access was not granted"
        )
        expect(page.get_by_role("alert")).to_contain_text("launch the app from the EHR")
        page.screenshot(path=str(artifact("smart-error-denied.png")))

    def test_wrong_state(self, page: Page, stack: Stack) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        response = page.goto(
            f"{stack.app.url}/smart/callback?code=abc&state=not-the-state"
        )
        assert response is not None
        assert response.status == 400
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "The launch could not be completed"
        )
        expect(page.locator("body")).not_to_contain_text("Traceback")

    def test_issuer_not_on_the_allow_list(self, page: Page, stack: Stack) -> None:
        before = len(stack.ehr.fhir_requests)
        other = f"http://127.0.0.1:{free_port()}/fhir"
        response = page.goto(
            f"{stack.app.url}/smart/launch?{urlencode({'iss': other, 'launch': 'x'})}"
        )
        assert response is not None
        assert response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "This EHR is not registered"
        )
        assert len(stack.ehr.fhir_requests) == before

    def test_expired_token_without_refresh_asks_to_launch_again(
        self, page: Page, stack: Stack
    ) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        stack.ehr.expire_access_tokens()
        stack.ehr.refuse_refresh = True
        response = page.reload()
        assert response is not None
        assert response.status == 401
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Your session has ended"
        )
        expect(page.get_by_role("alert")).to_contain_text(
            "launch the iliac venous workup again"
        )
        page.screenshot(path=str(artifact("smart-error-expired.png")))

    def test_expired_token_is_refreshed(self, page: Page, stack: Stack) -> None:
        ehr_launch(page, stack, LEFT_LEG_SCENARIO, "R02")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"/smart/app"))
        stack.ehr.expire_access_tokens()
        refreshes = sum(
            r.get("grant_type") == "refresh_token" for r in stack.ehr.token_requests
        )
        response = page.reload()
        assert response is not None
        assert response.status == 200
        expect(page.locator("#leg-left")).to_be_visible()
        assert (
            sum(
                r.get("grant_type") == "refresh_token" for r in stack.ehr.token_requests
            )
            == refreshes + 1
        )
