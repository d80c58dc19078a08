"""SMART app fixtures: the app with the SMART routes, a fake EHR (authorization server + FHIR), synthetic patients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.config import REPO_ROOT
from app.db.migrate import upgrade_database
from app.main import create_app
from app.sandbox import Scenario, load_scenario
from app.smart.routes import install_smart_app
from app.smart.service import SmartState
from app.smart.settings import SameSite, SmartSettings
from app.state import AppState
from tests.fixtures.app import SettingsFactory
from tests.fixtures.database import DatabaseTarget, run_outside_loop
from tests.smart.ehr import EhrConfig, FakeEhr, create_ehr_app

CDS_BASE = "https://cds.test"
EHR_BASE = "https://ehr.test"
SCENARIOS = REPO_ROOT / "tests" / "scenarios"
# Left whole-leg swelling, negative femoropopliteal duplex: card R02 (leg-specific) and the state card.
LEFT_LEG_SCENARIO = "011-left-whole-leg-swelling-negative-fempop"
# A left iliac stent 15 months ago without recent imaging: stages up to post-stent follow-up.
STENT_SCENARIO = "094-r16-stent-15-months-no-recent-imaging"


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.json")


@pytest.fixture(scope="session")
def database_target(tmp_path_factory: pytest.TempPathFactory) -> DatabaseTarget:
    """SQLite only: the SMART app keeps no rows; the db tests cover PostgreSQL."""
    path = tmp_path_factory.mktemp("db") / "iliac-cds-smart.db"
    target = DatabaseTarget(backend="sqlite", url=f"sqlite+aiosqlite:///{path}")
    run_outside_loop(lambda: upgrade_database(target.url))
    return target


def smart_settings(**overrides: Any) -> SmartSettings:
    values: dict[str, Any] = {
        "allowed_issuers": [f"{EHR_BASE}/fhir"],
        "client_id": "iliac-cds",
        "session_secret": SecretStr("test-session-secret"),
        "cookie_samesite": SameSite.NONE,
        "cookie_secure": True,
    }
    values.update(overrides)
    return SmartSettings(_env_file=None, **values)


def build_app(
    settings_factory: SettingsFactory, smart: SmartSettings, **overrides: Any
) -> FastAPI:
    """The real app with the SMART routes, whether or not app/main.py installs them already."""
    app = create_app(settings_factory(smart=smart, **overrides))
    install_smart_app(app, smart)
    return app


def smart_state(app: FastAPI) -> SmartState:
    state: SmartState = app.state.smart
    return state


def app_state(app: FastAPI) -> AppState:
    state: AppState = app.state.services
    return state


@dataclass
class SmartHarness:
    """The app under test, its browser-like client and the fake EHR it talks to."""

    app: FastAPI
    browser: httpx.AsyncClient
    ehr: FakeEhr
    ehr_client: httpx.AsyncClient

    async def launch(
        self, launch: str | None, *, iss: str | None = None
    ) -> httpx.Response:
        params = {"iss": iss or self.ehr.iss}
        if launch is not None:
            params["launch"] = launch
        return await self.browser.get("/smart/launch", params=params)

    async def consent(
        self, authorize_url: str, decision: str = "allow"
    ) -> httpx.Response:
        """The user at the EHR's consent page; returns the redirect back to the app."""
        page = await self.ehr_client.get(authorize_url)
        assert page.status_code == 200, page.text
        consent = page.text.split('name="consent" value="')[1].split('"')[0]
        answer = await self.ehr_client.post(
            "/auth/decide", data={"consent": consent, "decision": decision}
        )
        assert answer.status_code == 303
        return answer

    async def follow_to_app(self, answer: httpx.Response) -> httpx.Response:
        callback = httpx.URL(answer.headers["location"])
        assert str(callback).startswith(f"{CDS_BASE}/smart/callback")
        return await self.browser.get(callback.raw_path.decode())

    async def full_launch(
        self, patient: str, app_context: str | None = None
    ) -> httpx.Response:
        launch = self.ehr.new_launch(patient, app_context)
        redirect = await self.launch(launch)
        assert redirect.status_code == 302, redirect.text
        back = await self.follow_to_app(
            await self.consent(redirect.headers["location"])
        )
        assert back.status_code == 303, back.text
        return back


HarnessFactory = Callable[..., Awaitable[SmartHarness]]


@pytest.fixture
async def harness_factory(
    settings_factory: SettingsFactory,
) -> AsyncIterator[HarnessFactory]:
    async with AsyncExitStack() as stack:

        async def make(
            *,
            smart: SmartSettings | None = None,
            ehr_config: dict[str, Any] | None = None,
            patients: tuple[str, ...] = (LEFT_LEG_SCENARIO, STENT_SCENARIO),
            **overrides: Any,
        ) -> SmartHarness:
            config = EhrConfig(
                base_url=EHR_BASE,
                redirect_uri=f"{CDS_BASE}/smart/callback",
                **(ehr_config or {}),
            )
            ehr = FakeEhr(config)
            for name in patients:
                s = scenario(name)
                ehr.records[s.patient_id] = s.resources()
            smart = smart or smart_settings(
                client_secret=SecretStr(config.client_secret)
                if config.client_secret
                else None
            )
            app = build_app(
                settings_factory, smart, public_base_url=CDS_BASE, **overrides
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            ehr_transport = httpx.ASGITransport(app=create_ehr_app(ehr))
            state = app_state(app)
            await state.http.aclose()
            state.http = httpx.AsyncClient(transport=ehr_transport)
            stack.push_async_callback(state.http.aclose)
            browser = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=CDS_BASE
            )
            ehr_client = httpx.AsyncClient(transport=ehr_transport, base_url=EHR_BASE)
            await stack.enter_async_context(browser)
            await stack.enter_async_context(ehr_client)
            return SmartHarness(app, browser, ehr, ehr_client)

        yield make


@pytest.fixture
async def harness(harness_factory: HarnessFactory) -> SmartHarness:
    return await harness_factory()
