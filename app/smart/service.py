"""Launch, callback and record loading for the SMART app; routes.py is only HTTP around these."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.fhir.errors import FhirError, FhirUnauthorized, PrefetchUnavailable
from app.fhir.prefetch import PREFETCH_TEMPLATES, gather_resources
from app.smart import oauth
from app.smart.oauth import (
    LAUNCH_AGAIN,
    AccessDenied,
    FhirUnavailableError,
    IssuerNotAllowed,
    LaunchRejected,
    SessionExpired,
    TokenGrant,
)
from app.smart.sessions import CookieSigner, PendingLaunch, SessionStore, SmartSession
from app.smart.settings import SmartSettings, normalise_issuer
from app.state import AppState
from app.workup.engine import LinkConfig, WorkupInput, WorkupResult, run_workup
from app.workup.jsontypes import JsonObject

logger = logging.getLogger("iliac_cds.smart")

CALLBACK_PATH = "/smart/callback"


def wall_clock() -> datetime:
    """Real time, for token and session lifetimes (the service clock may be fixed for clinical demos)."""
    return datetime.now(UTC)


@dataclass
class SmartState:
    """Everything the SMART routes share: settings, the session store, the cookie signer."""

    settings: SmartSettings
    store: SessionStore
    signer: CookieSigner
    clock: Callable[[], datetime] = wall_clock
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @classmethod
    def create(
        cls, settings: SmartSettings, *, clock: Callable[[], datetime] = wall_clock
    ) -> SmartState:
        secret = settings.session_secret
        key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        store = SessionStore(
            clock=clock,
            max_age=timedelta(seconds=settings.session_max_age_seconds),
            launch_max_age=timedelta(seconds=settings.launch_max_age_seconds),
            max_sessions=settings.max_sessions,
        )
        return cls(settings, store, CookieSigner(key), clock)

    def session_from_cookie(self, cookie: str | None) -> SmartSession | None:
        if not cookie:
            return None
        return self.store.get(self.signer.unsign(cookie))


@dataclass(frozen=True)
class Workup:
    """What the page and the JSON endpoint show."""

    patient_id: str
    resources: list[JsonObject]
    result: WorkupResult
    now: datetime


def public_url(app_state: AppState, path: str) -> str:
    return app_state.settings.public_base_url.rstrip("/") + path


async def start_launch(
    app_state: AppState, smart: SmartState, *, iss: str | None, launch: str | None
) -> tuple[SmartSession, str]:
    """Check `iss`, discover its endpoints, open a session with a pending launch; returns the redirect URL."""
    if not iss:
        raise LaunchRejected(
            "launch_no_iss",
            "The launch did not say which FHIR server to use. " + LAUNCH_AGAIN,
        )
    if not smart.settings.issuer_allowed(iss):
        logger.info("smart_launch_rejected", extra={"reason": "iss_not_allowed"})
        raise IssuerNotAllowed(
            "iss_not_allowed",
            "The app was launched from a FHIR server it is not configured to trust. "
            "Ask the service administrators to register this EHR.",
        )
    if launch is not None and (not launch or len(launch) > 2048):
        raise LaunchRejected(
            "launch_invalid", "The launch parameter is not valid. " + LAUNCH_AGAIN
        )
    iss = normalise_issuer(iss)
    config = await oauth.discover(app_state.http, iss)
    pkce = oauth.Pkce.new()
    session = smart.store.create()
    session.pending = PendingLaunch(
        state=secrets.token_urlsafe(32),
        iss=iss,
        config=config,
        verifier=pkce.verifier,
        created_at=smart.clock(),
    )
    scope = smart.settings.scopes + (
        " launch" if launch is not None else " launch/patient"
    )
    url = oauth.authorization_url(
        config,
        client_id=smart.settings.client_id,
        redirect_uri=public_url(app_state, CALLBACK_PATH),
        scope=scope,
        state=session.pending.state,
        challenge=pkce.challenge,
        aud=iss,
        launch=launch,
    )
    logger.info("smart_launch_started", extra={"standalone": launch is None})
    return session, url


async def finish_launch(
    app_state: AppState,
    smart: SmartState,
    session: SmartSession | None,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
) -> SmartSession:
    """Check `state` against this browser's pending launch, then exchange the code for tokens."""
    pending = smart.store.take_pending(session, state) if session and state else None
    if session is None or pending is None:
        logger.info("smart_callback_rejected", extra={"reason": "state_mismatch"})
        raise LaunchRejected(
            "state_mismatch",
            "This sign-in answer does not belong to a launch started in this browser, or it has "
            "expired. " + LAUNCH_AGAIN,
        )
    if error is not None:
        logger.info("smart_callback_rejected", extra={"reason": "authorization_error"})
        if error == "access_denied":
            raise AccessDenied(
                "access_denied",
                "Access to the patient's record was not granted, so the workup cannot be shown. "
                "To try again, launch the app from the EHR and allow access.",
            )
        raise AccessDenied(
            "authorization_error",
            "The EHR's authorization server did not grant access. " + LAUNCH_AGAIN,
        )
    if not code:
        raise LaunchRejected(
            "no_code",
            "The sign-in answer carries no authorization code. " + LAUNCH_AGAIN,
        )
    grant = await oauth.exchange_code(
        app_state.http,
        pending.config,
        code=code,
        redirect_uri=public_url(app_state, CALLBACK_PATH),
        verifier=pending.verifier,
        client_id=smart.settings.client_id,
        client_secret=_secret(smart),
        now=smart.clock(),
    )
    if grant.patient is None:
        raise LaunchRejected(
            "no_patient",
            "The EHR did not say which patient the app is for. Open a patient's chart and launch again.",
        )
    session.iss = pending.iss
    session.token_endpoint = pending.config.token_endpoint
    session.grant = grant
    session.app_context = grant.app_context
    smart.store.rotate(session)
    logger.info(
        "smart_launch_completed", extra={"refreshable": grant.refresh_token is not None}
    )
    return session


def _secret(smart: SmartState) -> str | None:
    secret = smart.settings.client_secret
    return secret.get_secret_value() if secret else None


def require_session(session: SmartSession | None) -> tuple[SmartSession, TokenGrant]:
    if session is None or session.grant is None or session.iss is None:
        raise SessionExpired(
            "no_session", "There is no open session in this browser. " + LAUNCH_AGAIN
        )
    return session, session.grant


async def load_workup(
    app_state: AppState, smart: SmartState, session: SmartSession | None
) -> Workup:
    """Fetch the patient's record with the session's token (refreshing it when due) and run the engine."""
    session, _ = require_session(session)
    lock = smart.locks.setdefault(session.id, asyncio.Lock())
    async with lock:
        grant = await _fresh_grant(app_state, smart, session, force=False)
        try:
            resources = await _gather(app_state, smart, session.iss or "", grant)
        except FhirUnauthorized:
            logger.info("smart_fhir_unauthorized")
            grant = await _fresh_grant(app_state, smart, session, force=True)
            try:
                resources = await _gather(app_state, smart, session.iss or "", grant)
            except FhirUnauthorized:
                raise _expired("fhir_unauthorized") from None
    patient_id = grant.patient or ""
    now = app_state.now()
    base = app_state.settings.public_base_url.rstrip("/")
    result = run_workup(
        WorkupInput(
            hook="patient-view",
            now=now,
            patient_id=patient_id,
            resources=tuple(resources),
            draft_orders=(),
            selections=(),
            links=LinkConfig(rules_url=f"{base}/rules", smart_launch_url=None),
        ),
        app_state.catalog,
    )
    return Workup(patient_id, resources, result, now)


async def _fresh_grant(
    app_state: AppState, smart: SmartState, session: SmartSession, *, force: bool
) -> TokenGrant:
    grant = session.grant
    assert grant is not None
    margin = timedelta(seconds=smart.settings.token_refresh_margin_seconds)
    due = grant.expires_at is not None and smart.clock() + margin >= grant.expires_at
    if not (force or due):
        return grant
    if grant.refresh_token is None or session.token_endpoint is None:
        raise _expired("token_expired")
    try:
        grant = await oauth.refresh(
            app_state.http,
            session.token_endpoint,
            grant,
            client_id=smart.settings.client_id,
            client_secret=_secret(smart),
            now=smart.clock(),
        )
    except SessionExpired:
        smart.store.delete(session.id)
        raise
    session.grant = grant
    logger.info("smart_token_refreshed")
    return grant


def _expired(code: str) -> SessionExpired:
    return SessionExpired(
        code, "Access to the patient's record has expired. " + LAUNCH_AGAIN
    )


async def _gather(
    app_state: AppState, smart: SmartState, iss: str, grant: TokenGrant
) -> list[JsonObject]:
    try:
        fetcher = app_state.fhir_fetcher(iss, grant.access_token)
        gathered = await gather_resources(
            prefetch=None,
            templates=PREFETCH_TEMPLATES,
            context={"patientId": grant.patient},
            user_practitioner_id=None,
            fhir=fetcher,
            deadline_seconds=smart.settings.fhir_deadline_seconds,
        )
    except FhirUnauthorized:
        raise
    except (FhirError, PrefetchUnavailable) as exc:
        logger.warning("smart_fhir_failed", extra={"error_type": type(exc).__name__})
        raise FhirUnavailableError(
            "fhir_unavailable",
            "The EHR's FHIR server did not supply the patient's record. Try again in a moment.",
        ) from None
    return list(gathered.resources)


TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
