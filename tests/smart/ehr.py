"""A small SMART App Launch 2.x EHR for the tests: authorization server, consent page and FHIR gateway.

It checks what a real one checks (client id, redirect URI, PKCE S256, `aud`, `state` passed through, single-use
codes, refresh tokens) and hands out opaque access tokens. FHIR requests carrying one of its tokens are answered
from an in-memory record (`records`) or forwarded to an upstream FHIR server (sekmet-fhir) with that server's
own bearer token, so the app under test only ever sees tokens issued here. All data is synthetic.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

Json = dict[str, Any]


@dataclass
class Launch:
    patient: str
    app_context: str | None = None


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    patient: str | None
    app_context: str | None


@dataclass
class EhrConfig:
    base_url: str  # e.g. http://127.0.0.1:5555; the FHIR base (iss) is {base_url}/fhir
    client_id: str = "iliac-cds"
    client_secret: str | None = None  # set: a confidential client (client_secret_basic)
    redirect_uri: str = ""
    upstream_fhir: str | None = None
    upstream_token: str | None = None
    expires_in: int = 3600
    issue_refresh_tokens: bool = True
    pkce_methods: tuple[str, ...] = ("S256",)


@dataclass
class FakeEhr:
    """The EHR's state: launches it created, codes, tokens; tests steer it directly."""

    config: EhrConfig
    records: dict[str, list[Json]] = field(default_factory=dict)
    launches: dict[str, Launch] = field(default_factory=dict)
    pending: dict[str, tuple[Json, str]] = field(
        default_factory=dict
    )  # consent id -> (params, patient)
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[Json] = field(default_factory=list)
    fhir_requests: list[str] = field(default_factory=list)
    standalone_patient: str | None = None
    refuse_refresh: bool = False

    @property
    def iss(self) -> str:
        return f"{self.config.base_url}/fhir"

    def new_launch(self, patient: str, app_context: str | None = None) -> str:
        launch = secrets.token_urlsafe(12)
        self.launches[launch] = Launch(patient, app_context)
        return launch

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (as after its expiry)."""
        self.access_tokens.clear()

    def revoke_everything(self) -> None:
        self.access_tokens.clear()
        self.refresh_tokens.clear()


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        .rstrip(b"=")
        .decode()
    )


def _error(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def create_ehr_app(ehr: FakeEhr) -> FastAPI:
    app = FastAPI()
    cfg = ehr.config

    @app.get("/fhir/.well-known/smart-configuration")
    async def smart_configuration() -> JSONResponse:
        return JSONResponse(
            {
                "issuer": cfg.base_url,
                "authorization_endpoint": f"{cfg.base_url}/auth/authorize",
                "token_endpoint": f"{cfg.base_url}/auth/token",
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": list(cfg.pkce_methods),
                "capabilities": [
                    "launch-ehr",
                    "launch-standalone",
                    "context-ehr-patient",
                    "client-public",
                ],
                "scopes_supported": [
                    "openid",
                    "fhirUser",
                    "launch",
                    "launch/patient",
                    "patient/*.rs",
                ],
            }
        )

    @app.get("/auth/authorize")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        problems = _authorize_problems(ehr, params)
        if problems:
            return HTMLResponse(
                f"<h1>Bad authorization request</h1><p>{html.escape(problems)}</p>", 400
            )
        launch = params.get("launch")
        patient = ehr.launches[launch].patient if launch else ehr.standalone_patient
        consent = secrets.token_urlsafe(12)
        ehr.pending[consent] = (params, patient or "")
        return HTMLResponse(_consent_page(consent, params["scope"]))

    @app.post("/auth/decide")
    async def decide(request: Request) -> Response:
        form = await _form(request)
        params, patient = ehr.pending.pop(str(form.get("consent")), ({}, ""))
        if not params:
            return HTMLResponse("<h1>Unknown consent</h1>", 400)
        back = params["redirect_uri"]
        if form.get("decision") != "allow":
            query = urlencode({"error": "access_denied", "state": params["state"]})
            return RedirectResponse(f"{back}?{query}", status_code=303)
        launch = params.get("launch")
        code = secrets.token_urlsafe(24)
        ehr.codes[code] = Grant(
            client_id=params["client_id"],
            redirect_uri=back,
            challenge=params["code_challenge"],
            scope=params["scope"],
            patient=patient or None,
            app_context=ehr.launches[launch].app_context if launch else None,
        )
        return RedirectResponse(
            f"{back}?{urlencode({'code': code, 'state': params['state']})}",
            status_code=303,
        )

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        return await _token(ehr, request)

    @app.get("/ehr/frame")
    async def frame(src: str) -> HTMLResponse:
        """The EHR's chart with the app in a 1024x768 iframe."""
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EHR chart</title></head>
<body><iframe id="smart-app" title="Iliac venous workup" width="1024" height="768" src="{html.escape(src)}"></iframe></body></html>"""
        )

    @app.get("/fhir/{path:path}")
    async def fhir(path: str, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        grant = ehr.access_tokens.get(header.removeprefix("Bearer "))
        if grant is None:
            return JSONResponse(_outcome("login", "token not valid"), status_code=401)
        ehr.fhir_requests.append(path)
        if cfg.upstream_fhir is not None:
            return await _forward(cfg, path, request)
        return JSONResponse(
            _answer(ehr, path, dict(request.query_params)),
            media_type="application/fhir+json",
        )

    return app


async def _token(ehr: FakeEhr, request: Request) -> Response:
    form = await _form(request)
    ehr.token_requests.append(
        {**form, "authorization": request.headers.get("authorization")}
    )
    client_id = _client_id(ehr.config, request, form)
    if client_id is None:
        return _error(401, "invalid_client")
    if form.get("grant_type") == "authorization_code":
        grant = ehr.codes.pop(form.get("code", ""), None)
        if (
            grant is None
            or grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or s256(form.get("code_verifier", "")) != grant.challenge
        ):
            return _error(400, "invalid_grant")
        return JSONResponse(_issue(ehr, grant, with_context=True))
    if form.get("grant_type") == "refresh_token":
        grant = ehr.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if grant is None or ehr.refuse_refresh or grant.client_id != client_id:
            return _error(400, "invalid_grant")
        return JSONResponse(_issue(ehr, grant, with_context=False))
    return _error(400, "unsupported_grant_type")


async def _form(request: Request) -> dict[str, str]:
    """application/x-www-form-urlencoded body (no python-multipart needed)."""
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def _authorize_problems(ehr: FakeEhr, params: dict[str, str]) -> str:
    cfg = ehr.config
    checks = [
        (params.get("response_type") == "code", "response_type must be code"),
        (params.get("client_id") == cfg.client_id, "unknown client_id"),
        (params.get("redirect_uri") == cfg.redirect_uri, "redirect_uri not registered"),
        (params.get("code_challenge_method") == "S256", "PKCE S256 required"),
        (bool(params.get("code_challenge")), "code_challenge missing"),
        (bool(params.get("state")), "state missing"),
        (params.get("aud") == ehr.iss, "aud must be the FHIR base URL"),
        (
            params.get("launch") is None or params["launch"] in ehr.launches,
            "unknown launch",
        ),
        (
            params.get("launch") is not None
            or "launch/patient" in params.get("scope", "").split(),
            "standalone needs launch/patient",
        ),
    ]
    return "; ".join(message for ok, message in checks if not ok)


def _consent_page(consent: str, scope: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Allow access?</title></head>
<body><h1>Allow the iliac venous workup app to read this patient's record?</h1>
<p>Scopes: <code>{html.escape(scope)}</code></p>
<form method="post" action="/auth/decide">
<input type="hidden" name="consent" value="{consent}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"""


def _client_id(cfg: EhrConfig, request: Request, form: dict[str, str]) -> str | None:
    if cfg.client_secret is None:
        return form.get("client_id") if form.get("client_id") == cfg.client_id else None
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user if (user, password) == (cfg.client_id, cfg.client_secret) else None


def _issue(ehr: FakeEhr, grant: Grant, *, with_context: bool) -> Json:
    access = secrets.token_urlsafe(24)
    ehr.access_tokens[access] = grant
    body: Json = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ehr.config.expires_in,
        "scope": grant.scope,
    }
    if ehr.config.issue_refresh_tokens:
        refresh = secrets.token_urlsafe(24)
        ehr.refresh_tokens[refresh] = grant
        body["refresh_token"] = refresh
    if with_context:
        if grant.patient:
            body["patient"] = grant.patient
        if grant.app_context is not None:
            body["appContext"] = grant.app_context
    return body


def _outcome(code: str, text: str) -> Json:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def _answer(ehr: FakeEhr, path: str, query: dict[str, str]) -> Json:
    resource_type, _, rid = path.partition("/")
    if rid:
        for resources in ehr.records.values():
            for r in resources:
                if r.get("resourceType") == resource_type and r.get("id") == rid:
                    return r
        return _outcome("not-found", "no such resource")
    patient = query.get("patient", "").removeprefix("Patient/")
    entries = [
        {"resource": r}
        for r in ehr.records.get(patient, [])
        if r.get("resourceType") == resource_type
    ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }


async def _forward(cfg: EhrConfig, path: str, request: Request) -> Response:
    assert cfg.upstream_fhir is not None
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
        upstream = await client.get(
            f"{cfg.upstream_fhir}/{path}",
            params=dict(request.query_params),
            headers={
                "Authorization": f"Bearer {cfg.upstream_token}",
                "Accept": "application/fhir+json",
            },
        )
    body = upstream.content.replace(
        cfg.upstream_fhir.encode(), f"{cfg.base_url}/fhir".encode()
    )
    return Response(
        body, status_code=upstream.status_code, media_type="application/fhir+json"
    )
