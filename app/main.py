"""Application factory: settings, startup checks, shared clients, routers and error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api.cds.routes import router as cds_router
from app.api.health import router as health_router
from app.api.metrics import install_metrics
from app.api.middleware import (
    AfterResponseMiddleware,
    BodySizeLimitMiddleware,
    InFlightMiddleware,
    RequestsInFlight,
)
from app.api.responses import OrjsonResponse
from app.api.rules import router as rules_router
from app.api.security_headers import SecurityHeadersMiddleware
from app.catalog.loader import load_catalog
from app.config import DEFAULT_HMAC_KEY, AuthMode, Settings, get_settings
from app.db.session import create_engine, create_sessionmaker
from app.errors import install_error_handlers
from app.fhir.client import create_http_client
from app.logging import configure_logging
from app.rules_catalogue import render_rules_html
from app.security.jwks import HttpJwksFetcher
from app.services.audit_writer import AuditWriter
from app.services.clients import list_clients
from app.smart.routes import install_smart_app
from app.state import AppState
from app.workup.engine import check_registry

logger = logging.getLogger("iliac_cds.startup")


class StartupError(RuntimeError):
    """The service must not start; the message says why and what to do."""


def check_startup_settings(settings: Settings) -> None:
    """Raise StartupError when the settings must not be served (the CLI checks before uvicorn starts)."""
    if settings.auth_mode is AuthMode.JWT and (
        settings.hmac_key.get_secret_value() == DEFAULT_HMAC_KEY
        or len(settings.hmac_key.get_secret_value()) < 16
    ):
        # With a known key the audit's patient HMACs can be reversed by trying candidate patient ids.
        raise StartupError(
            "set ILIAC_CDS_HMAC_KEY to a secret of at least 16 characters (it keys the patient HMACs)"
        )
    if settings.auth_mode is AuthMode.DISABLED and not settings.is_loopback_bind:
        raise StartupError(
            "ILIAC_CDS_AUTH_MODE=disabled is only allowed when bound to loopback (127.0.0.1/::1); "
            f"bind host is {settings.bind_host!r}"
        )


def warn_startup_settings(settings: Settings) -> None:
    """Log, once per worker, the settings an operator must notice."""
    if settings.auth_mode is AuthMode.DISABLED:
        logger.warning(
            "AUTHENTICATION DISABLED: EHR JWTs are not checked. Development only; bound to loopback; "
            "only loopback FHIR servers or ILIAC_CDS_DEV_FHIR_SERVERS are contacted."
        )
    if settings.now is not None:
        logger.warning("clock_fixed", extra={"now": settings.now.isoformat()})


GC_YOUNG_THRESHOLD = 10_000


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    check_startup_settings(settings)
    warn_startup_settings(settings)
    catalog = load_catalog(
        cards_dir=settings.cards_dir,
        mappings_dir=settings.mappings_dir,
        local_system=settings.local_code_system,
    )
    check_registry(catalog)
    engine = create_engine(settings.database_url, schema=settings.database_schema)
    sessionmaker = create_sessionmaker(engine)
    if settings.auth_mode is AuthMode.JWT:
        async with sessionmaker() as session:
            registered = await list_clients(session)
        if not registered:
            await engine.dispose()
            raise StartupError(
                "no EHR client is registered: add one with `iliac-cds clients add` "
                "(or run locally with ILIAC_CDS_AUTH_MODE=disabled, loopback only)"
            )
    http = create_http_client(timeout_seconds=settings.fhir_deadline_seconds)
    audit = AuditWriter(engine, requests_in_flight=app.state.requests_in_flight)
    await audit.start()
    app.state.services = AppState(
        settings=settings,
        catalog=catalog,
        engine=engine,
        sessionmaker=sessionmaker,
        http=http,
        jwks=HttpJwksFetcher(http, cache_seconds=settings.jwks_cache_seconds),
        rules_html=render_rules_html(catalog),
        audit=audit,
    )
    # Startup objects (catalog, mappings index) live for the whole process: keep them out of GC scans.
    gc.collect()
    gc.freeze()
    # A hook call's objects are freed by reference counting when it ends, but a call holds more than 700 of
    # them at once, so the default generation-0 threshold ran ~4 collections per call (measured: 2,305 in 630
    # patient-view calls, ~4 % of their CPU). At 10,000, collections are left to real cycle build-up (2 in 630).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        yield
    finally:
        await audit.close()  # commits what is queued before the engine goes
        await http.aclose()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="iliac-cds",
        version="0.1.0",
        summary="CDS Hooks 2.0 service for the workup of iliofemoral venous outflow obstruction",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors
    )
    # Outermost, so that 413s and errors raised by inner middleware are counted too.
    install_metrics(app)
    # Around everything: what a route leaves for after its answer (a large body's release) runs last.
    app.add_middleware(AfterResponseMiddleware)
    # Outermost of all ours: a request counts from its arrival (the audit writer reads the count).
    app.state.requests_in_flight = RequestsInFlight()
    app.add_middleware(InFlightMiddleware, counter=app.state.requests_in_flight)
    install_error_handlers(app)
    app.include_router(cds_router)
    app.include_router(health_router)
    app.include_router(rules_router)
    install_smart_app(app, settings.smart)
    return app
