"""Security headers: nosniff, no referrer and no-store everywhere; a CSP without inline script on HTML."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from app.api.security_headers import SecurityHeadersMiddleware, content_security_policy


def app_with(frame_ancestors: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse("<html><body>launch</body></html>")

    @app.get("/data")
    async def data() -> JSONResponse:
        return JSONResponse({"cards": []})

    @app.get("/cached")
    async def cached() -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "max-age=60"})

    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=frame_ancestors)
    return app


async def get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        return await client.get(path)


class TestHeaders:
    async def test_json_answers_get_nosniff_no_referrer_and_no_store(self) -> None:
        response = await get(app_with([]), "/data")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert "content-security-policy" not in response.headers

    async def test_a_route_cache_control_is_kept(self) -> None:
        response = await get(app_with([]), "/cached")
        assert response.headers["cache-control"] == "max-age=60"

    async def test_html_gets_a_csp_without_inline_script(self) -> None:
        response = await get(app_with(["https://ehr.example.org"]), "/page")
        csp = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert directives["frame-ancestors"] == "https://ehr.example.org"
        assert directives["object-src"] == "'none'"
        assert "x-frame-options" not in response.headers

    async def test_without_frame_ancestors_pages_cannot_be_framed(self) -> None:
        response = await get(app_with([]), "/page")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"

    async def test_headers_on_errors_too(self) -> None:
        response = await get(app_with([]), "/missing")
        assert response.status_code == 404
        assert response.headers["x-content-type-options"] == "nosniff"


class TestFrameAncestorsSetting:
    @pytest.mark.parametrize(
        "bad",
        [
            "https://ehr.example.org; script-src *",
            "javascript:alert(1)",
            "*",
            "'unsafe-inline'",
            "https://ehr.example.org/path",
        ],
    )
    def test_values_that_are_not_origins_are_refused(self, bad: str) -> None:
        with pytest.raises(ValueError, match="not an origin"):
            content_security_policy([bad])

    def test_several_origins_and_self(self) -> None:
        csp = content_security_policy(["'self'", "https://*.ehr.example.org:8443"])
        assert csp.endswith("frame-ancestors 'self' https://*.ehr.example.org:8443")
