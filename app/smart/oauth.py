"""SMART App Launch 2.x client: discovery, PKCE, the authorization request, token exchange and refresh.

https://hl7.org/fhir/smart-app-launch/app-launch.html
The access token and refresh token stay in the server-side session; nothing here logs them or the
authorization code, and error messages name the step, never the response body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from app.hosts import is_loopback_host

logger = logging.getLogger("iliac_cds.smart")

_MAX_DISCOVERY_BYTES = 256 * 1024
_LEGS = frozenset({"left", "right", "bilateral"})
LAUNCH_AGAIN = (
    "Open the patient's chart in the EHR and launch the iliac venous workup again."
)


class SmartError(Exception):
    """A launch or session problem shown to the user as a page; `code` is logged, `message` is shown."""

    status_code = 400
    title = "The app could not be opened"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IssuerNotAllowed(SmartError):
    """The launch names a FHIR server (`iss`) that is not on the allow-list."""

    status_code = 403
    title = "This EHR is not registered"


class LaunchRejected(SmartError):
    """The authorization response does not belong to this browser's launch (state) or is malformed."""

    title = "The launch could not be completed"


class AccessDenied(SmartError):
    """The user or the authorization server refused access."""

    status_code = 403
    title = "Access was not granted"


class SessionExpired(SmartError):
    """No session, or its access could not be renewed: the user has to launch again."""

    status_code = 401
    title = "Your session has ended"


class AuthServerError(SmartError):
    """Discovery or the token endpoint failed or answered something unusable."""

    status_code = 502
    title = "The EHR's sign-in service did not answer as expected"


class FhirUnavailableError(SmartError):
    """The FHIR server could not supply the record."""

    status_code = 502
    title = "The patient's record could not be read"


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of `.well-known/smart-configuration` we use."""

    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)  # 86 characters, inside RFC 7636's 43..128
        return cls(verifier, s256(verifier))


@dataclass(frozen=True)
class AppContext:
    """What a card link put in `appContext`: the leg and the rule to focus on."""

    leg: str | None = None
    rule: str | None = None


@dataclass(frozen=True)
class TokenGrant:
    """A token response, reduced to what the session keeps. Never logged (no __repr__ of the tokens)."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scope: str
    patient: str | None
    app_context: AppContext

    def __repr__(self) -> str:
        return (
            f"TokenGrant(patient_set={self.patient is not None}, scope={self.scope!r})"
        )


def s256(verifier: str) -> str:
    """PKCE S256 code challenge: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def endpoint_is_safe(url: str) -> bool:
    """https, or http on loopback only (test servers); no credentials in the URL."""
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


async def discover(http: httpx.AsyncClient, iss: str) -> SmartConfiguration:
    """Read `{iss}/.well-known/smart-configuration` and check it offers the code flow with PKCE S256.

    Raises:
        AuthServerError: unreachable, not JSON, missing endpoints, unsafe endpoints or no S256.
    """
    url = f"{iss.rstrip('/')}/.well-known/smart-configuration"
    body = await _get_json(http, url)
    auth = body.get("authorization_endpoint")
    token = body.get("token_endpoint")
    if not isinstance(auth, str) or not isinstance(token, str):
        raise AuthServerError(
            "discovery_incomplete",
            "The EHR's SMART configuration does not name an authorization and a token endpoint.",
        )
    if not (endpoint_is_safe(auth) and endpoint_is_safe(token)):
        raise AuthServerError(
            "discovery_unsafe_endpoint",
            "The EHR's SMART configuration names an endpoint that is not https.",
        )
    methods = body.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        raise AuthServerError(
            "discovery_no_pkce",
            "The EHR's authorization server does not support PKCE with S256.",
        )
    return SmartConfiguration(auth, token)


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(
            url, headers={"Accept": "application/json"}, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        logger.warning("smart_discovery_failed", extra={"exc_type": type(exc).__name__})
        raise AuthServerError(
            "discovery_unreachable", "The EHR's SMART configuration could not be read."
        ) from None
    if response.status_code != 200 or len(response.content) > _MAX_DISCOVERY_BYTES:
        logger.warning("smart_discovery_failed", extra={"status": response.status_code})
        raise AuthServerError(
            "discovery_status", "The EHR's SMART configuration could not be read."
        )
    return _json_object(response, "discovery_invalid")


def authorization_url(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    challenge: str,
    aud: str,
    launch: str | None,
) -> str:
    """The authorization request (response_type=code, PKCE S256, `aud` = the FHIR server)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if launch is not None:
        params["launch"] = launch
    separator = "&" if urlsplit(config.authorization_endpoint).query else "?"
    return f"{config.authorization_endpoint}{separator}{urlencode(params)}"


async def exchange_code(
    http: httpx.AsyncClient,
    config: SmartConfiguration,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
    client_id: str,
    client_secret: str | None,
    now: datetime,
) -> TokenGrant:
    """Trade the authorization code (with the PKCE verifier) for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    return await _token_request(
        http,
        config.token_endpoint,
        form,
        client_id=client_id,
        client_secret=client_secret,
        now=now,
        previous=None,
    )


async def refresh(
    http: httpx.AsyncClient,
    token_endpoint: str,
    grant: TokenGrant,
    *,
    client_id: str,
    client_secret: str | None,
    now: datetime,
) -> TokenGrant:
    """Use the refresh token; raises SessionExpired when there is none or it is refused."""
    if grant.refresh_token is None:
        raise SessionExpired(
            "no_refresh_token",
            "Access to the patient's record has expired. " + LAUNCH_AGAIN,
        )
    form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token}
    try:
        return await _token_request(
            http,
            token_endpoint,
            form,
            client_id=client_id,
            client_secret=client_secret,
            now=now,
            previous=grant,
        )
    except (AuthServerError, AccessDenied):
        raise SessionExpired(
            "refresh_refused",
            "Access to the patient's record has expired and could not be renewed. "
            + LAUNCH_AGAIN,
        ) from None


async def _token_request(
    http: httpx.AsyncClient,
    token_endpoint: str,
    form: dict[str, str],
    *,
    client_id: str,
    client_secret: str | None,
    now: datetime,
    previous: TokenGrant | None,
) -> TokenGrant:
    auth: httpx.BasicAuth | None = None
    if client_secret is None:
        form = {**form, "client_id": client_id}
    else:
        auth = httpx.BasicAuth(client_id, client_secret)
    try:
        response = await http.post(
            token_endpoint,
            data=form,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        logger.warning("smart_token_failed", extra={"exc_type": type(exc).__name__})
        raise AuthServerError(
            "token_unreachable", "The EHR's token service could not be reached."
        ) from None
    if response.status_code in (400, 401):
        logger.info("smart_token_refused", extra={"status": response.status_code})
        raise AccessDenied(
            "token_refused", "The EHR's authorization server refused to issue access."
        )
    if response.status_code != 200:
        logger.warning("smart_token_failed", extra={"status": response.status_code})
        raise AuthServerError(
            "token_status", "The EHR's token service answered with an error."
        )
    return parse_token_response(
        _json_object(response, "token_invalid"), now=now, previous=previous
    )


def parse_token_response(
    body: dict[str, Any], *, now: datetime, previous: TokenGrant | None
) -> TokenGrant:
    """Check and reduce a token response; a refresh keeps the launch context of `previous`."""
    access = body.get("access_token")
    token_type = body.get("token_type")
    if (
        not isinstance(access, str)
        or not access
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
    ):
        raise AuthServerError(
            "token_invalid", "The EHR's token service did not issue a bearer token."
        )
    expires_in = body.get("expires_in")
    expires_at = (
        now + timedelta(seconds=expires_in)
        if isinstance(expires_in, int)
        and not isinstance(expires_in, bool)
        and expires_in > 0
        else None
    )
    refresh_token = body.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        refresh_token = previous.refresh_token if previous else None
    patient = body.get("patient")
    scope = body.get("scope")
    if previous is not None:
        return TokenGrant(
            access,
            refresh_token,
            expires_at,
            scope if isinstance(scope, str) else previous.scope,
            previous.patient,
            previous.app_context,
        )
    return TokenGrant(
        access,
        refresh_token,
        expires_at,
        scope if isinstance(scope, str) else "",
        patient if isinstance(patient, str) and patient else None,
        parse_app_context(body.get("appContext")),
    )


def parse_app_context(value: object) -> AppContext:
    """`appContext` as our card links write it: a JSON string {"leg": ..., "rule": ...}; junk is ignored."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return AppContext()
    if not isinstance(value, dict):
        return AppContext()
    leg = value.get("leg")
    rule = value.get("rule")
    return AppContext(
        leg if isinstance(leg, str) and leg in _LEGS else None,
        rule
        if isinstance(rule, str)
        and 0 < len(rule) <= 32
        and rule.replace("_", "").replace("-", "").replace(".", "").isalnum()
        else None,
    )


def _json_object(response: httpx.Response, code: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AuthServerError(
            code, "The EHR's sign-in service answered something that is not JSON."
        )
    return body
